"""Recommendations on the budget line: the paper's regimes from the fitted surface, every split
within the money, the baselines, warnings and refusals."""

import json
import math

import numpy as np
import pytest

from advisor import Advisor, AdvisorError, Run, curves, shipped_runs
from advisor.recommend import buy, rule_of_thumb

GSM, LLAMA = "gsm8k_math", "Llama-3.1-8B (base)"


@pytest.fixture(scope="module")
def shipped():
    return Advisor().fit(shipped_runs())


def test_a_large_budget_buys_a_mix_leaning_to_preference_pairs(shipped):
    rec = shipped.recommend(GSM, LLAMA, 20000, 1, 1)
    assert 0 < rec.sft_ratio <= 0.5
    assert rec.n_sft + rec.n_pft == 20000 and rec.n_pft > 0
    assert rec.predicted_score > rec.baselines["sft_only"].predicted_score


def test_a_small_budget_buys_sft_only(shipped):
    rec = shipped.recommend(GSM, LLAMA, 100, 1, 1)
    assert (rec.n_sft, rec.n_pft, rec.sft_ratio) == (100, 0, 1.0)


def test_the_choice_is_the_best_point_of_the_fitted_curve(shipped):
    rec = shipped.recommend(GSM, LLAMA, 5000, 1.0, 2.5)
    best = max(rec.curve, key=lambda p: p.predicted_score)
    assert (rec.n_sft, rec.n_pft) == (best.n_sft, best.n_pft)
    mean, _, _ = shipped.predict(GSM, LLAMA, [p.n_sft for p in rec.curve], [p.n_pft for p in rec.curve])
    assert rec.predicted_score == pytest.approx(mean.max())


def test_the_choice_follows_the_data_not_a_rule():
    """Runs where a preference pair teaches the task as well as 20 SFT examples: pairs win at 100."""
    phi = np.array([-1.0, 0.5, np.log(400), np.log(20.0), 0.0, np.log(4000), -1.5])
    glob = np.array([0.0, np.log(100), 0.0, 1.0])
    runs = [Run("t", "m-1B", 8.0, round(r * b), b - round(r * b),
                float(curves.score(phi, glob, round(r * b), b - round(r * b))), "acc", "synthetic")
            for b in (0, 100, 500, 1000, 5000, 20000) for r in (1, 0.75, 0.5, 0.25, 0)]
    rec = Advisor().fit(runs).recommend("t", "m-1B", 100, 1, 1)
    assert rec.sft_ratio < 0.5 and rec.predicted_score > rec.baselines["sft_only"].predicted_score


def test_every_split_stays_within_the_money(shipped):
    rng = np.random.default_rng(7)
    for _ in range(150):
        sft_cost, pft_cost = np.exp(rng.uniform(np.log(0.01), np.log(50), size=2))
        budget = float(np.exp(rng.uniform(np.log(max(sft_cost, pft_cost) * 2), np.log(1e6))))
        compute = float(rng.uniform(0, 0.5 * budget)) if rng.random() < 0.3 else 0.0
        ratios = list(rng.choice([1, 0.75, 0.5, 0.25, 0], size=3, replace=False)) if rng.random() < 0.3 else None
        rec = shipped.recommend(GSM, LLAMA, budget, sft_cost, pft_cost, compute_cost=compute, ratios=ratios)
        money = budget - compute
        assert rec.label_budget == pytest.approx(money)
        for point in [rec, *rec.baselines.values(), *rec.curve]:
            assert isinstance(point.n_sft, int) and isinstance(point.n_pft, int)
            assert point.n_sft >= 0 and point.n_pft >= 0
            assert point.n_sft * sft_cost + point.n_pft * pft_cost <= money * (1 + 1e-9)
        # nothing worth another example is left on the table at the chosen share
        assert money - (rec.n_sft * sft_cost + rec.n_pft * pft_cost) < sft_cost + pft_cost
        if ratios is not None:
            assert any(math.isclose(rec.sft_ratio, r, abs_tol=2 / (rec.n_sft + rec.n_pft)) for r in ratios)


def test_allowed_shares_restrict_the_choice(shipped):
    rec = shipped.recommend(GSM, LLAMA, 20000, 1, 1, ratios=[1, 0.75])
    assert rec.sft_ratio == 0.75 and {p.sft_ratio for p in rec.curve} == {1.0, 0.75}


def test_baselines_spend_the_same_money(shipped):
    rec = shipped.recommend(GSM, LLAMA, 3000, 2, 1)
    assert (rec.baselines["sft_only"].n_sft, rec.baselines["sft_only"].n_pft) == (1500, 0)
    assert (rec.baselines["rule_of_thumb"].n_sft, rec.baselines["rule_of_thumb"].n_pft) == (1000, 1000)
    assert [rule_of_thumb(b, 1, 1) for b in (100, 999, 1000, 4999, 5000, 20000)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert buy(0.25, 20000, 1, 1) == (5000, 15000) and buy(1 / 3, 10, 1, 1) == (3, 6)


def test_compute_spend_comes_off_the_label_money(shipped):
    rec = shipped.recommend(GSM, LLAMA, 1500, 1, 1, compute_cost=500)
    assert rec.label_budget == 1000 and rec.n_sft + rec.n_pft == 1000


def test_warnings_name_what_is_extrapolated(shipped):
    assert shipped.recommend(GSM, LLAMA, 5000, 1, 1).warnings == []
    notes = shipped.recommend("translation", "SmolLM2-135M", 100000, 1, 1).warnings
    assert any("task 'translation'" in n for n in notes)
    assert any("model 'SmolLM2-135M'" in n for n in notes)
    assert any("no base-model score" in n for n in notes)
    assert any("0.135B is outside the sizes in past runs (7.6–8B)" in n for n in notes)
    assert any("100,000 examples is more than any past run (20,000)" in n for n in notes)
    assert any("fewer than any past run" in n for n in shipped.recommend(GSM, LLAMA, 40, 1, 1).warnings)
    assert not any("no base-model score" in n
                   for n in shipped.recommend("translation", LLAMA, 500, 1, 1, base_score=0.3).warnings)


def test_to_dict_is_json_with_the_documented_keys(shipped):
    data = json.loads(json.dumps(shipped.recommend(GSM, LLAMA, 2000, 1, 1).to_dict()))
    for key in ("n_sft", "n_pft", "sft_ratio", "predicted_score", "interval", "baselines", "warnings",
                "n_past_runs", "curve"):
        assert key in data
    assert data["n_past_runs"] == 209 and len(data["interval"]) == 2
    for name in ("sft_only", "rule_of_thumb"):
        assert {"n_sft", "n_pft", "predicted_score"} <= set(data["baselines"][name])


@pytest.mark.parametrize("args, options, problem", [
    ((0, 1, 1), {}, "budget must be greater than 0"),
    ((float("nan"), 1, 1), {}, "budget must be a finite number"),
    ((float("inf"), 1, 1), {}, "budget must be a finite number"),
    (("lots", 1, 1), {}, "budget must be a number"),
    ((100, 0, 1), {}, "sft_cost must be greater than 0"),
    ((100, 1, -2), {}, "pft_cost must be greater than 0"),
    ((100, float("inf"), 1), {}, "sft_cost must be a finite number"),
    ((5, 10, 20), {}, "buys no example"),
    ((100, 1, 1), {"compute_cost": 100}, "leaves nothing of the budget"),
    ((100, 1, 1), {"compute_cost": float("nan")}, "compute_cost must be a finite number"),
    ((15, 20, 10), {"ratios": [1]}, "buys no example at the allowed SFT shares"),
    ((100, 1, 1), {"ratios": []}, "allowed SFT shares is empty"),
    ((100, 1, 1), {"ratios": [1.5]}, "allowed SFT share must be between 0 and 1"),
    ((100, 1, 1), {"base_score": -0.1}, "base_score must be between 0 and 1"),
])
def test_bad_input_is_one_line_advisor_error(shipped, args, options, problem):
    with pytest.raises(AdvisorError) as caught:
        shipped.recommend(GSM, LLAMA, *args, **options)
    assert problem in str(caught.value) and "\n" not in str(caught.value)
