"""The fitted surface: recovers its own parameters, pools across panels, pins the base score,
down-weights unreliable points and says when it cannot answer."""

import numpy as np
import pytest

from advisor import Advisor, AdvisorError, Run, curves, shipped_runs

QWEN = "Qwen2.5-7B (base)"
TRUE_PHI = np.array([-1.0, 0.5, np.log(400), np.log(0.05), 0.0, np.log(4000), -1.5])
TRUE_GLOBALS = np.array([np.log(1.2), np.log(150), np.log(0.8), 1.0])


def synthetic_panel(phi=TRUE_PHI, glob=TRUE_GLOBALS, noise=0.003, seed=1, task="t", model="m-1B"):
    """Runs drawn from the advisor's own model family on a dense (budget × SFT share) grid."""
    rng = np.random.default_rng(seed)
    runs = [Run(task, model, 8.0, 0, 0, float(curves.score(phi, glob, 0, 0)), "acc", "synthetic")]
    for budget in (10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000):
        for share in np.linspace(0, 1, 9):
            n_sft = round(share * budget)
            score = float(curves.score(phi, glob, n_sft, budget - n_sft)) + rng.normal(0, noise)
            runs.append(Run(task, model, 8.0, n_sft, budget - n_sft, float(np.clip(score, 0, 1)), "acc", "synthetic"))
    return runs


@pytest.fixture(scope="module")
def shipped():
    return Advisor().fit(shipped_runs())


def test_fit_recovers_the_parameters_that_generated_the_data():
    advisor = Advisor(noise=0.003)
    assert advisor.fit(synthetic_panel()) is advisor
    estimate, _ = advisor.panel("t", "m-1B")
    np.testing.assert_allclose(estimate[:curves.N_PANEL], TRUE_PHI, atol=0.1)
    np.testing.assert_allclose(estimate[curves.N_PANEL:], TRUE_GLOBALS, atol=0.2)


def test_fit_keeps_hyperparameters_and_state_on_the_instance():
    first, second = Advisor(), Advisor(panel_scale=0.3)
    first.fit(shipped_runs())
    assert not hasattr(second, "theta_") and second.panel_scale == 0.3
    assert first.n_runs_ == 209 and first.params_range_ == (7.6, 8.0) and first.examples_range_ == (100, 20000)


def test_the_surface_reproduces_the_paper_findings(shipped):
    gsm, llama = "gsm8k_math", "Llama-3.1-8B (base)"
    sft = shipped.predict(gsm, llama, [100, 1000, 10000, 20000], 0)[0]
    assert np.all(np.diff(sft) > 0) and sft[3] - sft[2] < sft[1] - sft[0]  # saturating in log data
    cold = shipped.predict(gsm, llama, 0, 20000)[0]
    assert cold < sft[1] - 0.1  # DPO on the base model stalls on math (cold start)
    mixed = shipped.predict(gsm, llama, 5000, 15000)[0]
    assert mixed > sft[3] + 0.03  # at 20k examples a mix beats SFT only (interaction)


def test_a_panel_with_no_runs_borrows_its_task_and_its_model():
    runs = shipped_runs()
    gaps = {}
    for task, base in (("gsm8k_math", 0.43), ("summarization_reddit_tldr", 0.20)):
        advisor = Advisor().fit([r for r in runs if (r.task, r.model) != (task, QWEN)])
        mean, lo, hi = advisor.predict(task, QWEN, [0, 20000, 0], [0, 0, 20000], base_score=base)
        assert mean[0] == pytest.approx(base) and lo[0] <= base <= hi[0]
        gaps[task] = mean[1] - mean[2]  # SFT-only minus preference-only at 20k examples
    # math's cold start, learned from Llama's math panel, carries over to Qwen; summarisation's does not
    assert gaps["gsm8k_math"] > gaps["summarization_reddit_tldr"] + 0.03


def test_unseen_panels_get_wider_intervals_than_seen_ones(shipped):
    _, lo_seen, hi_seen = shipped.predict("gsm8k_math", QWEN, 1000, 1000)
    _, lo_new, hi_new = shipped.predict("translation", "Mistral-7B", 1000, 1000, base_score=0.3)
    assert hi_new - lo_new > 2 * (hi_seen - lo_seen)


def test_predict_gives_floats_for_scalars_and_ordered_arrays_for_arrays(shipped):
    mean, lo, hi = shipped.predict("helpfulness", "Llama-3.1-8B (base)", 500, 500)
    assert all(isinstance(v, float) for v in (mean, lo, hi)) and 0 <= lo <= mean <= hi <= 1
    grid_sft, grid_pft = np.meshgrid([0, 10, 100, 1000, 10000], [0, 50, 5000])
    mean, lo, hi = shipped.predict("helpfulness", "Llama-3.1-8B (base)", grid_sft, grid_pft)
    assert mean.shape == lo.shape == hi.shape == (3, 5)
    assert np.all((0 <= lo) & (lo <= mean) & (mean <= hi) & (hi <= 1))
    # the same point asked alone or among others gets the same interval
    assert shipped.predict("helpfulness", "Llama-3.1-8B (base)", 1000, 5000)[1] == pytest.approx(lo[2, 3])


def test_score_grid_matches_predict_and_rises_with_both_counts(shipped):
    n_sft, n_pft = [0, 100, 1000, 10000], [0, 300, 3000, 30000, 60000]
    grid = shipped.score_grid("instruction_following", QWEN, n_sft, n_pft)
    assert grid.shape == (4, 5)
    assert grid[2, 3] == pytest.approx(shipped.predict("instruction_following", QWEN, 1000, 30000)[0])
    assert np.all(np.diff(grid, axis=0) > 0) and np.all(np.diff(grid, axis=1) > 0)


def test_low_confidence_points_pull_the_fit_less():
    clean = synthetic_panel(noise=0.0)
    outlier = next(i for i, r in enumerate(clean) if (r.n_sft, r.n_pft) == (1000, 0))
    truth = clean[outlier].score
    errors = {}
    for confidence in ("high", "low"):
        runs = list(clean)
        runs[outlier] = Run("t", "m-1B", 8.0, 1000, 0, truth + 0.15, "acc", "x", confidence)
        errors[confidence] = abs(Advisor().fit(runs).predict("t", "m-1B", 1000, 0)[0] - truth)
    assert errors["low"] < errors["high"] / 2


def test_fit_and_predict_refuse_what_they_cannot_use(shipped):
    with pytest.raises(AdvisorError, match="no past runs"):
        Advisor().fit([])
    with pytest.raises(AdvisorError, match="Run records"):
        Advisor().fit([{"task": "qa"}])
    with pytest.raises(AdvisorError, match="not been fitted"):
        Advisor().predict("qa", "m", 1, 1)
    for bad, problem in (({"n_sft": float("nan")}, "n_sft must be finite"),
                         ({"n_pft": -1}, "n_pft must be 0 or more"),
                         ({"n_sft": "many"}, "n_sft must be numbers"),
                         ({"base_score": 1.5}, "base_score must be between"),
                         ({"params_b": 0}, "params_b must be greater than 0")):
        args = {"n_sft": 10, "n_pft": 10} | bad
        with pytest.raises(AdvisorError, match=problem):
            shipped.predict("gsm8k_math", QWEN, args.pop("n_sft"), args.pop("n_pft"), **args)


def test_hub_id_spelling_gets_the_shipped_panel():
    from advisor import Advisor, shipped_runs

    advisor = Advisor().fit(shipped_runs())
    paper = advisor.predict("gsm8k_math", "Llama-3.1-8B (base)", 1000, 1000)
    hub = advisor.predict("gsm8k_math", "meta-llama/Llama-3.1-8B", 1000, 1000)
    assert hub == paper
    advice = advisor.recommend("gsm8k_math", "meta-llama/Llama-3.1-8B", 5000, 1, 1)
    assert not any("no past runs with model" in w for w in advice.warnings)
