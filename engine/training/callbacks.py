"""Trainer callbacks that turn a TRL stage into events, checkpoints, stop requests and progress.

They subclass `transformers.TrainerCallback`, so each `on_*` method is one of the Trainer's own
events (tests/test_callbacks.py checks the names against it: a misspelt one fails there instead
of never being called). Importing transformers takes seconds and the engine's command line must
start without it, so the classes are defined on first use: `stage_callbacks` builds a stage's list.
"""

from __future__ import annotations

import functools
from pathlib import Path

from engine.training import checkpoints, distributed
from engine.record.events import EventWriter


def stage_callbacks(events: EventWriter | None, stage: str, n_examples: int, run_folder: Path, keep: int, stop,
                    progress: bool, ranks: int = 1) -> list:
    """A stage's callbacks: its events and checkpoints (rank 0 only: `events` is None on the
    others), the stop request, with several processes a barrier before a checkpoint counts, and
    (for a person at a terminal) a progress bar."""
    stage_events, stop_when_asked, stage_progress, all_ranks_saved = callback_classes()
    callbacks = [all_ranks_saved()] if ranks > 1 else []
    if events is not None:
        callbacks.append(stage_events(events, stage, n_examples, run_folder, keep))
    callbacks.append(stop_when_asked(stop))
    return callbacks + [stage_progress(stage)] if progress else callbacks


@functools.cache
def callback_classes() -> tuple[type, type, type, type]:
    """(StageEvents, StopWhenAsked, StageProgress, AllRanksSaved), defined once transformers is wanted."""
    from tqdm.auto import tqdm  # what transformers' ProgressCallback draws with
    from transformers import ProgressCallback, TrainerCallback

    class StageEvents(TrainerCallback):
        """stage_started, one `log` event per trainer log (its keys unchanged), and checkpoints.

        A checkpoint is marked complete (see engine.training.checkpoints) before its event is
        written, so a `checkpoint` event always names a checkpoint that resume will accept."""

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

    class StopWhenAsked(TrainerCallback):
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

    class StageProgress(ProgressCallback):
        """transformers' own tqdm bar, named after the stage and showing the latest loss in place
        of printing every log dictionary as a line."""

        def __init__(self, stage: str):
            super().__init__()
            self.stage = stage

        def on_train_begin(self, args, state, control, **kwargs):
            """The bar transformers would open, named, and starting where a resumed stage stopped."""
            if state.is_world_process_zero:
                self.training_bar = tqdm(total=state.max_steps, initial=state.global_step,
                                         desc=self.stage.upper(), dynamic_ncols=True)
            self.current_step = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if self.training_bar is not None and isinstance(loss, (int, float)):
                self.training_bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    class AllRanksSaved(TrainerCallback):
        """First callback of every rank: a checkpoint is complete only once every rank has written
        its part (the Trainer writes one RNG state per rank), so rank 0 marks it after this barrier."""

        def on_save(self, args, state, control, **kwargs):
            distributed.barrier()

    return StageEvents, StopWhenAsked, StageProgress, AllRanksSaved
