"""What the recommended run will cost on this machine: seconds and peak memory per stage, the
total, device-hours and money, each figure with its source — or why there is no forecast.

The app never imports torch, so the panel asks the engine: `engine forecast … --json` as a child
process in a thread worker (the first forecast of a plan calibrates this machine, seconds to a
minute), whose answer reaches the UI as a message. A newer request stops the older child
(SIGTERM: it removes its calibration folder and exits)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.message import Message
from textual.widgets import Static

from engine.record.compute import calibration_busy, calibration_note, forecast_rows, gib, threads_text, with_cap

AGAIN = "F5 calibrates again"


@dataclass
class ForecastReady(Message):
    ticket: int  # which question this answers: only the latest one's answer is shown
    figures: dict


@dataclass
class ForecastFailed(Message):
    ticket: int
    reason: str


def forecast_table(figures: dict, n_sft: int, n_pft: int) -> Table:
    table = Table(title=f"{n_sft:,} SFT examples + {n_pft:,} pairs on {figures['device']}, {threads_text(figures)}",
                  title_justify="left", box=None, pad_edge=False, title_style="dim")
    for column in ("stage", "time", "peak memory", "source"):
        table.add_column(column, justify="right" if column in ("time", "peak memory") else "left",
                         style="dim" if column == "source" else None)
    *stages, (label, *total) = forecast_rows(figures)
    for row in stages:
        table.add_row(*row)
    table.add_row(Text(label, style="bold"), *total)
    return table


def summary_line(figures: dict) -> str:
    """One line for the launch confirmation."""
    money = "" if figures.get("money") is None else f", {figures['money']:,.2f} of compute"
    total = with_cap(figures["total_seconds"], figures.get("total_seconds_at_cap"))
    return (f"{total} on {figures['device']} ({threads_text(figures)}), "
            f"peak memory {gib(figures['peak_memory_bytes'])}, {figures['gpu_hours']:.3f} device-hours{money}")


class ForecastPanel(Static):
    """Shows the forecast for the last requested (task, model, n_sft, n_pft, hour price)."""

    BORDER_TITLE = "Forecast on this machine"
    DEFAULT_CSS = """
    ForecastPanel {
        border: round $foreground 25%;
        border-title-color: $text-muted;
        border-title-style: bold;
        background: $background;
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs):
        super().__init__(Text("forecast: waiting for the recommendation…", style="dim"), **kwargs)
        self.request: tuple | None = None
        self.calibrating = False  # the request's question may calibrate (F5)
        self.ticket = 0  # the latest question's number: a superseded child's answer (or its "interrupted") is dropped
        self.figures: dict | None = None
        self.problem = ""
        self._child: subprocess.Popen | None = None
        self._closed = False  # unmounted: a question still being started is withdrawn

    def forecast(self, prefix: list[str], task: str, model: str, n_sft: int, n_pft: int,
                 gpu_hour_price: float | None, *, calibrate: bool = False) -> None:
        """Ask for the plan's forecast. Without `calibrate` only a cached calibration is used, so
        typing in the form never starts minutes of model steps behind the user's back, and a plan
        already answered is not asked again; with it (the user asked: F5) the engine is always
        asked, and calibrates this machine first when it must — and again, replacing the cached
        one, when the forecast shown says its calibration was timed while other work took the cores."""
        request = (task, model, n_sft, n_pft, gpu_hour_price)
        again = calibrate and request == self.request and self.figures is not None \
            and calibration_busy(self.figures)
        in_flight = self.figures is None and not self.problem
        if request == self.request and (not calibrate or (in_flight and self.calibrating)):
            return
        self._withdraw()
        self.request, self.calibrating = request, calibrate
        self.update(Text(f"forecasting {n_sft} SFT examples and {n_pft} pairs on this machine"
                         + (" (calibrating it first if it must: a few timed steps of the model)…" if calibrate
                            else "…"), style="dim"))
        argv = [*prefix, "forecast", "--task", task, "--model", model, "--n-sft", str(n_sft), "--n-pft", str(n_pft),
                "--json", *(["--gpu-hour-price", f"{gpu_hour_price:g}"] if gpu_hour_price is not None else []),
                *(["--recalibrate"] if again else [] if calibrate else ["--cached-only"])]
        self.call_after_refresh(self._ask, self.ticket, argv)  # after the recommendation is on screen

    def forget(self) -> None:
        """The store changed (a run finished, a base score was measured): the forecast shown may
        lack a finished run's `× history`, so the next request asks the engine again — unless a
        question is still on its way (a calibration the user asked for is not cut short)."""
        if self.figures is not None or self.problem:
            self.request = None

    def withdraw(self, reason: str) -> None:
        """No plan to forecast (a field is invalid, the advisor cannot answer): say `reason`
        instead of a forecast of a plan that is no longer on screen, and drop any question asked."""
        self._withdraw()
        self.update(Text(reason, style="dim"))

    def _withdraw(self) -> None:
        self.request, self.figures, self.problem = None, None, ""
        self.ticket += 1  # an answer still on its way is no longer the panel's
        if self._child is not None and self._child.poll() is None:
            self._child.terminate()

    @work(thread=True, group="forecast")
    def _ask(self, ticket: int, argv: list[str]) -> None:
        if self._child is not None and self._child.poll() is None:
            self._child.terminate()  # an older question nobody is waiting for
        if self._closed or ticket != self.ticket:
            return
        try:
            child = self._child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                   stdin=subprocess.DEVNULL)
            if self._closed or ticket != self.ticket:  # quit or withdrawn while it started: nobody waits for it
                child.terminate()
            out, err = child.communicate()
        except OSError as exc:
            self.post_message(ForecastFailed(ticket, f"{argv[0]}: {exc.strerror or exc}"))
            return
        if child.returncode == 0:
            try:
                self.post_message(ForecastReady(ticket, json.loads(out)))
                return
            except ValueError:
                err = "the engine printed no forecast"
        lines = [line for line in err.splitlines() if line.strip()]
        reason = lines[-1].removeprefix("engine: error: ") if lines else f"the engine exited {child.returncode}"
        self.post_message(ForecastFailed(ticket, reason))

    @on(ForecastReady)
    def _ready(self, message: ForecastReady) -> None:
        if message.ticket == self.ticket:
            self.figures = message.figures
            note = calibration_note(message.figures, AGAIN)
            table = forecast_table(message.figures, *self.request[2:4])
            self.update(Group(table, Text(note, style="yellow")) if note else table)

    @on(ForecastFailed)
    def _failed(self, message: ForecastFailed) -> None:
        if message.ticket == self.ticket:
            self.problem = message.reason
            if message.reason.startswith("no calibration"):  # the cached-only answer: say how to get one here
                self.update(Text("no forecast yet: this machine has no calibration for this plan — F5 makes one "
                                 "(a few timed steps of the model; minutes for a larger model on a CPU)", style="dim"))
            else:
                self.update(Text(f"no forecast: {message.reason}", style="yellow"))

    def on_unmount(self) -> None:
        self._closed = True
        if self._child is not None and self._child.poll() is None:
            self._child.terminate()
