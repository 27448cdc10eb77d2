"""Every run is up to three measured points (base, SFT, final), each in its own metric, and only
true scores are fitted; a version-1 store is migrated in place; a model is one model however it
is named."""

import sqlite3
import subprocess
import sys

import pytest

from engine.record.model_names import DEMO_NAME, canonical_model, model_size, same_model
from engine.record.store import SCHEMA_VERSION, V1_METRICS, RunStore

SCORE = dict(higher_is_better=True, lower=0.0, upper=1.0)
LOSS = dict(higher_is_better=False, lower=0.0, upper=None)


def _run(store, run_id, evals, *, status="finished", n_sft=32, n_pft=16, model="tiny", task="gsm8k_math",
         metric="exact_match", direction=SCORE, params_b=0.0001):
    store.create_run(run_id, task=task, model=model, params_b=params_b, n_sft=n_sft, n_pft=n_pft, config={},
                     run_dir=f"/runs/{run_id}", pid=999_999)
    for stage, value in evals.items():
        store.add_eval(run_id, stage, metric, value, **direction)
        store.add_metric(run_id, stage, "train_loss", 1.5)  # not an evaluation: never a point
    if status != "running":
        store.finish_run(run_id, status=status, score=None, metric=metric, results={})


def _points(store):
    return sorted((r.source, r.n_sft, r.n_pft, r.score, r.metric) for r in store.past_runs())


def test_a_finished_run_is_three_points(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    _run(store, "full", {"base": 0.1, "sft": 0.3, "dpo": 0.4})
    assert _points(store) == [("store:full:base", 0, 0, 0.1, "exact_match"),
                              ("store:full:dpo", 32, 16, 0.4, "exact_match"),
                              ("store:full:sft", 32, 0, 0.3, "exact_match")]


def test_an_sft_only_run_is_two_points_and_a_stopped_run_keeps_what_it_measured(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    _run(store, "sftonly", {"base": 0.2, "sft": 0.5}, n_pft=0, task="a")
    _run(store, "stopped", {"base": 0.2, "sft": 0.6}, status="stopped", n_sft=64, task="b")
    _run(store, "failed", {"base": 0.2}, status="failed", task="c")
    _run(store, "live", {"base": 0.2, "sft": 0.7}, status="running", task="d")
    assert _points(store) == [
        ("store:failed:base", 0, 0, 0.2, "exact_match"), ("store:sftonly:base", 0, 0, 0.2, "exact_match"),
        ("store:sftonly:sft", 32, 0, 0.5, "exact_match"), ("store:stopped:base", 0, 0, 0.2, "exact_match"),
        ("store:stopped:sft", 64, 0, 0.6, "exact_match")]


def test_only_bounded_higher_is_better_scores_are_fitted(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    _run(store, "loss", {"base": 0.8, "sft": 0.6, "dpo": 0.5}, metric="heldout_loss", direction=LOSS)
    _run(store, "unbounded", {"base": 0.5}, metric="reward", direction=dict(higher_is_better=True, lower=0.0,
                                                                              upper=None))
    _run(store, "acc", {"base": 0.25, "dpo": 0.5}, metric="preference_accuracy", task="chat_preference")
    assert _points(store) == [("store:acc:base", 0, 0, 0.25, "preference_accuracy"),
                              ("store:acc:dpo", 32, 16, 0.5, "preference_accuracy")]
    assert {e["metric"]: e["score"] for e in store.evaluations()} == {
        "heldout_loss": False, "reward": False, "preference_accuracy": True}


def test_the_metric_definitions_carry_direction_and_bounds():
    from engine.tasks.metrics import METRICS

    assert METRICS["heldout_loss"].direction == {"higher_is_better": False, "lower": 0.0, "upper": None}
    for name in ("exact_match", "rouge_l", "preference_accuracy"):
        assert METRICS[name].direction == {"higher_is_better": True, "lower": 0.0, "upper": 1.0}
    # what a version-1 store's evaluations are migrated with is what the metrics say
    for name, (higher, lower, upper) in V1_METRICS.items():
        assert METRICS[name].direction == {"higher_is_better": bool(higher), "lower": lower, "upper": upper}


def test_repeated_base_evaluations_of_one_model_are_one_point_in_each_metric(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    _run(store, "r1", {"base": 0.1, "dpo": 0.4}, model="demo", params_b=0.135)
    _run(store, "r2", {"base": 0.2, "sft": 0.5}, model="HuggingFaceTB/SmolLM2-135M-Instruct", params_b=0.135)
    _run(store, "r3", {"base": 0.3}, model="SmolLM2-135M-Instruct", metric="rouge_l", params_b=0.135)
    points = _points(store)
    assert ("store:r1,r2:base", 0, 0, pytest.approx(0.15), "exact_match") in points
    assert ("store:r3:base", 0, 0, 0.3, "rouge_l") in points
    assert len(points) == 4
    assert {r.model for r in store.past_runs()} == {DEMO_NAME}
    assert store.base_scores("gsm8k_math", "demo") == {"exact_match": pytest.approx(0.15), "rouge_l": 0.3}
    assert store.base_scores("gsm8k_math", "tiny") == {}
    assert len(store.past_runs(exclude={"r1", "r2"})) == 1


V1_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, task TEXT NOT NULL, model TEXT NOT NULL, params_b REAL,
    n_sft INTEGER NOT NULL, n_pft INTEGER NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL, run_dir TEXT NOT NULL,
    pid INTEGER, host TEXT, created_at REAL NOT NULL, heartbeat_at REAL, finished_at REAL, score REAL, metric TEXT,
    results TEXT, error TEXT);
CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs(run_id),
    stage TEXT NOT NULL, name TEXT NOT NULL, value REAL, time REAL NOT NULL);
CREATE INDEX metrics_run ON metrics(run_id);
INSERT INTO runs VALUES ('old', 'gsm8k_math', 'demo', 0.135, 8, 4, 'finished', '{}', '/r/old', 1, 'h', 1.0, 1.0, 2.0,
    0.45, 'exact_match', '{}', NULL);
INSERT INTO runs VALUES ('oldloss', 'mine', 'demo', 0.135, 8, 0, 'finished', '{}', '/r/oldloss', 1, 'h', 1.5, 1.0,
    2.0, 0.8, 'heldout_loss', '{}', NULL);
INSERT INTO metrics (run_id, stage, name, value, time) VALUES
    ('old', 'base', 'exact_match', 0.05, 1.0), ('old', 'sft', 'train_loss', 0.9, 1.1),
    ('old', 'sft', 'exact_match', 0.3, 1.2), ('old', 'dpo', 'exact_match', 0.45, 1.3),
    ('oldloss', 'base', 'heldout_loss', 0.9, 1.0), ('oldloss', 'sft', 'heldout_loss', 0.8, 1.1);
PRAGMA user_version = 1;
"""


def test_a_version_1_store_is_migrated_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    store = RunStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert [r["run_id"] for r in store.list_runs()] == ["oldloss", "old"]
    assert [m["name"] for m in store.metrics("old")] == ["exact_match", "train_loss", "exact_match", "exact_match"]
    # the old loss run (a 0.8 the v1 reader took for a score) is no longer fitted; the score run is three points
    assert _points(store) == [("store:old:base", 0, 0, 0.05, "exact_match"),
                              ("store:old:dpo", 8, 4, 0.45, "exact_match"),
                              ("store:old:sft", 8, 0, 0.3, "exact_match")]
    assert {r.model for r in store.past_runs()} == {DEMO_NAME}
    RunStore(path)  # opening it again changes nothing
    assert len(_points(store)) == 3
    _run(store, "new", {"base": 0.07}, model="demo", params_b=0.135)
    assert ("store:old,new:base", 0, 0, pytest.approx(0.06), "exact_match") in _points(store)


def test_two_processes_opening_a_version_1_store_migrate_it_once(tmp_path):
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    code = "import sys; from engine.record.store import RunStore; RunStore(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0], [p.stderr.read() for p in procs]
    assert len(_points(RunStore(path))) == 3


@pytest.mark.parametrize("name", ["demo", "DEMO", "SmolLM2-135M-Instruct", "smollm2-135m-instruct",
                                  "HuggingFaceTB/SmolLM2-135M-Instruct", " demo "])
def test_every_spelling_of_the_demo_model_is_one_model(name):
    assert canonical_model(name) == DEMO_NAME
    assert same_model(name, "demo") and model_size(name) == pytest.approx(0.135)


def test_other_names_are_kept_and_a_stored_model_knows_its_size(home):
    assert canonical_model("tiny") == "tiny" and canonical_model("Llama-3.1-8B (base)") == "Llama-3.1-8B (base)"
    assert same_model("meta-llama/Llama-3.1-8B", "Llama-3.1-8B (base)") and not same_model("tiny", "demo")
    assert model_size("tiny") is None and model_size("tiny", 2.0) == 2.0
    store = RunStore()
    _run(store, "t", {"base": 0.0}, params_b=0.000115)
    assert model_size("tiny") == 0.000115 and store.known_params_b("Tiny") == 0.000115
    assert store.get_run("t")["model"] == "tiny"
    _run(store, "d", {}, model="demo", params_b=0.135)
    assert store.get_run("d")["model"] == DEMO_NAME  # the store records the canonical name


def test_a_model_folder_is_one_model_whichever_folder_it_was_named_from(tmp_path, monkeypatch):
    from engine.record.model_names import canonical_model, same_model

    (tmp_path / "work" / "my-model").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert canonical_model("./my-model") == canonical_model("my-model") == str(tmp_path / "work" / "my-model")
    store = RunStore(tmp_path / "runs.sqlite")
    _run(store, "r1", {"base": 0.1}, model="./my-model")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert store.get_run("r1")["model"] == str(tmp_path / "work" / "my-model")
    assert same_model("../work/my-model", "./../work/my-model/")
    assert canonical_model("tiny") == "tiny" and canonical_model("./no-such-folder") == "./no-such-folder"
    assert canonical_model("demo") == "SmolLM2-135M-Instruct"
