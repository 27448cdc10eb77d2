"""One run being watched: where its events and stderr come from, and the state folded from them.

A live run's events come from the child's stdout (`EngineChild`); a re-attached or past run's
come from its events file (`EventTail`). The log is the child's stderr as the app captured it,
or for a run started elsewhere the engine's own `engine.log`; the screen asks `poll()` for what
changed on each tick. A library's progress bar (tqdm redraws one line with carriage returns)
becomes `progress`, the bar as it stands, and one final line in the log once it is done; the
warnings known to be harmless (`engine.record.library_noise`) are left out."""

from __future__ import annotations

from pathlib import Path

from engine.record.events import EventTail, LineTail
from engine.record.library_noise import without_known_harmless
from tui.child import EngineChild, interrupt, stderr_capture
from tui.runstate import RunState

ENGINE_LOG = "engine.log"


def last_frame(line: bytes) -> str:
    """What a terminal would show of a line redrawn with carriage returns: its last frame."""
    frames = [frame for frame in line.decode("utf-8", "replace").split("\r") if frame.strip()]
    return frames[-1].rstrip() if frames else ""


class RunWatch:
    """The state of one run and the sources that feed it; `poll` folds in whatever is new."""

    def __init__(self, run_id: str, folder: Path, child: EngineChild | None = None):
        self.run_id = run_id
        self.folder = Path(folder)
        self.child = child
        self.state = RunState(run_id=run_id)
        self.prediction: tuple[float, float, float] | None = None
        self.progress = ""
        self._events = None if child is not None else EventTail(self.folder / "events.jsonl")
        capture = stderr_capture(run_id)
        self._stderr = LineTail(capture if child is not None or capture.exists() else self.folder / ENGINE_LOG)
        self._log: list[tuple[str, str]] = []
        self._seen_messages = 0

    @property
    def live(self) -> bool:
        return self.child is not None

    def poll(self) -> None:
        """Fold in new events and collect new log lines (for `take_log`)."""
        if self.child is not None:
            events, stray = self.child.drain()
        else:
            events, stray = self._events.read_new(), []
        self.state.apply_all(events)
        new_messages = self.state.messages[self._seen_messages:]
        self._seen_messages = len(self.state.messages)
        stderr = without_known_harmless([last_frame(line) for line in self._stderr.read_lines()])
        self.progress = last_frame(self._stderr.pending)
        lines = [("stderr", line) for line in stderr] + [("stdout", line) for line in stray]
        self._log.extend(lines + list(new_messages))

    def take_log(self) -> list[tuple[str, str]]:
        """Log lines (kind, text) gathered by `poll` since the last call."""
        lines, self._log = self._log, []
        return lines

    def child_exited(self, returncode: int) -> None:
        """The child is gone: read what it left, and call it failed if it never said it finished."""
        self.poll()
        if not self.state.finished:
            self.state.fail(f"engine exited with code {returncode} before the run finished")
            self.poll()

    def ended_elsewhere(self, status: str) -> None:
        """A re-attached run's process is gone (the store says so) without a final event."""
        self.poll()
        if not self.state.finished:
            self.state.fail(f"the run's process is gone (store status: {status})")
            self.poll()

    def stop(self) -> bool:
        """Ask the run to stop (SIGINT to its process group); False when there is no process."""
        pid = self.child.pid if self.child is not None else self.state.pid
        return bool(pid) and interrupt(pid)
