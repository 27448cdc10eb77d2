"""The budget line: which split of the money maximises the predicted score, and what the simple
alternatives (all SFT; the paper's rule of thumb) would score for the same money.

Money B buys n_s SFT examples at c_s and n_p preference pairs at c_p with c_s·n_s + c_p·n_p ≤ B
(after any compute spend). The predicted score rises with both counts, so the best split spends
it all; we search the SFT share r = n_s / (n_s + n_p) along that line, buying whole examples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from advisor.errors import AdvisorError
from advisor.records import model_key
from advisor.surface import size_range
from advisor.validate import check_purchase, fraction, label_money, non_negative, positive

SEARCH_STEPS = 101  # SFT shares 1.00, 0.99, …, 0.00 when no list of allowed shares is given


@dataclass(frozen=True)
class Point:
    """One split of the money: counts, SFT share of examples, predicted score and 80% interval."""

    n_sft: int
    n_pft: int
    sft_ratio: float
    predicted_score: float
    interval: tuple[float, float]

    def to_dict(self) -> dict:
        return asdict(self) | {"interval": list(self.interval)}


@dataclass(frozen=True)
class Recommendation:
    """The recommended split, the baselines at the same money, the score along the budget line
    (for plotting) and warnings where the advisor extrapolates."""

    n_sft: int
    n_pft: int
    sft_ratio: float
    predicted_score: float
    interval: tuple[float, float]
    baselines: dict[str, Point]
    curve: list[Point]
    warnings: list[str]
    label_budget: float
    n_past_runs: int
    task: str = ""
    model: str = ""
    metric: str = ""
    basis: str = ""

    def to_dict(self) -> dict:
        return {
            "task": self.task, "model": self.model, "metric": self.metric, "basis": self.basis,
            "n_sft": self.n_sft, "n_pft": self.n_pft, "sft_ratio": self.sft_ratio,
            "predicted_score": self.predicted_score, "interval": list(self.interval),
            "baselines": {name: point.to_dict() for name, point in self.baselines.items()},
            "warnings": list(self.warnings), "label_budget": self.label_budget,
            "n_past_runs": self.n_past_runs, "curve": [point.to_dict() for point in self.curve],
        }


def buy(ratio: float, money: float, sft_cost: float, pft_cost: float) -> tuple[int, int]:
    """Whole examples at SFT share `ratio` that `money` pays for (never more than it pays for)."""
    total = money / (ratio * sft_cost + (1 - ratio) * pft_cost)
    n_sft = math.floor(ratio * total + 1e-9)
    n_pft = math.floor((1 - ratio) * total + 1e-9)
    while n_sft * sft_cost + n_pft * pft_cost > money * (1 + 1e-12):  # float rounding only
        if n_pft > 0:
            n_pft -= 1
        else:
            n_sft -= 1
    return n_sft, n_pft


def rule_of_thumb(money: float, sft_cost: float, pft_cost: float) -> float:
    """The paper's rule: SFT only below 1,000 examples, 1:1 below 5,000, PFT:SFT 3:1 above.
    With unequal costs the number of examples depends on the split, so each test counts the
    examples the money buys at the split it would choose."""
    if money / sft_cost < 1000:
        return 1.0
    if money / (0.5 * sft_cost + 0.5 * pft_cost) < 5000:
        return 0.5
    return 0.25


def _shares(ratios) -> np.ndarray:
    if ratios is None:
        return np.linspace(1.0, 0.0, SEARCH_STEPS)
    shares = [fraction("allowed SFT share", r) for r in ratios]
    if not shares:
        raise AdvisorError("the list of allowed SFT shares is empty")
    return np.array(sorted(set(shares), reverse=True))


def _warnings(advisor, task, metric, model, params_b, base_score, total) -> list[str]:
    notes = []
    if task not in advisor.tasks_:
        notes.append(f"no past runs on task {task!r}: its curve is pooled from the other tasks")
    elif (task, metric) not in advisor.task_metrics_:
        notes.append(f"no past runs on task {task!r} in metric {metric!r}: its curve is pooled from the other tasks")
    if model_key(model) not in advisor.models_:
        notes.append(f"no past runs with model {model!r}: its curve is pooled from the other models")
    if base_score is None and (task, metric, model_key(model)) not in advisor.panel_bases_:
        notes.append("no base-model score for this task and model: give one (it needs no labels) to anchor the curve")
    size = advisor.size_of(model, params_b)
    low, high = advisor.params_range_
    if size is None:
        notes.append(f"the size of {model!r} is unknown: give it to check it against past runs")
    elif not low <= size <= high:
        notes.append(f"model size {size_range([size])} is outside the sizes in past runs ({size_range([low, high])})")
    fewest, most = advisor.examples_range_
    if total > most:
        notes.append(f"{total:,} examples is more than any past run ({most:,}): the curve is extrapolated")
    elif total < fewest:
        notes.append(f"{total:,} examples is fewer than any past run ({fewest:,}): the curve is extrapolated")
    return notes


def recommend(advisor, task: str, model: str, budget: float, sft_cost: float, pft_cost: float, *,
              metric: str | None = None, params_b: float | None = None, base_score: float | None = None,
              ratios=None, compute_cost: float = 0.0) -> Recommendation:
    """Maximise the predicted score on c_s·n_s + c_p·n_p ≤ budget − compute_cost.

    `ratios` restricts the SFT share (of examples) to a list, e.g. the paper's grid
    [1, .75, .5, .25, 0]; `compute_cost` is money spent on GPU time, not on labels; `metric`
    as in `Advisor.metric_for` (the task's one metric when not named)."""
    budget = positive("budget", budget)
    sft_cost = positive("sft_cost", sft_cost)
    pft_cost = positive("pft_cost", pft_cost)
    compute_cost = non_negative("compute_cost", compute_cost)
    if params_b is not None:
        params_b = positive("params_b", params_b)
    base_score = None if base_score is None else fraction("base_score", base_score)
    money = label_money(budget, compute_cost)
    if money is None:
        raise AdvisorError(f"compute cost {compute_cost:g} leaves nothing of the budget {budget:g} for labels")
    check_purchase(money, sft_cost, pft_cost)
    if money < min(sft_cost, pft_cost):
        raise AdvisorError(f"a label budget of {money:g} buys no example at these costs "
                           f"(SFT {sft_cost:g}, preference pair {pft_cost:g})")

    bought = [buy(r, money, sft_cost, pft_cost) for r in _shares(ratios)]
    bought = [split for split in dict.fromkeys(bought) if sum(split) > 0]
    if not bought:
        raise AdvisorError(f"a label budget of {money:g} buys no example at the allowed SFT shares")
    baselines = {"sft_only": buy(1.0, money, sft_cost, pft_cost),
                 "rule_of_thumb": buy(rule_of_thumb(money, sft_cost, pft_cost), money, sft_cost, pft_cost)}
    splits = bought + list(baselines.values())
    metric = advisor.metric_for(task, metric)
    mean, lo, hi = advisor.predict(task, model, [s for s, _ in splits], [p for _, p in splits], metric=metric,
                                   params_b=params_b, base_score=base_score)
    points = [Point(s, p, s / (s + p) if s + p else 0.0, float(m), (float(a), float(b)))
              for (s, p), m, a, b in zip(splits, mean, lo, hi)]
    curve = points[:len(bought)]
    best = max(curve, key=lambda point: point.predicted_score)  # ties: the larger SFT share
    return Recommendation(
        n_sft=best.n_sft, n_pft=best.n_pft, sft_ratio=best.sft_ratio,
        predicted_score=best.predicted_score, interval=best.interval,
        baselines=dict(zip(baselines, points[len(bought):])), curve=curve,
        warnings=_warnings(advisor, task, metric, model, params_b, base_score, best.n_sft + best.n_pft),
        label_budget=money, n_past_runs=advisor.n_runs_, task=task, model=model, metric=metric,
        basis=advisor.basis(task, model, metric=metric, params_b=params_b, base_score=base_score))
