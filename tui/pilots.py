"""The next experiment, asked of the engine as child processes: `engine baseline --json`
measures the base model's score, `engine pilot --json` proposes the pilot runs worth paying for.
Both run from worker threads and answer with one message each; nothing here touches the UI."""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass, field

from textual.message import Message

from tui.inputs import PlanInputs

POLL_S = 0.2  # how soon a worker waiting on the engine notices that the app quits


@dataclass(frozen=True)
class PilotStep:
    n_sft: int
    n_pft: int
    cost: float
    expected_regret_after: float


@dataclass(frozen=True)
class PilotProposal:
    """`engine pilot --json`: the pilots in the order to run them, what they cost, the expected
    regret of the choice at the budget now and after them, and the reason in one sentence."""

    pilots: list[PilotStep] = field(default_factory=list)
    pilot_cost: float = 0.0
    expected_regret_now: float = 0.0
    expected_regret_after: float = 0.0
    reason: str = ""

    @classmethod
    def from_json(cls, text: str) -> "PilotProposal":
        try:
            data = json.loads(text)
            pilots = [PilotStep(int(p["n_sft"]), int(p["n_pft"]), float(p["cost"]), float(p["expected_regret_after"]))
                      for p in data["pilots"]]
            return cls(pilots, float(data["pilot_cost"]), float(data["expected_regret_now"]),
                       float(data["expected_regret_after"]), str(data.get("reason", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"engine pilot printed no proposal ({exc})") from None


def baseline_argv(prefix: list[str], inputs: PlanInputs) -> list[str]:
    return [*prefix, "baseline", "--task", inputs.task, "--model", inputs.model, "--json"]


def pilot_argv(prefix: list[str], inputs: PlanInputs) -> list[str]:
    argv = [*prefix, "pilot", "--task", inputs.task, "--model", inputs.model, "--budget", repr(inputs.label_budget),
            "--sft-cost", repr(inputs.sft_cost), "--pft-cost", repr(inputs.pft_cost), "--json"]
    for flag, value in (("--base-score", inputs.base_score), ("--params-b", inputs.params_b)):
        if value is not None:
            argv += [flag, repr(value)]
    return argv


def ask_engine(argv: list[str], quitting: threading.Event) -> str | None:
    """Run one engine command to its end (in its own session: a Ctrl-C in the app is not its
    stop) and return its stdout; its one-line error, or why it could not start, as ValueError.
    None once `quitting` is set: the app stops waiting and the command goes on alone (a base
    score measured for minutes is still recorded), so quitting never waits for it."""
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
    except OSError as exc:
        raise ValueError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    while True:
        try:
            out, err = child.communicate(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            if quitting.is_set():
                return None
    if child.returncode != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        raise ValueError(lines[-1] if lines else f"{argv[0]} exited with {child.returncode}")
    return out


def measure_base(argv: list[str], quitting: threading.Event) -> tuple[float, str, str] | None:
    """(score, metric, run id) of one `engine baseline --json`; None when the app quit first."""
    text = ask_engine(argv, quitting)
    if text is None:
        return None
    try:
        outcome = json.loads(text.strip().splitlines()[-1])
        results = outcome["results"]
        return float(results["scores"]["base"]), str(results["metric"]), str(outcome["run_id"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"engine baseline printed no base score ({exc})") from None


@dataclass
class BaseScoreMeasured(Message):
    """`engine baseline` finished for `inputs`' task and model."""

    inputs: PlanInputs
    score: float
    metric: str
    run_id: str


@dataclass
class BaseScoreFailed(Message):
    inputs: PlanInputs
    reason: str


@dataclass
class PilotsProposed(Message):
    inputs: PlanInputs
    proposal: PilotProposal


@dataclass
class PilotsFailed(Message):
    inputs: PlanInputs
    reason: str
