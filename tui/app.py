"""budgettui: plan a labeling budget between SFT and preference data, run that finetune, watch it.

`BudgetApp` owns what outlives a screen: the fitted advisor (`Planner`), the runs being watched
and the engine children it started. Screens only show and ask. `main()` is the console entry."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Callable, Sequence

from textual import on, work
from textual.app import App
from textual.binding import Binding

from advisor.validate import label_money
from assets import ASSETS_DIR
from engine.record.errors import OneLineParser, UserError
from engine.record.home import check_run_id, new_run_id, run_dir
from tui.advice import Planner
from tui.child import EngineChild, stderr_capture
from tui.commands import BudgetCommands
from tui.inputs import FIELDS, PlanInputs, as_texts, parse_value, validate
from tui.launch import Launch, build_launch, engine_prefix
from tui.messages import AdvisorFitted, ChildExited, FitFailed, LaunchRequested, OpenRun, RunEnded
from tui.screens.confirm import ConfirmLaunch
from tui.screens.plan import PlanScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.watch import RunWatch

# Embedded defaults: the demo model the engine ships (so the plan a new user sees can be launched
# as it stands) and a budget whose split fits the task's data.
DEFAULT_INPUTS = PlanInputs(task="gsm8k_math", model="SmolLM2-135M-Instruct", budget=1000.0, sft_cost=1.0,
                            pft_cost=0.5)


class BudgetApp(App):
    """The app: a plan screen at the root, run and past-run screens pushed over it."""

    CSS_PATH = str(ASSETS_DIR / "app.tcss")
    TITLE = "budgettui"
    SUB_TITLE = "SFT vs preference data"
    BINDINGS = [Binding("ctrl+o", "show_runs", "Past runs")]
    COMMANDS = App.COMMANDS | {BudgetCommands}

    def __init__(self, inputs: PlanInputs = DEFAULT_INPUTS, *, attach: str | None = None,
                 engine_cmd: Sequence[str] | None = None, run_args: Sequence[str] = (),
                 clock: Callable[[], float] = time.time,
                 new_id: Callable[[], str] = new_run_id):
        super().__init__()
        self.attach = attach
        self.engine_cmd = list(engine_cmd) if engine_cmd else None
        self.run_args = list(run_args)
        self.planner = Planner()
        self.clock = clock
        self.new_id = new_id
        self.watches: dict[str, RunWatch] = {}
        self.left_going: list[str] = []  # what goes on after the app quits, said on the terminal then
        self._ended: set[str] = set()
        self.plan_screen = PlanScreen(inputs, self.planner, self)

    def on_mount(self) -> None:
        self.push_screen(self.plan_screen)
        self.fit_advisor()
        if self.attach:
            self.open_run(self.attach)

    # --- the advisor ----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="fit")
    def fit_advisor(self) -> None:
        """(Re)fit on the shipped runs plus every finished local run, off the UI thread."""
        try:
            fitted = self.planner.fit()
        except (UserError, ValueError) as exc:
            self.plan_screen.post_message(FitFailed(str(exc)))
            return
        self.plan_screen.post_message(AdvisorFitted(fitted.tasks, fitted.models))

    # --- runs -----------------------------------------------------------------------------
    def engine_prefix(self) -> list[str]:
        return self.engine_cmd or engine_prefix()

    def run_status(self, run_id: str) -> str | None:
        watch = self.watches.get(run_id)
        return watch.state.status if watch is not None else None

    def new_launch(self, inputs: PlanInputs, n_sft: int, n_pft: int, prediction: tuple[float, float, float],
                   forecast: dict | None = None) -> Launch:
        return build_launch(inputs, n_sft, n_pft, prediction, self.new_id(), self.engine_cmd, self.run_args,
                            forecast)

    @on(LaunchRequested)
    def _launch_requested(self, message: LaunchRequested) -> None:
        """Confirm the exact command, then start it."""
        advice = message.advice
        launch = replace(self.new_launch(advice.inputs, *advice.split, advice.prediction, advice.forecast),
                                     run_forecast=message.run_forecast, forecast_problem=message.forecast_problem)

        def confirmed(go: bool | None) -> None:
            if go:
                self.start_run(launch)

        self.push_screen(ConfirmLaunch(launch), confirmed)

    def start_run(self, launch: Launch) -> None:
        """Start the engine child for `launch` and show its run screen."""
        try:
            child = EngineChild(launch.argv, stderr_capture(launch.run_id))
        except OSError as exc:
            self.notify(f"{launch.argv[0]}: {exc.strerror or exc}", title="Cannot start the engine", severity="error",
                        markup=False)
            return
        watch = RunWatch(launch.run_id, run_dir(launch.run_id), child)
        watch.prediction = launch.prediction
        self.watches[launch.run_id] = watch
        self.read_child(watch)
        self.push_screen(RunScreen(watch, self.planner, self.clock))

    @work(thread=True, group="children")
    def read_child(self, watch: RunWatch) -> None:
        returncode = watch.child.read_stdout()
        if returncode is not None:
            self.post_message(ChildExited(watch.run_id, returncode))

    def open_run(self, run_id: str) -> None:
        """Show a run: the live one if this app started it, else follow its events file."""
        watch = self.watches.get(run_id)
        if watch is None:
            watch = self.watches[run_id] = RunWatch(run_id, run_dir(run_id))
        self.push_screen(RunScreen(watch, self.planner, self.clock))

    @on(OpenRun)
    def _open_run(self, message: OpenRun) -> None:
        self.open_run(message.run_id)

    @on(ChildExited)
    def _child_exited(self, message: ChildExited) -> None:
        watch = self.watches[message.run_id]
        watch.child_exited(message.returncode)
        self.post_message(RunEnded(message.run_id, watch.state.status))

    @on(RunEnded)
    def _run_ended(self, message: RunEnded) -> None:
        if message.run_id in self._ended:
            return
        self._ended.add(message.run_id)
        title = {"finished": "Run finished", "stopped": "Run stopped"}.get(message.status, "Run failed")
        self.notify(f"{message.run_id}: {message.status}", title=title,
                    severity="information" if message.status == "finished" else "warning")
        self.fit_advisor()

    def action_show_runs(self) -> None:
        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen())

    def on_unmount(self) -> None:
        """Quitting leaves every run going: stop reading, never signal — and say which go on."""
        for run_id, watch in self.watches.items():
            if watch.child is not None:
                watch.child.detach()
                if watch.child.process.poll() is None:
                    self.left_going.append(f"run {run_id} goes on: `budgettui --attach {run_id}` follows it")


# --- the command line -------------------------------------------------------------------------
def _flag_type(name: str) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return parse_value(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    convert.__name__ = name.replace("_", "-")
    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="budgettui", description=__doc__.split("\n\n")[0])
    for spec in FIELDS:
        parser.add_argument("--" + spec.name.replace("_", "-"), dest=spec.name, type=_flag_type(spec.name),
                            metavar=spec.name.upper(), help=f"{spec.label.lower()} ({spec.placeholder})")
    parser.add_argument("--attach", metavar="RUN_ID", help="open on a run and follow its events file")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[PlanInputs, str | None]:
    """The plan to open on (defaults, overridden by the flags given) and a run to attach to."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {spec.name: getattr(args, spec.name) for spec in FIELDS if getattr(args, spec.name) is not None}
    inputs = replace(DEFAULT_INPUTS, **given)
    if label_money(inputs.budget, inputs.compute_cost) is None:
        parser.error(f"--compute-cost {inputs.compute_cost:g} leaves nothing of --budget {inputs.budget:g}")
    for name, reason in validate(as_texts(inputs))[1].items():  # the form's own checks, e.g. prices too low
        parser.error(f"--{name.replace('_', '-')} {getattr(inputs, name)!s}: {reason}")
    if args.attach is not None:
        try:
            folder = run_dir(check_run_id(args.attach))
        except UserError as exc:
            parser.error(str(exc))
        if not (folder / "events.jsonl").is_file():
            parser.error(f"no events file for run {args.attach!r} in {folder}")
    return inputs, args.attach


def main(argv: Sequence[str] | None = None) -> int:
    inputs, attach = parse_args(argv)
    app = BudgetApp(inputs, attach=attach)
    app.run()
    for line in app.left_going:
        print(f"budgettui: {line}")
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
