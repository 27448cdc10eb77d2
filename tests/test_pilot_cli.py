"""`engine pilot`: the documented JSON, a table and the reason for people, and one-line refusals."""

import json

import pytest

from engine.cli import main

def exit_code(argv) -> int:
    """The exit status of `engine ARGV`, whether argparse exits or the command returns."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


QWEN_HELP = ["--task", "helpfulness", "--model", "Qwen2.5-7B (base)", "--sft-cost", "1", "--pft-cost", "1"]


def test_json_is_exactly_the_documented_shape(home, capsys):
    assert main(["pilot", *QWEN_HELP, "--budget", "2000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["pilots", "pilot_cost", "expected_regret_now", "expected_regret_after", "reason"]
    assert data["pilots"], data["reason"]  # the paper's Qwen has no helpfulness runs: one pilot pays here
    for pilot in data["pilots"]:
        assert list(pilot) == ["n_sft", "n_pft", "cost", "expected_regret_after"]
        assert pilot["cost"] <= 200
    assert data["pilot_cost"] == sum(p["cost"] for p in data["pilots"])
    assert data["expected_regret_after"] <= data["expected_regret_now"]


def test_a_grid_restricts_the_candidates(home, capsys):
    assert main(["pilot", *QWEN_HELP, "--budget", "2000", "--pilot-budgets", "100", "--ratios", "0.5",
                 "--json"]) == 0
    assert all((p["n_sft"], p["n_pft"]) == (50, 50) for p in json.loads(capsys.readouterr().out)["pilots"])


def test_people_get_a_table_and_the_reason(home, capsys):
    assert main(["pilot", "--task", "gsm8k_math", "--model", "Llama-3.1-8B (base)", "--budget", "20000",
                 "--sft-cost", "1", "--pft-cost", "1"]) == 0
    out = capsys.readouterr().out
    assert "expected regret of the choice at 20,000.00" in out and "no pilot is worth its cost" in out


@pytest.mark.parametrize("args, problem", [
    (["--budget", "0"], "the budget must be greater than 0"),
    (["--budget", "1000", "--pilot-budget", "2000"], "the pilot budget 2000 is more than the budget 1000"),
    (["--budget", "1000", "--pilot-budgets", "50,x"], "a pilot budget must be a number"),
    (["--budget", "1000", "--pilot-budgets", "500"], "more than the pilot budget 100"),
    (["--budget", "1000", "--ratios", "2"], "an SFT share must be between 0 and 1"),
    (["--budget", "1000", "--base-score", "1.5"], "the base score must be between 0 and 1"),
])
def test_bad_input_is_one_line_exit_2(home, capsys, args, problem):
    assert exit_code(["pilot", *QWEN_HELP, *args]) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1


def test_a_model_of_no_stated_size_needs_params_b(home, capsys):
    assert exit_code(["pilot", *QWEN_HELP[:2], "--model", "gpt2", *QWEN_HELP[4:], "--budget", "1000"]) == 2
    assert "--params-b is needed" in capsys.readouterr().err
