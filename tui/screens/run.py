"""The run screen: a run's loss curves, DPO rewards, evaluations and log, redrawn on a timer.

Events are folded as they arrive but the screen repaints at most `TICK_S` apart, so a burst of
hundreds of events per second costs a few repaints, not hundreds. The advisor's prediction for
the run's split and the store's word on a re-attached run come from workers, as messages."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import Screen
from textual.widgets import Footer, Header

from engine.record.errors import UserError
from engine.record.store import RunStore
from tui.components.dpo_panel import DpoPanel
from tui.components.eval_panel import EvalPanel
from tui.components.log_pane import LogPane
from tui.components.loss_plot import LossPlot
from tui.components.status_line import StatusLine
from tui.messages import EndedElsewhere, PredictionReady, RunEnded
from tui.screens.generations import GenerationsScreen
from tui.watch import RunWatch

if TYPE_CHECKING:
    from tui.advice import Planner

TICK_S = 0.25
STORE_CHECK_S = 2.0


class RunScreen(Screen):
    """Follows one `RunWatch`; the run itself lives on when this screen (or the app) closes."""

    BINDINGS = [
        Binding("s", "stop", "Stop run"),
        Binding("g", "generations", "What it wrote"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, watch: RunWatch, planner: Planner | None = None, clock: Callable[[], float] = time.time):
        super().__init__()
        self.run_watch = watch
        self.planner = planner
        self.clock = clock
        self._reported_end = False
        self._drawn: tuple | None = None
        self._asked_prediction = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusLine(id="status")
        with Grid(id="run-grid"):
            yield LossPlot("sft", id="sft-loss")
            yield LossPlot("dpo", id="dpo-loss")
            yield DpoPanel(id="dpo-panel")
            yield EvalPanel(id="eval-panel")
        yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"run {self.run_watch.run_id}"
        self.run_watch.poll()
        self._reported_end = self.run_watch.state.finished  # a run that ended before it was opened is no news
        self.tick()
        self.set_interval(TICK_S, self.tick)
        if not self.run_watch.live:
            self.set_interval(STORE_CHECK_S, self.check_store)

    def tick(self) -> None:
        """Fold in what arrived since the last tick and redraw what it changed."""
        watch, state = self.run_watch, self.run_watch.state
        watch.poll()
        if watch.prediction is None and state.split is not None and not self._asked_prediction:
            self._asked_prediction = True
            self.predict(state.config.get("task"), state.config.get("model"), state.split, state.params_b)
        log = self.query_one(LogPane)
        log.add(watch.take_log())
        log.show_progress(watch.progress)
        self.query_one(StatusLine).show(state, self.clock())
        self.redraw()
        if state.finished and not self._reported_end:
            self._reported_end = True
            self.post_message(RunEnded(watch.run_id, state.status))

    def redraw(self) -> None:
        """Redraw the plots and panels if anything they show changed."""
        watch, state = self.run_watch, self.run_watch.state
        drawn = (state.n_events, state.status, watch.prediction)
        if drawn != self._drawn:
            self._drawn = drawn
            n_sft, n_pft = state.split or (None, None)
            no_sft = "no SFT stage: this run buys 0 SFT examples" if n_sft == 0 else None
            no_dpo = "no DPO stage: this run buys 0 preference pairs" if n_pft == 0 else None
            self.query_one("#sft-loss", LossPlot).show(state.stages.get("sft"), no_sft)
            self.query_one("#dpo-loss", LossPlot).show(state.stages.get("dpo"), no_dpo)
            self.query_one(DpoPanel).show(state.stages.get("dpo"), no_dpo)
            self.query_one(EvalPanel).show(state.evals, watch.prediction, state.final_stage)

    @work(thread=True, exclusive=True, group="predict")
    def predict(self, task: object, model: object, split: tuple[int, int], params_b: float | None) -> None:
        """The advisor's prediction for the run's split (its config names task and model)."""
        if self.planner is None or not task or not model or not self.planner.wait_fitted(timeout=60):
            return
        try:
            prediction = self.planner.predict(str(task), str(model), *split, params_b=params_b)
        except ValueError:  # the advisor refuses (say, an unnamed size): the panel shows no prediction
            return
        self.post_message(PredictionReady(prediction))

    @on(PredictionReady)
    def _prediction_ready(self, message: PredictionReady) -> None:
        self.run_watch.prediction = message.prediction
        self.redraw()

    @work(thread=True, exclusive=True, group="store-check")
    def check_store(self) -> None:
        """A re-attached run's process may die without a last event: the store knows."""
        if self.run_watch.state.finished:
            return
        try:
            store = RunStore()
            store.mark_dead_runs()
            status = store.get_run(self.run_watch.run_id)["status"]
        except UserError:
            return
        if status != "running":
            self.post_message(EndedElsewhere(status))

    @on(EndedElsewhere)
    def _ended_elsewhere(self, message: EndedElsewhere) -> None:
        self.run_watch.ended_elsewhere(message.status)
        self.tick()

    def action_stop(self) -> None:
        if self.run_watch.state.finished:
            self.notify("This run has already ended.", severity="warning")
        elif self.run_watch.stop():
            self.notify("Stop requested: the engine saves a checkpoint and stops.", title="Stopping")
        else:
            self.notify("No process to stop (the run is not running here).", severity="warning")

    def action_generations(self) -> None:
        self.app.push_screen(GenerationsScreen(self.run_watch.folder, self.run_watch.state.evals))

    def action_back(self) -> None:
        self.dismiss()
