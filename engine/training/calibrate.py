"""A short calibration of this machine: the run's own model, loaded and trained the way the run
does it, for a few timed steps of each stage.

It walks the run's stages in the run's order — evaluate the base, train SFT, evaluate it, train
DPO on the SFT adapter — with the real TRL trainers and the run's own callbacks,
built on each stage's longest and shortest examples (the forecast adds the seconds it takes to
tokenise the rest) and trained for a few one-example steps: the longest example first (a warm-up
that pays the first-call costs), then the shortest and the longest in turn (repeated while the
timed steps add up to under a quarter of a second), then the checkpoint the run writes at a
stage's end and its adapter. Where a stage's examples are all about one length, its shortest
shape is the longest example cut to half its tokens (`cut_to_half`). The two shapes give a line,
seconds per micro-batch plus seconds per padded token; the longest example's first timed step
gives the memory a step starts from and what it adds per padded token. A run's batch of several
examples is those rows side by side, so its seconds and memory follow from the line and the
batch's padded tokens, without paying for the largest batch here.
An evaluation measures its prefill and per-token decode seconds inside one generation call, and
the base model answers the first evaluation batch as the run does, which also measures where its
answers end — for at most DECODE_SECONDS of decoding, after which answers still going are
forecast to run to the cap. Only the first trained policy is evaluated: the SFT and the DPO
policy are the same base model with the same LoRA adapter shape, so the DPO evaluation is
forecast from the SFT one's figures. The model's 4-bit copy (`nf4_copy`) is made before the
clock starts, as the run will find it made. Everything else is written to a temporary folder
that is removed afterwards.

Results are cached as JSON in the home folder, keyed by machine, model, quantisation, LoRA, the
evaluation batch, the task's data and the stages trained — not by the split's sizes nor the
training batch: what is kept are rates, so another split or batch of the same stages is forecast
from its own token lengths (`token_lengths`) without calibrating again."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

from engine.record import home
from engine.record.compute import FORECAST_STAGES
from engine.record.config import RunConfig
from engine.record.errors import UserError
from engine.training import meter

CALIBRATION_VERSION = 10
# The longest example (a warm-up: its extra cost counts as set-up), then the shortest and the
# longest in turn, timed — repeated while the timed steps add up to less than TIMED_SECONDS (a
# tiny model's step is a few milliseconds, at the mercy of the scheduler), at most TIMED_STEPS each.
TIMED_STEPS, TIMED_SECONDS = 3, 0.25
# Two steps of one shape differ by up to a fifth on this two-core machine's every core (BENCHMARKS):
# a line's two shapes must differ by more than that in tokens for its slope to say anything.
SPREAD = 0.25
DECODE_TOKENS = 8  # decoded tokens timed after the prefill of a trained model's timed generation
# The base model's answers to the first evaluation batch are decoded until they all end — or, once
# 2 × DECODE_TOKENS + 1 tokens are timed, until DECODE_SECONDS have passed: answers still going
# then are forecast to run to the cap at the rate timed so far (a decode step shows no trend with
# its place in a 128-token answer, BENCHMARKS). Decoding a rambling base model's batch to the cap
# was most of a demo calibration.
DECODE_SECONDS = 3.0


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
    """What a calibration depends on: machine, model, quantisation, LoRA, evaluation batch and data
    (and, when they are turned off, that no 4-bit copies are kept: every load then quantises)."""
    from engine.training.models import keeping_4bit_copies

    return {"version": CALIBRATION_VERSION, "machine": machine(), "model": model_path, "quant": config.quant,
            "lora": [config.lora_r, sorted(config.lora_targets)], "eval_batch_size": config.eval_batch_size,
            "shapes": shapes} | ({} if keeping_4bit_copies() else {"kept_4bit_copies": False})


def _path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / f"{digest}.json"


def cached(key: dict) -> dict | None:
    """A stored calibration for exactly this key, or None — also for an unreadable file and for
    one that lacks a figure the forecast reads (damaged, or edited by hand): it is made again."""
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key and _whole(data) else None


# what the forecast reads of each stage: a training stage's, an evaluation that generates, one that scores
TRAINING_FIGURES = ("load_seconds", "loaded_memory_bytes", "setup_seconds", "seconds_per_micro_batch",
                    "seconds_per_token", "checkpoint_seconds", "rows_per_example", "step_baseline_bytes",
                    "memory_per_batch_token", "peak_memory_bytes", "tokenise_seconds_per_example")
GENERATION_FIGURES = ("prefill_seconds", "decode_seconds_per_token", "warmup_seconds", "decoded_tokens",
                      "peak_memory_bytes")
SCORING_FIGURES = ("batch_seconds", "peak_memory_bytes")


def _whole(data: dict) -> bool:
    """Whether every figure the forecast reads is there, a finite number ≥ 0."""
    def number(value, optional=False) -> bool:
        return (optional and value is None) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                and math.isfinite(value) and value >= 0)

    try:
        trained = data["key"]["shapes"]["stages"]
        figures = []
        for stage in ("base_eval", *trained, *(f"{name}_eval" for name in trained)):
            measured = data["stages"][stage]
            if not stage.endswith("_eval"):
                names = TRAINING_FIGURES
            elif "batch_seconds" in measured:
                names = SCORING_FIGURES
            else:
                names = GENERATION_FIGURES + (("answer_tokens",) if stage == "base_eval" else ())
            figures += [measured[name] for name in names]
            figures += [measured.get(name, 0) for name in ("load_seconds", "warmup_seconds")]
        return all(map(number, [*figures, data["calibration_seconds"], data["created"]])) \
            and number(data.get("other_cores"), optional=True) and number(data.get("cores"), optional=True)
    except (KeyError, TypeError):
        return False


def _cache_folder() -> Path:
    """The calibration cache's folder, made if need be — checked before minutes of timed steps
    that could not be kept: a folder that cannot be made is one line (exit 2)."""
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "it is a file, not a folder" if cache_dir().is_file() else exc.strerror or str(exc)
        raise UserError(f"cannot keep calibrations in {cache_dir()}: {reason}") from None
    return cache_dir()


def _store(key: dict, stages: dict, seconds: float, other_cores: float | None) -> dict:
    from engine.training.checkpoints import write_json_atomic

    data = {"key": key, "stages": stages, "calibration_seconds": seconds, "created": time.time(),
            "other_cores": other_cores, "cores": meter.cores()}
    _cache_folder()
    try:
        write_json_atomic(_path(key), data)
    except OSError as exc:  # a full disk: the forecast is not made from a calibration that was not kept
        raise UserError(f"cannot keep the calibration in {_path(key)}: {exc.strerror or exc}") from None
    return data


def calibrate(plan, key: dict, lengths: dict[str, list[int | None]], tokenise_seconds: dict[str, float]) -> dict:
    """Run the calibration for `plan` (a `engine.training.train.Plan`) and cache it under `key`;
    `lengths`: each training stage's examples' token lengths (`token_lengths`), which took
    `tokenise_seconds` per example to count."""
    from engine.training import distributed
    from engine.training.models import quantise_once
    from engine.training.train import settle_imports

    _cache_folder()
    settle_imports()
    config = plan.config  # the run will find the model's 4-bit copy made: so does the clock
    quantise_once(plan.spec, quant=config.quant, trust_remote_code=config.trust_remote_code,
                  device=distributed.device())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="budgettui-calibration-") as tmp, meter.other_work() as others:
        stages = _Walk(plan, Path(tmp), lengths).run()
    for stage, seconds in tokenise_seconds.items():
        stages[stage]["tokenise_seconds_per_example"] = seconds
    return _store(key, stages, time.perf_counter() - start, others.cores)


class _StepTimer:
    """Each optimizer step's seconds (its forward, backward and update) and the padded tokens its
    gradient forwards saw, the seconds between steps (the trainer's log and the next batch's
    collation), the end-of-training checkpoint's seconds, and memory around the longest example's
    first timed step: what it starts from, with freed pages handed back, and its peak above that.
    Stops the calibration once both shapes are timed and the timed steps add up to TIMED_SECONDS,
    or each shape has had TIMED_STEPS."""

    # the longest example's first timed step — not its warm-up, whose growth also holds what stays
    # from then on (the optimizer's state, first-call caches) and was a third to a half more (BENCHMARKS)
    MEASURED_STEP = 2

    def __init__(self, model):
        import torch
        from transformers import TrainerCallback

        self.seconds: list[float] = []
        self.tokens: list[int] = [0]
        self.gaps: list[float] = []
        self.start, self.growth = 0, 0  # memory held as the measured step began, and its peak above that
        self.checkpoint_seconds = 0.0
        self.earlier_peak = 0  # the stage's peak before the measured step (model load, set-up, warm-up)
        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.tokens.append(0)
                if timer.seconds:
                    timer.gaps.append(time.perf_counter() - timer._ended)
                if len(timer.seconds) == timer.MEASURED_STEP:
                    timer.earlier_peak = meter.peak_memory_bytes()
                    meter.restart_peak()
                    timer.start = meter.current_memory_bytes()
                timer._began = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer._ended = time.perf_counter()
                timer.seconds.append(timer._ended - timer._began)
                if len(timer.seconds) - 1 == timer.MEASURED_STEP:
                    timer.growth = meter.peak_memory_bytes() - timer.start
                timed = timer.seconds[1:]
                if len(timed) >= 2 and (sum(timed) >= TIMED_SECONDS or len(timed) >= 2 * TIMED_STEPS):
                    control.should_training_stop = control.should_save = True  # the run's last step saves too

            def on_save(self, args, state, control, **kwargs):  # after the run's own StageEvents marked it
                timer.checkpoint_seconds = time.perf_counter() - timer._ended

        def count(module, inputs):
            if torch.is_grad_enabled() and inputs and hasattr(inputs[0], "shape"):
                timer.tokens[-1] += int(inputs[0].numel())

        self.callback = Callback()
        self.hook = model.get_input_embeddings().register_forward_pre_hook(count)

    def rates(self) -> tuple[float, float, float]:
        """(seconds per micro-batch, seconds per padded token, warm-up seconds): a line through the
        median seconds of each timed shape (after the warm-up the steps alternate shortest,
        longest), plus the median gap between steps; the warm-up is what the first step took
        beyond that line."""
        steps = list(zip(self.seconds, self.tokens[1:]))
        shapes = [steps[2::2], steps[1::2]] if len(steps) > 2 else [steps[-1:]]
        longest, shortest = [(statistics.median(s for s, _ in shape), shape[0][1]) for shape in (shapes * 2)[:2]]
        per_batch, per_token = step_line(longest, shortest)
        per_batch += statistics.median(self.gaps) if self.gaps else 0.0
        warmup = max(0.0, steps[0][0] - per_batch - per_token * steps[0][1]) if len(steps) > 1 else 0.0
        return per_batch, per_token, warmup

    def memory(self) -> tuple[int, float]:
        """(what a step starts from, memory per padded token): the measured step's start and its
        growth over its tokens: a batch's growth follows its padded tokens (BENCHMARKS; a line
        through a shorter step's growth missed by up to 1.6 times)."""
        return self.start, self.growth / max(1, self.tokens[self.MEASURED_STEP + 1])


def far_apart(longest: int, shortest: int) -> bool:
    """Whether two shapes' tokens differ by more than two steps of one shape may differ in time."""
    return longest - shortest >= SPREAD * longest


def step_line(longest: tuple[float, int], shortest: tuple[float, int]) -> tuple[float, float]:
    """(seconds per micro-batch, seconds per padded token): the line through two timed steps,
    each (seconds, padded tokens). Where the two shapes are not `far_apart` (or the longer took no
    longer), their difference in seconds is mostly the steps' noise, and a line through them could
    be any slope: then all of the longest step's seconds are per token."""
    (long_s, long_t), (short_s, short_t) = longest, shortest
    if far_apart(long_t, short_t) and long_s > short_s:
        per_token = (long_s - short_s) / (long_t - short_t)
        return max(0.0, short_s - per_token * short_t), per_token
    return 0.0, long_s / max(1, long_t)


class _Walk:
    """The run's stages in order, each briefly, measured."""

    def __init__(self, plan, folder: Path, lengths: dict[str, list[int | None]]):
        from engine.training.train import BaseModels

        self.plan, self.config, self.folder, self.lengths = plan, plan.config, folder, lengths
        self.models = BaseModels(plan, warn=lambda message: None)  # the run says its load warnings

    def run(self) -> dict:
        stages = {}
        with meter.measure() as used:
            started = time.perf_counter()
            self.models.for_eval()  # held by BaseModels only: training drops it, as a run does
            load = time.perf_counter() - started
            stages["base_eval"] = self._generation(self.models.for_eval(), full=True) | {"load_seconds": load}
        stages["base_eval"]["peak_memory_bytes"] = used.peak_memory_bytes
        trained_eval = None
        for stage in self.plan.stages:
            with meter.measure() as used:
                figures, policy = self._train(stage)
            stages[stage] = figures | {"peak_memory_bytes": max(used.peak_memory_bytes,  # restarted on the way
                                                                figures.pop("earlier_peak_bytes"))}
            if trained_eval is None:  # SFT's and DPO's policies are the same base and LoRA: timed once
                with meter.measure() as used:
                    trained_eval = self._generation(policy, full=False)
                trained_eval |= {"peak_memory_bytes": used.peak_memory_bytes, "measured_as": f"{stage}_eval"}
            stages[f"{stage}_eval"] = trained_eval
            del policy
        assert set(stages) <= set(FORECAST_STAGES)
        return stages

    def _train(self, stage: str):
        from datasets import Dataset
        from transformers import set_seed

        from engine.record.events import EventWriter
        from engine.training import stages
        from engine.training.callbacks import stage_callbacks
        from engine.training.checkpoints import save_adapter

        config = dataclasses.replace(self.config, batch_size=1, grad_accum=1, max_steps=1 + 2 * TIMED_STEPS,
                                     checkpoint_every=10**9)
        everything, chosen = self.plan.examples(stage), _longest_and_shortest(self.lengths[stage])
        examples = [everything[i] for i in chosen]
        started = time.perf_counter()
        base = self.models.fresh()
        load = time.perf_counter() - started
        loaded = meter.current_memory_bytes()
        set_seed(config.seed)
        started = time.perf_counter()
        output = self.folder / stage
        with EventWriter(self.folder / f"{stage}-events.jsonl", "calibration") as events:
            callbacks = stage_callbacks(events, stage, len(everything), self.folder, keep=1, stop=_NeverStop(),
                                        progress=False)  # the run's own: its events and checkpoint marking
            if stage == "sft":
                trainer = stages.sft_trainer(config, base, self.models.tokenizer, examples, output, callbacks)
            else:
                model = stages.dpo_model(base, self.folder / "sft-adapter") if self.config.n_sft else base
                trainer = stages.dpo_trainer(config, model, self.models.tokenizer, examples, output, callbacks)
            setup = time.perf_counter() - started  # on two examples: the forecast adds tokenising the rest
            rows = trainer.train_dataset  # the longest example, then the shortest
            if not far_apart(*(self.lengths[stage][i] for i in chosen)):
                rows = Dataset.from_list([rows[0], cut_to_half(rows[0])], features=rows.features)
            trainer.train_dataset = rows.select([0] + [len(rows) - 1, 0] * TIMED_STEPS)
            trainer.args.train_sampling_strategy = "sequential"  # the rows' order is the steps' order
            timer = _StepTimer(trainer.model)
            trainer.add_callback(timer.callback)
            try:
                trainer.train()
            finally:
                timer.hook.remove()
        started = time.perf_counter()
        save_adapter(trainer.model, self.folder / f"{stage}-adapter")  # as the run saves each stage's
        saved = time.perf_counter() - started
        per_batch, per_token, warmup = timer.rates()
        baseline, per_batch_token = timer.memory()
        figures = {"load_seconds": load, "loaded_memory_bytes": loaded, "setup_seconds": setup + warmup + saved,
                   "seconds_per_micro_batch": per_batch, "seconds_per_token": per_token,
                   "checkpoint_seconds": timer.checkpoint_seconds, "rows_per_example": 2 if stage == "dpo" else 1,
                   # a step's peak: what it starts from plus this much per padded token of its batch
                   "step_baseline_bytes": baseline, "memory_per_batch_token": per_batch_token,
                   "earlier_peak_bytes": timer.earlier_peak,
                   "calibration_steps": [[round(s, 4), t] for s, t in zip(timer.seconds, timer.tokens[1:])],
                   "calibration_growth_bytes": timer.growth}
        return figures, trainer.model

    def _generation(self, model, *, full: bool) -> dict:
        """The first evaluation batch's prefill seconds and decode seconds per token, timed inside
        one call, after a one-prompt, one-token call whose extra seconds (a 4-bit model repacks
        its weights at its first evaluation) the stage pays once: that call's seconds less its
        share of the batch's prefill. `full`: the batch is answered as the evaluation answers it
        (for at most DECODE_SECONDS of decoding), and `answer_tokens` says how many new tokens
        that takes (the run's evaluations stop when every answer of a batch has ended; the cap
        where an answer was still going); else it makes exactly DECODE_TOKENS + 1 new tokens.
        `decoded_tokens`: how many it made here, the generation cache the peak memory saw."""
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
        from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        stamps: list[float] = []

        class Stamp(LogitsProcessor):
            """Called once per new token, right after the forward that made its logits."""

            def __call__(self, input_ids, scores):
                stamps.append(time.perf_counter())
                return scores

        class Timed(StoppingCriteria):
            """Ends the batch once its decode is timed enough: DECODE_SECONDS past enough tokens."""

            def __call__(self, input_ids, scores, **kwargs):
                done = len(stamps) > 2 * DECODE_TOKENS and stamps[-1] - stamps[0] >= DECODE_SECONDS
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

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
                               logits_processor=LogitsProcessorList([Stamp()]),
                               stopping_criteria=StoppingCriteriaList([Timed()]) if full else None)
        prefill = stamps[0] - started
        steps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
        figures = {"prefill_seconds": prefill,  # the median step: one scheduler hiccup does not make it
                   "decode_seconds_per_token": statistics.median(steps) if steps else 0.0,
                   "warmup_seconds": max(0.0, first - prefill / len(prompts)), "decoded_tokens": len(stamps)}
        if not full:
            return figures
        ended = all(answer.ended for answer in answers)
        # its first DECODE_TOKENS steps, as a trained model's are timed: how much slower a step gets
        # further into an answer (a longer cache to attend to) scales the trained model's rate
        return figures | {"answer_tokens": max(answer.tokens for answer in answers) if ended else new,
                          "early_decode_seconds_per_token": statistics.median(steps[:DECODE_TOKENS]) if steps else 0.0}


class _NeverStop:
    requested = False


def token_lengths(tokenizer, examples: list[dict], stage: str, max_length: int) -> list[int | None]:
    """Each example's tokens as its trainer will count them, without a trainer: the conversation
    tokenised by the chat template as TRL tokenises it (prompt + answer; for a pair, the longer
    answer), cut at max_length — None for an example whose prompt alone fills max_length (both
    trainers drop those: no answer token would be left)."""
    def ids(messages, **options):
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **options)["input_ids"]

    lengths = []
    for example in examples:
        prompt = ids(example["prompt"], add_generation_prompt=True)
        answers = [ids(example["prompt"] + example[key]) for key in (("completion",) if stage == "sft"
                                                                      else ("chosen", "rejected"))]
        kept = min(_common_prefix(prompt, answer) for answer in answers) < max_length
        lengths.append(min(max_length, max(map(len, answers))) if kept else None)
    return lengths


def cut_to_half(row: dict) -> dict:
    """A trainer's tokenised row cut to about half its tokens: a shorter shape of the stage's
    longest example, for a stage whose examples are all about one length (a task written from one
    template), whose line would otherwise put a step's fixed cost on every token. Prompt tokens go
    first, from the start, then the answer's last ones; at least one of each stays, so the step
    still has a loss."""
    if "prompt_ids" in row:  # a preference pair: DPOTrainer's prompt and two answers
        answers = ("chosen_ids", "rejected_ids")
        prompt, answer = len(row["prompt_ids"]), max(len(row[key]) for key in answers)
        drop = min(prompt - 1, (prompt + answer + 1) // 2)
        left = max(1, (prompt + answer) // 2 - (prompt - drop))
        return row | {"prompt_ids": row["prompt_ids"][drop:]} | {key: row[key][:left] for key in answers}
    tokens = len(row["input_ids"])  # SFTTrainer's input_ids and labels, -100 over the prompt
    prompt = next((i for i, label in enumerate(row["labels"]) if label != -100), 0)
    drop = min(prompt, (tokens + 1) // 2)
    return row | {key: value[drop:drop + tokens // 2] for key, value in row.items()
                  if isinstance(value, list) and len(value) == tokens and isinstance(value[0], int)}


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Where the prompt's tokens end inside the conversation's (as TRL finds it)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _longest_and_shortest(lengths: list[int | None]) -> list[int]:
    """Indices of the stage's longest and shortest kept examples: the calibration's two shapes."""
    kept = [i for i, n in enumerate(lengths) if n is not None]
    return [max(kept, key=lambda i: (lengths[i], -i)), min(kept, key=lambda i: (lengths[i], i))]
