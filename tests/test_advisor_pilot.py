"""Pilot planning: at most three pilots within the pilot budget, each lowering the expected regret,
none proposed where the choice is already certain, and one-line refusals of bad input."""

import json

import numpy as np
import pytest

from advisor import Advisor, AdvisorError, Run, curves, propose_pilots, shipped_runs
from advisor.pilot import pilot_grid

HELP, LLAMA = "helpfulness", "Llama-3.1-8B (base)"


@pytest.fixture(scope="module")
def held_out():
    """The advisor with the helpfulness panel held out: its split at 5,000 is uncertain."""
    return Advisor().fit([r for r in shipped_runs() if r.task != HELP])


def check_plan(plan, cap):
    assert len(plan.pilots) <= 3
    assert plan.pilot_cost == pytest.approx(sum(p.cost for p in plan.pilots)) and plan.pilot_cost <= cap + 1e-9
    after = [plan.expected_regret_now] + [p.expected_regret_after for p in plan.pilots]
    assert np.all(np.diff(after) <= 1e-12) and plan.expected_regret_after == pytest.approx(after[-1])
    assert len({(p.n_sft, p.n_pft) for p in plan.pilots}) == len(plan.pilots)


def test_pilots_lower_the_expected_regret_within_the_pilot_budget(held_out):
    plan = propose_pilots(held_out, HELP, LLAMA, 5000, 1, 1, base_score=0.2, charge=False)
    check_plan(plan, 500)
    assert plan.pilots and plan.expected_regret_after < plan.expected_regret_now
    assert plan.reason.startswith(f"{len(plan.pilots)} pilot run")
    for pilot in plan.pilots:
        assert pilot.cost == pilot.n_sft + pilot.n_pft and 0 < pilot.cost <= 500


@pytest.mark.parametrize("budget, sft_cost, pft_cost, cap", [(5000, 1, 1, 200), (20000, 2, 0.5, None),
                                                            (1500, 3, 1, 150)])
def test_every_plan_keeps_to_its_budget_and_rule(held_out, budget, sft_cost, pft_cost, cap):
    for charge in (True, False):
        plan = propose_pilots(held_out, HELP, LLAMA, budget, sft_cost, pft_cost, base_score=0.2, pilot_budget=cap,
                              charge=charge)
        check_plan(plan, cap or budget / 10)
        for pilot in plan.pilots:
            assert pilot.n_sft * sft_cost + pilot.n_pft * pft_cost == pytest.approx(pilot.cost)


def test_candidates_and_grids_restrict_the_pilots(held_out):
    cells = [(100, 0), (50, 50), (0, 100), (500, 0)]
    plan = propose_pilots(held_out, HELP, LLAMA, 5000, 1, 1, base_score=0.2, candidates=cells, charge=False)
    assert {(p.n_sft, p.n_pft) for p in plan.pilots} <= set(cells)
    assert pilot_grid([100, 200], [1, 0.5], 1, 2) == [(100, 0), (33, 33), (200, 0), (66, 66)]


def test_no_pilot_is_worth_it_on_a_densely_measured_panel():
    phi = np.array([-1.0, 0.5, np.log(400), np.log(0.05), 0.0, np.log(4000), -1.5])
    glob = np.array([0.0, np.log(150), 0.0, 1.0])
    runs = [Run("t", "m-8B", 8.0, round(r * b), b - round(r * b),
                float(curves.score(phi, glob, round(r * b), b - round(r * b))), "acc", "synthetic")
            for b in (0, 30, 100, 300, 1000, 3000, 10000, 30000) for r in np.linspace(0, 1, 9)]
    plan = propose_pilots(Advisor(noise=0.003).fit(runs), "t", "m-8B", 10000, 1, 1)
    assert plan.pilots == [] and plan.pilot_cost == 0
    assert plan.expected_regret_after == plan.expected_regret_now < 0.001
    assert plan.reason.startswith("no pilot is worth its cost: the choice at 10,000.00 is already nearly certain")


def test_a_pilot_that_gains_less_than_its_money_buys_is_not_proposed(held_out):
    free = propose_pilots(held_out, HELP, LLAMA, 5000, 1, 1, base_score=0.2, charge=False)
    paid = propose_pilots(held_out, HELP, LLAMA, 5000, 1, 1, base_score=0.2)
    assert len(paid.pilots) <= len(free.pilots)
    if not paid.pilots:
        assert "its money would add" in paid.reason


def test_to_dict_is_exactly_the_documented_json(held_out):
    plan = propose_pilots(held_out, HELP, LLAMA, 5000, 1, 1, base_score=0.2, charge=False)
    data = json.loads(json.dumps(plan.to_dict()))
    assert list(data) == ["pilots", "pilot_cost", "expected_regret_now", "expected_regret_after", "reason"]
    assert data["pilots"] and all(list(p) == ["n_sft", "n_pft", "cost", "expected_regret_after"] for p in data["pilots"])


@pytest.mark.parametrize("options, problem", [
    ({"pilot_budget": 0}, "pilot_budget must be greater than 0"),
    ({"pilot_budget": 6000}, "the pilot budget 6000 is more than the budget 5000"),
    ({"candidates": [(600, 0)]}, "costs 600, more than the pilot budget 500"),
    ({"candidates": [("a", 1)]}, "must be (n_sft, n_pft)"),
    ({"pilot_budgets": [100, -1]}, "a pilot budget must be greater than 0"),
    ({"ratios": [1.5]}, "an SFT share must be between 0 and 1"),
    ({"max_pilots": 4}, "max_pilots must be 1 to 3"),
    ({"base_score": 2}, "base_score must be between 0 and 1"),
])
def test_bad_input_is_one_line_advisor_error(held_out, options, problem):
    with pytest.raises(AdvisorError) as caught:
        propose_pilots(held_out, HELP, LLAMA, 5000, 1, 1, **options)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_pilot_budget_that_buys_nothing_says_so(held_out):
    plan = propose_pilots(held_out, HELP, LLAMA, 5000, 50, 50, pilot_budget=40)
    assert plan.pilots == [] and plan.reason.startswith("no pilot fits in the pilot budget 40.00")
