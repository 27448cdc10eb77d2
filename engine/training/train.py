"""A run from start to finish: plan, record, evaluate the base, train SFT then DPO, evaluate
each, finish — and the same code continues a run after a crash or a stop.

Everything a run writes stays in its folder (`engine.record.home.inside`): config.json, events.jsonl,
engine.log (library logs and tracebacks), `<stage>/checkpoints/checkpoint-N`,
`<stage>/adapter` (written atomically: present means the stage is done) and results.json. The
store row and the events file tell the same story: running → finished | stopped | failed, or
interrupted when the process dies (noticed by `RunStore.mark_dead_runs`).

Exit codes: 0 finished, 130 stopped (SIGINT/SIGTERM; the stage is checkpointed and `engine
resume` continues it), 2 a user error (one line), 1 an internal error (traceback in engine.log).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import json
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from advisor.safe_files import BadFile, loads, read_text
from engine.training import checkpoints, distributed, fingerprint, model_checks
from engine.record import compute, output
from engine.training.callbacks import stage_callbacks
from engine.record.config import RunConfig, from_dict, with_split
from engine.record.errors import UserError, first_line
from engine.record.events import EventWriter, read_events
from engine.record.generations import generations_file
from engine.record.home import check_run_id, inside, new_run_id, run_dir
from engine.record.model_names import canonical_model
from engine.record.run_lock import RunLock
from engine.training.lifecycle import Heartbeat, StopSignal
from engine.training.report import LibraryLogs, Report, quiet_libraries
from engine.record.store import RunStore

if TYPE_CHECKING:  # the types only: this module is imported before the training stack is
    from engine.tasks.catalog import Splits, Task
    from engine.training.models import ModelSpec

EXIT_CODES = {"finished": 0, "stopped": 130}
CONFIG_FILE, EVENTS_FILE, LOG_FILE, RESULTS_FILE = "config.json", "events.jsonl", "engine.log", "results.json"


@dataclass
class Outcome:
    """How a run ended, for the CLI to print and exit with."""

    run_id: str
    status: str
    results: dict
    exit_code: int
    folder: Path
    error: str | None = None

    def to_dict(self) -> dict:
        data = {"run_id": self.run_id, "status": self.status, "results": self.results}
        return data if self.error is None else {**data, "error": self.error}


@dataclass(frozen=True)
class Plan:
    """What a run trains and evaluates on, built once before the run exists; rebuilt identically
    from config.json on resume. `warnings` are said before training starts."""

    config: RunConfig
    spec: ModelSpec
    task: Task
    splits: Splits
    warnings: tuple[str, ...] = ()

    @property
    def stages(self) -> list[str]:
        return [stage for stage, n in (("sft", self.config.n_sft), ("dpo", self.config.n_pft)) if n]

    def examples(self, stage: str) -> list[dict]:
        """What a training stage trains on: the SFT examples or the preference pairs."""
        return self.splits.sft if stage == "sft" else self.splits.pft


def _advise(config: RunConfig, params_b: float | None) -> tuple[RunConfig, dict]:
    """The budget form: the advisor's recommended split for this task, model and prices."""
    from advisor import Advisor
    from engine.record.past_runs import load_past_runs

    advice = Advisor().fit(load_past_runs()).recommend(
        config.task, canonical_model(config.model), config.budget, config.sft_cost, config.pft_cost, metric=config.metric,
        params_b=params_b)
    if advice.n_sft + advice.n_pft == 0:
        raise UserError(f"a budget of {config.budget:g} buys no examples at these prices")
    summary = {key: value for key, value in advice.to_dict().items() if key != "curve"}
    return with_split(config, advice.n_sft, advice.n_pft), summary


def _task(config: RunConfig):
    from engine.tasks.catalog import get_task

    return get_task(config.task, sft_file=config.sft_file, pft_file=config.pft_file, eval_file=config.eval_file,
                    metric=config.metric)


def _data(config: RunConfig, task) -> tuple[Splits, tuple[str, ...]]:
    """The run's subsets and what the user should hear about them; every size is checked here,
    before anything is written."""
    from engine.tasks.catalog import select
    from engine.tasks.evaluate import reference_warnings

    n_eval = min(config.eval_size, len(task.eval_pool))
    if n_eval == 0:
        raise UserError(f"{task.name} has no held-out examples to evaluate on: give it more data")
    warnings = [] if n_eval == config.eval_size else [
        f"{task.name} holds out {n_eval} examples; evaluating on all of them (eval_size {config.eval_size})"]
    if config.n_sft == 0 and config.n_pft:
        warnings.append("n_sft = 0: DPO starts from the base model (cold start), which the paper finds "
                        "stalls; a little SFT first avoids it")
    splits = select(task, config.n_sft, config.n_pft, n_eval, config.seed)
    return splits, (*warnings, *reference_warnings(splits.eval, task.metric))


def start(config: RunConfig, *, run_id: str | None = None, events_stdout: bool = False,
          human: bool = True, memory_limit: int | None = None) -> Outcome:
    """Check everything a user can get wrong (a run that will not fit in memory too), create the
    run, and run it."""
    return _launch(_create, config, run_id, memory_limit, events_stdout=events_stdout, human=human)


def resume(run_id: str, *, events_stdout: bool = False, human: bool = True) -> Outcome:
    """Continue a stopped, interrupted or failed run from its last complete checkpoint."""
    return _launch(_reopen, run_id, events_stdout=events_stdout, human=human)


def _launch(prepare, *args, events_stdout: bool, human: bool) -> Outcome:
    """Library logs are captured from the first moment; a run that never got going releases them."""
    logs = LibraryLogs(also_stderr=events_stdout)
    try:
        run = prepare(*args, events_stdout, human, logs)
    except BaseException as exc:
        logs.close()
        if isinstance(exc, Exception) and _disk_full(exc):
            raise UserError(DISK_FULL_MESSAGE.format(first_line(exc))) from None
        raise
    if distributed.wanted(run.config):  # several processes: this one launches and watches them
        return distributed.Launcher(run, events_stdout=events_stdout, human=human).execute()
    return run.execute()


def build_plan(config: RunConfig) -> tuple[Plan, dict | None]:
    """The run's plan (the advisor's split for the budget form, and its advice), creating nothing."""
    from engine.training.forecast import check_threads, use_threads
    from engine.training.models import four_bit_problem, resolve_model

    check_threads(config)
    task = _task(config)
    advice = None
    # a bad size fails here, before `tiny` or `demo` is built into the model cache
    data = _data(config, task) if config.n_sft is not None else None
    spec = resolve_model(config.model)
    if config.quant == "4bit":  # fails before the run exists
        four_bit_problem(config.quant)
    if data is None:
        config, advice = _advise(config, spec.params_b)
        splits, warnings = _data(config, task)
        data = splits, (*advice["warnings"], *warnings)
    config = dataclasses.replace(config, threads=use_threads(config))  # recorded with the run
    return Plan(config, spec, task, *data), advice


def checked_forecast(plan: Plan, memory_limit: int | None):
    """The run's forecast when this machine has a calibration for it (`engine forecast` or the app
    made one; a run does not calibrate itself), refusing a run that will not fit — without one,
    a model whose weights alone will not fit."""
    from engine.training import forecast

    result = forecast.forecast(plan, run_if_missing=False)
    if result is None:
        forecast.refuse_unloadable(plan, memory_limit)  # the run is about to load the model
    else:
        forecast.refuse_if_too_big(result, memory_limit)
    return result


def _create(config: RunConfig, run_id: str | None, memory_limit: int | None, events_stdout: bool, human: bool,
            logs: LibraryLogs) -> "LiveRun":
    from engine.training import meter

    store = RunStore()
    store.mark_dead_runs()
    run_id = new_run_id() if run_id is None else check_run_id(run_id)  # `--run-id ''` is refused, not replaced
    folder = run_dir(run_id)
    if folder.exists():
        raise UserError(f"run {run_id} already exists ({folder}); choose another --run-id")
    plan, advice = build_plan(config)
    config, spec = plan.config, plan.spec
    checks = tuple(model_checks.preflight(spec.path, config))
    for warning in checks:
        Report(human).warn(warning)
    plan = dataclasses.replace(plan, warnings=(*plan.warnings, *checks))
    forecast = checked_forecast(plan, memory_limit)
    prints = fingerprint.of(config, plan.task, spec.path)
    store.create_run(run_id, task=config.task, model=config.model, params_b=spec.params_b, n_sft=config.n_sft,
                     n_pft=config.n_pft, config=config.to_dict(), run_dir=str(folder), pid=os.getpid())
    with _undo_running(store, run_id, "failed"):
        folder.mkdir(parents=True)
        lock = RunLock(folder, run_id).acquire()
        checkpoints.write_json_atomic(inside(folder, CONFIG_FILE), config.to_dict())
        checkpoints.write_json_atomic(inside(folder, fingerprint.FINGERPRINT_FILE), prints)
        run = LiveRun(run_id, folder, plan, store, events_stdout, Report(human), logs, lock=lock)
        figures = forecast.as_dict() if forecast else None
        if figures and not compute.calibration_busy(figures):  # what measured stages are held to (`×
            for stage, figure in figures["stages"].items():  # history`); not a forecast known to run long
                store.add_metric(run_id, stage, "forecast_seconds", figure["seconds"])
                store.add_metric(run_id, stage, "forecast_peak_memory_bytes", figure["peak_memory_bytes"])
        run.events.emit("run_started", config=config.to_dict(), pid=os.getpid(), model_path=str(spec.path),
                        params_b=spec.params_b, advice=advice, threads=config.threads, device=meter.device(),
                        forecast=figures, fingerprint=prints)
        if advice is not None:  # said inside: a stop request now still records the run as stopped
            low, high = advice["interval"]
            run.report.say(f"the advisor's split of {config.budget:g}: {advice['n_sft']} SFT examples and "
                           f"{advice['n_pft']} pairs, predicted score {advice['predicted_score']:.3f} "
                           f"(80% interval {low:.3f}–{high:.3f})")
        if forecast is None:
            run.report.say("no forecast: this machine has no calibration for this plan yet "
                           "(`engine forecast` makes one)")
    return run


@contextlib.contextmanager
def _undo_running(store: RunStore, run_id: str, status: str):
    """A run that fails before it starts never stays `running`: its row goes to `status`."""
    try:
        yield
    except BaseException as exc:
        if status == "failed" and isinstance(exc, KeyboardInterrupt):
            status = "stopped"
        with contextlib.suppress(UserError):
            store.set_status(run_id, status, error=first_line(exc) if status == "failed" else None)
        raise


def _reopen(run_id: str, events_stdout: bool, human: bool, logs: LibraryLogs) -> "LiveRun":
    store = RunStore()
    store.mark_dead_runs()
    record = store.get_run(check_run_id(run_id))
    folder = run_dir(run_id)
    if not folder.is_dir():
        raise UserError(f"run {run_id} has no run folder ({folder}); nothing to resume")
    lock = RunLock(folder, run_id).acquire()  # one owner: a second resume is refused here
    record = store.get_run(run_id)  # read again now that no other process can change it
    if record["status"] == "finished":
        raise UserError(f"run {run_id} already finished; nothing to resume")
    if record["status"] == "running":
        raise UserError(f"run {run_id} is still running (pid {record['pid']})")
    plan = saved_plan(folder)
    fingerprint.check(_saved_fingerprint(folder), fingerprint.of(plan.config, plan.task, plan.spec.path), run_id)
    store.set_status(run_id, "running")
    with _undo_running(store, run_id, record["status"]):  # a resume that fails to start changes nothing
        store.heartbeat(run_id, pid=os.getpid())
        run = LiveRun(run_id, folder, plan, store, events_stdout, Report(human), logs, lock=lock)
        run.measured = False  # a resumed stage's time is not the stage's time
        stage, step = run.position()
        if plan.stages:  # a baseline run has only its evaluation to redo
            run.events.emit("resumed", stage=stage, step=step, pid=os.getpid())
        run.report.say(f"resuming run {run_id} in {stage} at step {step}")
    return run


def _saved_fingerprint(folder: Path) -> dict | None:
    path = inside(folder, fingerprint.FINGERPRINT_FILE)
    if not path.exists():
        return None  # a run made before fingerprints were recorded
    try:
        return loads(read_text(path, "fingerprint file"))
    except (BadFile, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def saved_plan(folder: Path) -> Plan:
    """The plan of an existing run, rebuilt from its config.json."""
    from engine.training.models import resolve_model

    config_path = inside(folder, CONFIG_FILE)
    try:
        saved = loads(read_text(config_path, "config file"))
    except (BadFile, ValueError) as exc:
        raise UserError(f"cannot read {config_path}: {exc}") from None
    config = from_dict(saved, str(config_path))
    task = _task(config)
    return Plan(config, resolve_model(config.model), task, *_data(config, task))


def settle_imports() -> None:
    """Import the training stack up front and freeze its half a million objects out of the
    garbage collector's view (`gc.freeze`): the full collection that frees one model copy
    before the next is loaded then scans only the run's own objects (0.2 s → 0 s each)."""
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    gc.freeze()


class BaseModels:
    """Loads the base model: one copy to evaluate, and a fresh copy for each stage to train.

    Training never reuses a model that has run inference: on CPUs with AVX512-BF16,
    bitsandbytes repacks a 4-bit layer's weights at its first eval-mode forward, and a model
    trained after that backpropagates through `gemv_4bit`, which has no autograd kernel (torch
    warns of silently wrong gradients). A fresh load is also exactly what a resumed run trains
    on, so a resumed run matches an uninterrupted one. The evaluation copy is dropped first,
    so only one copy is ever held."""

    def __init__(self, plan: Plan, warn: Callable[[str], None]):
        self.plan = plan
        self.warn = warn
        self.tokenizer = None
        self._eval_copy = None

    def _load(self):
        from engine.training.models import load_model

        config = self.plan.config
        first = self.tokenizer is None
        model, self.tokenizer = load_model(self.plan.spec, quant=config.quant, device=distributed.device(),
                                           trust_remote_code=config.trust_remote_code)
        for message in getattr(model, "load_warnings", []) if first else []:
            self.warn(message)
        return model

    def for_eval(self):
        if self._eval_copy is None:
            self._eval_copy = self._load()
        return self._eval_copy

    def fresh(self):
        import torch

        self._eval_copy = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return self._load()


class LiveRun:
    """One live run: its folder, events, store row, stop signal and terminal report. With several
    processes (`engine.training.distributed`) each rank runs one; only the main one (rank 0)
    writes the log, events, store metrics and adapters, and evaluates."""

    def __init__(self, run_id: str, folder: Path, plan: Plan, store: RunStore | None, events_stdout: bool,
                 report: Report, logs: LibraryLogs, main: bool = True, lock: RunLock | None = None):
        self.lock = lock  # the owner's, held for the life of the run (released by the OS if the process dies)
        self.run_id = run_id
        self.folder = folder
        self.plan = plan
        self.config = plan.config
        self.store = store
        self.report = report
        self.logs = logs
        self.main = main
        if main:
            logs.to_file(inside(folder, LOG_FILE))
            self.events = EventWriter(inside(folder, EVENTS_FILE), run_id, stdout=output.stdout() if events_stdout else None)
        else:
            self.events = distributed.SilentEvents()
        self.stop = StopSignal()
        self.stop.install()
        self.stop.hold()  # until `execute`: a stop request while the run is being set up ends it as stopped
        self.measured = True

    # --- where a run stands ---------------------------------------------------------------
    def stage_path(self, stage: str, name: str) -> Path:
        return inside(self.folder, f"{stage}/{name}")

    def position(self) -> tuple[str, int]:
        """The stage training continues in and the step of its last complete checkpoint."""
        for stage in self.plan.stages:
            latest = checkpoints.latest_complete(self.stage_path(stage, "checkpoints"), verify=True)
            step = checkpoints.trainer_position(latest)[0] if latest else 0
            if not self.stage_path(stage, "adapter").exists() or stage == self.plan.stages[-1]:
                return stage, step
        return "base", 0  # a baseline run: nothing to train

    def recorded_evals(self) -> dict[str, dict]:
        """Evaluations this run already finished (a resumed run does not redo them)."""
        return {e["stage"]: e for e in read_events(inside(self.folder, EVENTS_FILE)) if e.get("type") == "eval"}

    def warn(self, message: str) -> None:
        """A warning for the user: a `warning` event and a line on the terminal."""
        self.events.emit("warning", message=message)
        self.report.warn(message)

    # --- the run ---------------------------------------------------------------------------
    def execute(self) -> Outcome:
        try:
            self.stop.release()
            with self._heartbeat():
                results = self._run_stages()
            return self._end("finished", results)
        except KeyboardInterrupt:
            return self._end("stopped", self._partial_results())
        except UserError as exc:
            return self._fail(str(exc), "user", 2)
        except Exception as exc:
            self.logs.write(traceback.format_exc())
            if _disk_full(exc):
                return self._fail(DISK_FULL_MESSAGE.format(first_line(exc)), "user", 2)
            return self._fail(f"{type(exc).__name__}: {first_line(exc)}", "internal", 1)
        finally:
            self.stop.uninstall()
            self.events.close()
            self.logs.close()
            if self.lock is not None:
                self.lock.release()

    def _heartbeat(self):
        return Heartbeat(self.store, self.run_id)

    def _run_stages(self) -> dict:
        config = self.config
        settle_imports()
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        quiet_libraries()
        for message in self.plan.warnings:
            self.warn(message)
        evals = self.recorded_evals()
        models = BaseModels(self.plan, self.warn)
        self.report.say(f"run {self.run_id}: {config.model}, {config.n_sft} SFT examples, {config.n_pft} pairs")
        if self.main and "base" not in evals:
            with self._measured("base_eval"):
                evals["base"] = self._evaluate("base", models.for_eval(), models.tokenizer)
        for stage in self.plan.stages:
            policy = None
            if not self.stage_path(stage, "adapter").exists():
                with self._measured(stage):
                    policy = self._train(stage, models)
            if self.main and stage not in evals:
                if policy is None:
                    policy = self._load_trained(stage, models)
                with self._measured(f"{stage}_eval"):
                    evals[stage] = self._evaluate(stage, policy, models.tokenizer)
            del policy  # freed by the next `fresh()` load, before the next copy exists
        return self._results(evals)

    @contextlib.contextmanager
    def _measured(self, stage: str):
        """Records the stage's wall seconds, peak memory and the cores other work took meanwhile in
        the store (what forecasts learn from: `× history` leaves out a stage slowed by other work)."""
        from engine.training import meter

        with meter.measure() as used, meter.other_work() as others:
            yield
        if self.measured and self.main:
            self.store.add_metric(self.run_id, stage, "stage_seconds", used.seconds)
            self.store.add_metric(self.run_id, stage, "peak_memory_bytes", used.peak_memory_bytes)
            other = others.cores if distributed.world_size() == 1 else None  # other ranks are this run's work
            if other is not None:
                self.store.add_metric(self.run_id, stage, "other_cores", other)
            if compute.threads_short(other, meter.threads(), meter.cores()):
                self.warn(f"{stage} ran while other work took {others.cores:.1f} of this machine's {meter.cores()} "
                          f"cores: it took longer than this machine needs, and forecasts will not learn from it")

    def _train(self, stage: str, models: BaseModels):
        """One stage: build its trainer, continue from its last complete checkpoint, save the adapter."""
        from transformers import set_seed

        from engine.training import stages

        folder = self.stage_path(stage, "checkpoints")
        for bad in checkpoints.damaged(folder):
            self.warn(f"{stage} {bad.name} is damaged (its files no longer match their record); "
                      "continuing from the previous complete checkpoint")
        latest = checkpoints.latest_complete(folder, verify=True)
        start_step = checkpoints.trainer_position(latest)[0] if latest else 0  # read now: training prunes it
        examples = self.plan.examples(stage)
        if self.main:
            checkpoints.prune(folder, self.config.keep_checkpoints, verify=True)
        callbacks = stage_callbacks(self.events if self.main else None, stage, len(examples), self.folder,
                                    self.config.keep_checkpoints, self.stop, progress=self.report.enabled,
                                    ranks=distributed.world_size())
        set_seed(self.config.seed)  # LoRA init and data order never depend on what ran before
        if stage == "sft":
            trainer = stages.sft_trainer(self.config, models.fresh(), models.tokenizer, examples, folder, callbacks)
        else:
            base = models.fresh()
            model = stages.dpo_model(base, self.stage_path("sft", "adapter")) if self.config.n_sft else base
            trainer = stages.dpo_trainer(self.config, model, models.tokenizer, examples, folder, callbacks)
        with self.stop.deferred():
            output = trainer.train(resume_from_checkpoint=str(latest) if latest else None)
        if self.stop.requested:
            raise KeyboardInterrupt
        if not self.main:
            distributed.barrier()  # the next stage reads the adapter rank 0 is saving
            return trainer.model
        checkpoints.save_adapter(trainer.model, self.stage_path(stage, "adapter"))
        distributed.barrier()
        self.store.add_metric(self.run_id, stage, "train_loss", output.training_loss)
        args = trainer.args
        seconds = compute.seconds_per_example_seen(
            output.metrics.get("train_runtime"), steps=int(trainer.state.global_step),
            start_step=start_step,
            batch=args.train_batch_size * args.gradient_accumulation_steps * args.world_size,
            n_examples=len(examples), epochs=args.num_train_epochs, max_steps=args.max_steps)
        if seconds is not None:  # what `engine advise --gpu-hour-price` forecasts from
            self.store.add_metric(self.run_id, stage, "seconds_per_example", seconds)
        self.events.emit("stage_finished", stage=stage, step=int(trainer.state.global_step),
                         adapter=f"{stage}/adapter")
        return trainer.model

    def _load_trained(self, stage: str, models: BaseModels):
        """A finished stage's policy from its saved adapter (to evaluate it after a resume)."""
        from peft import PeftModel

        return PeftModel.from_pretrained(models.fresh(), str(self.stage_path(stage, "adapter")))

    def _evaluate(self, stage: str, model, tokenizer) -> dict:
        from engine.tasks.evaluate import evaluate

        splits, config = self.plan.splits, self.config
        self.report.say(f"evaluating {stage} on {len(splits.eval)} held-out examples")
        result = evaluate(model, tokenizer, splits.eval, self.plan.task.metric, batch_size=config.eval_batch_size,
                          max_new_tokens=config.eval_max_new_tokens, max_length=config.max_length)
        saved = {"generations": self._save_generations(stage, result.generations)} if result.generations else {}
        event = self.events.emit("eval", stage=stage, metric=result.metric, value=float(result.value),
                                 n=int(result.n), **result.extras, **saved)
        self.store.add_eval(self.run_id, stage, result.metric, float(result.value), **self.plan.task.metric.direction)
        self.report.say(f"{stage:>4} {result.metric} = {result.value:.4f} (n={result.n})")
        return event

    def _save_generations(self, stage: str, generations: list[dict]) -> str:
        """What the model wrote for each held-out example, as JSONL in the run folder."""
        relative = generations_file(stage)
        path = inside(self.folder, relative)
        path.parent.mkdir(exist_ok=True)
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in generations)
        checkpoints.write_text_atomic(path, lines)
        return relative

    # --- endings ---------------------------------------------------------------------------
    def _results(self, evals: dict[str, dict]) -> dict:
        """Per-stage scores and the final score: the last trained stage's metric value."""
        done = [stage for stage in ("base", *self.plan.stages) if stage in evals]
        results = {"metric": self.plan.task.metric.name, "n_sft": self.config.n_sft,
                   "n_pft": self.config.n_pft, "n_eval": len(self.plan.splits.eval),
                   "scores": {stage: evals[stage]["value"] for stage in done}}
        final = self.plan.stages[-1] if self.plan.stages else "base"  # a baseline run trains nothing
        return {**results, "score": evals[final]["value"] if final in evals else None}

    def _partial_results(self) -> dict:
        return self._results(self.recorded_evals())

    def _end(self, status: str, results: dict) -> Outcome:
        self.events.emit("run_finished", status=status, results=results)
        if status == "finished":
            checkpoints.write_json_atomic(inside(self.folder, RESULTS_FILE), results)
            self.store.finish_run(self.run_id, status=status, score=results["score"], metric=results["metric"],
                                  results=results)
        else:
            self.store.set_status(self.run_id, status)
        scores = " → ".join(f"{stage} {value:.4f}" for stage, value in results["scores"].items())
        self.report.say(f"run {self.run_id} {status}: {results['metric']} {scores or '(not evaluated)'}")
        self.report.say(f"folder {self.folder}")
        return Outcome(self.run_id, status, results, EXIT_CODES[status], self.folder)

    def _fail(self, message: str, kind: str, exit_code: int) -> Outcome:
        """Record the failure wherever it can still be written: a full disk must not hide it."""
        results = self._partial_results()
        with contextlib.suppress(OSError):
            self.events.emit("error", message=message, kind=kind)
            self.events.emit("run_finished", status="failed", results=results)
        with contextlib.suppress(UserError):
            self.store.set_status(self.run_id, "failed", error=message)
        return Outcome(self.run_id, "failed", results, exit_code, self.folder, error=message)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
DISK_FULL_MESSAGE = "out of disk space (or over a file-size limit): {}"
DISK_FULL_TEXTS = tuple(os.strerror(code) for code in DISK_FULL_ERRNOS) + tuple(
    f"os error {code})" for code in DISK_FULL_ERRNOS) + (
    "unexpected pos",  # torch.save's zip writer after a short write: how it reports a full disk
)


def _disk_full(exc: BaseException | None) -> bool:
    """Whether an error comes from a full disk or a file-size limit, however a library wrapped
    it (safetensors and torch report it in their own exception types, with the OS message)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(exc) for text in DISK_FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
