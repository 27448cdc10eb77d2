"""Trainer callbacks that turn a TRL stage into events, checkpoints, stop requests and progress.

They are duck-typed rather than subclasses of `transformers.TrainerCallback`: the Trainer only
calls `on_<event>` methods by name, so this module imports no heavy library and the CLI stays
fast. `Callback` answers every event it does not define with a no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.training import checkpoints, distributed
from engine.record.events import EventWriter


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


class Callback:
    """Base: any `on_*` event a subclass does not define does nothing."""

    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return _ignore
        raise AttributeError(name)


class StageEvents(Callback):
    """stage_started, one `log` event per trainer log (its keys unchanged), and checkpoints.

    A checkpoint is marked complete (see engine.training.checkpoints) before its event is written, so a
    `checkpoint` event always names a checkpoint that resume will accept."""

    def __init__(self, events: EventWriter, stage: str, n_examples: int, run_folder: Path, keep: int):
        self.events = events
        self.stage = stage
        self.n_examples = n_examples
        self.run_folder = run_folder
        self.keep = keep

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from engine.training.models import count_linear4bit

        quantized = count_linear4bit(model) if getattr(model, "is_loaded_in_4bit", False) else 0
        self.events.emit("stage_started", stage=self.stage, total_steps=int(state.max_steps),
                         n_examples=self.n_examples, step=int(state.global_step), linear4bit_layers=quantized,
                         world_size=int(args.world_size))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.events.emit("log", **{**(logs or {}), "stage": self.stage, "step": int(state.global_step)})

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir)
        saved = folder / f"checkpoint-{state.global_step}"
        checkpoints.mark_complete(saved)
        checkpoints.prune(folder, self.keep)
        self.events.emit("checkpoint", stage=self.stage, step=int(state.global_step),
                         path=str(saved.relative_to(self.run_folder)))


class StopWhenAsked(Callback):
    """On a stop request (SIGINT/SIGTERM), finish the current step, checkpoint it and stop.

    With several processes the ranks agree first (an all-reduce of their flags): a signal
    reaches them at slightly different moments, and all must stop on the same step."""

    def __init__(self, stop):
        self.stop = stop

    def on_step_end(self, args, state, control, **kwargs):
        if distributed.any_rank(self.stop.requested):
            self.stop.requested = True
            control.should_save = True
            control.should_training_stop = True
        return control


class ProgressBars(Callback):
    """A rich progress bar for one stage on stderr, with the latest loss (human mode only)."""

    def __init__(self, console, stage: str):
        self.console = console
        self.stage = stage
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn(f"{self.stage.upper():>4}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), console=self.console)
        self.task = self.progress.add_task(self.stage, total=state.max_steps, completed=state.global_step, loss="")
        self.progress.start()

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if isinstance(loss, (int, float)):
            self.progress.update(self.task, loss=f"loss {loss:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.stop()
