"""How a user hears about a mistake: one line naming it, exit 2 — from the library, from a
failed load, or from a bad flag on either command line."""

import argparse


class UserError(Exception):
    """A problem with the user's input or environment, said in one line that names it."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit 2 (no usage dump, no traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")
