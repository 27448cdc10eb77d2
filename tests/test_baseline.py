"""`engine baseline`: the base model scored on the held-out split, recorded as an ordinary run
with nothing trained — the (0, 0) point the advisor fits on; and a model the store knows needs
no --params-b."""

import os
import signal

import pytest

from engine.record.events import problems
from runner import TINY, engine, events, folder, json_out, of_type, start, wait_for_event

ADVISE = ["advise", "--task", "gsm8k_math", "--budget", "100", "--sft-cost", "1", "--pft-cost", "1", "--json"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    refused = engine(home, *ADVISE, "--model", "tiny")
    out = json_out(engine(home, "baseline", *TINY, "--eval-size", "4", "--run-id", "base1", "--json"))
    return home, out, refused


def test_it_evaluates_the_base_model_only_and_records_an_ordinary_run(measured):
    home, out, _ = measured
    assert out["status"] == "finished" and out["run_id"] == "base1"
    results = out["results"]
    assert set(results["scores"]) == {"base"} and results["score"] == results["scores"]["base"]
    assert (results["n_sft"], results["n_pft"], results["n_eval"], results["metric"]) == (0, 0, 4, "exact_match")
    evs = events(home, "base1")
    assert [e["type"] for e in evs if e["type"] != "warning"] == ["run_started", "eval", "run_finished"]
    assert of_type(evs, "eval")[0]["stage"] == "base" and of_type(evs, "eval")[0]["n"] == 4
    assert not of_type(evs, "warning", message="cold start")
    run = folder(home, "base1")
    assert (run / "results.json").is_file() and not (run / "sft").exists() and not (run / "dpo").exists()
    row = json_out(engine(home, "runs", "show", "base1", "--json"))
    assert (row["status"], row["n_sft"], row["n_pft"], row["model"]) == ("finished", 0, 0, "tiny")
    evaluation = [m for m in row["metrics"] if m["stage"] == "base"]
    assert [(m["name"], m["value"]) for m in evaluation] == [("exact_match", results["score"])]


def test_its_score_is_the_base_point_and_the_store_knows_the_models_size(measured):
    from engine.record.store import RunStore

    home, out, refused = measured
    assert refused.returncode == 2 and "--params-b is needed" in refused.stderr
    store = RunStore(home / "runs.sqlite")
    assert [(r.n_sft, r.n_pft, r.score, r.metric, r.source) for r in store.past_runs()] == [
        (0, 0, out["results"]["score"], "exact_match", "store:base1:base")]
    advice = json_out(engine(home, *ADVISE, "--model", "tiny"))  # no --params-b: the store measured it
    assert advice["params_b"] == pytest.approx(store.get_run("base1")["params_b"]) and advice["params_b"] > 0


def test_the_demo_model_needs_no_size_under_any_name(tmp_path):
    for name in ("demo", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        advice = json_out(engine(tmp_path, *ADVISE, "--model", name))
        assert advice["params_b"] == pytest.approx(0.135)


@pytest.mark.parametrize("args, problem", [
    (["--task", "nope", "--model", "tiny"], "unknown task 'nope'"),
    (["--task", "gsm8k_math", "--model", "tiny", "--n-sft", "4"], "unrecognized arguments: --n-sft"),
    (["--task", "gsm8k_math", "--model", "tiny", "--eval-size", "0"], "eval_size must be at least 1"),
    (["--model", "tiny"], "no task given"),
])
def test_bad_input_is_one_line_and_records_nothing(tmp_path, args, problem):
    result = engine(tmp_path, "baseline", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_a_stopped_baseline_is_resumed_to_its_score(tmp_path):
    proc = start(tmp_path, "baseline", *TINY, "--eval-size", "64", "--run-id", "cut")
    wait_for_event(tmp_path, "cut", proc, lambda e: e["type"] == "run_started")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr.read()
    assert json_out(engine(tmp_path, "runs", "show", "cut", "--json"))["status"] == "stopped"
    out = json_out(engine(tmp_path, "resume", "cut", "--json"))
    assert out["status"] == "finished" and set(out["results"]["scores"]) == {"base"}
    evs = events(tmp_path, "cut")
    assert [p for e in evs for p in problems(e)] == [] and not of_type(evs, "resumed")
    assert [e["status"] for e in of_type(evs, "run_finished")] == ["stopped", "finished"]
