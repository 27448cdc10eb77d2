"""The fold from events to what the run screen shows (RunState), on the fake engine's stories."""

import pytest

from engine.record.events import problems
from fake_engine import DPO_STEPS, SFT_STEPS, canned_events, timed
from tui.runstate import RunState

CONFIG = {"task": "gsm8k_math", "model": "tiny", "n_sft": 40, "n_pft": 30}


@pytest.mark.parametrize("scenario", ["ok", "error", "die", "flood"])
def test_fake_engine_events_follow_the_schema(scenario):
    for event in timed("r1", canned_events(CONFIG, scenario, n_logs=50)):
        assert problems(event) == []


def test_a_finished_run_folds_into_curves_evals_and_status():
    events = timed("r1", canned_events(CONFIG, "ok"), start=1000.0, gap=0.5)
    state = RunState().apply_all(events)
    assert state.run_id == "r1" and state.status == "finished" and state.finished
    assert state.split == (40, 30)
    assert [s for s, _ in state.stages["sft"].loss] == list(range(1, SFT_STEPS + 1))
    assert state.stages["sft"].total_steps == SFT_STEPS and state.stages["dpo"].step == DPO_STEPS
    rewards = state.stages["dpo"].rewards
    assert len(rewards["rewards/accuracies"]) == DPO_STEPS and rewards["rewards/margins"][-1] == (16, 0.8)
    assert {k: v[1] for k, v in state.evals.items()} == {"base": 0.25, "sft": 0.4, "dpo": 0.45}
    assert state.messages == [("warning", "3 preference pairs were longer than max_length and were cut")]
    assert state.n_logs == SFT_STEPS + DPO_STEPS
    assert state.elapsed(now=99999.0) == pytest.approx((len(events) - 1) * 0.5)
    assert state.eta(now=99999.0) is None


def test_eta_follows_the_pace_of_the_current_stage():
    state = RunState().apply_all([
        {"type": "run_started", "run_id": "r", "time": 0.0, "config": CONFIG, "pid": 1},
        {"type": "stage_started", "run_id": "r", "time": 10.0, "stage": "sft", "total_steps": 40, "n_examples": 40},
        {"type": "log", "run_id": "r", "time": 20.0, "stage": "sft", "step": 10, "loss": 1.0},
    ])
    assert state.status == "running" and state.stage == "sft"
    assert state.eta(now=20.0) == pytest.approx(30.0)  # 1 s a step, 30 steps left
    assert state.elapsed(now=25.0) == pytest.approx(25.0)


def test_an_error_event_and_a_silent_death_both_end_as_failed():
    errored = RunState().apply_all(timed("r", canned_events(CONFIG, "error")))
    assert errored.status == "failed"
    assert errored.messages[-1] == ("error", "oom: CUDA out of memory while training SFT step 6")

    died = RunState().apply_all(timed("r", canned_events(CONFIG, "die")))
    assert died.status == "running" and not died.finished
    died.fail("engine exited with code 3 before the run finished")
    assert died.status == "failed" and died.finished and died.messages[-1][1].startswith("engine exited with code 3")


def test_unknown_types_and_missing_numbers_are_ignored_not_fatal():
    state = RunState().apply_all([
        {"type": "something_new", "run_id": "r", "time": 1.0},
        {"type": "log", "run_id": "r", "time": 2.0, "stage": "sft", "step": 3, "loss": None},
    ])
    assert state.n_events == 2 and state.stages["sft"].step == 3 and state.stages["sft"].loss == []
