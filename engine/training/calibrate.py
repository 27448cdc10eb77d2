"""A short calibration of this machine: the run's own model, loaded and trained the way the run
does it, for a few timed steps of each stage at the run's shapes.

It walks the run's stages in the run's order — evaluate the base, train SFT, evaluate it, train
DPO on the SFT adapter, evaluate that — with the real TRL trainers built on all the run's
examples (so their tokenisation is the run's) but trained for a few steps, one micro-batch each:
the shortest examples first (a cheap step that pays the first-call costs), then the longest
micro-batch (the timed step, and the stage's peak memory; repeated while the timed steps add up
to under half a second). Each stage measures what its forecast needs: model-load seconds,
trainer set-up seconds, seconds per padded token of a training step, an evaluation batch's
prefill and per-token decode seconds (timed inside one generation call), and its peak memory. The base model answers the first evaluation batch in full, which also
measures where its answers end. Everything is written to a temporary folder that is removed
afterwards.

Results are cached as JSON in the home folder, keyed by machine, model, quantisation, LoRA,
batch, the task's data, the stages trained and the evaluation — not by the split's sizes: what
is kept are rates (seconds per padded token, memory per padded token of a larger batch, prefill
and decode seconds, where the base model's answers end), so another split of the same stages is
forecast from its own token lengths (`token_lengths`) without calibrating again."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from engine.record import home
from engine.record.compute import FORECAST_STAGES, padded_batch_tokens
from engine.record.config import RunConfig
from engine.training import meter

CALIBRATION_VERSION = 4
# The shortest micro-batch (a warm-up: its extra cost counts as set-up), then the longest, timed —
# repeated while the timed steps add up to less than TIMED_SECONDS (a tiny model's step is a few
# milliseconds, at the mercy of the scheduler), at most TIMED_STEPS times.
TIMED_STEPS, TIMED_SECONDS = 5, 0.5
DECODE_TOKENS = 8  # decoded tokens timed after the prefill of a trained model's timed generation


def cache_dir() -> Path:
    return home.home_dir() / "calibration"


def machine() -> str:
    """This machine as the cache knows it: host, CPU model, device and torch threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()} · {cpu} · {meter.device()} · {meter.threads()} threads"


def cache_key(config: RunConfig, model_path: str, shapes: dict) -> dict:
    """What a calibration depends on: machine, model, quantisation, LoRA, batch and lengths."""
    return {"version": CALIBRATION_VERSION, "machine": machine(), "model": model_path, "quant": config.quant,
            "lora": [config.lora_r, sorted(config.lora_targets)], "batch_size": config.batch_size,
            "eval_batch_size": config.eval_batch_size, "shapes": shapes}


def _path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / f"{digest}.json"


def cached(key: dict) -> dict | None:
    """A stored calibration for exactly this key, or None (also for an unreadable file)."""
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def _store(key: dict, stages: dict, seconds: float) -> dict:
    from engine.training.checkpoints import write_json_atomic

    data = {"key": key, "stages": stages, "calibration_seconds": seconds, "created": time.time()}
    cache_dir().mkdir(parents=True, exist_ok=True)
    write_json_atomic(_path(key), data)
    return data


def calibrate(plan, key: dict) -> dict:
    """Run the calibration for `plan` (a `engine.training.train.Plan`) and cache it under `key`."""
    from engine.training.train import settle_imports

    settle_imports()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="budgettui-calibration-") as tmp:
        stages = _Walk(plan, Path(tmp)).run()
    return _store(key, stages, time.perf_counter() - start)


class _StepTimer:
    """Seconds of each optimizer step, the padded tokens its gradient forwards saw, and the
    stage's peak memory when it ended."""

    def __init__(self, model):
        import torch
        from transformers import TrainerCallback

        self.seconds: list[float] = []
        self.tokens: list[int] = [0]
        self.peaks: list[int] = []
        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.tokens.append(0)
                timer._began = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.seconds.append(time.perf_counter() - timer._began)
                timer.peaks.append(meter.peak_memory_bytes())
                control.should_training_stop = sum(timer.seconds[1:]) >= TIMED_SECONDS

        def count(module, inputs):
            if torch.is_grad_enabled() and inputs and hasattr(inputs[0], "shape"):
                timer.tokens[-1] += int(inputs[0].numel())

        self.callback = Callback()
        self.hook = model.get_input_embeddings().register_forward_pre_hook(count)


class _Walk:
    """The run's stages in order, each briefly, measured."""

    def __init__(self, plan, folder: Path):
        from engine.training.train import BaseModels

        self.plan, self.config, self.folder = plan, plan.config, folder
        self.models = BaseModels(plan, _NoEvents())

    def run(self) -> dict:
        stages = {}
        with meter.measure() as used:
            started = time.perf_counter()
            self.models.for_eval()  # held by BaseModels only: training drops it, as a run does
            load = time.perf_counter() - started
            stages["base_eval"] = self._generation(self.models.for_eval(), full=True) | {"load_seconds": load}
        stages["base_eval"]["peak_memory_bytes"] = used.peak_memory_bytes
        for stage in self.plan.stages:
            with meter.measure() as used:
                figures, policy = self._train(stage)
            stages[stage] = figures | {"peak_memory_bytes": used.peak_memory_bytes}
            with meter.measure() as used:
                figures = self._generation(policy, full=False)
            stages[f"{stage}_eval"] = figures | {"peak_memory_bytes": used.peak_memory_bytes}
            del policy
        assert set(stages) <= set(FORECAST_STAGES)
        return stages

    def _train(self, stage: str):
        from transformers import set_seed

        from engine.training import stages

        config = dataclasses.replace(self.config, grad_accum=1, max_steps=1 + TIMED_STEPS,
                                     checkpoint_every=10**9)
        examples = self.plan.examples(stage)
        started = time.perf_counter()
        base = self.models.fresh()
        load = time.perf_counter() - started
        loaded = meter.current_memory_bytes()
        set_seed(config.seed)
        started = time.perf_counter()
        output = self.folder / stage
        if stage == "sft":
            trainer = stages.sft_trainer(config, base, self.models.tokenizer, examples, output, [])
        else:
            model = stages.dpo_model(base, self.folder / "sft-adapter") if self.config.n_sft else base
            trainer = stages.dpo_trainer(config, model, self.models.tokenizer, examples, output, [])
        setup = time.perf_counter() - started
        lengths = padded_lengths(trainer.train_dataset, stage, self.config.max_length)
        rows = _calibration_rows(lengths, config.batch_size)
        trainer.train_dataset = trainer.train_dataset.select(rows)
        trainer.args.train_sampling_strategy = "sequential"  # the rows' order is the steps' order
        timer = _StepTimer(trainer.model)
        trainer.add_callback(timer.callback)
        try:
            trainer.train()
        finally:
            timer.hook.remove()
        if stage == "sft":
            from engine.training.checkpoints import save_adapter

            save_adapter(trainer.model, self.folder / "sft-adapter")
        steps = list(zip(timer.seconds, timer.tokens[1:], timer.peaks))
        per_token = statistics.median(seconds / max(1, tokens) for seconds, tokens, _ in steps[1:] or steps)
        warmup = max(0.0, steps[0][0] - steps[0][1] * per_token) if len(steps) > 1 else 0.0
        rows_per_example = 2 if stage == "dpo" else 1
        batches = [rows[i:i + config.batch_size] for i in range(0, len(rows), config.batch_size)]
        points = sorted((padded_batch_tokens([lengths[i] for i in batch], rows_per_example), peak)
                        for batch, (_, _, peak) in zip(batches, steps))
        (small_tokens, small_peak), (large_tokens, large_peak) = points[0], points[-1]
        figures = {"load_seconds": load, "loaded_memory_bytes": loaded, "setup_seconds": setup + warmup,
                   "seconds_per_token": per_token, "rows_per_example": rows_per_example,
                   "peak_batch_tokens": large_tokens,  # memory grows by this much per token of a larger batch:
                   "memory_per_batch_token": max(0.0, (large_peak - small_peak) / (large_tokens - small_tokens))
                   if large_tokens > small_tokens else 0.0,
                   "calibration_steps": [[round(s, 4), t, m] for s, t, m in steps]}
        return figures, trainer.model

    def _generation(self, model, *, full: bool) -> dict:
        """The first evaluation batch's prefill seconds and decode seconds per token, timed inside
        one call, after a one-prompt, one-token call whose extra seconds (a 4-bit model repacks
        its weights at its first evaluation) the stage pays once: that call's seconds less its
        share of the batch's prefill. `full`: the batch is answered as the evaluation answers it,
        and `answer_tokens` says how many new tokens that took (the run's evaluations stop when
        every answer of a batch has ended); else it makes exactly DECODE_TOKENS + 1 new tokens."""
        from engine.tasks.evaluate import eval_mode, evaluate, generate

        config, plan = self.config, self.plan
        batch = plan.splits.eval[: config.eval_batch_size]
        if plan.task.metric.needs != "text":  # a scoring metric: one timed evaluation of one batch
            evaluate(model, self.models.tokenizer, batch[:1], plan.task.metric, max_length=config.max_length)
            started = time.perf_counter()
            evaluate(model, self.models.tokenizer, batch, plan.task.metric, batch_size=config.eval_batch_size,
                     max_length=config.max_length)
            return {"batch_seconds": time.perf_counter() - started}
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList

        stamps: list[float] = []

        class Stamp(LogitsProcessor):
            """Called once per new token, right after the forward that made its logits."""

            def __call__(self, input_ids, scores):
                stamps.append(time.perf_counter())
                return scores

        prompts = [example["prompt"] for example in batch]
        tokenizer, length = self.models.tokenizer, config.max_length
        with eval_mode(model), torch.inference_mode():  # as `evaluate` generates: dropout off
            started = time.perf_counter()
            generate(model, tokenizer, prompts[:1], max_new_tokens=1, max_length=length, min_new_tokens=1)
            first = time.perf_counter() - started
            started = time.perf_counter()
            new = config.eval_max_new_tokens if full else DECODE_TOKENS + 1
            answers = generate(model, tokenizer, prompts, batch_size=config.eval_batch_size, max_new_tokens=new,
                               max_length=length, min_new_tokens=0 if full else new,
                               logits_processor=LogitsProcessorList([Stamp()]))
        prefill = stamps[0] - started
        steps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
        figures = {"prefill_seconds": prefill,  # the median step: one scheduler hiccup does not make it
                   "decode_seconds_per_token": statistics.median(steps) if steps else 0.0,
                   "warmup_seconds": max(0.0, first - prefill / len(prompts))}
        return figures | ({"answer_tokens": max(answer.tokens for answer in answers)} if full else {})


class _NoEvents:
    def emit(self, *args, **kwargs):
        return None


def token_lengths(tokenizer, examples: list[dict], stage: str, max_length: int) -> list[int]:
    """`padded_lengths` without a trainer: each conversation tokenised by the chat template as TRL
    tokenises it (prompt + answer; for a pair, the longer answer), cut at max_length, leaving out
    the examples whose prompt alone fills max_length (both trainers drop them: no answer token
    would be left) — what a forecast of a plan the calibration did not train on needs."""
    def ids(messages, **options):
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **options)["input_ids"]

    lengths = []
    for example in examples:
        prompt = ids(example["prompt"], add_generation_prompt=True)
        answers = [ids(example["prompt"] + example[key]) for key in (("completion",) if stage == "sft"
                                                                      else ("chosen", "rejected"))]
        if min(_common_prefix(prompt, answer) for answer in answers) < max_length:
            lengths.append(min(max_length, max(map(len, answers))))
    return lengths


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Where the prompt's tokens end inside the conversation's (as TRL finds it)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def padded_lengths(dataset, stage: str, max_length: int) -> list[int]:
    """Each example's tokens as the trainer tokenised it, cut at max_length; for a pair the longer
    of prompt+chosen and prompt+rejected (both are padded to it)."""
    if stage == "sft":
        return [min(len(ids), max_length) for ids in dataset["input_ids"]]
    return [min(max_length, len(p) + max(len(c), len(r)))
            for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]


def _calibration_rows(lengths: list[int], batch_size: int) -> list[int]:
    """Row indices for the calibration's micro-batches: the batch_size shortest examples, then the
    batch_size longest (the shape of the run's largest batch: the one holding its longest
    example, padded to it) TIMED_STEPS times. With fewer than two batches of examples the
    shortest and the longest overlap."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return order[:batch_size] + order[-batch_size:] * TIMED_STEPS
