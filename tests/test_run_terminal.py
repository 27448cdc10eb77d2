"""What a person at a terminal sees of `engine run`: the warnings the events file holds, and a
progress bar per stage."""

import pytest

from tests.runner import TINY, engine, events, json_out, of_type


@pytest.mark.slow
def test_cold_start_and_a_small_held_out_set_are_said_on_the_terminal(tmp_path):
    result = engine(tmp_path, "run", *TINY, "--n-sft", "0", "--n-pft", "4", "--max-steps", "1", "--eval-size", "500",
                    "--eval-max-new-tokens", "4", "--run-id", "said")
    assert result.returncode == 0, result.stderr
    warned = [e["message"] for e in of_type(events(tmp_path, "said"), "warning")]
    assert any("cold start" in message for message in warned)
    assert any("holds out" in message for message in warned)
    for message in warned:
        assert f"warning: {message}" in " ".join(result.stderr.split()), message
    assert "DPO" in result.stderr and "1/1" in result.stderr  # transformers' progress bar, named after the stage


@pytest.mark.slow
def test_budget_form_says_the_advisors_split_prediction_and_warnings(tmp_path, tiny_spec):
    prices = ["--task", "gsm8k_math", "--model", "tiny", "--budget", "40", "--sft-cost", "1", "--pft-cost", "1"]
    advice = json_out(engine(tmp_path, "advise", *prices, "--params-b", repr(tiny_spec.params_b), "--json"))
    result = engine(tmp_path, "run", *prices, "--max-steps", "1", "--eval-size", "2", "--eval-max-new-tokens", "4",
                    "--run-id", "b")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert (f"the advisor's split of 40: {advice['n_sft']} SFT examples and {advice['n_pft']} pairs, "
            f"predicted score {advice['predicted_score']:.3f}") in said
    assert advice["warnings"] and all(f"warning: {message}" in said for message in advice["warnings"])
