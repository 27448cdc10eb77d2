"""One line that says where the run is: status, stage, step of total, elapsed and time left."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.runstate import RunState

STATUS_STYLES = {"waiting": "dim", "running": "bold cyan", "finished": "bold green", "stopped": "bold yellow",
                 "failed": "bold red", "interrupted": "bold red"}
BAR_WIDTH = 24


def clock(seconds: float | None) -> str:
    """h:mm:ss (or m:ss under an hour); '—' when unknown."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> Text:
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return Text.assemble(("━" * filled, "cyan"), ("━" * (width - filled), "grey30"))


class StatusLine(Static):
    """Rendered from a `RunState` and a time `now` (the caller's clock, so tests can fix it)."""

    def show(self, state: RunState, now: float) -> None:
        status = state.status
        parts = [Text(f" ● {status.upper()} ", style=STATUS_STYLES.get(status, "bold"))]
        progress = state.stages.get(state.stage or "")
        if progress is not None:
            total = progress.total_steps
            parts += [Text(f" {state.stage.upper()} ", style="reverse"), Text(" "),
                      bar(progress.step, total), Text(f" step {progress.step}/{total or '?'}"),
                      Text(f" · {progress.n_examples:,} examples", style="dim")]
        if state.world_size > 1:
            parts += [Text(f" · {state.world_size} processes", style="dim")]
        parts += [Text("   elapsed ", style="dim"), Text(clock(state.elapsed(now)))]
        if not state.finished:
            parts += [Text("   ETA ", style="dim"), Text(clock(state.eta(now)))]
        parts += [Text(f"   run {state.run_id}", style="dim")]
        self.update(Text.assemble(*parts))
