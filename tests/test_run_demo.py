"""`engine run --model demo`: SmolLM2-135M-Instruct (converted from the wheel's GGUF) in real 4-bit
through both stages on the CPU — a few steps at a short max length."""

import pytest

from runner import engine, events, json_out, of_type


@pytest.mark.slow
def test_demo_model_runs_sft_then_dpo_in_4bit(tmp_path, demo_home):
    (tmp_path / "models").symlink_to(demo_home / "models")  # converted once per session
    out = json_out(engine(tmp_path, "run", "--task", "gsm8k_math", "--model", "demo", "--n-sft", "8", "--n-pft", "8",
                          "--max-steps", "2", "--batch-size", "1", "--grad-accum", "1", "--max-length", "128",
                          "--eval-size", "4", "--eval-max-new-tokens", "8", "--run-id", "demo", "--json"))
    assert out["status"] == "finished" and set(out["results"]["scores"]) == {"base", "sft", "dpo"}
    evs = events(tmp_path, "demo")
    # SmolLM2-135M: 30 layers × 7 projections, all quantised to 4 bits
    assert [e["linear4bit_layers"] for e in of_type(evs, "stage_started")] == [210, 210]
    assert of_type(evs, "run_started")[0]["params_b"] == pytest.approx(0.1345, abs=1e-3)
    first = [e for e in of_type(evs, "log", stage="dpo") if "loss" in e][0]
    assert first["rewards/margins"] == 0.0
