"""Models outside the past runs' sizes: a 135M model gets a 135M-sized gain, anchored on its base
score, with an interval that holds what a real CPU run of it measured, and a basis line saying so."""

import numpy as np
import pytest

from advisor import Advisor, Run, shipped_runs

GSM, DEMO, LLAMA = "gsm8k_math", "SmolLM2-135M-Instruct", "Llama-3.1-8B (base)"
# Measured on this machine (BENCHMARKS.md, "Advisor: the demo model"): SmolLM2-135M-Instruct on
# gsm8k_math, 64 held-out problems, base model and after QLoRA SFT on 64 examples.
DEMO_BASE, DEMO_SFT64 = 0.0, 0.03125


@pytest.fixture(scope="module")
def shipped():
    return Advisor().fit(shipped_runs())


def test_the_size_comes_from_the_argument_the_runs_or_the_name(shipped):
    assert shipped.size_of(DEMO) == 0.135 and shipped.size_of(LLAMA) == 8.0
    assert shipped.size_of("gpt2") is None and shipped.size_of("gpt2", 0.124) == 0.124
    mine = Advisor().fit(shipped_runs() + [Run(GSM, "tiny", 0.0001, 64, 0, 0.0, "exact_match", "store:t")])
    assert mine.size_of("tiny") == 0.0001


def test_a_small_model_gets_a_small_gain_and_its_interval_excludes_an_8b_gain(shipped):
    small = shipped.predict(GSM, DEMO, 1000, 0, base_score=0.031)
    big = shipped.predict(GSM, DEMO, 1000, 0, base_score=0.031, params_b=8.0)
    assert big[0] > 0.4  # the paper's 8B models close half the gap with 1,000 examples
    assert small[0] - 0.031 < 0.1 * (big[0] - 0.031)
    assert small[2] < big[1]  # the small model's 80% interval stays below the 8B one's
    gains = [shipped.predict(GSM, DEMO, 1000, 0, base_score=0.031, params_b=b)[0] for b in (0.135, 0.5, 1.7, 8.0)]
    assert np.all(np.diff(gains) > 0)


@pytest.mark.parametrize("base_score", [None, 0.031, DEMO_BASE])
def test_the_interval_before_any_local_run_holds_what_a_real_demo_run_measured(shipped, base_score):
    _, lo, hi = shipped.predict(GSM, DEMO, 64, 0, base_score=base_score)
    assert lo <= DEMO_SFT64 <= hi
    _, lo_8b, _ = shipped.predict(GSM, DEMO, 64, 0, base_score=base_score, params_b=8.0)
    assert DEMO_SFT64 < lo_8b  # an 8B-sized gain would have missed it


def test_without_a_base_score_a_small_model_starts_low(shipped):
    mean, lo, hi = shipped.predict(GSM, DEMO, 0, 0)
    assert mean < 0.05 and lo == 0.0
    assert shipped.predict(GSM, LLAMA, 0, 0)[0] == pytest.approx(0.15, abs=0.03)


def test_the_basis_says_what_the_prediction_rests_on(shipped):
    rec = shipped.recommend(GSM, DEMO, 1000, 1, 1, base_score=0.031)
    assert rec.basis == ("pooled from 7.6–8B runs on this task, anchored on your base score 0.031; "
                         "no runs of a model this size (0.135B): gains scaled to its size")
    assert rec.to_dict()["basis"] == rec.basis
    assert shipped.basis(GSM, LLAMA) == "fitted on 30 runs of this model on this task, anchored on its measured base score 0.150"
    assert "base score guessed" in shipped.basis("helpfulness", "Qwen2.5-7B (base)")
    assert shipped.basis("translation", "gpt2").endswith("size unknown: treated as 8B")


def test_a_small_models_own_runs_teach_the_size_slope():
    """Runs of a 135M model that gain far more than the prior expects make an unseen 360M model's
    predicted gain larger too: the size slope is fitted, not fixed."""
    learns = [Run(GSM, DEMO, 0.135, s, p, score, "exact_match", "store:d") for s, p, score in
              [(0, 0, 0.03), (64, 0, 0.10), (256, 0, 0.20), (1000, 0, 0.30), (500, 500, 0.28)]]
    before = Advisor().fit(shipped_runs())
    after = Advisor().fit(shipped_runs() + learns)
    assert after.theta_[-1] < before.theta_[-1] - 0.1  # the size slope
    gain = {name: a.predict(GSM, "SmolLM2-360M", 1000, 0, base_score=0.05)[0] - 0.05
            for name, a in (("before", before), ("after", after))}
    assert gain["after"] > gain["before"] + 0.02


def test_predict_uses_the_size_it_is_given(shipped):
    assert shipped.predict(GSM, "gpt2", 1000, 0, params_b=0.124, base_score=0.02)[0] < \
        shipped.predict(GSM, "gpt2", 1000, 0, params_b=7.0, base_score=0.02)[0] - 0.2


def test_sizes_are_said_to_three_figures():
    """A model built in code has a size like 0.000115008B: the basis says it as people read it."""
    from advisor.surface import size_range

    assert size_range([0.000115008, 8.0, 7.6]) == "0.000115–8B"
    assert size_range([0.134515008]) == "0.135B" and size_range([7.6, 8.0]) == "7.6–8B"
