"""What to measure next, beside the recommendation: the base model's score (offered when this
task and model have none yet) and the pilot runs worth paying for before the budget is spent.

The base score comes from `engine baseline --json`, the proposal from `engine pilot --json`, each
run as a child process from a worker thread whose answer comes back as a message. Pilots are
launched one after another as ordinary runs; each one's end refits the advisor (the app does
that for every run), and the refit starts the next pilot and asks for a fresh proposal."""

from __future__ import annotations

import threading

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.widgets import Static

from engine.record import home
from tui.inputs import PlanInputs
from tui.launch import RunHost
from tui.pilots import (BaseScoreFailed, BaseScoreMeasured, PilotProposal, PilotsFailed, PilotsProposed, PilotStep,
                        ask_engine, baseline_argv, measure_base, pilot_argv)

ENDED = ("finished", "stopped", "failed", "interrupted")


class PilotPanel(Static):
    """The base-score offer, the pilot proposal and the pilots being run, for the plan's inputs."""

    BORDER_TITLE = "Next experiment"

    def __init__(self, host: RunHost, **kwargs):
        super().__init__("", **kwargs)
        self.host = host
        self.inputs: PlanInputs | None = None
        self.base_scores: dict[str, float] = {}
        self.measuring: PlanInputs | None = None
        self.base_problem = ""
        self.wanted = False  # the user asked for pilots: keep the proposal current
        self.proposing = False
        self.proposal: PilotProposal | None = None
        self.proposal_problem = ""
        self.queue: list[PilotStep] = []
        self.running: str | None = None  # run id of the pilot now running
        self.launched: list[str] = []
        self.quitting = threading.Event()  # set as the app quits: workers stop waiting on the engine

    def on_unmount(self) -> None:
        """The app quits: its workers stop waiting on the engine, and it says what goes on without it."""
        self.quitting.set()
        if self.measuring is not None:
            self.host.left_going.append(f"the base score of {self.measuring.model} on {self.measuring.task} is still "
                                        "being measured: it is recorded when done (`engine runs list`)")
        if self.queue:
            self.host.left_going.append(f"{len(self.queue)} proposed pilot run{'s' * (len(self.queue) != 1)} not "
                                        "started (ctrl+l runs the pilots proposed then)")

    def on_mount(self) -> None:
        self._redraw()

    # --- what the plan screen tells it -------------------------------------------------------
    def show_for(self, inputs: PlanInputs) -> None:
        """The plan's inputs have advice: say whether a base score is measured, refresh the proposal."""
        changed = inputs != self.inputs
        if changed:
            self.proposal, self.proposal_problem = None, ""
        self.inputs = inputs
        self.base_scores = self._measured_base(inputs)
        if self.wanted and (changed or (self.proposal is None and not self.proposing)):
            self.propose()  # an answer for older inputs is dropped when it comes
        self._redraw()

    @staticmethod
    def _measured_base(inputs: PlanInputs) -> dict[str, float]:
        if not home.store_path().exists():
            return {}
        from engine.record.errors import UserError
        from engine.record.store import RunStore

        try:
            return RunStore().base_scores(inputs.task, inputs.model)
        except UserError:
            return {}

    def advisor_refitted(self) -> None:
        """A run ended and the advisor was refitted: start the next pilot, and re-plan."""
        if self.running is not None:
            ended, status = self.running, self.host.run_status(self.running)
            if status in ENDED:
                self.running = None
                if status == "finished" and self.queue:
                    self._launch_next()
                elif status != "finished":
                    self.queue = []
                    self.app.notify(f"pilot {ended} {status}: the remaining pilots are not started",
                                    title="Pilots stopped", severity="warning")
        if self.wanted:
            self.proposal = None
            self.propose()
        self._redraw()

    # --- the base score ----------------------------------------------------------------------
    def measure_base_score(self, inputs: PlanInputs) -> None:
        if self.measuring is not None:
            self.app.notify("The base score is being measured already.", severity="warning")
            return
        self.measuring, self.base_problem = inputs, ""
        self._measure(baseline_argv(self._prefix(), inputs), inputs)
        self._redraw()

    @work(thread=True, group="baseline")
    def _measure(self, argv: list[str], inputs: PlanInputs) -> None:
        try:
            measured = measure_base(argv, self.quitting)
        except ValueError as exc:
            self.post_message(BaseScoreFailed(inputs, str(exc)))
            return
        if measured is not None:
            self.post_message(BaseScoreMeasured(inputs, *measured))

    @on(BaseScoreMeasured)
    def _measured(self, message: BaseScoreMeasured) -> None:
        self.measuring = None
        if self.inputs is not None and (message.inputs.task, message.inputs.model) == (self.inputs.task,
                                                                                       self.inputs.model):
            self.base_scores = {**self.base_scores, message.metric: message.score}
        self._redraw()  # the message goes on to the screen, which fills the base-score field

    @on(BaseScoreFailed)
    def _measure_failed(self, message: BaseScoreFailed) -> None:
        self.measuring, self.base_problem = None, message.reason
        self._redraw()

    # --- pilots ------------------------------------------------------------------------------
    def propose(self) -> None:
        self.wanted = True
        if self.inputs is None:  # asked before the first advice: proposed when it comes
            self._redraw()
            return
        self.proposing, self.proposal_problem = True, ""
        self._propose(pilot_argv(self._prefix(), self.inputs), self.inputs)
        self._redraw()

    @work(thread=True, exclusive=True, group="pilots")
    def _propose(self, argv: list[str], inputs: PlanInputs) -> None:
        try:
            answer = ask_engine(argv, self.quitting)
            proposal = None if answer is None else PilotProposal.from_json(answer)
        except ValueError as exc:
            self.post_message(PilotsFailed(inputs, str(exc)))
            return
        if proposal is not None:
            self.post_message(PilotsProposed(inputs, proposal))

    @on(PilotsProposed)
    def _proposed(self, message: PilotsProposed) -> None:
        if message.inputs == self.inputs:
            self.proposing, self.proposal = False, message.proposal
            self._redraw()

    @on(PilotsFailed)
    def _propose_failed(self, message: PilotsFailed) -> None:
        if message.inputs == self.inputs:
            self.proposing, self.proposal_problem = False, message.reason
            self._redraw()

    def run_pilots(self) -> None:
        """Launch the proposed pilots one after another (the next starts when the last finishes)."""
        if self.running is not None:
            self.app.notify("A pilot is running; the next starts when it finishes.", severity="warning")
            return
        if self.proposal is None:
            self.app.notify("Ask for a pilot proposal first (ctrl+t).", title="No pilots", severity="warning")
            return
        if not self.proposal.pilots:
            self.app.notify(self.proposal.reason or "No pilot is worth its cost.", title="No pilots", markup=False)
            return
        self.queue = list(self.proposal.pilots)
        self._launch_next()
        self._redraw()

    def _launch_next(self) -> None:
        step, self.queue = self.queue[0], self.queue[1:]
        inputs = self.inputs
        try:
            prediction = self.host.planner.predict(inputs.task, inputs.model, step.n_sft, step.n_pft,
                                                  params_b=inputs.params_b, base_score=inputs.base_score)
        except (ValueError, RuntimeError) as exc:
            self.queue = []
            self.app.notify(str(exc), title="Cannot launch the pilot", severity="error", markup=False)
            return
        launch = self.host.new_launch(inputs, step.n_sft, step.n_pft, prediction)
        self.running = launch.run_id
        self.launched.append(launch.run_id)
        self.host.start_run(launch)

    def _prefix(self) -> list[str]:
        return self.host.engine_prefix()

    # --- drawing -----------------------------------------------------------------------------
    def _redraw(self) -> None:
        self.update(Group(self._base_line(), *self._pilot_lines()))

    def _base_line(self) -> Text:
        inputs = self.inputs
        if self.measuring is not None:
            return Text(f"Base score: measuring {self.measuring.model} on {self.measuring.task}'s held-out split…",
                        style="italic")
        if self.base_problem:
            return Text(f"Base score: could not be measured: {self.base_problem}", style="red")
        if inputs is None:
            return Text("")
        if inputs.base_score is not None and not self.base_scores:
            return Text(f"Base score: {inputs.base_score:g}, as typed", style="dim")
        if self.base_scores:
            measured = ", ".join(f"{score:.3f} ({metric})" for metric, score in sorted(self.base_scores.items()))
            return Text(f"Base score: measured {measured}", style="dim")
        return Text.assemble(("Base score: not measured yet — ", ""),
                             ("ctrl+b", "bold"), (" measures it (no labels bought)", ""))

    def _pilot_lines(self) -> list[Text]:
        if self.running is not None:
            lines = [Text(f"Pilot {len(self.launched)} running ({self.running}); {len(self.queue)} to follow",
                          style="bold")]
        else:
            lines = []
        if not self.wanted:
            return lines + [Text.assemble(("Pilots: ", ""), ("ctrl+t", "bold"),
                                          (" proposes the small runs worth making first", ""))]
        if self.proposing:
            return lines + [Text("Pilots: weighing the small runs worth making first…", style="italic")]
        if self.proposal_problem:
            return lines + [Text(f"Pilots: no proposal: {self.proposal_problem}", style="red")]
        proposal = self.proposal
        if proposal is None:
            return lines
        if not proposal.pilots:
            return lines + [Text(f"Pilots: {proposal.reason or 'none worth its cost'}")]
        for number, step in enumerate(proposal.pilots, start=1):
            lines.append(Text(f"Pilot {number}: {step.n_sft:,} SFT + {step.n_pft:,} pairs, cost {step.cost:,.2f} "
                              f"→ expected regret {step.expected_regret_after:.4f}"))
        lines.append(Text.assemble(
            (f"Expected regret {proposal.expected_regret_now:.4f} now, {proposal.expected_regret_after:.4f} after "
             f"the pilots (cost {proposal.pilot_cost:,.2f}) · ", "dim"), ("ctrl+l", "bold"), (" runs them", "dim")))
        if proposal.reason:
            lines.append(Text(proposal.reason, style="dim"))
        return lines
