"""The forecast of a planned run on this machine: seconds and peak memory per stage, in total,
and its device-hours and money — and the refusal of a run that will not fit.

Every figure has a source, printed beside it: `calibration` (this machine's own short run of
the model, `engine.training.calibrate`), the model's config (the KV cache an evaluation grows as
it generates), the data's token lengths (how many padded tokens each stage trains on) and the
base model's answer length (where the base model's answers to the first evaluation batch ended,
and how much slower its steps got on the way: a trained model's evaluation is forecast to write
as much, since nothing measured before the run says otherwise — and, as `seconds_at_cap`, to
write on to the token cap), refined by `history` — the median measured ÷ forecast of this
model's finished runs on this machine, recorded per stage in the store. The arithmetic is in
`engine.record.compute`, which the TUI may import; this module measures."""

from __future__ import annotations

import json
import math
import re
import time
from typing import NamedTuple

from engine.record import compute
from engine.record.errors import UserError
from engine.training import calibrate, meter

SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
         "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def memory_size(text: str) -> int:
    """'2GiB', '500MB', '123456' → bytes; an argparse type."""
    import argparse

    match = SIZE.match(text)
    if not match or match.group(2).lower() not in UNITS or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 512MB, 8GiB)")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def check_threads(config) -> None:
    """More threads than this process has cores are refused (before torch is imported): they only
    wait for one another — a tiny run's calibration took 95 s with 999 threads on two cores."""
    if config.threads and config.threads > meter.cores():
        raise UserError(f"--threads {config.threads} (or $OMP_NUM_THREADS) is more than the {meter.cores()} "
                        f"cores this process may run on: give at most {meter.cores()}")


def use_threads(config) -> int:
    """Sets torch's CPU threads to the run's --threads (default: all the cores torch sees)."""
    import torch

    check_threads(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    return torch.get_num_threads()


def _shapes(plan) -> dict:
    """What a calibration's rates depend on besides the model: the task's data, the stages trained,
    the evaluation and the longest sequence. Not the split's sizes: a plan with another split of
    the same stages reuses the calibration with its own token lengths."""
    config = plan.config
    return {"stages": list(plan.stages), **{key: getattr(config, key) for key in (
        "task", "sft_file", "pft_file", "eval_file", "metric", "eval_size", "eval_max_new_tokens", "max_length",
        "trust_remote_code")}}


class Examples(NamedTuple):
    """A training stage's examples as its trainer will see them: each one's token length (None
    where the trainer drops it), and the seconds tokenising them all took here — the calibration
    keeps the seconds per example, for the trainer's own tokenising, which it leaves out (it builds
    its trainers on two examples)."""
    lengths: list[int | None]
    seconds: float

    @property
    def kept(self) -> list[int]:
        return [n for n in self.lengths if n is not None]


def calibration(plan, examples: dict[str, Examples], *, run_if_missing: bool = True,
                memory_limit: int | None = None, again: bool = False) -> dict | None:
    """The cached calibration for this plan on this machine, made now when missing or when asked
    `again` (or None). A calibration loads the model, so a model whose weights alone exceed the
    memory limit is refused first."""
    key = calibrate.cache_key(plan.config, str(plan.spec.path), _shapes(plan))
    found = None if again else calibrate.cached(key)
    if found is None and run_if_missing:
        refuse_unloadable(plan, memory_limit)
        found = calibrate.calibrate(plan, key, {stage: data.lengths for stage, data in examples.items()},
                                    {stage: data.seconds / len(data.lengths) for stage, data in examples.items()})
    return found


def _kv_bytes_per_token(model_path) -> int:
    """Bytes the generation cache grows by per new token and sequence, from the model's config:
    keys and values of every layer, fp32 on the CPU and bf16 on a GPU that has it."""
    data = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    data = data.get("text_config", data)
    heads = data["num_attention_heads"]
    head_dim = data.get("head_dim") or data["hidden_size"] // heads
    width = 2 if meter.device() == "cuda" else 4
    return 2 * data["num_hidden_layers"] * data.get("num_key_value_heads", heads) * head_dim * width


def decode_growth(base: dict) -> float:
    """A trained model's decode is timed over its first few tokens: its rate is scaled by how the
    base model's rate over its timed answers (`base`: the calibration's base evaluation) compares
    with its rate over the same first few — 1.0 where that was not timed (a scoring metric)."""
    early = base.get("early_decode_seconds_per_token")
    return base["decode_seconds_per_token"] / early if early else 1.0


class Forecast:
    """A plan's forecast (`as_dict` is `engine forecast --json`) and what the refusal needs."""

    def __init__(self, plan, measured: dict, examples: dict[str, Examples], history: dict[str, dict[str, float]],
                 gpu_hour_price: float | None):
        config = self.config = plan.config
        self.calibration_seconds, self.calibrated_at = measured["calibration_seconds"], measured["created"]
        stages, self.fixed, self.longest = {}, {}, {}
        kv = _kv_bytes_per_token(plan.spec.path)
        n_eval_batches = math.ceil(len(plan.splits.eval) / config.eval_batch_size)
        answer = measured["stages"]["base_eval"].get("answer_tokens")
        growth = decode_growth(measured["stages"]["base_eval"])
        for stage in compute.forecast_stages(config.n_sft, config.n_pft):
            figures = measured["stages"][stage]
            source, memory, to_cap = "calibration", figures["peak_memory_bytes"], None
            if figures.get("measured_as", stage) != stage:
                source += f" of the {compute.STAGE_LABELS[figures['measured_as']]}"
            if stage.endswith("_eval"):
                if "batch_seconds" in figures:
                    seconds = n_eval_batches * figures["batch_seconds"]
                else:
                    decode = figures["decode_seconds_per_token"] * (1.0 if stage == "base_eval" else growth)
                    seconds = n_eval_batches * (figures["prefill_seconds"] + (answer - 1) * decode)
                    unseen = max(0, answer - figures["decoded_tokens"])  # cache the measured peak did not hold
                    memory += kv * config.eval_batch_size * unseen
                    if stage != "base_eval":
                        source += " + base answer length and decode + model config (KV cache)"
                        if answer < config.eval_max_new_tokens:  # a trained model may write on to the cap
                            to_cap = n_eval_batches * (config.eval_max_new_tokens - answer) * decode
                    elif unseen:
                        source += (f" + answers unfinished after {figures['decoded_tokens']} tokens, forecast to "
                                   "the cap + model config (KV cache)")
                seconds += figures.get("load_seconds", 0.0) + figures.get("warmup_seconds", 0.0)
            else:
                rows, lengths = figures["rows_per_example"] * config.batch_size, examples[stage].kept
                steps = compute.training_steps(
                    lengths, batch_size=config.batch_size, grad_accum=config.grad_accum,
                    epochs=config.epochs, max_steps=config.max_steps, seed=config.seed)
                micro_batches = [length for step in steps for length in step]
                seconds = (figures["load_seconds"] + figures["setup_seconds"]
                           + figures["tokenise_seconds_per_example"] * len(examples[stage].lengths)
                           + figures["seconds_per_micro_batch"] * len(micro_batches)
                           + figures["seconds_per_token"] * rows * sum(micro_batches)
                           + figures["checkpoint_seconds"] * compute.checkpoints_saved(len(steps),
                                                                                      config.checkpoint_every))
                largest = compute.padded_batch_tokens(sorted(lengths)[-config.batch_size:],
                                                      figures["rows_per_example"])
                memory = max(memory, figures["step_baseline_bytes"] + figures["memory_per_batch_token"] * largest,
                             figures["loaded_memory_bytes"])
                self.longest[stage] = max(lengths)
                self.fixed[stage] = figures["loaded_memory_bytes"]
                source += " + data token lengths"
            factors = history.get(stage, {})
            if factors:
                seconds *= factors.get("seconds", 1.0)
                memory *= factors.get("memory", 1.0)
                source += f" × history ({factors['runs']} finished run{'s' * (factors['runs'] != 1)})"
            stages[stage] = compute.stage_figure(seconds, memory, source)
            if to_cap is not None:  # the seconds its answers would add, running on to the cap
                stages[stage]["seconds_at_cap"] = round(seconds + to_cap, 3)
        self.figures = compute.forecast_totals(meter.device(), meter.threads(), stages, gpu_hour_price, {
            "seconds": round(self.calibration_seconds, 1),
            "other_cores": None if measured.get("other_cores") is None else round(measured["other_cores"], 2),
            "cores": measured.get("cores")})

    def as_dict(self) -> dict:
        return self.figures

    def problem(self, limit_bytes: int) -> str | None:
        return compute.shortfall(self.figures, limit_bytes, fixed_bytes=self.fixed,
                                 batch_size=self.config.batch_size, max_length=self.config.max_length,
                                 longest=self.longest, quant=self.config.quant)


def _history(model: str, threads: int) -> dict[str, dict[str, float]]:
    """{stage: {"seconds", "memory", "runs"}}: measured ÷ forecast medians over finished runs of
    the model on this machine with as many threads — but not over stages that ran while other work
    took the cores their threads needed (slow for a reason that is not this machine's)."""
    from engine.record import home
    from engine.record.store import RunStore

    if not home.store_path().exists():
        return {}
    rows = RunStore().stage_measurements(model, threads)
    history = {}
    for stage in compute.FORECAST_STAGES:
        mine = [row for row in rows if row["stage"] == stage
                and not compute.threads_short(row["other_cores"], threads, meter.cores())]
        seconds = compute.history_factor([(r["stage_seconds"], r["forecast_seconds"]) for r in mine])
        memory = compute.history_factor([(r["peak_memory_bytes"], r["forecast_peak_memory_bytes"]) for r in mine])
        runs = sum(1 for r in mine if r["forecast_seconds"])
        if runs:
            history[stage] = {"seconds": seconds or 1.0, "memory": memory or 1.0, "runs": runs}
    return history


def forecast(plan, *, gpu_hour_price: float | None = None, run_if_missing: bool = True,
             memory_limit: int | None = None, recalibrate: bool = False) -> Forecast | None:
    """The plan's forecast on this machine; None only when no calibration is cached and
    `run_if_missing` is off. `recalibrate`: a new calibration replaces the cached one."""
    threads = use_threads(plan.config)
    examples = _examples(plan)  # first: it refuses a plan whose prompts fill max_length before anything loads
    measured = calibration(plan, examples, run_if_missing=run_if_missing, memory_limit=memory_limit,
                           again=recalibrate)
    if measured is None:
        return None
    return Forecast(plan, measured, examples, _history(plan.config.model, threads), gpu_hour_price)


def _examples(plan) -> dict[str, Examples]:
    """{training stage: its Examples}, tokenised as its trainer will tokenise them."""
    from engine.training.models import load_tokenizer

    tokenizer, _ = load_tokenizer(plan.spec.path, trust_remote_code=plan.config.trust_remote_code)
    examples = {}
    for stage in plan.stages:
        started = time.perf_counter()
        lengths = calibrate.token_lengths(tokenizer, plan.examples(stage), stage, plan.config.max_length)
        examples[stage] = Examples(lengths, time.perf_counter() - started)
        if not examples[stage].kept:
            raise UserError(f"every {stage.upper()} example's prompt fills max_length {plan.config.max_length} "
                            "(the trainer would keep none): raise max_length or shorten the prompts")
    return examples


def _limit(memory_limit: int | None) -> int | None:
    return memory_limit or meter.available_memory_bytes()


def refuse_unloadable(plan, memory_limit: int | None) -> None:
    """UserError (exit 2) when the weights' lower bound (`model_checks.weights_floor`) exceeds
    the limit: --memory-limit, else what this machine has available now."""
    from engine.training.model_checks import weights_floor

    limit = _limit(memory_limit)
    floor, parameters = weights_floor(plan.spec.path, plan.config)
    if limit and floor > limit:
        fix = "use 4-bit weights (--quant 4bit)" if plan.config.quant == "none" else "this model does not fit here"
        raise UserError(f"the model's weights alone need at least {compute.gib(floor)} ({parameters:,} parameters, "
                        f"counted from its config) but {compute.gib(limit)} is available; {fix}")


def refuse_if_too_big(result: Forecast, memory_limit: int | None) -> None:
    """UserError (exit 2, nothing written) when the forecast peak exceeds the limit: --memory-limit,
    else what this machine has available now."""
    limit = _limit(memory_limit)
    problem = result.problem(limit) if limit else None
    if problem:
        raise UserError(problem)

