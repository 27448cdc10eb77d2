"""Past runs from the store; opening one shows its plots from its events file (following it if
it is still running)."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine.record.errors import UserError
from engine.record.store import RunStore
from tui.components.runs_table import RunsTable
from tui.messages import OpenRun, RunsLoaded


class RunsScreen(Screen):
    """Every run in the store, newest first; Enter opens one."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "reload", "Reload")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the run store…", id="runs-summary")
        yield RunsTable(id="runs-table")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "past runs"
        self.action_reload()

    def action_reload(self) -> None:
        self.load_runs()

    @work(thread=True, exclusive=True)
    def load_runs(self) -> None:
        try:
            store = RunStore()
            store.mark_dead_runs()
            runs = store.list_runs()
        except UserError as exc:
            self.post_message(RunsLoaded([], str(exc)))
            return
        self.post_message(RunsLoaded(runs, damaged=tuple(store.damaged)))

    @on(RunsLoaded)
    def _runs_loaded(self, message: RunsLoaded) -> None:
        if message.problem:
            self.query_one("#runs-summary", Static).update(Text(message.problem))
        else:
            self.show_runs(message.runs, message.damaged)

    def show_runs(self, runs: list[dict], damaged: tuple[str, ...] = ()) -> None:
        self.query_one(RunsTable).show(runs)
        counts: dict[str, int] = {}
        for run in runs:
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        summary = f"{len(runs)} run{'' if len(runs) == 1 else 's'}" + (f" ({detail})" if detail else "") + " · Enter opens a run"
        summary = summary if runs else "No runs yet: plan one and press ctrl+r."
        skipped = "".join(f"\nskipped {line}" for line in damaged)  # named, as `engine runs list` names them
        self.query_one("#runs-summary", Static).update(Text(summary + skipped))  # skipped rows quote the store
        self.query_one(RunsTable).focus()

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        self.post_message(OpenRun(str(event.row_key.value)))
