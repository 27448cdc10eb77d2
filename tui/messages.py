"""Messages the app's parts send each other; dataclasses so each says plainly what it carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

from tui.inputs import PlanInputs

if TYPE_CHECKING:  # the run screen needs these messages without loading the advisor
    from tui.advice import Advice, IsoGrid


@dataclass
class InputsChanged(Message):
    """The form's contents after an edit: the inputs when all fields are valid, else the reasons."""

    inputs: PlanInputs | None
    errors: dict[str, str]


@dataclass
class AdvisorFitted(Message):
    """The advisor has (re)fitted on past runs covering these tasks and models."""

    tasks: list[str]
    models: list[str]


@dataclass
class FitFailed(Message):
    """The advisor could not be fitted (a bad past run, an unreadable store); `reason` says why."""

    reason: str


@dataclass
class AdviceReady(Message):
    """A recommendation for `advice.inputs`, computed off the UI thread."""

    advice: Advice


@dataclass
class AdviceFailed(Message):
    """The advisor refused these inputs; `reason` is its one-line message."""

    inputs: PlanInputs
    reason: str


@dataclass
class GridReady(Message):
    """The iso-score grid for `inputs`, computed after the advice (it costs many predictions)."""

    inputs: PlanInputs
    grid: IsoGrid


@dataclass
class ChildExited(Message):
    """The engine child of run `run_id` closed its stdout and exited with `returncode`."""

    run_id: str
    returncode: int


@dataclass
class RunEnded(Message):
    """A watched run reached a final status; the app refits so the new run counts."""

    run_id: str
    status: str


@dataclass
class LaunchRequested(Message):
    """The plan screen wants to launch `advice`'s split: the app confirms, then starts the run.
    `run_forecast` is this machine's forecast of that split (or `forecast_problem`, why there is none)."""

    advice: Advice
    run_forecast: dict | None = None
    forecast_problem: str = ""


@dataclass
class OpenRun(Message):
    """Show run `run_id` (a past run picked from the list)."""

    run_id: str


@dataclass
class RunsLoaded(Message):
    """The run store's rows, read off the UI thread; `problem` says why there are none to show,
    `damaged` names each row the store had to skip."""

    runs: list[dict]
    problem: str = ""
    damaged: tuple[str, ...] = ()


@dataclass
class PredictionReady(Message):
    """The advisor's (mean, low, high) for a run's split, computed off the UI thread."""

    prediction: tuple[float, float, float]


@dataclass
class EndedElsewhere(Message):
    """A re-attached run's process is gone; the store says `status`."""

    status: str
