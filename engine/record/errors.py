"""How a user hears about a mistake: one line naming it, exit 2 — from the library, from a
failed load, or from a bad flag on either command line."""

import argparse
import difflib
import time


class UserError(Exception):
    """A problem with the user's input or environment, said in one line that names it."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(what: str, name: str, known) -> UserError:
    """"unknown task 'x'; known: a, b (did you mean 'a'?)" as a UserError."""
    return UserError(f"unknown {what} {name!r}; known: {', '.join(sorted(known))}{did_you_mean(name, known)}")


def local_time(stamp: float | None) -> str:
    """A stored timestamp as the user's local 'YYYY-MM-DD HH:MM', or '—' when there is none."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "—"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit 2 (no usage dump, no traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")
