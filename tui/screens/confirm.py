"""The last look before a run starts: exactly the command and the split it will train."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from engine.record.compute import calibration_note
from tui.components.forecast_panel import summary_line
from tui.components.recommendation_table import forecast_text
from tui.launch import Launch


def launch_summary(launch: Launch) -> Table:
    inputs, (mean, lo, hi) = launch.inputs, launch.prediction
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("run id", Text(launch.run_id))  # the user's words, never markup
    table.add_row("task", Text(inputs.task))
    table.add_row("model", Text(inputs.model))
    table.add_row("", Text("the engine loads 'tiny', 'demo', a model folder or a cached Hugging Face id", style="dim"))
    table.add_row("SFT examples", f"{launch.n_sft:,}  × {inputs.sft_cost:g}")
    table.add_row("preference pairs", f"{launch.n_pft:,}  × {inputs.pft_cost:g}")
    table.add_row("label spend", f"{launch.spend:,.2f} of {inputs.label_budget:,.2f}")
    if launch.forecast:
        table.add_row("GPU time", forecast_text(launch.forecast))
    table.add_row("forecast", summary_line(launch.run_forecast) if launch.run_forecast else
                  Text(launch.forecast_problem or "not forecast yet (see the plan screen)", style="yellow"))
    note = launch.run_forecast and calibration_note(launch.run_forecast, "F5 on the plan screen calibrates again")
    if note:
        table.add_row("", Text(note, style="yellow"))
    table.add_row("predicted score", f"{mean:.3f}  ({lo:.3f}–{hi:.3f}, 80% interval)")
    table.add_row("other settings", "the engine's defaults (`engine run --help`), plus any flags in the command")
    return table


class ConfirmLaunch(ModalScreen[bool]):
    """Dismisses with True to launch, False to go back to the plan."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, launch: Launch):
        super().__init__()
        self.launch = launch

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(Text("Launch this run?", style="bold"), id="confirm-title")
            yield Static(launch_summary(self.launch), id="confirm-summary")
            yield Static(Text("command", style="dim"), classes="confirm-label")
            yield Static(Text(self.launch.command_line), id="confirm-command")
            with Horizontal(id="confirm-buttons"):
                yield Button("Launch", variant="primary", id="launch")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#launch", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "launch")
