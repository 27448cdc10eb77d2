"""What a launch runs: the engine command line for a planned split, built as a list (no shell).

The engine is `python -m engine.cli` from this interpreter unless `$BUDGETTUI_ENGINE` (a command
prefix, split like a shell would) or the app's `engine_cmd` says otherwise; tests point it at
`tests/fake_engine.py`, and `run_args` adds settings such as `--max-steps` for a smoke run."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tui.inputs import PlanInputs

if TYPE_CHECKING:
    from tui.advice import Planner

ENGINE_ENV = "BUDGETTUI_ENGINE"


def engine_prefix() -> list[str]:
    override = os.environ.get(ENGINE_ENV, "").strip()
    return shlex.split(override) if override else [sys.executable, "-m", "engine.cli"]


@dataclass(frozen=True)
class Launch:
    """One run about to start: its id, its exact argv and what it buys."""

    run_id: str
    argv: list[str]
    inputs: PlanInputs
    n_sft: int
    n_pft: int
    prediction: tuple[float, float, float]
    forecast: dict | None = None  # GPU time, from `engine.record.compute.ComputePrice.forecast`
    run_forecast: dict | None = None  # this machine's forecast of the run, from `engine forecast --json`
    forecast_problem: str = ""  # why there is none (e.g. the run will not fit in memory)

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)

    @property
    def spend(self) -> float:
        return self.n_sft * self.inputs.sft_cost + self.n_pft * self.inputs.pft_cost


def build_launch(inputs: PlanInputs, n_sft: int, n_pft: int, prediction: tuple[float, float, float], run_id: str,
                 prefix: list[str] | None = None, run_args: list[str] | tuple[str, ...] = (),
                 forecast: dict | None = None) -> Launch:
    argv = [*(prefix or engine_prefix()), "run", "--task", inputs.task, "--model", inputs.model,
            "--n-sft", str(n_sft), "--n-pft", str(n_pft), "--events-stdout", "--run-id", run_id, *run_args]
    return Launch(run_id, argv, inputs, n_sft, n_pft, prediction, forecast)


class RunHost(Protocol):
    """What the plan screen and its panels may ask of the app that hosts them — a typed door
    instead of untyped `self.app.…` calls (`tui.app.BudgetApp` implements it)."""

    planner: Planner
    left_going: list[str]  # what goes on once the app quits: said on the terminal then

    def engine_prefix(self) -> list[str]:
        """The argv that starts the engine (`python -m engine.cli`, or a test's stand-in)."""

    def new_launch(self, inputs: PlanInputs, n_sft: int, n_pft: int, prediction: tuple[float, float, float],
                   forecast: dict | None = None) -> Launch:
        """The exact engine command for this split, with a fresh run id."""

    def start_run(self, launch: Launch) -> None:
        """Start the engine child and show its run screen."""

    def run_status(self, run_id: str) -> str | None:
        """The status of a run this app started (None for one it does not know)."""

    def fit_advisor(self) -> object:
        """Refit the advisor on the shipped and the stored runs, off the UI thread."""
