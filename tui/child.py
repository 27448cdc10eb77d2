"""The engine as a child process: started in its own session so it outlives the app, its stdout
parsed into events by a reader thread, its stderr captured to a file the log pane follows.

The reader never touches the UI: it appends to a buffer that the screen drains on a timer, so a
burst of events costs one repaint, not one message each (back-pressure in the style of toolong).
It waits on stdout with a timeout rather than a blocking read, so `detach` lets the app quit at
once while the run goes on. stderr goes to a file rather than a pipe so the run keeps writing
after the app has quit, and the log pane reads it back the same way, live or re-attached. The
file lives in the app's own folder, not the run's: the engine creates the run folder itself and
refuses one that exists, and what it prints before that (a bad model name) must still show."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path

from engine.record.events import parse_line
from engine.record.home import check_run_id, home_dir

POLL_S = 0.2


def stderr_capture(run_id: str) -> Path:
    """Where the app keeps the stderr of a run it started."""
    return home_dir() / "tui" / "stderr" / f"{check_run_id(run_id)}.log"


class EngineChild:
    """One running `engine run`: `read_stdout` (in a thread) fills the buffer, `drain` empties it."""

    def __init__(self, argv: list[str], stderr_path: Path, env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.stderr_path = Path(stderr_path)
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                start_new_session=True, env=env,
            )
        self._events: deque[dict] = deque()
        self._stray: deque[str] = deque()
        self._lock = threading.Lock()
        self._detached = threading.Event()

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_stdout(self) -> int | None:
        """Reads until the child closes stdout; its exit code, or None when detached first."""
        assert self.process.stdout is not None
        fd, partial = self.process.stdout.fileno(), b""
        while not self._detached.is_set():
            ready, _, _ = select.select([fd], [], [], POLL_S)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._take([partial])
                self.process.stdout.close()
                return self.process.wait()
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            self._take(lines)
        return None

    def _take(self, lines: list[bytes]) -> None:
        with self._lock:
            for raw in lines:
                event = parse_line(raw)
                if event is not None:
                    self._events.append(event)
                elif raw.strip():
                    self._stray.append(raw.decode("utf-8", "replace").rstrip())

    def drain(self) -> tuple[list[dict], list[str]]:
        """Everything read since the last call: events, and stdout lines that were not events."""
        with self._lock:
            events, stray = list(self._events), list(self._stray)
            self._events.clear()
            self._stray.clear()
        return events, stray

    def detach(self) -> None:
        """Stop reading (the app is quitting); the child runs on and keeps writing its events file."""
        self._detached.set()


def interrupt(pid: int) -> bool:
    """SIGINT to the run's process group (the engine saves and records the run as stopped).

    A run started by the app leads its own group; one started elsewhere gets the signal alone.
    False when the process is already gone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGINT)
        else:
            os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    return True
