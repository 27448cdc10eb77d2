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


def test_eta_is_the_whole_runs_from_the_launch_forecast_and_the_pace():
    """The launch's forecast (run_started) gives the stages not yet under way; a training stage
    under way is timed by its own pace, counted down between its events."""
    forecast = {"stages": {"base_eval": {"seconds": 30.0}, "sft": {"seconds": 200.0}, "sft_eval": {"seconds": 40.0},
                           "dpo": {"seconds": 100.0}, "dpo_eval": {"seconds": 40.0}}}
    state = RunState().apply_all([{"type": "run_started", "run_id": "r", "time": 0.0, "config": CONFIG, "pid": 1,
                                   "forecast": forecast}])
    assert state.eta(now=0.0) == pytest.approx(410.0)
    assert state.eta(now=10.0) == pytest.approx(400.0)  # 20 s of the base evaluation's 30 left
    assert state.eta(now=50.0) == pytest.approx(380.0)  # it runs long: no time left in it, the rest as forecast
    state.apply_all([
        {"type": "eval", "run_id": "r", "time": 50.0, "stage": "base", "metric": "exact_match", "value": 0.1, "n": 8},
        {"type": "stage_started", "run_id": "r", "time": 50.0, "stage": "sft", "total_steps": 40, "n_examples": 40},
    ])
    assert state.eta(now=55.0) == pytest.approx(375.0)  # before its first step: SFT as forecast
    state.apply({"type": "log", "run_id": "r", "time": 70.0, "stage": "sft", "step": 10, "loss": 1.0})
    assert state.eta(now=70.0) == pytest.approx(60.0 + 180.0)  # 2 s a step, 30 steps to go, then the forecast
    assert state.eta(now=75.0) == pytest.approx(55.0 + 180.0)  # counted down between events
    state.apply_all([
        {"type": "log", "run_id": "r", "time": 130.0, "stage": "sft", "step": 40, "loss": 0.5},
        {"type": "stage_finished", "run_id": "r", "time": 131.0, "stage": "sft", "step": 40, "adapter": "a"},
    ])
    assert state.eta(now=141.0) == pytest.approx(30.0 + 140.0)  # the SFT evaluation, 10 s in


def test_a_resumed_runs_eta_leaves_out_the_stages_before_the_one_it_continues():
    forecast = {"stages": {"base_eval": {"seconds": 30.0}, "sft": {"seconds": 200.0}, "sft_eval": {"seconds": 40.0},
                           "dpo": {"seconds": 100.0}, "dpo_eval": {"seconds": 40.0}}}
    state = RunState().apply_all([
        {"type": "run_started", "run_id": "r", "time": 0.0, "config": CONFIG, "pid": 1, "forecast": forecast},
        {"type": "resumed", "run_id": "r", "time": 500.0, "stage": "dpo", "step": 4},
    ])
    assert state.eta(now=500.0) == pytest.approx(140.0)
    state.apply_all([  # its pace counts from the step it continued at, not from the first launch
        {"type": "stage_started", "run_id": "r", "time": 510.0, "stage": "dpo", "total_steps": 20, "n_examples": 40,
         "step": 4},
        {"type": "log", "run_id": "r", "time": 530.0, "stage": "dpo", "step": 8, "loss": 0.6},
    ])
    assert state.eta(now=530.0) == pytest.approx(5.0 * 12 + 40.0)
