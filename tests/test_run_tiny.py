"""`engine run` end to end on the tiny Llama in real 4-bit: the acceptance run, its folder, store
row and events; cold start on an unquantised base; and the errors that must not touch a run."""

import json
import os
import shutil
import signal
import struct

import pytest

from runner import TINY, engine, events, folder, json_out, of_type, start, wait_for_event

RUN_ID = "acceptance"


@pytest.fixture(scope="module")
def accepted(tmp_path_factory):
    """The README's smoke run, with `engine advise` asked before and after it."""
    home = tmp_path_factory.mktemp("home")
    advise = ["advise", "--task", "gsm8k_math", "--model", "tiny", "--params-b", "0.0001", "--budget", "100", "--sft-cost", "1",
              "--pft-cost", "1", "--json"]
    before = json_out(engine(home, *advise))["n_past_runs"]
    result = engine(home, "run", *TINY, "--n-sft", "32", "--n-pft", "32", "--run-id", RUN_ID, "--json")
    after = json_out(engine(home, *advise))["n_past_runs"]
    return {"home": home, "out": json_out(result), "past": (before, after),
            "events": events(home, RUN_ID)}


def test_finishes_with_scores_for_every_stage(accepted):
    """Its wall time is measured in bench/engine_vs_trl.py."""
    out = accepted["out"]
    assert out["run_id"] == RUN_ID and out["status"] == "finished"
    results = out["results"]
    assert set(results["scores"]) == {"base", "sft", "dpo"}
    assert results["metric"] == "exact_match" and results["score"] == results["scores"]["dpo"]
    assert (results["n_sft"], results["n_pft"]) == (32, 32)


def test_events_tell_the_whole_run(accepted):
    evs = accepted["events"]
    assert evs[0]["type"] == "run_started" and evs[-1]["type"] == "run_finished"
    assert evs[-1]["status"] == "finished" and evs[-1]["results"] == accepted["out"]["results"]
    assert [e["stage"] for e in of_type(evs, "stage_started")] == ["sft", "dpo"]
    assert [e["stage"] for e in of_type(evs, "eval")] == ["base", "sft", "dpo"]
    sft_logs = [e for e in of_type(evs, "log", stage="sft") if "loss" in e]
    dpo_logs = [e for e in of_type(evs, "log", stage="dpo") if "loss" in e]
    # 32 examples, effective batch 16, 2 epochs: 4 optimizer steps per stage, one log each
    assert [e["step"] for e in sft_logs] == [e["step"] for e in dpo_logs] == [1, 2, 3, 4]
    assert all("learning_rate" in e for e in sft_logs + dpo_logs)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "logps/chosen", "logps/rejected"):
        assert all(key in e for e in dpo_logs), key


def test_first_dpo_log_has_zero_margins(accepted):
    first = [e for e in of_type(accepted["events"], "log", stage="dpo") if "loss" in e][0]
    assert first["rewards/margins"] == first["rewards/chosen"] == first["rewards/rejected"] == 0.0
    assert first["loss"] == pytest.approx(0.6931471805599453, abs=1e-6)  # -log σ(0)


def test_quant_auto_trains_on_linear4bit_layers(accepted):
    started = of_type(accepted["events"], "stage_started")
    # tiny Llama: 2 layers × 7 projections, every one quantised to 4 bits in both stages
    assert [e["linear4bit_layers"] for e in started] == [14, 14]


def test_run_folder_holds_config_adapters_and_results(accepted):
    run = folder(accepted["home"], RUN_ID)
    config = json.loads((run / "config.json").read_text())
    assert config["n_sft"] == 32 and config["lora_r"] == 32 and config["quant"] == "auto"
    assert of_type(accepted["events"], "run_started")[0]["config"] == config
    for stage in ("sft", "dpo"):
        adapter = json.loads((run / stage / "adapter" / "adapter_config.json").read_text())
        assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (32, 32, 0.0)
        assert set(adapter["target_modules"]) == set(config["lora_targets"])
        checkpoint = run / stage / "checkpoints" / "checkpoint-4"
        assert (checkpoint / "complete.json").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert json.loads((run / "results.json").read_text()) == accepted["out"]["results"]
    # the libraries' noise lands here (bitsandbytes' gemm_4bit_forward line only on CPUs with AVX-512 BF16)
    assert "`is_gradient_checkpointing` is deprecated" in (run / "engine.log").read_text()


def test_store_lists_the_run_and_the_advisor_counts_it(accepted):
    listed = json_out(engine(accepted["home"], "runs", "list", "--json"))
    row = [r for r in listed if r["run_id"] == RUN_ID][0]
    assert row["status"] == "finished" and row["score"] == accepted["out"]["results"]["score"]
    assert (row["n_sft"], row["n_pft"], row["task"], row["model"]) == (32, 32, "gsm8k_math", "tiny")
    before, after = accepted["past"]
    assert after == before + 3  # its base, SFT and final evaluations: three measured points


def test_each_stage_records_its_measured_seconds_per_example(accepted):
    """What `--gpu-hour-price` forecasts GPU time from: the trainer's own runtime per example seen."""
    shown = json_out(engine(accepted["home"], "runs", "show", RUN_ID, "--json"))
    timing = {m["stage"]: m["value"] for m in shown["metrics"] if m["name"] == "seconds_per_example"}
    assert set(timing) == {"sft", "dpo"} and all(0 < value < 60 for value in timing.values())


def test_existing_run_id_is_refused_and_nothing_is_overwritten(accepted):
    run = folder(accepted["home"], RUN_ID)
    config, log = (run / "config.json").read_bytes(), (run / "events.jsonl").read_bytes()
    result = engine(accepted["home"], "run", *TINY, "--n-sft", "1", "--n-pft", "1", "--run-id", RUN_ID)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"engine: error: run {RUN_ID} already exists ({run}); "
                                                  "choose another --run-id"]
    assert (run / "config.json").read_bytes() == config and (run / "events.jsonl").read_bytes() == log


def test_resuming_a_finished_run_is_refused(accepted):
    result = engine(accepted["home"], "resume", RUN_ID)
    assert result.returncode == 2
    assert result.stderr.strip() == f"engine: error: run {RUN_ID} already finished; nothing to resume"


def test_cold_start_unquantised_and_a_reader_that_goes_away(tmp_path):
    """n_sft = 0: DPO straight on the base (with a warning), --quant none, and --events-stdout
    whose reader (a TUI) quits early: the run must still finish."""
    proc = start(tmp_path, "run", *TINY, "--n-sft", "0", "--n-pft", "8", "--quant", "none", "--max-steps", "2",
                 "--eval-size", "4", "--run-id", "cold", "--events-stdout", stdout=-1)
    first = json.loads(proc.stdout.readline())
    assert first["type"] == "run_started"
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    evs = events(tmp_path, "cold")
    assert "cold start" in of_type(evs, "warning")[0]["message"]
    assert [(e["stage"], e["linear4bit_layers"]) for e in of_type(evs, "stage_started")] == [("dpo", 0)]
    assert [e["stage"] for e in of_type(evs, "eval")] == ["base", "dpo"]
    assert evs[-1]["status"] == "finished" and set(evs[-1]["results"]["scores"]) == {"base", "dpo"}
    assert not (folder(tmp_path, "cold") / "sft").exists()


@pytest.mark.slow
def test_sigint_checkpoints_stops_and_resume_finishes(tmp_path):
    """The TUI's stop key: SIGINT to the run's process group mid-SFT."""
    args = ["run", *TINY, "--n-sft", "64", "--n-pft", "8", "--batch-size", "1", "--grad-accum", "1",
            "--checkpoint-every", "1000", "--eval-size", "4", "--run-id", "stopped"]
    proc = start(tmp_path, *args)
    wait_for_event(tmp_path, "stopped", proc, lambda e: e["type"] == "log" and e.get("step", 0) >= 2)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr.read()
    human = proc.stderr.read()  # human mode: progress and summary lines, no library noise
    assert "evaluating base on 4 held-out examples" in human and "run stopped stopped" in human
    assert "gemm_4bit_forward" not in human and "Warning" not in human
    evs = events(tmp_path, "stopped")
    saved = of_type(evs, "checkpoint", stage="sft")
    assert len(saved) == 1 and 2 <= saved[0]["step"] < 128  # saved on the stop, not on schedule
    assert evs[-1]["type"] == "run_finished" and evs[-1]["status"] == "stopped"
    assert json_out(engine(tmp_path, "runs", "show", "stopped", "--json"))["status"] == "stopped"

    out = json_out(engine(tmp_path, "resume", "stopped", "--json"))
    assert out["status"] == "finished" and set(out["results"]["scores"]) == {"base", "sft", "dpo"}
    resumed = of_type(events(tmp_path, "stopped"), "resumed")
    assert [(e["stage"], e["step"]) for e in resumed] == [("sft", saved[0]["step"])]


def test_budget_form_runs_the_advisors_split(tmp_path, tiny_spec):
    prices = ["--task", "gsm8k_math", "--model", "tiny", "--budget", "40", "--sft-cost", "1", "--pft-cost", "1"]
    advice = json_out(engine(tmp_path, "advise", *prices, "--params-b", repr(tiny_spec.params_b), "--json"))
    out = json_out(engine(tmp_path, "run", *prices, "--max-steps", "1", "--eval-size", "2", "--run-id", "b",
                          "--json"))
    config = json.loads((folder(tmp_path, "b") / "config.json").read_text())
    assert (config["n_sft"], config["n_pft"], config["budget"]) == (advice["n_sft"], advice["n_pft"], 40.0)
    assert (out["results"]["n_sft"], out["results"]["n_pft"]) == (advice["n_sft"], advice["n_pft"])
    started = of_type(events(tmp_path, "b"), "run_started")[0]
    assert started["advice"]["predicted_score"] == advice["predicted_score"]
    warned = [e["message"] for e in of_type(events(tmp_path, "b"), "warning")]
    assert all(message in warned for message in advice["warnings"])


def test_a_run_that_fails_is_recorded_failed_with_one_line(tmp_path, tiny_spec):
    """A model folder whose weights are cut short: the run is created, then fails loading them."""
    model = tmp_path / "cut-model"
    shutil.copytree(tiny_spec.path, model)
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    header = struct.unpack("<Q", data[:8])[0]
    weights.write_bytes(data[: 8 + header + 100])
    result = engine(tmp_path, "run", "--task", "gsm8k_math", "--model", str(model), "--n-sft", "4", "--n-pft", "4",
                    "--run-id", "cut", "--json")
    kind = {1: "internal", 2: "user"}[result.returncode]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("engine: error: run cut failed: ")
    if kind == "internal":
        log = folder(tmp_path, "cut") / "engine.log"
        assert line.endswith(f"(traceback in {log})") and "Traceback" in log.read_text()
    evs = events(tmp_path, "cut")
    [error] = of_type(evs, "error")
    assert error["kind"] == kind and error["message"] in line
    assert evs[-1]["type"] == "run_finished" and evs[-1]["status"] == "failed"
    row = json_out(engine(tmp_path, "runs", "show", "cut", "--json"))
    assert row["status"] == "failed" and row["error"] == error["message"]
    assert json.loads(result.stdout)["status"] == "failed"


def test_each_evaluation_saves_what_the_model_wrote(accepted):
    run = folder(accepted["home"], RUN_ID)
    for event in of_type(accepted["events"], "eval"):
        assert event["generations"] == f"evals/{event['stage']}.jsonl"
        rows = [json.loads(line) for line in (run / event["generations"]).read_text().splitlines()]
        assert len(rows) == event["n"]
        assert all(set(row) == {"prompt", "output", "reference", "score", "tokens"} for row in rows)
        assert all(1 <= row["tokens"] <= accepted["events"][0]["config"]["eval_max_new_tokens"] for row in rows)
        assert all("####" in row["reference"] and row["prompt"] for row in rows)
        assert sum(row["score"] for row in rows) / len(rows) == pytest.approx(event["value"])
