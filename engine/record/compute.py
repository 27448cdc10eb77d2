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


# --- the forecast of one planned run: pure arithmetic on measured figures --------------------
# `engine.training.forecast` measures (calibration, store); this part only adds them up, so the
# TUI and `engine advise` can use it without torch.

FORECAST_STAGES = ("base_eval", "sft", "sft_eval", "dpo", "dpo_eval")
STAGE_LABELS = {"base_eval": "base evaluation", "sft": "SFT", "sft_eval": "SFT evaluation", "dpo": "DPO",
                "dpo_eval": "DPO evaluation"}


def forecast_stages(n_sft: int, n_pft: int) -> list[str]:
    """The stages a run with this split goes through, in order."""
    stages = ["base_eval"]
    for stage, n in (("sft", n_sft), ("dpo", n_pft)):
        if n:
            stages += [stage, f"{stage}_eval"]
    return stages


def training_steps(lengths: list[int], *, batch_size: int, grad_accum: int, epochs: float,
                   max_steps: int | None, seed: int) -> list[list[int]]:
    """Each optimizer step of a stage as the padded lengths of its micro-batches, as the trainer
    schedules them: each epoch a seeded shuffle cut into batches (padded to their longest
    example), grouped grad_accum to a step (an epoch's last step may hold fewer), for
    ceil(epochs × steps per epoch) steps or max_steps."""
    import random

    if not lengths:
        return []
    per_epoch = math.ceil(len(lengths) / batch_size)
    steps_per_epoch = max(1, math.ceil(per_epoch / grad_accum))
    total_steps = max_steps if max_steps else math.ceil(epochs * steps_per_epoch)
    rng, steps = random.Random(seed), []
    while len(steps) < total_steps:
        order = list(lengths)
        rng.shuffle(order)
        epoch = [max(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
        steps += [epoch[i:i + grad_accum] for i in range(0, len(epoch), grad_accum)][:total_steps - len(steps)]
    return steps


def checkpoints_saved(steps: int, every: int) -> int:
    """Checkpoints a stage of this many optimizer steps writes: one every `every` steps, and one at
    its end (the Trainer saves the last step whatever its number)."""
    return math.ceil(steps / every) if steps else 0


def padded_batch_tokens(lengths: list[int], rows_per_example: int) -> int:
    """Tokens of one micro-batch of examples of these lengths, padded to the longest (a
    preference pair is two rows: chosen and rejected)."""
    return rows_per_example * len(lengths) * max(lengths)


def stage_figure(seconds: float, peak_memory_bytes: float, source: str) -> dict:
    return {"seconds": round(float(seconds), 3), "peak_memory_bytes": int(peak_memory_bytes), "source": source}


def forecast_totals(device: str, threads: int, stages: dict[str, dict], gpu_hour_price: float | None,
                    calibration: dict) -> dict:
    """The forecast as `engine forecast --json` prints it. `gpu_hours` are hours of the device the
    run trains on (on a CPU: this machine's hours); `money` is them at the hour price, or None;
    `calibration`: its seconds, and the cores other work took while it was timed (`other_cores`,
    None where that cannot be read) of the machine's `cores`. `total_seconds_at_cap` counts each
    trained evaluation's `seconds_at_cap`: its answers running on to the token cap."""
    total = sum(stage["seconds"] for stage in stages.values())
    at_cap = sum(stage.get("seconds_at_cap", stage["seconds"]) for stage in stages.values())
    hours = total / SECONDS_PER_HOUR
    return {"device": device, "threads": threads, "stages": stages, "total_seconds": round(total, 3),
            "total_seconds_at_cap": round(at_cap, 3),
            "peak_memory_bytes": max((stage["peak_memory_bytes"] for stage in stages.values()), default=0),
            "gpu_hours": hours, "money": None if gpu_hour_price is None else hours * gpu_hour_price,
            "calibration": calibration}


BUSY_CORES = 0.5  # other work, in cores on average, that makes a calibration's timings suspect


def threads_short(other_cores: float | None, threads: int, cores: int | None) -> bool:
    """Whether other work, `other_cores` on average, took cores that `threads` needed: what was timed
    then ran slow. Unknown (None) counts as quiet."""
    if other_cores is None or cores is None:
        return False
    return other_cores >= BUSY_CORES and threads + other_cores > cores


def calibration_busy(figures: dict) -> bool:
    """Whether the forecast's calibration was timed while other work took its threads' cores."""
    made = figures.get("calibration") or {}
    return threads_short(made.get("other_cores"), figures["threads"], made.get("cores"))


def calibration_note(figures: dict, again: str) -> str | None:
    """A line when the calibration was timed on a busy machine (`calibration_busy`: its steps ran
    slow, and everything forecast from them is long), saying `again` — how to calibrate anew on
    this surface; else None."""
    if not calibration_busy(figures):
        return None
    made = figures["calibration"]
    return (f"calibrated while other work took {made['other_cores']:.1f} of this machine's {made['cores']} cores: "
            f"these times may be long — {again} when it is quieter")


def history_factor(pairs: list[tuple[float, float]]) -> float | None:
    """Median of measured ÷ forecast over finished runs: how far this machine's forecasts were off."""
    import statistics

    ratios = [measured / forecast for measured, forecast in pairs if measured > 0 and forecast > 0]
    return statistics.median(ratios) if ratios else None


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


def threads_text(figures: dict) -> str:
    return f"{figures['threads']} thread{'' if figures['threads'] == 1 else 's'}"


def forecast_rows(figures: dict) -> list[tuple[str, str, str, str]]:
    """(stage, time, peak memory, source) for each stage of `engine forecast --json`'s object, then
    the total: what the terminal and the app both show, each in its own table."""
    rows = [(STAGE_LABELS[stage], with_cap(figure["seconds"], figure.get("seconds_at_cap"), cell=True),
             gib(figure["peak_memory_bytes"]), figure["source"]) for stage, figure in figures["stages"].items()]
    total = with_cap(figures["total_seconds"], figures.get("total_seconds_at_cap"), cell=True)
    return rows + [("total", total, gib(figures["peak_memory_bytes"]), "")]


def with_cap(seconds: float, at_cap: float | None, *, cell: bool = False) -> str:
    """A forecast's seconds, and its seconds if a trained model's answers run on to the token cap
    where that is longer; a table `cell` puts the two on two lines."""
    shown = duration(seconds)
    if not at_cap or duration(at_cap) == shown:
        return shown
    return f"{shown}\n{duration(at_cap)} at cap" if cell else f"{shown} ({duration(at_cap)} if answers run to the cap)"


def shortfall(forecast: dict, limit_bytes: int, *, fixed_bytes: dict[str, int], batch_size: int,
              max_length: int, longest: dict[str, int], quant: str) -> str | None:
    """One line naming the shortfall and the setting that fixes it, or None when the run fits.

    A training stage's peak is its fixed part (the loaded model, measured right after loading)
    plus activations that grow with rows × padded length, so the batch (or the length) that fits
    is the current one scaled by the share of activations the limit leaves room for."""
    peak = forecast["peak_memory_bytes"]
    if peak <= limit_bytes:
        return None
    stage = max(forecast["stages"], key=lambda name: forecast["stages"][name]["peak_memory_bytes"])
    need = f"the run needs about {gib(peak)} at its peak ({STAGE_LABELS[stage]}) but {gib(limit_bytes)} is available"
    fixed = fixed_bytes.get(stage, 0)
    room = (limit_bytes - fixed) / max(1, forecast["stages"][stage]["peak_memory_bytes"] - fixed)
    fixes = []
    if 0 < room < 1:
        if batch_size > 1 and int(batch_size * room) >= 1:
            fixes.append(f"a smaller batch (--batch-size {int(batch_size * room)})")
        length = int(min(max_length, longest.get(stage, max_length)) * room)
        if length >= 16:
            fixes.append(f"a shorter max length (--max-length {length})")
    if quant == "none":
        fixes.append("4-bit weights (--quant 4bit)")
    return need + ("; use " + " or ".join(fixes) if fixes else "; this model does not fit on this machine")
