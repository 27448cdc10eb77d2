"""The run's own words: the engine's stderr, stray stdout, and its warning and error events; a
progress bar being drawn shows in the bottom border until its line is done."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

KIND_STYLES = {"stderr": "", "stdout": "dim", "warning": "yellow", "error": "bold red"}
MAX_LINES = 5000


class LogPane(RichLog):
    """A scrolling log that keeps the last few thousand lines."""

    BORDER_TITLE = "Log"

    def __init__(self, **kwargs):
        super().__init__(max_lines=MAX_LINES, wrap=False, markup=False, highlight=False, **kwargs)

    def show_progress(self, progress: str) -> None:
        """A library's progress bar as it stands, in the pane's bottom border (one updating line)."""
        self.border_subtitle = Text(progress[-200:])  # a library's own line: `[...]` in it is not markup

    def add(self, lines: list[tuple[str, str]]) -> None:
        for kind, text in lines:
            prefix = f"{kind}: " if kind in ("warning", "error") else ""
            self.write(Text(prefix + text, style=KIND_STYLES.get(kind, "")))
