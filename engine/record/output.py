"""Standard output that outlives its reader — the one place broken pipes and full disks on
stdout are handled.

`engine runs list --json | head -c 10`, `… >/dev/full`, or the TUI quitting while a run goes on
with `--events-stdout`: none of them may turn a finished command into an error. On the first
failed write the stream is pointed at /dev/null (so the interpreter's final flush cannot fail
either) and everything after goes nowhere; what matters is already in the run folder and store.
"""

from __future__ import annotations

import os
import sys
from typing import IO


class SafeOut:
    """A text stream (stdout by default) whose writes never raise once its reader is gone."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self.detached = False

    def write(self, text: str) -> int:
        self._guard(self.stream.write, text)
        return len(text)

    def flush(self) -> None:
        self._guard(self.stream.flush)

    def isatty(self) -> bool:
        return not self.detached and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8")

    def _guard(self, action, *args) -> None:
        if self.detached:
            return
        try:
            action(*args)
        except OSError:  # EPIPE, ECONNRESET, ENOSPC (/dev/full), EIO: the reader is gone or cannot take it
            self.detached = True
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
                os.close(devnull)
            except (OSError, AttributeError, ValueError):  # not a real file descriptor (a test's buffer)
                pass


_STDOUT: SafeOut | None = None


def stdout() -> SafeOut:
    """The process's stdout behind one shared `SafeOut`."""
    global _STDOUT
    if _STDOUT is None or _STDOUT.stream is not sys.stdout:
        _STDOUT = SafeOut(sys.stdout)
    return _STDOUT


def say(text: str) -> None:
    """print(text) to stdout that never raises."""
    out = stdout()
    out.write(text + "\n")
    out.flush()
