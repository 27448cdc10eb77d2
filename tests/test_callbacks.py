"""The stage callbacks are real `TrainerCallback`s whose every `on_*` method is a Trainer event."""

import inspect

import pytest
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from engine.training.callbacks import callback_classes, stage_callbacks
from engine.record.events import EventWriter, read_events


@pytest.mark.parametrize("cls", callback_classes(), ids=lambda c: c.__name__)
def test_every_on_method_is_one_the_trainer_calls(cls):
    assert issubclass(cls, TrainerCallback)
    events = {name for name, _ in inspect.getmembers(TrainerCallback, inspect.isfunction) if name.startswith("on_")}
    ours = {name for name in vars(cls) if name.startswith("on_")}
    assert ours and ours <= events, f"{cls.__name__} defines events the Trainer never calls: {ours - events}"


def test_progress_bar_is_named_after_the_stage_and_shows_the_loss_not_log_lines(tmp_path, capsys):
    class NoStop:
        requested = False

    writer = EventWriter(tmp_path / "events.jsonl", "r1")
    callbacks = stage_callbacks(writer, "sft", 8, tmp_path, 2, NoStop(), progress=True)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[])
    state, control = TrainerState(max_steps=4, global_step=0), TrainerControl()
    for callback in callbacks:
        callback.on_train_begin(args, state, control)
    for step in range(1, 5):
        state.global_step = step
        for callback in callbacks:
            callback.on_step_end(args, state, control)
            callback.on_log(args, state, control, logs={"loss": 1.0 / step, "grad_norm": 0.5})
    for callback in callbacks:
        callback.on_train_end(args, state, control)
    writer.close()
    err = capsys.readouterr().err
    assert "SFT" in err and "4/4" in err and "loss=0.2500" in err
    assert "grad_norm" not in err  # no log dictionaries printed as lines
    logged = [e for e in read_events(tmp_path / "events.jsonl") if e["type"] == "log"]
    assert [e["step"] for e in logged] == [1, 2, 3, 4] and logged[-1]["grad_norm"] == 0.5


def test_without_a_terminal_there_is_no_progress_bar(tmp_path):
    writer = EventWriter(tmp_path / "events.jsonl", "r1")
    callbacks = stage_callbacks(writer, "dpo", 8, tmp_path, 2, None, progress=False)
    writer.close()
    assert [type(c).__name__ for c in callbacks] == ["StageEvents", "StopWhenAsked"]


def test_a_resumed_stage_bar_starts_where_it_stopped(tmp_path, capsys):
    writer = EventWriter(tmp_path / "events.jsonl", "r1")
    progress = stage_callbacks(writer, "sft", 8, tmp_path, 2, None, progress=True)[-1]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[])
    state, control = TrainerState(max_steps=4, global_step=3), TrainerControl()
    progress.on_train_begin(args, state, control)
    state.global_step = 4
    progress.on_step_end(args, state, control)
    progress.on_train_end(args, state, control)
    writer.close()
    err = capsys.readouterr().err
    assert "SFT" in err and "3/4" in err and "4/4" in err and "1/4" not in err
