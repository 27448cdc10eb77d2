"""GPU time priced per example. Training time grows linearly with the examples bought, so a price
per GPU-hour simply raises each label's price by price × hours per example; the advisor then
splits the budget on those effective costs unchanged. The hours are only ever measured — this
machine's own finished runs of the same model — never guessed, not even from the other stage.

Light on purpose (stdlib and the store only): `engine advise` and the TUI both import it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.record.errors import UserError

SECONDS_PER_HOUR = 3600.0
STAGES = {"sft": "SFT", "dpo": "DPO"}


def seconds_per_example_seen(runtime_s: float | None, *, steps: int, start_step: int, batch: int,
                             n_examples: int, epochs: float, max_steps: int = -1) -> float | None:
    """Training seconds per example the trainer actually saw in this session: optimizer steps ×
    effective batch from the step it resumed at, capped by the schedule (n × epochs; an epoch's
    last step may be short) unless `max_steps` > 0, which overrides epochs and cycles the data.
    None when nothing was timed or seen."""
    cap = math.inf if max_steps > 0 else n_examples * epochs

    def seen(step: int) -> float:
        return min(step * batch, cap)

    examples = seen(steps) - seen(start_step)
    if not runtime_s or runtime_s <= 0 or examples <= 0:
        return None
    return runtime_s / examples


def default_epochs() -> float:
    """Epochs a planned run trains per stage: the engine's default, which a launched run uses."""
    from engine.record.config import FIELDS

    return float(FIELDS["epochs"].default)


@dataclass(frozen=True)
class ComputePrice:
    """A GPU-hour price and the measured GPU-hours one bought example costs (all epochs)."""

    gpu_hour_price: float
    hours_per_sft: float
    hours_per_pft: float
    measured_runs: int
    epochs: float

    def hours(self, n_sft: int, n_pft: int) -> float:
        return n_sft * self.hours_per_sft + n_pft * self.hours_per_pft

    def forecast(self, n_sft: int, n_pft: int) -> dict:
        """The compute bill of one split, as `engine advise --json` prints it."""
        hours = self.hours(n_sft, n_pft)
        return {"gpu_hour_price": self.gpu_hour_price, "hours_per_sft": self.hours_per_sft,
                "hours_per_pft": self.hours_per_pft, "forecast_hours": hours,
                "forecast_cost": hours * self.gpu_hour_price, "measured_runs": self.measured_runs,
                "epochs": self.epochs}


def effective_costs(sft_cost: float, pft_cost: float, price: ComputePrice | None) -> tuple[float, float]:
    """c_s + p·h_s and c_p + p·h_p, what the advisor splits the budget on; the labels' own prices
    when GPU time is not priced."""
    if price is None:
        return sft_cost, pft_cost
    return sft_cost + price.gpu_hour_price * price.hours_per_sft, pft_cost + price.gpu_hour_price * price.hours_per_pft


def measured_price(gpu_hour_price: float, task: str, model: str) -> ComputePrice:
    """The price with this machine's measured hours per example of `model`; UserError, naming the
    unmeasured stage and the pilot run that would measure it, when a stage has no timing."""
    import shlex

    from engine.record import home
    from engine.record.store import RunStore

    store = RunStore() if home.store_path().exists() else None  # asking never creates a store
    seconds = store.seconds_per_example(model) if store else {}
    missing = [stage for stage in STAGES if stage not in seconds]
    if missing:
        pilot = "`" + shlex.join(["engine", "run", "--task", task, "--model", model, "--n-sft", "16",
                                  "--n-pft", "16"]) + "`"
        if len(missing) == len(STAGES):
            raise UserError(f"no finished run of {model!r} on this machine to forecast GPU hours from; "
                            f"run a small pilot first, e.g. {pilot}")
        names = " and ".join(STAGES[stage] for stage in missing)
        raise UserError(f"no {names} stage of {model!r} has been timed on this machine, so its GPU hours "
                        f"cannot be forecast; run a small pilot with both stages first, e.g. {pilot}")
    epochs = default_epochs()
    return ComputePrice(gpu_hour_price, seconds["sft"] * epochs / SECONDS_PER_HOUR,
                        seconds["dpo"] * epochs / SECONDS_PER_HOUR, store.timed_runs(model), epochs)
