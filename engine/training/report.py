"""What a person at a terminal sees of a run: a few lines and warnings, all on stderr (the
progress bar is transformers' own, see `engine.training.callbacks`).

Silent under `--json` and `--events-stdout`, where stdout belongs to machines. Library chatter
(transformers, bitsandbytes, Python warnings) goes to the run's `engine.log` instead of the
terminal, and also to stderr when a TUI is reading it — except the warnings known to be harmless
(`engine.record.library_noise`), which are filed in engine.log once each and nowhere else.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from engine.record.library_noise import known_harmless


class Report:
    """Lines and warnings on stderr, or nothing at all when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._console = None
        if enabled:
            from rich.console import Console

            self._console = Console(stderr=True)

    def say(self, text: str) -> None:
        """`text` as it is: paths, model names and run ids are the user's, and `[...]` in them is
        not markup."""
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False)

    def warn(self, text: str) -> None:
        """A warning the user should act on (the events file has it too)."""
        if self._console is not None:
            self._console.print(f"warning: {text}", style="yellow", markup=False, highlight=False)


class LibraryLogs:
    """Library logging and Python warnings, buffered from the first moment of a command and
    written to the run's engine.log once the run folder exists (also to stderr when asked)."""

    def __init__(self, also_stderr: bool):
        self._root = logging.getLogger()
        self._once = FileOnce()
        self._buffer = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
        self._buffer.addFilter(self._once)
        self._handlers: list[logging.Handler] = [self._buffer]
        if also_stderr:
            stderr = logging.StreamHandler(sys.stderr)
            stderr.addFilter(lambda record: known_harmless(record.getMessage()) is None)
            self._handlers.append(stderr)
        for handler in self._handlers:
            self._root.addHandler(handler)
        self._root.setLevel(logging.WARNING)
        logging.captureWarnings(True)
        self._file: logging.FileHandler | None = None

    def to_file(self, path: Path) -> None:
        self._file = logging.FileHandler(path, encoding="utf-8")
        self._file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._file.addFilter(self._once)
        self._buffer.setTarget(self._file)
        self._buffer.flush()
        self._root.removeHandler(self._buffer)
        self._root.addHandler(self._file)
        self._handlers[0] = self._file

    def write(self, text: str) -> None:
        """Put text (a traceback) into the log as it is."""
        if self._file is not None:
            self._file.stream.write(text)
            self._file.flush()

    def close(self) -> None:
        for handler in self._handlers:
            self._root.removeHandler(handler)
            handler.close()
        logging.captureWarnings(False)


class FileOnce(logging.Filter):
    """Lets each known-harmless warning through once (the same record may pass twice: into the
    start-up buffer, then from it into the file); every other record always."""

    def __init__(self):
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        marker = known_harmless(record.getMessage())
        if marker is None or getattr(record, "first_of_its_kind", False):
            return True
        if marker in self._seen:
            return False
        self._seen.add(marker)
        record.first_of_its_kind = True
        return True


def quiet_libraries() -> None:
    """Hand transformers' and datasets' own stderr handlers and progress bars over to `logging`."""
    import datasets
    import transformers

    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
