"""Metrics: a panel is (task, metric, model). Names of one measurement pool; runs in another metric
act only as another task would, never through the task's own curve; an unnamed metric is the
task's one metric or a one-line refusal."""

import numpy as np
import pytest

from advisor import Advisor, AdvisorError, Run, metric_key, shipped_runs

GSM, LLAMA = "gsm8k_math", "Llama-3.1-8B (base)"
CELLS = [(100, 0), (1000, 0), (1000, 1000), (5000, 5000)]


def local_runs(task, metric, score, model="Llama-3.1-8B"):
    return [Run(task, model, 8.0, s, p, score, metric, "store:x") for s, p in CELLS]


@pytest.fixture(scope="module")
def shipped():
    return Advisor().fit(shipped_runs())


def test_metric_key_folds_case_and_the_papers_gsm8k_name():
    assert metric_key("gsm8k_test_accuracy") == metric_key(" Exact_Match ") == "exact_match"
    assert metric_key("rouge_l") == "rouge_l" and metric_key(None) == metric_key("") == ""


def test_predictions_say_their_metric(shipped):
    assert shipped.predict(GSM, LLAMA, 1000, 0).metric == "exact_match"
    assert shipped.predict("helpfulness", LLAMA, 1000, 0).to_dict()["metric"] == "win_rate_vs_reference"
    rec = shipped.recommend(GSM, LLAMA, 5000, 1, 1)
    assert rec.metric == "exact_match" and rec.to_dict()["metric"] == "exact_match"


def test_the_engines_exact_match_runs_pool_with_the_papers_gsm8k_accuracy(shipped):
    pooled = Advisor().fit(shipped_runs() + local_runs(GSM, "exact_match", 0.95))
    assert pooled.metrics_[GSM] == ["exact_match"]
    assert pooled.panel_counts_[(GSM, "exact_match", "llama-3.1-8b")] == shipped.panel_counts_[
        (GSM, "exact_match", "llama-3.1-8b")] + len(CELLS)
    before, after = shipped.predict(GSM, LLAMA, 1000, 1000)[0], pooled.predict(GSM, LLAMA, 1000, 1000)[0]
    assert after > before + 0.05  # the local runs (0.95) pull the shared curve up


def test_runs_in_another_metric_act_only_as_another_task_would():
    """Very different scores in ROUGE-L on the same task and model leave the accuracy curve exactly
    where the same runs under another task's name leave it: they never enter its task effect."""
    runs = shipped_runs()
    other_metric = Advisor().fit(runs + local_runs(GSM, "rouge_l", 0.95))
    other_task = Advisor().fit(runs + local_runs("essay_grading", "rouge_l", 0.95))
    same_metric = Advisor().fit(runs + local_runs(GSM, "exact_match", 0.95))
    n_sft, n_pft = [100, 1000, 5000, 0], [0, 1000, 15000, 5000]
    accuracy = other_metric.predict(GSM, LLAMA, n_sft, n_pft, metric="exact_match")
    np.testing.assert_allclose(accuracy[0], other_task.predict(GSM, LLAMA, n_sft, n_pft)[0], atol=2e-3)
    assert np.max(np.abs(same_metric.predict(GSM, LLAMA, n_sft, n_pft)[0] - accuracy[0])) > 0.05
    rouge = other_metric.predict(GSM, LLAMA, n_sft, n_pft, metric="ROUGE_L")
    assert rouge.metric == "rouge_l" and np.all(rouge[0] > accuracy[0])


def test_a_task_in_several_metrics_needs_one_named():
    advisor = Advisor().fit(shipped_runs() + local_runs(GSM, "rouge_l", 0.5))
    with pytest.raises(AdvisorError) as caught:
        advisor.predict(GSM, LLAMA, 100, 0)
    message = str(caught.value)
    assert "several metrics (exact_match, rouge_l)" in message and "\n" not in message
    with pytest.raises(AdvisorError, match="several metrics"):
        advisor.recommend(GSM, LLAMA, 1000, 1, 1)
    assert advisor.recommend(GSM, LLAMA, 1000, 1, 1, metric="gsm8k_test_accuracy").metric == "exact_match"


def test_an_unmeasured_metric_of_a_known_task_is_said(shipped):
    rec = shipped.recommend(GSM, LLAMA, 1000, 1, 1, metric="rouge_l")
    assert rec.metric == "rouge_l"
    assert any("in metric 'rouge_l'" in w for w in rec.warnings)
    assert rec.basis.startswith("pooled from")
