"""The plan screen: the inputs on the left; the recommendation and its plot on the right,
recomputed off the UI thread a moment after the typing stops."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Footer, Header, Input

from tui.advice import Advice, IsoGrid, Planner
from tui.components.budget_plot import BudgetLinePlot
from tui.components.forecast_panel import ForecastPanel
from tui.components.inputs_form import InputsForm
from tui.components.iso_plot import IsoScorePlot
from tui.components.pilot_panel import PilotPanel
from tui.components.recommendation_table import RecommendationView
from tui.inputs import PlanInputs
from tui.launch import RunHost
from tui.messages import (AdviceFailed, AdviceReady, AdvisorFitted, FitFailed, GridReady, InputsChanged,
                          LaunchRequested)
from tui.pilots import BaseScoreMeasured

DEBOUNCE_S = 0.3


class PlanScreen(Screen):
    """Owns the current inputs and the advice computed for them; launches from valid advice only."""

    BINDINGS = [
        Binding("ctrl+r", "launch", "Launch run"),
        Binding("ctrl+g", "toggle_plot", "Budget line / iso-score"),
        Binding("ctrl+b", "measure_base_score", "Measure base score"),
        Binding("ctrl+t", "plan_pilots", "Pilot runs"),
        Binding("ctrl+l", "run_pilots", "Run pilots"),
        Binding("f5", "forecast", "Forecast"),
    ]

    # `compute_<name>` would make a reactive computed: the advice comes from the `ask_advisor` worker
    advice: reactive[Advice | None] = reactive(None, always_update=True, init=False)
    plot: reactive[str] = reactive("budget-plot", init=False)  # the id of the plot on show

    def __init__(self, inputs: PlanInputs, planner: Planner, host: RunHost):
        super().__init__()
        self.host = host
        self.initial = inputs
        self.planner = planner
        self.inputs: PlanInputs | None = inputs
        self.refusal = ""
        self.fit_error = ""
        self.grid: tuple[PlanInputs, IsoGrid] | None = None
        self.fitted = False
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="plan"):
            yield InputsForm(self.initial, id="form")
            with Vertical(id="advice-pane"):
                yield RecommendationView("fitting the advisor on past runs…", id="recommendation")
                yield ForecastPanel(id="forecast")
                yield PilotPanel(self.host, id="pilot-panel")
                with ContentSwitcher(id="plots", initial="budget-plot"):
                    yield BudgetLinePlot(id="budget-plot")
                    yield IsoScorePlot(id="iso-plot")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "plan"

    @property
    def showing_iso(self) -> bool:
        return self.plot == "iso-plot"

    def watch_advice(self, advice: Advice | None) -> None:
        if advice is not None:
            self.query_one(RecommendationView).show(advice)
            self.query_one(BudgetLinePlot).show(advice)

    def watch_plot(self, plot: str) -> None:
        self.query_one(ContentSwitcher).current = plot

    # --- inputs → advice --------------------------------------------------------------------
    @on(InputsChanged)
    def _inputs_changed(self, message: InputsChanged) -> None:
        if message.inputs == self.inputs and self.advice is not None:
            return
        self.inputs, self.refusal = message.inputs, ""
        if self._debounce is not None:
            self._debounce.stop()
        if message.inputs is None:
            self.query_one(RecommendationView).show_problem("Fix the fields marked in red to see a recommendation.")
            self.query_one(ForecastPanel).withdraw("no forecast: fix the fields marked in red")
            return
        self._debounce = self.set_timer(DEBOUNCE_S, self.recompute)

    @on(AdvisorFitted)
    def _fitted(self, message: AdvisorFitted) -> None:
        self.fitted, self.fit_error, self.grid = True, "", None  # a refit changes every prediction
        self.query_one(ForecastPanel).forget()  # and a finished run refines the forecast (`× history`)
        self.query_one(InputsForm).suggest(message.tasks, message.models)
        self.query_one(PilotPanel).advisor_refitted()
        self.recompute()

    @on(FitFailed)
    def _fit_failed(self, message: FitFailed) -> None:
        self.advice, self.fit_error = None, f"The advisor could not be fitted: {message.reason}"
        self.query_one(RecommendationView).show_problem(self.fit_error)
        self.query_one(ForecastPanel).withdraw("no forecast: no recommended split")

    def recompute(self) -> None:
        if self.fitted and self.inputs is not None:
            self.ask_advisor(self.inputs, self.showing_iso)

    @work(thread=True, exclusive=True, group="advice")
    def ask_advisor(self, inputs: PlanInputs, with_grid: bool) -> None:
        planner = self.planner
        try:
            advice = planner.advise(inputs)
        except ValueError as exc:
            self.post_message(AdviceFailed(inputs, str(exc)))
            return
        self.post_message(AdviceReady(advice))
        if with_grid:
            self.post_message(GridReady(inputs, planner.iso_grid(advice)))

    @on(AdviceReady)
    def _advice_ready(self, message: AdviceReady) -> None:
        advice = message.advice
        if advice.inputs != self.inputs:
            return
        self.refusal = ""
        self.query_one(InputsForm).show_reason("gpu_hour_price", advice.compute_problem)
        self.advice = advice
        self._forecast(advice, calibrate=False)
        self.query_one(PilotPanel).show_for(advice.inputs)
        if self.grid is not None and self.grid[0] == advice.inputs:
            self.query_one(IsoScorePlot).show(advice, self.grid[1])

    @on(AdviceFailed)
    def _advice_failed(self, message: AdviceFailed) -> None:
        if message.inputs != self.inputs:
            return
        self.advice, self.refusal = None, message.reason
        self.query_one(RecommendationView).show_problem(f"The advisor cannot answer: {message.reason}")
        self.query_one(ForecastPanel).withdraw("no forecast: no recommended split")

    @on(GridReady)
    def _grid_ready(self, message: GridReady) -> None:
        self.grid = (message.inputs, message.grid)
        if self.advice is not None and self.advice.inputs == message.inputs:
            self.query_one(IsoScorePlot).show(self.advice, message.grid)

    # --- actions --------------------------------------------------------------------------
    def action_toggle_plot(self) -> None:
        self.plot = "budget-plot" if self.showing_iso else "iso-plot"
        stale = self.grid is None or self.grid[0] != self.inputs
        if self.showing_iso and stale:
            self.recompute()

    def action_launch(self) -> None:
        """Confirm, then start the engine on the recommended split; refused unless the advice is current."""
        problem = self.fit_error or self.refusal or ("" if self.inputs else "Fix the fields marked in red first.")
        if problem:
            self.notify(problem, title="Cannot launch", severity="error", markup=False)  # it may quote a field
            return
        if self.advice is None or self.advice.inputs != self.inputs:
            self.notify("The recommendation is still being computed.", title="Not yet", severity="warning")
            return
        panel = self.query_one(ForecastPanel)
        if panel.request and panel.request[2:4] == self.advice.split:
            self.post_message(LaunchRequested(self.advice, panel.figures, panel.problem))
        else:
            self.post_message(LaunchRequested(self.advice))

    def _forecast(self, advice: Advice, *, calibrate: bool) -> None:
        self.query_one(ForecastPanel).forecast(self.host.engine_prefix(), advice.inputs.task,
                                               advice.inputs.model, *advice.split, advice.inputs.gpu_hour_price,
                                               calibrate=calibrate)

    def action_forecast(self) -> None:
        """Forecast the recommended run on this machine again (with its latest finished runs),
        calibrating it first when no calibration is cached."""
        if self.advice is None or self.advice.inputs != self.inputs:
            self.notify("The recommendation is still being computed.", title="Not yet", severity="warning")
            return
        self._forecast(self.advice, calibrate=True)

    # --- the next experiment (tui.components.pilot_panel) -------------------------------------
    def action_measure_base_score(self) -> None:
        """Run `engine baseline` for the plan's task and model in the background; its score fills the field."""
        if self.inputs is None:
            self.notify("Fix the fields marked in red first.", title="Cannot measure", severity="error")
            return
        self.query_one(PilotPanel).measure_base_score(self.inputs)

    @on(BaseScoreMeasured)
    def _base_score_measured(self, message: BaseScoreMeasured) -> None:
        self.notify(f"{message.inputs.model} on {message.inputs.task}: {message.metric} {message.score:.3f}",
                    title="Base score measured", markup=False)
        self.host.fit_advisor()  # the new (0, 0) point counts
        if self.inputs is not None and (self.inputs.task, self.inputs.model) == (message.inputs.task,
                                                                                 message.inputs.model):
            self.query_one("#in-base_score", Input).value = f"{message.score:.4g}"

    def action_plan_pilots(self) -> None:
        self.query_one(PilotPanel).propose()

    def action_run_pilots(self) -> None:
        self.query_one(PilotPanel).run_pilots()
