"""Exactly one process owns a run at a time: an exclusive `flock` on `<run folder>/.owner`.

The OS releases the lock when its holder exits however it exits (kill -9 included), so a
crashed run never blocks its own resume, and two `engine resume` started at the same moment
cannot both train in the same folder: the second is refused in one line. The lock is taken by
the process that owns the run's store row (a launcher parent, not its workers).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from engine.record.errors import UserError

LOCK_FILE = ".owner"


class RunLock:
    """Held from `acquire()` until `release()` or the process's end."""

    def __init__(self, folder: Path, run_id: str):
        self.path = Path(folder) / LOCK_FILE
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UserError(f"cannot lock run {self.run_id} ({self.path}): {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            by = f" (pid {holder})" if holder else ""
            raise UserError(f"run {self.run_id} is in use by another engine process{by}; "
                            "wait for it to end or stop it first") from None
        try:  # who holds it, for the refusal above; the lock itself does not depend on it
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass  # a full disk must not stop the owner from owning
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
