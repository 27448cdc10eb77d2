"""What keeps a run's record honest while it lives: a heartbeat and orderly stopping.

SIGINT (the TUI's stop key sends it to the run's process group) and SIGTERM ask the run to
stop. Inside a training stage the request is honoured at the end of the current optimizer step,
so the stage is checkpointed and can be resumed; anywhere else (loading, evaluating) it raises
KeyboardInterrupt at once. A second signal inside a stage raises at once; outside
one, more signals are ignored while the run records how it ended (exit 130, never 143).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from engine.record.store import RunStore

HEARTBEAT_EVERY_S = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Catches SIGINT/SIGTERM for the life of a run; `requested` tells training to wind down."""

    def __init__(self) -> None:
        self.requested = False
        self._deferred = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        already = self.requested
        self.requested = True
        if already and not self._deferred:  # the stop is under way: let the run record how it ended
            return
        if already or not self._deferred:
            raise KeyboardInterrupt

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def hold(self) -> None:
        """Until `release`, a first signal only sets `requested`: a run being created or reopened
        is then recorded as stopped by its `execute`, never left half-made and `running`."""
        self._deferred = True

    def release(self) -> None:
        """End `hold`; a stop requested meanwhile is raised now."""
        self._deferred = False
        if self.requested:
            raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """While inside, a first signal only sets `requested` (training checks it each step)."""
        if self.requested:
            raise KeyboardInterrupt
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False


def exit_status(code: int) -> int:
    """`code`, made the process's exit status. CPython remembers a KeyboardInterrupt that escaped
    an `exec` of source text (a dataclass being built when the stop arrived) and, under
    `python -m`, ends the process by SIGINT even after the run caught it and recorded itself
    stopped; an `exec` that finishes clears that memory."""
    exec("")
    return code


class Heartbeat:
    """A daemon thread that touches the run's heartbeat every few seconds, whatever the main
    thread is doing (loading a model or evaluating can take minutes without a training step)."""

    def __init__(self, store: RunStore, run_id: str, every: float = HEARTBEAT_EVERY_S):
        self.store = store
        self.run_id = run_id
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.store.heartbeat(self.run_id)
            except Exception:  # a busy store must never kill the run; the next beat retries
                continue

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
