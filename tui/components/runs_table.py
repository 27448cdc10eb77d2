"""Past runs from the store, newest first: status, split, score and when."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from engine.record.errors import local_time
from tui.components.status_line import STATUS_STYLES, clock

COLUMNS = ("status", "run id", "task", "model", "n_sft", "n_pft", "score", "started", "took")


class RunsTable(DataTable):
    """One row per run (keyed by run id); Enter opens it."""

    BORDER_TITLE = "Runs"

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for column in COLUMNS:
            self.add_column(column, key=column)

    def show(self, runs: list[dict]) -> None:
        self.clear()
        for run in runs:
            took = run["finished_at"] - run["created_at"] if run.get("finished_at") else None
            score = "—" if run.get("score") is None else f"{run['score']:.3f}"
            self.add_row(
                Text(run["status"], style=STATUS_STYLES.get(run["status"], "")), Text(run["run_id"]), Text(run["task"]),
                Text(run["model"]), Text(f"{run['n_sft']:,}", justify="right"), Text(f"{run['n_pft']:,}", justify="right"),
                Text(score, justify="right"), local_time(run.get("created_at")), clock(took), key=run["run_id"],
            )
