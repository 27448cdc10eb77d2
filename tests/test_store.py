"""The run store: records, statuses, the advisor's view, dead-run detection and concurrency."""

import json
import subprocess
import sys
import textwrap

import pytest

from engine.record.errors import UserError
from engine.record.store import RunStore


def _create(store, run_id, **over):
    fields = dict(task="gsm8k_math", model="tiny", params_b=0.0001, n_sft=32, n_pft=32,
                  config={"seed": 1}, run_dir=f"/runs/{run_id}", pid=999_999)
    fields.update(over)
    store.create_run(run_id, **fields)


def test_round_trip_and_past_runs_of_ended_runs(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    for run_id, status in [("a", "finished"), ("b", "failed"), ("c", "stopped"), ("d", "running")]:
        _create(store, run_id)
        store.add_eval(run_id, "dpo", "exact_match", 0.5, higher_is_better=True, lower=0.0, upper=1.0)
        if status != "running":
            store.finish_run(run_id, status=status, score=0.5, metric="exact_match", results={"dpo": 0.5})
    store.add_metric("a", "sft", "exact_match", 0.25)
    run = store.get_run("a")
    assert run["status"] == "finished" and run["config"] == {"seed": 1} and run["results"] == {"dpo": 0.5}
    assert store.metrics("a")[-1] == {"stage": "sft", "name": "exact_match", "value": 0.25, "time": pytest.approx(
        store.metrics("a")[-1]["time"])}
    past = store.past_runs()  # a running run's evaluations wait until it ends; a plain metric row is no evaluation
    assert sorted((r.source, r.n_sft, r.n_pft, r.score) for r in past) == [
        ("store:a:dpo", 32, 32, 0.5), ("store:b:dpo", 32, 32, 0.5), ("store:c:dpo", 32, 32, 0.5)]
    assert {r["run_id"] for r in store.list_runs()} == {"a", "b", "c", "d"}


def test_unknown_and_duplicate_runs_are_user_errors(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    _create(store, "a")
    with pytest.raises(UserError, match="already exists"):
        _create(store, "a")
    with pytest.raises(UserError, match="no run with id 'zzz'"):
        store.get_run("zzz")
    with pytest.raises(UserError, match="invalid run id"):
        _create(store, "../escape")
    assert len(store.list_runs()) == 1


def test_dead_process_is_marked_interrupted(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _create(store, "gone", pid=dead.pid)
    _create(store, "alive", pid=subprocess.os.getpid())
    assert store.mark_dead_runs() == ["gone"]
    assert store.get_run("gone")["status"] == "interrupted"
    assert store.get_run("alive")["status"] == "running"


def test_unwritable_home_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot open the run store"):
        RunStore(blocker / "runs.sqlite")


WRITER = textwrap.dedent("""
    import sys
    from engine.record.store import RunStore
    store = RunStore(sys.argv[1])
    for i in range(int(sys.argv[3])):
        run_id = f"{sys.argv[2]}-{i}"
        store.create_run(run_id, task="t", model="m", params_b=1.0, n_sft=i, n_pft=i, config={}, run_dir="x", pid=1)
        for step in range(4):
            store.add_metric(run_id, "sft", "loss", float(step))
            store.heartbeat(run_id)
        store.add_eval(run_id, "dpo", "m", i / 100, higher_is_better=True, lower=0.0, upper=1.0)
        store.finish_run(run_id, status="finished", score=i / 100, metric="m", results={})
""")


def test_two_writer_processes_and_a_polling_reader_lose_nothing(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    per_writer = 40
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(per_writer)],
                                stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    polls = 0
    while any(w.poll() is None for w in writers):
        runs = store.list_runs()
        assert all(r["status"] in ("running", "finished") for r in runs)
        assert all(r.score is not None for r in store.past_runs())
        polls += 1
    errors = [w.stderr.read() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    runs = store.list_runs()
    ids = [r["run_id"] for r in runs]
    assert len(ids) == len(set(ids)) == 2 * per_writer
    assert all(r["status"] == "finished" for r in runs)
    assert sum(len(store.metrics(i)) for i in ids) == 2 * per_writer * 5
    assert len(store.past_runs()) == 2 * per_writer
    assert polls > 0
    assert json.loads(json.dumps(runs))  # rows are plain JSON-able data


def _timed(store, run_id, model, status="finished", **seconds):
    _create(store, run_id, model=model)
    for stage, value in seconds.items():
        store.add_metric(run_id, stage, "train_loss", 1.0)
        store.add_metric(run_id, stage, "seconds_per_example", value)
    store.finish_run(run_id, status=status, score=0.1, metric="exact_match", results={})


def test_seconds_per_example_is_the_median_of_finished_runs_of_the_same_model(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.seconds_per_example("Llama-3.1-8B (base)") == {}
    _timed(store, "a", "meta-llama/Llama-3.1-8B", sft=0.5, dpo=2.0)
    _timed(store, "b", "Llama-3.1-8B (base)", sft=0.9, dpo=3.0)
    _timed(store, "c", "llama-3.1-8b", sft=0.6)
    _timed(store, "failed", "Llama-3.1-8B", status="failed", sft=50.0, dpo=50.0)
    _timed(store, "other", "Qwen2.5-7B", sft=7.0, dpo=7.0)
    _create(store, "running", model="Llama-3.1-8B")
    store.add_metric("running", "sft", "seconds_per_example", 60.0)
    assert store.seconds_per_example("Llama-3.1-8B (base)") == {"sft": 0.6, "dpo": 2.5}
    assert store.timed_runs("Llama-3.1-8B") == 3
    assert store.seconds_per_example("Qwen2.5-7B (base)") == {"sft": 7.0, "dpo": 7.0}
    assert store.seconds_per_example("Mistral-7B") == {} and store.timed_runs("Mistral-7B") == 0


@pytest.mark.parametrize("kwargs, expected", [
    (dict(steps=4, start_step=0, batch=16, n_examples=32, epochs=2.0), 80 / 64),  # the whole schedule
    (dict(steps=4, start_step=0, batch=16, n_examples=20, epochs=2.0), 80 / 40),  # short last steps
    (dict(steps=2, start_step=0, batch=16, n_examples=1000, epochs=2.0, max_steps=2), 80 / 32),  # capped
    (dict(steps=4, start_step=0, batch=16, n_examples=16, epochs=2.0, max_steps=4), 80 / 64),  # data cycled
    (dict(steps=4, start_step=3, batch=16, n_examples=32, epochs=2.0), 80 / 16),  # resumed at step 3
    (dict(steps=4, start_step=4, batch=16, n_examples=32, epochs=2.0), None),  # nothing left to train
])
def test_seconds_per_example_counts_the_examples_actually_seen(kwargs, expected):
    from engine.record.compute import seconds_per_example_seen

    assert seconds_per_example_seen(80.0, **kwargs) == (None if expected is None else pytest.approx(expected))
    assert seconds_per_example_seen(None, **kwargs) is None
