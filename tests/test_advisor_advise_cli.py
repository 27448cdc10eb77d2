"""`engine advise` says which metric its numbers are in and what they rest on, takes --metric, and
needs no --params-b for a model the past runs already know."""

import json

from engine.cli import main


def advise(capsys, *args):
    code = main(["advise", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


COSTS = ["--budget", "1000", "--sft-cost", "1", "--pft-cost", "1"]


def test_json_and_table_carry_the_metric_and_the_basis(home, capsys):
    demo = ["--task", "gsm8k_math", "--model", "SmolLM2-135M-Instruct", *COSTS, "--base-score", "0.031"]
    code, out, _ = advise(capsys, *demo, "--json")
    data = json.loads(out)
    assert code == 0 and data["metric"] == "exact_match" and data["params_b"] == 0.135
    assert data["basis"].startswith("pooled from 7.6–8B runs on this task, anchored on your base score 0.031")
    assert data["predicted_score"] < 0.1  # not the 8B models' 0.54
    code, out, _ = advise(capsys, *demo)
    assert "gsm8k_math (exact_match)" in out and "basis: pooled from 7.6–8B runs" in " ".join(out.split())


def test_metric_flag_picks_among_a_tasks_metrics(home, tmp_path, capsys):
    path = tmp_path / "runs.csv"
    rows = ["task,model,params_b,n_sft,n_pft,score,metric"] + [
        f"qa,m-1B,1,{s},{p},{score},{metric}" for metric, lift in (("rouge_l", 0.1), ("preference_accuracy", 0.3))
        for s, p, score in ((0, 0, 0.2), (100, 0, 0.2 + lift / 2), (1000, 0, 0.2 + lift), (500, 500, 0.2 + lift))]
    path.write_text("\n".join(rows) + "\n")
    args = ["--task", "qa", "--model", "m-1B", *COSTS, "--runs", str(path)]
    code, _, err = advise(capsys, *args)
    assert code == 2 and "several metrics (preference_accuracy, rouge_l)" in err and err.count("\n") == 1
    scores = {}
    for metric in ("rouge_l", "preference_accuracy"):
        code, out, _ = advise(capsys, *args, "--metric", metric, "--json")
        data = json.loads(out)
        assert code == 0 and data["metric"] == metric
        scores[metric] = data["predicted_score"]
    assert scores["preference_accuracy"] > scores["rouge_l"] + 0.1


def test_a_model_the_past_runs_know_needs_no_params_b(home, tmp_path, capsys):
    path = tmp_path / "runs.csv"
    path.write_text("task,model,params_b,n_sft,n_pft,score,metric\n"
                    "qa,tiny,0.0001,0,0,0.1,acc\nqa,tiny,0.0001,64,0,0.1,acc\n")
    code, out, _ = advise(capsys, "--task", "qa", "--model", "tiny", *COSTS, "--runs", str(path), "--json")
    assert code == 0 and json.loads(out)["params_b"] == 0.0001
    code, _, err = advise(capsys, "--task", "qa", "--model", "gpt2", *COSTS, "--runs", str(path))
    assert code == 2 and "--params-b is needed" in err
