"""`engine advise`: JSON and human output, which past runs it fits on, one-line errors, and that
neither it nor the advisor library loads torch or textual."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parents[1]
GSM_LLAMA = ["--task", "gsm8k_math", "--model", "Llama-3.1-8B (base)"]
HEAVY_OR_UI = {"torch", "transformers", "trl", "peft", "bitsandbytes", "textual", "textual_plotext", "plotext"}


def advise_json(capsys, *args):
    assert main(["advise", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("budget, low, high", [(20000, 1e-9, 0.5), (100, 1.0, 1.0)])
def test_json_recommends_a_mix_at_20k_and_sft_only_at_100(home, capsys, budget, low, high):
    data = advise_json(capsys, *GSM_LLAMA, "--budget", str(budget), "--sft-cost", "1", "--pft-cost", "1")
    assert low <= data["sft_ratio"] <= high
    assert data["n_sft"] + data["n_pft"] == budget
    lo, hi = data["interval"]
    assert lo <= data["predicted_score"] <= hi
    assert {"sft_only", "rule_of_thumb"} <= set(data["baselines"])
    assert data["baselines"]["sft_only"]["n_sft"] == budget and data["warnings"] == []
    assert data["n_past_runs"] == 209 and data["params_b"] == 8.0


def test_the_evaluations_of_local_runs_join_the_past_runs(home, capsys):
    """A finished SFT-only run is two points; a failed one keeps its base evaluation (one point
    with the other's: the same base model); a run still going waits until it ends."""
    from engine.record.store import RunStore

    args = [*GSM_LLAMA, "--budget", "500", "--sft-cost", "1", "--pft-cost", "1"]
    before = advise_json(capsys, *args)["n_past_runs"]
    store = RunStore()
    score = dict(higher_is_better=True, lower=0.0, upper=1.0)
    for run_id, status, evals in (("done", "finished", {"base": 0.01, "sft": 0.02}), ("broken", "failed", {"base": 0.01}),
                                  ("live", "running", {"base": 0.01, "sft": 0.03})):
        store.create_run(run_id, task="gsm8k_math", model="SmolLM2-135M", params_b=0.135, n_sft=64, n_pft=0,
                         config={}, run_dir=str(home / "runs" / run_id), pid=1)
        for stage, value in evals.items():
            store.add_eval(run_id, stage, "exact_match", value, **score)
        if status != "running":
            store.finish_run(run_id, status=status, score=evals.get("sft"), metric="exact_match", results={})
    assert advise_json(capsys, *args)["n_past_runs"] == before + 2


def test_runs_flag_fits_on_exactly_those_files(home, tmp_path, capsys):
    path = tmp_path / "mine.csv"
    rows = ["task,model,params_b,n_sft,n_pft,score"] + [
        f"qa,m-1B,1,{s},{b - s},{0.2 + 0.05 * (b > 0) + 0.0001 * s + 0.00005 * (b - s):.4f}"
        for b in (0, 100, 1000) for s in sorted({b, b // 2, 0})]
    path.write_text("\n".join(rows) + "\n")
    data = advise_json(capsys, "--task", "qa", "--model", "m-1B", "--budget", "200", "--sft-cost", "1",
                       "--pft-cost", "1", "--runs", str(path), "--ratios", "1,0.5,0")
    assert data["n_past_runs"] == len(rows) - 1
    assert data["sft_ratio"] in (1.0, 0.5, 0.0)


def test_human_output_has_the_table_the_count_and_the_plot(home, capsys):
    assert main(["advise", *GSM_LLAMA, "--budget", "5000", "--sft-cost", "2", "--pft-cost", "1",
                 "--compute-cost", "1000"]) == 0
    out = capsys.readouterr().out
    for text in ("recommended", "SFT only", "rule of thumb", "fitted on 209 past runs", "4,000.00 for labels",
                 "score along the budget line", "SFT share of examples"):
        assert text in out
    assert "R" in out.split("along the budget line")[1]


def test_names_with_brackets_are_printed_as_typed(home, capsys):
    """A model or task name is the user's words: `[/x]` in it was read as rich markup (a traceback)."""
    prices = ["--budget", "5000", "--sft-cost", "2", "--pft-cost", "1"]
    assert main(["advise", "--task", "gsm8k_math", "--model", "org/[/x]-8B", *prices]) == 0
    assert "org/[/x]-8B" in capsys.readouterr().out
    assert main(["pilot", "--task", "gsm8k_math", "--model", "org/[/x]-8B", *prices]) == 0
    assert "org/[/x]-8B" in capsys.readouterr().out


@pytest.mark.parametrize("change, problem", [
    (["--budget", "nan"], "argument --budget: the budget must be a finite number"),
    (["--budget", "inf"], "argument --budget: the budget must be a finite number"),
    (["--budget", "lots"], "argument --budget: the budget must be a number"),
    (["--sft-cost", "0"], "argument --sft-cost: the SFT cost must be greater than 0"),
    (["--pft-cost", "-3"], "argument --pft-cost: the preference-pair cost must be greater than 0"),
    (["--budget", "0.5"], "buys no example"),
    (["--compute-cost", "1000"], "leaves nothing of the budget"),
    (["--base-score", "70"], "the base score must be between 0 and 1"),
    (["--gpu-hour-price", "-1"], "argument --gpu-hour-price: the GPU-hour price must be 0 or more"),
    (["--gpu-hour-price", "nan"], "argument --gpu-hour-price: the GPU-hour price must be a finite number"),
    (["--ratios", "1,half"], "argument --ratios: an SFT share must be a number"),
    (["--model", "my-finetune"], "--params-b is needed: the model name 'my-finetune' states no size"),
    (["--runs", "missing.csv"], "missing.csv: no such runs file"),
])
def test_bad_input_is_one_line_and_exit_2(home, capsys, change, problem):
    args = {"--task": "gsm8k_math", "--model": "Llama-3.1-8B (base)", "--budget": "1000", "--sft-cost": "1",
            "--pft-cost": "1"}
    args.update(dict(zip(change[::2], change[1::2])))
    try:
        code = main(["advise", *[part for pair in args.items() for part in pair]])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and problem in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_empty_runs_file_is_one_line_exit_2(home, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("task,model,n_sft,n_pft,score\n")
    result = subprocess.run([sys.executable, "-m", "engine.cli", "advise", *GSM_LLAMA, "--budget", "100", "--sft-cost",
                             "1", "--pft-cost", "1", "--runs", str(empty)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"engine: error: {empty}: the runs file holds no runs\n"


def _modules_after(code: str, home: Path) -> set[str]:
    probe = code + "\nimport sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    env = {"BUDGETTUI_HOME": str(home), "OMP_NUM_THREADS": "1", "PATH": ""}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env,
                            check=True)
    return set(result.stdout.strip().splitlines()[-1].split())


def test_engine_advise_loads_neither_torch_nor_textual(home):
    loaded = _modules_after("from engine.cli import main; assert main(['advise', '--task', 'gsm8k_math', "
                            "'--model', 'Qwen2.5-7B (base)', '--budget', '5000', '--sft-cost', '1', "
                            "'--pft-cost', '2']) == 0", home)
    assert "numpy" in loaded and not loaded & HEAVY_OR_UI


def test_the_advisor_library_loads_neither_torch_nor_textual(home):
    loaded = _modules_after("from advisor import Advisor, shipped_runs; "
                            "Advisor().fit(shipped_runs()).recommend('qa', 'm-1B', 100, 1, 1)", home)
    assert "scipy" in loaded and not loaded & HEAVY_OR_UI


def _timed_runs(home, model: str, **seconds):
    """Finished runs of `model` on this machine with their measured seconds per example seen."""
    from advisor.records import model_key
    from engine.record.store import RunStore

    store = RunStore()
    for i, (sft, dpo) in enumerate(zip(seconds.get("sft", []), seconds.get("dpo", [None] * 9))):
        run_id = f"timed-{model_key(model).replace('.', '-')}-{i}"
        store.create_run(run_id, task="gsm8k_math", model=model, params_b=8.0, n_sft=16, n_pft=16, config={},
                         run_dir=str(home / "runs" / run_id), pid=1)
        store.add_metric(run_id, "sft", "seconds_per_example", sft)
        if dpo is not None:
            store.add_metric(run_id, "dpo", "seconds_per_example", dpo)
        store.finish_run(run_id, status="finished", score=0.3, metric="gsm8k_test_accuracy", results={})


def _advise(home, *args):
    env = {"BUDGETTUI_HOME": str(home), "OMP_NUM_THREADS": "1", "PATH": ""}
    return subprocess.run([sys.executable, "-m", "engine.cli", "advise", *GSM_LLAMA, "--budget", "5000", "--sft-cost",
                           "1", "--pft-cost", "0.5", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_a_gpu_hour_price_folds_the_measured_hours_into_each_price(home):
    _timed_runs(home, "meta-llama/Llama-3.1-8B", sft=[0.5, 0.9, 0.6], dpo=[2.0, 3.0, 2.5])
    plain = json.loads(_advise(home, "--json").stdout)
    done = _advise(home, "--json", "--gpu-hour-price", "200")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    hours_sft, hours_pft = 0.6 * 2 / 3600, 2.5 * 2 / 3600  # medians × the engine's 2 epochs
    same = json.loads(_advise(home, "--json", "--sft-cost", str(1 + 200 * hours_sft),
                              "--pft-cost", str(0.5 + 200 * hours_pft)).stdout)
    assert (data["n_sft"], data["n_pft"]) == (same["n_sft"], same["n_pft"]) != (plain["n_sft"], plain["n_pft"])
    compute = data["compute"]
    hours = data["n_sft"] * hours_sft + data["n_pft"] * hours_pft
    assert compute == pytest.approx({"gpu_hour_price": 200.0, "hours_per_sft": hours_sft, "hours_per_pft": hours_pft,
                                     "forecast_hours": hours, "forecast_cost": 200 * hours, "measured_runs": 3,
                                     "epochs": 2.0})
    labels = data["n_sft"] * 1 + data["n_pft"] * 0.5
    assert labels + compute["forecast_cost"] <= 5000 + 1e-6 and "compute" not in plain
    human = _advise(home, "--gpu-hour-price", "200").stdout
    assert f"{hours:,.2f} hours × 200 = {200 * hours:,.2f}" in human and "measured on 3 of your runs" in human


def test_runs_files_still_take_their_timings_from_the_store(home, tmp_path):
    _timed_runs(home, "Llama-3.1-8B (base)", sft=[0.6], dpo=[2.5])
    path = tmp_path / "mine.csv"
    rows = ["task,model,params_b,n_sft,n_pft,score"] + [
        f"gsm8k_math,Llama-3.1-8B,8,{s},{b - s},{0.2 + 0.0001 * s + 0.00005 * (b - s):.4f}"
        for b in (0, 100, 1000) for s in sorted({b, b // 2, 0})]
    path.write_text("\n".join(rows) + "\n")
    data = json.loads(_advise(home, "--json", "--gpu-hour-price", "10", "--runs", str(path)).stdout)
    assert data["n_past_runs"] == len(rows) - 1 and data["compute"]["measured_runs"] == 1


@pytest.mark.parametrize("sft, dpo, problem", [
    ([], [], "no finished run of 'Llama-3.1-8B (base)' on this machine to forecast GPU hours from; "
             "run a small pilot first, e.g. `engine run --task gsm8k_math --model 'Llama-3.1-8B (base)' "
             "--n-sft 16 --n-pft 16`"),
    ([0.6], [None], "no DPO stage of 'Llama-3.1-8B (base)' has been timed on this machine, so its GPU hours "
                    "cannot be forecast"),
])
def test_an_unmeasured_stage_is_one_line_exit_2_never_a_guess(home, sft, dpo, problem):
    _timed_runs(home, "Llama-3.1-8B", sft=sft, dpo=dpo)
    _timed_runs(home, "Qwen2.5-7B", sft=[0.1], dpo=[0.2])  # another model's timings never stand in
    done = _advise(home, "--json", "--gpu-hour-price", "200")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("engine: error: " + problem) and done.stderr.count("\n") == 1


def test_an_unmeasured_model_leaves_no_store_behind(home):
    done = _advise(home, "--gpu-hour-price", "200")
    assert done.returncode == 2 and "run a small pilot first" in done.stderr
    assert not (home / "runs.sqlite").exists()
