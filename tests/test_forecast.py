"""`engine forecast`, `engine run --dry-run` and the refusal of a run that will not fit: the real
engine on the tiny model, calibrating this machine in a test's own home folder."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from engine.record.compute import (BUSY_CORES, calibration_note, checkpoints_saved, forecast_stages, shortfall,
                                   training_steps)
from runner import TINY, engine, events, json_out, of_type, with_tiny

SMALL = ["--eval-size", "8", "--eval-max-new-tokens", "8", "--epochs", "1"]
PLAN = [*TINY, "--n-sft", "8", "--n-pft", "8", *SMALL]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A home whose machine is calibrated for PLAN, and the forecast that did it."""
    home = tmp_path_factory.mktemp("forecast-home")
    return home, json_out(engine(home, "forecast", *PLAN, "--json", "--gpu-hour-price", "2"))


def test_the_forecast_has_every_stage_with_its_source(calibrated):
    _, figures = calibrated
    assert set(figures) == {"device", "threads", "stages", "total_seconds", "total_seconds_at_cap",
                            "peak_memory_bytes", "gpu_hours", "money", "calibration"}
    assert set(figures["calibration"]) == {"seconds", "other_cores", "cores"} and figures["calibration"]["seconds"] > 0
    assert figures["calibration"]["other_cores"] >= 0 and figures["calibration"]["cores"] == len(os.sched_getaffinity(0))
    assert (figures["device"], figures["threads"]) == ("cpu", 1)
    assert list(figures["stages"]) == ["base_eval", "sft", "sft_eval", "dpo", "dpo_eval"]
    for stage, figure in figures["stages"].items():
        assert set(figure) - {"seconds_at_cap"} == {"seconds", "peak_memory_bytes", "source"}
        assert "seconds_at_cap" not in figure or (stage in ("sft_eval", "dpo_eval")
                                                    and figure["seconds_at_cap"] > figure["seconds"])
        assert figure["seconds"] > 0 and figure["peak_memory_bytes"] > 50 * 2**20  # a torch process's RSS
        assert figure["source"].startswith("calibration")
        assert ("data token lengths" in figure["source"]) == (stage in ("sft", "dpo"))
    assert figures["total_seconds"] == pytest.approx(sum(f["seconds"] for f in figures["stages"].values()), abs=0.01)
    assert figures["total_seconds_at_cap"] == pytest.approx(
        sum(f.get("seconds_at_cap", f["seconds"]) for f in figures["stages"].values()), abs=0.01)
    assert figures["peak_memory_bytes"] == max(f["peak_memory_bytes"] for f in figures["stages"].values())
    assert figures["money"] == pytest.approx(2 * figures["gpu_hours"])
    assert figures["gpu_hours"] == pytest.approx(figures["total_seconds"] / 3600)


def test_the_dpo_evaluation_is_forecast_from_the_sft_evaluations_measurement(calibrated):
    """Both policies are the base model with the same LoRA shape: the calibration times one."""
    home, figures = calibrated
    (cache,) = (home / "calibration").glob("*.json")
    measured = json.loads(cache.read_text())["stages"]
    assert measured["dpo_eval"] == measured["sft_eval"] and measured["sft_eval"]["measured_as"] == "sft_eval"
    sft_eval, dpo_eval = figures["stages"]["sft_eval"], figures["stages"]["dpo_eval"]
    assert dpo_eval["source"].startswith("calibration of the SFT evaluation + ") and " of " not in sft_eval["source"]
    assert (dpo_eval["seconds"], dpo_eval["peak_memory_bytes"]) == (sft_eval["seconds"], sft_eval["peak_memory_bytes"])
    assert len(list((home / "models" / "nf4").iterdir())) == 1  # the 4-bit copy the run will load


def test_cached_only_never_calibrates(tmp_path, calibrated):
    fresh = engine(tmp_path, "forecast", *PLAN, "--json", "--cached-only")
    assert fresh.returncode == 2 and fresh.stdout == ""
    assert fresh.stderr.count("\n") == 1 and "no calibration of this plan on this machine yet" in fresh.stderr
    assert not (tmp_path / "calibration").exists()
    home, figures = calibrated
    assert json_out(engine(home, "forecast", *PLAN, "--json", "--cached-only", "--gpu-hour-price", "2")) == figures


def test_a_damaged_calibration_is_never_read(calibrated, monkeypatch):
    """A cached calibration missing a figure, or holding a word or a negative number where one
    goes (a damaged or hand-edited file), is not read: --cached-only says there is none (one line,
    exit 2) and a forecast would make it again — never a traceback."""
    from engine.training import calibrate

    home, _ = calibrated
    monkeypatch.setenv("BUDGETTUI_HOME", str(home))
    (cache,) = (home / "calibration").glob("*.json")
    kept = cache.read_text()
    stored = json.loads(kept)
    assert calibrate.cached(stored["key"]) == stored
    stages, sft = stored["stages"], stored["stages"]["sft"]
    damages = [{"stages": {}}, {"calibration_seconds": None}, {"other_cores": "busy"},
               {"stages": stages | {"sft": sft | {"seconds_per_token": "fast"}}},
               {"stages": stages | {"sft": sft | {"setup_seconds": -1.0}}},
               {"stages": stages | {"dpo": {key: value for key, value in stages["dpo"].items() if key != "load_seconds"}}},
               {"stages": stages | {"sft_eval": {"peak_memory_bytes": 1}}}]
    try:
        for damage in damages:
            cache.write_text(json.dumps(stored | damage))
            assert calibrate.cached(stored["key"]) is None, damage
        said = engine(home, "forecast", *PLAN, "--cached-only")
        assert said.returncode == 2 and said.stderr.count("\n") == 1
        assert "no calibration of this plan on this machine yet" in said.stderr
    finally:
        cache.write_text(kept)


def test_a_calibration_folder_that_cannot_be_made_is_one_line_before_any_step(tmp_path):
    (tmp_path / "calibration").write_text("not a folder")
    said = engine(tmp_path, "forecast", *PLAN)
    assert said.returncode == 2 and said.stdout == "" and said.stderr.count("\n") == 1
    assert f"cannot keep calibrations in {tmp_path / 'calibration'}: it is a file, not a folder" in said.stderr
    assert not (tmp_path / "models" / "nf4").exists()  # refused before the model's 4-bit copy was made


def test_a_calibration_made_with_kept_4bit_copies_does_not_stand_for_loads_without_them(calibrated, monkeypatch):
    """With BUDGETTUI_KEEP_4BIT=0 every load quantises: the loads the calibration timed are not those."""
    home, _ = calibrated
    monkeypatch.setenv("BUDGETTUI_KEEP_4BIT", "0")
    without = engine(home, "forecast", *PLAN, "--json", "--cached-only")
    assert without.returncode == 2 and "no calibration of this plan on this machine yet" in without.stderr


def test_a_calibration_timed_on_a_busy_machine_is_flagged_kept_out_of_history_and_replaced(tmp_path):
    """Its forecast is long by the cores other work took: the engine says so, a run launched on it
    records no forecast for `× history` to learn from (and, made while the cores are busy, says
    which stages other work slowed), and --recalibrate makes a new one."""
    from engine.record.store import RunStore
    from engine.training import meter

    plan = [*TINY, "--n-sft", "4", "--n-pft", "0", *SMALL]
    first = engine(tmp_path, "forecast", *plan)
    assert first.returncode == 0 and re.search(r"calibration took \d+\.\d s, just now", first.stdout)
    (cache,) = (tmp_path / "calibration").glob("*.json")
    stored = json.loads(cache.read_text())
    made = stored["created"]
    cache.write_text(json.dumps(stored | {"other_cores": 1.9, "cores": 2}))  # as if timed on a busy machine
    said = engine(tmp_path, "forecast", *plan, "--cached-only")
    assert said.returncode == 0 and ("calibrated while other work took 1.9 of this machine's 2 cores: these times may "
                                     "be long — `engine forecast --recalibrate` when it is quieter") in " ".join(
                                         said.stdout.split())  # the console wraps it at its width
    assert time.strftime("cached from %Y-%m-%d %H:%M", time.localtime(made)) in said.stdout
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(meter.cores() + 1)]
    try:
        outcome = json_out(engine(tmp_path, "run", *plan, "--json"))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    rows = RunStore(tmp_path / "runs.sqlite").metrics(outcome["run_id"])
    names = {row["name"] for row in rows}
    assert "stage_seconds" in names and "forecast_seconds" not in names
    slowed = {row["stage"] for row in rows if row["name"] == "other_cores" and row["value"] >= BUSY_CORES}
    warned = " ".join(e["message"] for e in of_type(events(tmp_path, outcome["run_id"]), "warning"))
    assert "sft" in slowed and "sft ran while other work took" in warned  # its one thread had no core of its own
    again = json_out(engine(tmp_path, "forecast", *plan, "--json", "--recalibrate"))
    assert [cache] == list((tmp_path / "calibration").glob("*.json")) and json.loads(cache.read_text())["created"] > made
    assert not any("history" in figure["source"] for figure in again["stages"].values())
    both = engine(tmp_path, "forecast", *plan, "--recalibrate", "--cached-only")
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "not allowed with" in both.stderr


def test_other_work_counts_the_cores_other_processes_took_and_not_this_ones():
    from engine.training import meter

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(meter.cores())]
    try:
        time.sleep(0.3)
        with meter.other_work() as busy:
            time.sleep(1.0)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    with meter.other_work() as own:
        started = time.perf_counter()
        while time.perf_counter() - started < 1.0:
            pass
    assert busy.cores > 0.5 * meter.cores() and own.cores < 0.5


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2, reason="needs two cores")
def test_other_work_leaves_out_cores_this_process_may_not_run_on():
    from engine.training import meter

    allowed = os.sched_getaffinity(0)  # under `pytest -n 2` a worker has one core; its neighbour, the other
    ours = min(allowed)
    theirs = min(set(range(os.cpu_count())) - {ours})
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(burner.pid, {theirs})
        os.sched_setaffinity(0, {ours})
        time.sleep(0.3)
        with meter.other_work() as elsewhere:
            time.sleep(1.0)
        os.sched_setaffinity(burner.pid, {ours})
        time.sleep(0.3)
        with meter.other_work() as here:
            time.sleep(1.0)
    finally:
        os.sched_setaffinity(0, allowed)
        burner.kill()
        burner.wait()
    assert elsewhere.cores < 0.3 and here.cores > 0.7


def test_a_calibration_timed_while_other_work_took_the_cores_is_flagged():
    def figures(threads, other, cores=2):
        return {"threads": threads, "calibration": {"seconds": 30.0, "other_cores": other, "cores": cores}}

    note = calibration_note(figures(2, 1.5), again="`engine forecast --recalibrate`")
    assert note == ("calibrated while other work took 1.5 of this machine's 2 cores: these times may be long — "
                    "`engine forecast --recalibrate` when it is quieter")
    assert calibration_note(figures(2, 0.3), "x") is None  # a little other work: noise
    assert calibration_note(figures(1, 0.9), "x") is None  # one thread had a core to itself
    assert calibration_note(figures(1, 1.2), "x") is not None
    assert calibration_note(figures(2, None), "x") is None and calibration_note({"threads": 2}, "x") is None


def test_a_second_forecast_reuses_the_cached_calibration(calibrated):
    home, first = calibrated
    cache = list((home / "calibration").glob("*.json"))
    assert len(cache) == 1
    before = cache[0].read_text()
    again = json_out(engine(home, "forecast", *PLAN, "--json", "--gpu-hour-price", "2"))
    assert again == first and cache[0].read_text() == before
    assert json.loads(before)["key"]["model"].endswith("tiny")


def test_dry_run_prints_the_forecast_and_creates_no_run(calibrated):
    home, first = calibrated
    done = engine(home, "run", *PLAN, "--dry-run", "--json", "--gpu-hour-price", "2")
    assert json_out(done) == first
    assert not (home / "runs").exists() and not (home / "runs.sqlite").exists()


@pytest.mark.parametrize("command", ["forecast", "run"])
def test_a_run_that_will_not_fit_is_refused_naming_the_fix(calibrated, command):
    home, figures = calibrated
    limit = figures["peak_memory_bytes"] // 2
    done = engine(home, command, *PLAN, "--memory-limit", str(limit))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "the run needs about" in lines[0] and "GiB is available" in lines[0]
    assert "--batch-size" in lines[0] or "--max-length" in lines[0] or "does not fit" in lines[0]
    assert not (home / "runs").exists() and _recorded_runs(home) == []


@pytest.mark.parametrize("command", ["forecast", "run"])
def test_a_model_whose_weights_cannot_fit_is_refused_before_it_loads(calibrated, command):
    """A plan with no calibration yet: the check counts the model's parameters on its config alone
    and refuses before the calibration (or the run) loads the weights."""
    from safetensors.torch import load_file

    home, _ = calibrated
    before = sorted((home / "calibration").iterdir())
    done = engine(home, command, *TINY, "--n-sft", "4", "--n-pft", "0", *SMALL, "--memory-limit", "1000")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    weights = load_file(next((home / "models" / "tiny").glob("*.safetensors")))
    stored = sum(t.numel() for t in weights.values())
    assert "the model's weights alone need at least" in lines[0] and "but 0.00 GiB is available" in lines[0]
    assert f"({stored:,} parameters, counted from its config)" in lines[0]
    assert sorted((home / "calibration").iterdir()) == before and not (home / "runs").exists()


def _recorded_runs(home) -> list:
    from engine.record.store import RunStore

    return RunStore(home / "runs.sqlite").list_runs() if (home / "runs.sqlite").exists() else []


def test_an_sft_only_run_forecasts_no_dpo_stage(tmp_path):
    figures = json_out(engine(tmp_path, "forecast", *TINY, "--n-sft", "8", "--n-pft", "0", *SMALL, "--json"))
    assert list(figures["stages"]) == ["base_eval", "sft", "sft_eval"] and figures["money"] is None


def test_a_bad_memory_limit_is_one_line():
    done = engine(__import__("pathlib").Path("/nonexistent-home"), "forecast", *PLAN, "--memory-limit", "lots")
    assert done.returncode == 2 and "not a memory size" in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.slow
def test_a_run_records_each_stage_and_the_next_forecast_learns_from_it(calibrated):
    from engine.record.store import RunStore

    home, figures = calibrated
    outcome = json_out(engine(home, "run", *PLAN, "--json"))
    started = of_type(events(home, outcome["run_id"]), "run_started")[0]
    assert (started["threads"], started["device"]) == (1, "cpu") and started["config"]["threads"] == 1
    assert started["forecast"] == figures | {"money": None, "gpu_hours": figures["gpu_hours"]}
    rows = RunStore(home / "runs.sqlite").metrics(outcome["run_id"])
    for stage in figures["stages"]:
        named = {row["name"]: row["value"] for row in rows if row["stage"] == stage}
        assert named["stage_seconds"] > 0 and named["peak_memory_bytes"] > 50 * 2**20
        assert named["forecast_seconds"] == figures["stages"][stage]["seconds"]
        assert 0 <= named["other_cores"] <= 2 * os.cpu_count()  # the cores other work took while it ran
    refined = json_out(engine(home, "forecast", *PLAN, "--json"))
    for stage, figure in refined["stages"].items():
        assert figure["source"].endswith("× history (1 finished run)")
        measured = {row["name"]: row["value"] for row in rows if row["stage"] == stage}
        # forecasts are stored and given to the millisecond: two roundings on a stage of a few ms
        assert figure["seconds"] == pytest.approx(measured["stage_seconds"], rel=0.01, abs=0.0015)



@pytest.mark.slow
def test_evaluations_are_forecast_where_the_base_models_answers_end(calibrated):
    """The calibration answers the first evaluation batch in full: the batch's new tokens are the
    longest answer the run's base evaluation then writes for it, and every evaluation is forecast
    at that length. (The tiny model's first three answers end after 10–26 of 96 tokens.)"""
    home, _ = calibrated
    plan = [*TINY, "--n-sft", "4", "--n-pft", "0", "--eval-size", "3", "--eval-max-new-tokens", "96", "--epochs", "1"]
    before = set((home / "calibration").glob("*.json"))
    figures = json_out(engine(home, "forecast", *plan, "--json"))
    (cache,) = set((home / "calibration").glob("*.json")) - before
    measured = json.loads(cache.read_text())["stages"]
    answer = measured["base_eval"]["answer_tokens"]
    assert "base answer length" in figures["stages"]["sft_eval"]["source"]
    # a trained model may write on to the cap: one batch of 3, (96 - answer) more tokens at the decode rate
    # the trained model's rate, timed over its first tokens, slows as the base model's did over its answers
    base = measured["base_eval"]
    growth = base["decode_seconds_per_token"] / base["early_decode_seconds_per_token"]
    figure = figures["stages"]["sft_eval"]
    assert figure["seconds_at_cap"] - figure["seconds"] == pytest.approx(
        (96 - answer) * measured["sft_eval"]["decode_seconds_per_token"] * growth, abs=0.002)
    assert "seconds_at_cap" not in figures["stages"]["base_eval"]  # the base model's answers are measured
    shown = engine(home, "forecast", *plan, "--cached-only").stdout
    assert re.search(r"SFT evaluation +│ +[\d.]+ s │.*\n│ +│ +[\d.]+ s at cap │", shown), shown
    outcome = json_out(engine(home, "run", *plan, "--json"))
    written = (home / "runs" / outcome["run_id"] / "evals" / "base.jsonl").read_text().splitlines()
    assert answer == max(json.loads(line)["tokens"] for line in written) < 96



def test_base_answers_still_going_when_their_decode_is_timed_are_forecast_to_the_cap(tmp_path, monkeypatch):
    """The calibration decodes the base model's batch for DECODE_SECONDS at most (here none past
    2 × DECODE_TOKENS + 1 tokens): answers still going then are forecast to run to the cap, and
    the generation cache of the tokens not decoded is added to the measured peak."""
    from engine.record import config
    from engine.training import calibrate, forecast
    from engine.training.train import build_plan

    with_tiny(tmp_path, ["tiny"])
    monkeypatch.setenv("BUDGETTUI_HOME", str(tmp_path))
    monkeypatch.setattr(calibrate, "DECODE_SECONDS", 0.0)
    plan, _ = build_plan(config.build(None, {"task": "gsm8k_math", "model": "tiny", "n_sft": 4, "n_pft": 0,
                                             "eval_size": 8, "eval_batch_size": 8, "eval_max_new_tokens": 96}))
    figures = forecast.forecast(plan).as_dict()["stages"]["base_eval"]
    (cache,) = (tmp_path / "calibration").glob("*.json")
    base = json.loads(cache.read_text())["stages"]["base_eval"]
    assert (base["decoded_tokens"], base["answer_tokens"]) == (2 * calibrate.DECODE_TOKENS + 1, 96)
    assert figures["source"] == ("calibration + answers unfinished after 17 tokens, forecast to the cap "
                                 "+ model config (KV cache)")
    decode = base["prefill_seconds"] + 95 * base["decode_seconds_per_token"]  # 96 tokens: the first is the prefill's
    assert figures["seconds"] == pytest.approx(base["load_seconds"] + base["warmup_seconds"] + decode, abs=0.002)
    cache_bytes = forecast._kv_bytes_per_token(plan.spec.path) * 8 * (96 - 17)
    assert figures["peak_memory_bytes"] == pytest.approx(base["peak_memory_bytes"] + cache_bytes, abs=1)


def test_token_lengths_without_a_trainer_are_the_trainers(calibrated, tmp_path, monkeypatch):
    """A plan the calibration did not train on is forecast from lengths tokenised without a
    trainer: they must be the ones TRL's trainers tokenise (chat template, end-of-turn token)."""
    from engine.record import config
    from engine.training import stages
    from engine.training.calibrate import token_lengths
    from engine.training.train import BaseModels, build_plan

    monkeypatch.setenv("BUDGETTUI_HOME", str(calibrated[0]))  # its tiny model is built already
    seen = {}
    for max_length in (1024, 256, 120):
        plan, _ = build_plan(config.build(None, {"task": "gsm8k_math", "model": "tiny", "n_sft": 12, "n_pft": 12,
                                                 "max_length": max_length}))
        models = BaseModels(plan, lambda message: None)
        sft = stages.sft_trainer(plan.config, models.fresh(), models.tokenizer, plan.splits.sft, tmp_path / "s", [])
        dpo = stages.dpo_trainer(plan.config, models.fresh(), models.tokenizer, plan.splits.pft, tmp_path / "d", [])
        for stage, trainer, examples in (("sft", sft, plan.splits.sft), ("dpo", dpo, plan.splits.pft)):
            expected = _trainers_lengths(trainer.train_dataset, stage, max_length)
            counted = token_lengths(models.tokenizer, examples, stage, max_length)
            assert [n for n in counted if n is not None] == expected
            seen[stage, max_length] = expected
    assert max(seen["sft", 1024]) > 256 and max(seen["dpo", 1024]) > 256 and 256 in seen["dpo", 256]  # cut
    assert 0 < len(seen["sft", 120]) < 12  # prompts alone filling max_length are dropped


def _trainers_lengths(dataset, stage: str, max_length: int) -> list[int]:
    """Each example's tokens as the trainer tokenised it, cut at max_length; for a pair the longer
    of prompt+chosen and prompt+rejected (both are padded to it)."""
    if stage == "sft":
        return [min(len(ids), max_length) for ids in dataset["input_ids"]]
    return [min(max_length, len(p) + max(len(c), len(r)))
            for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]


def test_another_split_of_the_same_stages_reuses_the_calibration(calibrated):
    """Only the split differs: no new calibration, the same evaluations, and training stages that
    grow with the data — while a plan with other stages needs its own calibration."""
    home, _ = calibrated
    cached = sorted((home / "calibration").glob("*.json"))
    first = json_out(engine(home, "forecast", *PLAN, "--json", "--cached-only"))  # history may scale both
    bigger = [*TINY, "--n-sft", "32", "--n-pft", "24", *SMALL]
    again = json_out(engine(home, "forecast", *bigger, "--json", "--cached-only"))
    assert sorted((home / "calibration").glob("*.json")) == cached
    for stage in ("base_eval", "sft_eval", "dpo_eval"):
        assert again["stages"][stage] == first["stages"][stage]
    for stage in ("sft", "dpo"):
        assert again["stages"][stage]["seconds"] > 1.5 * first["stages"][stage]["seconds"]
        assert again["stages"][stage]["peak_memory_bytes"] >= first["stages"][stage]["peak_memory_bytes"]
    other = engine(home, "forecast", *TINY, "--n-sft", "8", "--n-pft", "0", *SMALL, "--json", "--cached-only")
    assert other.returncode == 2 and "no calibration of this plan" in other.stderr



def test_a_model_that_loads_with_warnings_is_calibrated(calibrated, tmp_path):
    """A tokenizer without a chat template gets plain ChatML and a warning when it loads: the
    calibration loads it too (it was a TypeError there), and leaves the warning to the run."""
    import shutil

    home, _ = calibrated
    model = tmp_path / "no-template"
    shutil.copytree(home / "models" / "tiny", model)
    (model / "chat_template.jinja").unlink()
    done = engine(home, "forecast", "--task", "gsm8k_math", "--model", str(model), "--n-sft", "8", "--n-pft", "0",
                  *SMALL, "--json")
    assert done.returncode == 0 and done.stderr == ""
    assert list(json_out(done)["stages"]) == ["base_eval", "sft", "sft_eval"]


def test_a_plan_whose_prompts_fill_max_length_is_refused_before_calibrating(calibrated):
    home, _ = calibrated
    cached = sorted((home / "calibration").glob("*.json"))
    done = engine(home, "forecast", *TINY, "--n-sft", "8", "--n-pft", "8", "--max-length", "80")
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "engine: error: every DPO example's prompt fills max_length 80 (the trainer would keep none): "
        "raise max_length or shorten the prompts"]
    assert sorted((home / "calibration").glob("*.json")) == cached


def test_a_step_line_takes_its_slope_only_from_shapes_far_enough_apart():
    from engine.training.calibrate import step_line

    # demo-a's SFT steps (BENCHMARKS): 241 and 112 tokens, a slope the seconds can show
    per_batch, per_token = step_line((2.22, 241), (0.85, 112))
    assert per_token == pytest.approx(1.37 / 129) and per_batch == 0.0  # the line would cross below zero
    per_batch, per_token = step_line((2.0, 200), (1.2, 100))
    assert (per_batch, per_token) == pytest.approx((0.4, 0.008))
    # two pairs of 168 and 166 tokens whose steps took 2.64 and 2.24 s (a data set of one template):
    # the 0.4 s between them is noise, and a slope through it forecast one step at 33 s
    assert step_line((2.64, 168), (2.24, 166)) == pytest.approx((0.0, 2.64 / 168))
    assert step_line((1.24, 84), (1.61, 83)) == pytest.approx((0.0, 1.24 / 84))  # the longer took less
    assert step_line((1.0, 50), (1.0, 50)) == pytest.approx((0.0, 0.02))  # a stage of one example


def test_a_row_cut_to_half_keeps_an_answer_to_train_on():
    """Prompt tokens go first, from the start; then the answer's last ones; one of each stays."""
    from engine.training.calibrate import cut_to_half

    sft = {"prompt": [{"role": "user", "content": "q"}], "input_ids": list(range(10)),
           "labels": [-100] * 6 + [6, 7, 8, 9]}
    assert cut_to_half(sft) == sft | {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, 8, 9]}
    long_answer = {"input_ids": list(range(10)), "labels": [-100] * 2 + list(range(2, 10))}
    assert cut_to_half(long_answer) == {"input_ids": [2, 3, 4, 5, 6], "labels": [2, 3, 4, 5, 6]}
    pair = {"prompt_ids": list(range(8)), "chosen_ids": [8, 9], "rejected_ids": [8, 9, 10, 11]}
    assert cut_to_half(pair) == {"prompt_ids": [6, 7], "chosen_ids": [8, 9], "rejected_ids": [8, 9, 10, 11]}
    short_prompt = {"prompt_ids": [0, 1], "chosen_ids": list(range(2, 10)), "rejected_ids": [2, 3]}
    assert cut_to_half(short_prompt) == {"prompt_ids": [1], "chosen_ids": [2, 3, 4, 5], "rejected_ids": [2, 3]}


def test_a_task_of_one_length_is_calibrated_on_its_longest_example_cut_to_half(tmp_path):
    """Every example within a token of the others (a task written from one template): the
    calibration's second shape is the longest example at half its tokens, so the steps' line has
    two shapes far enough apart to tell a step's fixed cost from its cost per token."""
    def ask(a, b):
        return f"What is {a} plus {b}? Answer with the sum."

    sums = [(10 + i, 50 + i) for i in range(40)]
    files = {"sft.jsonl": [{"prompt": ask(a, b), "completion": f"The sum is {a + b}."} for a, b in sums[:20]],
             "pairs.jsonl": [{"prompt": ask(a, b), "chosen": f"The sum is {a + b}.",
                              "rejected": f"The sum is {a + b + 10}."} for a, b in sums[20:]],
             "eval.jsonl": [{"prompt": ask(a, b), "completion": f"The sum is {a + b}."} for a, b in sums[:8]]}
    for name, rows in files.items():
        (tmp_path / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    json_out(engine(tmp_path, "forecast", *TINY, "--task", "sums", "--sft-file", str(tmp_path / "sft.jsonl"),
                    "--pft-file", str(tmp_path / "pairs.jsonl"), "--eval-file", str(tmp_path / "eval.jsonl"),
                    "--metric", "exact_match", "--n-sft", "8", "--n-pft", "8", *SMALL, "--json"))
    (cache,) = (tmp_path / "calibration").glob("*.json")
    stages = json.loads(cache.read_text())["stages"]
    for stage in ("sft", "dpo"):
        tokens, rows = [t for _, t in stages[stage]["calibration_steps"]], stages[stage]["rows_per_example"]
        assert set(tokens[::2]) == {tokens[0]} and tokens[1::2] == [rows * (tokens[0] // rows // 2)] * len(tokens[1::2])


def test_stages_follow_the_split():
    assert forecast_stages(4, 0) == ["base_eval", "sft", "sft_eval"]
    assert forecast_stages(0, 4) == ["base_eval", "dpo", "dpo_eval"]


def test_steps_follow_the_trainers_schedule():
    lengths = [10] * 7 + [100]
    steps = training_steps(lengths, batch_size=4, grad_accum=1, epochs=2, max_steps=None, seed=0)
    assert len(steps) == 4 and [batch for step in steps for batch in step].count(100) == 2  # one padded batch an epoch
    assert len(training_steps(lengths, batch_size=4, grad_accum=1, epochs=1, max_steps=5, seed=0)) == 5
    steps = training_steps(lengths, batch_size=2, grad_accum=4, epochs=1.5, max_steps=None, seed=0)
    assert [len(step) for step in steps] == [4, 4]
    assert [len(step) for step in training_steps(lengths, batch_size=2, grad_accum=3, epochs=1, max_steps=None,
                                                  seed=0)] == [3, 1]  # an epoch's last step holds what is left


def test_a_checkpoint_every_n_steps_and_one_at_the_end():
    assert [checkpoints_saved(steps, 50) for steps in (0, 1, 50, 51, 125)] == [0, 1, 1, 2, 3]


def test_the_shortfall_names_a_batch_that_fits():
    figures = {"peak_memory_bytes": 10 * 2**30, "stages": {"sft": {"seconds": 1, "peak_memory_bytes": 10 * 2**30,
                                                                     "source": "calibration"}}}
    line = shortfall(figures, 6 * 2**30, fixed_bytes={"sft": 2 * 2**30}, batch_size=8, max_length=1024,
                     longest={"sft": 512}, quant="none")
    assert line == ("the run needs about 10.00 GiB at its peak (SFT) but 6.00 GiB is available; use a smaller "
                    "batch (--batch-size 4) or a shorter max length (--max-length 256) or 4-bit weights (--quant 4bit)")
    fits = shortfall(figures, 11 * 2**30, fixed_bytes={}, batch_size=8, max_length=1024, longest={}, quant="4bit")
    assert fits is None


@pytest.mark.slow
def test_advise_adds_the_recommended_runs_forecast_to_its_compute_block(tmp_path):
    advice = json_out(engine(tmp_path, "advise", "--task", "gsm8k_math", "--model", "tiny", "--params-b", "0.0001",
                             "--budget", "12", "--sft-cost", "1", "--pft-cost", "0.5", "--forecast", "--json"))
    figures = advice["compute"]["forecast"]
    assert list(figures["stages"]) == forecast_stages(advice["n_sft"], advice["n_pft"])
    assert figures["device"] == "cpu" and figures["total_seconds"] > 0


def test_the_store_gives_each_stages_measurement_and_forecast_of_finished_runs(tmp_path):
    from engine.record.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    for run_id, status in (("done", "finished"), ("broke", "failed")):
        store.create_run(run_id, task="gsm8k_math", model="tiny", params_b=None, n_sft=8, n_pft=0,
                         config={"threads": 2}, run_dir=str(tmp_path / run_id), pid=1)
        for name, value in (("forecast_seconds", 10.0), ("stage_seconds", 12.5), ("peak_memory_bytes", 2**30)):
            store.add_metric(run_id, "sft", name, value)
        store.finish_run(run_id, status=status, score=None, metric=None, results={})
    assert store.stage_measurements("tiny", 2) == [
        {"run_id": "done", "stage": "sft", "stage_seconds": 12.5, "peak_memory_bytes": 2**30,
         "forecast_seconds": 10.0, "forecast_peak_memory_bytes": 0.0, "other_cores": None}]
    assert store.stage_measurements("tiny", 1) == [] and store.stage_measurements("demo", 2) == []
    # a run records the demo model under its canonical name; a forecast asks for it as the user typed it
    store.create_run("demo-run", task="gsm8k_math", model="SmolLM2-135M-Instruct", params_b=0.135, n_sft=8,
                     n_pft=0, config={"threads": 2}, run_dir=str(tmp_path / "demo-run"), pid=1)
    store.add_metric("demo-run", "sft", "stage_seconds", 30.0)
    store.finish_run("demo-run", status="finished", score=None, metric=None, results={})
    assert [row["run_id"] for row in store.stage_measurements("demo", 2)] == ["demo-run"]
    assert store.seconds_per_example("demo") == store.seconds_per_example("SmolLM2-135M-Instruct")


def test_history_leaves_out_a_stage_that_ran_while_other_work_took_its_cores(tmp_path, monkeypatch):
    """A run slowed by other work is not this machine's bias: `× history` learns from the quiet run only."""
    from engine.record.store import RunStore
    from engine.training import meter
    from engine.training.forecast import _history

    monkeypatch.setenv("BUDGETTUI_HOME", str(tmp_path))
    store = RunStore()
    for run_id, measured, other in (("quiet", 12.0, 0.02), ("busy", 40.0, float(meter.cores())), ("old", 13.0, None)):
        store.create_run(run_id, task="gsm8k_math", model="tiny", params_b=None, n_sft=8, n_pft=0,
                         config={"threads": 2}, run_dir=str(tmp_path / run_id), pid=1)
        for name, value in (("forecast_seconds", 10.0), ("stage_seconds", measured), ("peak_memory_bytes", 2**30),
                            ("forecast_peak_memory_bytes", 2**30), ("other_cores", other)):
            if value is not None:  # a run recorded before other work was: no row
                store.add_metric(run_id, "sft", name, value)
        store.finish_run(run_id, status="finished", score=None, metric=None, results={})
    assert _history("tiny", 2) == {"sft": {"seconds": pytest.approx(1.25), "memory": 1.0, "runs": 2}}
