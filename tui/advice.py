"""The advisor as the plan screen uses it: fitted once (and again after each run) on every past
run, then asked for a recommendation and an iso-score grid, always from a worker thread. With a
GPU-hour price, the labels' prices include their measured GPU time (`engine.record.compute`), read from
the store at each question so a run that just finished counts at once.

`Planner` swaps in a newly fitted advisor in one assignment, so a question asked while a refit is
running gets a whole answer from the old fit rather than a mix of the two. The advisor (numpy,
scipy.optimize: half the start-up) is imported by the first fit, in its worker thread, so the
app paints its first frame without waiting for it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.record.compute import ComputePrice, effective_costs, measured_price
from engine.record.errors import UserError
from engine.record.model_names import canonical_model, model_size
from tui.inputs import PlanInputs

if TYPE_CHECKING:
    import numpy as np

    from advisor import Advisor, Recommendation

GRID_SHAPE = (160, 100)  # about one point per braille dot of a full-width plot
GRID_REACH = 1.25  # the grid extends a quarter past the budget line, so the line sits inside it


@dataclass(frozen=True)
class Fitted:
    """What a fit saw: how many of its past runs are local, and the tasks and models they cover."""

    n_local: int
    tasks: list[str]
    models: list[str]


@dataclass(frozen=True, eq=False)
class IsoGrid:
    """Predicted score on a grid: scores[i, j] at (n_sft[i], n_pft[j])."""

    n_sft: np.ndarray
    n_pft: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Advice:
    """A recommendation for `inputs` and the numbers behind its plots; `compute` is the GPU-hour
    price it was bought with, or None with `compute_problem` saying why the price was left out."""

    inputs: PlanInputs
    recommendation: Recommendation
    n_local: int
    compute: ComputePrice | None = None
    compute_problem: str = ""

    @property
    def costs(self) -> tuple[float, float]:
        """The prices this advice split the budget on: the labels' own, plus GPU time when priced."""
        return effective_costs(self.inputs.sft_cost, self.inputs.pft_cost, self.compute)

    @property
    def forecast(self) -> dict | None:
        """GPU hours and their cost for the recommended split, when priced."""
        return self.compute.forecast(*self.split) if self.compute else None

    @property
    def n_runs(self) -> int:
        return self.recommendation.n_past_runs

    @property
    def split(self) -> tuple[int, int]:
        return int(self.recommendation.n_sft), int(self.recommendation.n_pft)

    @property
    def prediction(self) -> tuple[float, float, float]:
        lo, hi = self.recommendation.interval
        return float(self.recommendation.predicted_score), float(lo), float(hi)


class Planner:
    """Holds the fitted advisor; every method may be called from any thread."""

    def __init__(self):
        self._advisor: Advisor | None = None
        self._fitted: Fitted | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    def fit(self) -> Fitted:
        from advisor import Advisor
        from engine.record.past_runs import load_past_runs

        runs = load_past_runs()
        advisor = Advisor().fit(runs)
        fitted = Fitted(sum(1 for r in runs if str(r.source).startswith("store:")),
                        sorted({r.task for r in runs}), sorted({r.model for r in runs}))
        with self._lock:
            self._advisor, self._fitted = advisor, fitted
        self._ready.set()
        return fitted

    def wait_fitted(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def _current(self) -> tuple[Advisor, Fitted]:
        with self._lock:
            if self._advisor is None:
                raise RuntimeError("the advisor is not fitted yet")
            return self._advisor, self._fitted

    def advise(self, inputs: PlanInputs) -> Advice:
        """The recommended split for `inputs` (AdvisorError, a ValueError, when it refuses them)."""
        advisor, fitted = self._current()
        compute, problem = None, ""
        if inputs.gpu_hour_price is not None:
            try:
                compute = measured_price(inputs.gpu_hour_price, inputs.task, inputs.model)
            except UserError as exc:
                problem = str(exc)
        costs = effective_costs(inputs.sft_cost, inputs.pft_cost, compute)
        model = canonical_model(inputs.model)  # `demo` pools with SmolLM2-135M-Instruct; a stored model knows its size
        recommendation = advisor.recommend(inputs.task, model, inputs.budget, *costs,
                                           params_b=model_size(model, inputs.params_b),
                                           base_score=inputs.base_score, compute_cost=inputs.compute_cost or 0.0)
        return Advice(inputs, recommendation, fitted.n_local, compute, problem)

    def predict(self, task: str, model: str, n_sft: int, n_pft: int, params_b: float | None = None,
                base_score: float | None = None) -> tuple[float, float, float]:
        advisor, _ = self._current()
        mean, lo, hi = advisor.predict(task, canonical_model(model), n_sft, n_pft, params_b=params_b,
                                       base_score=base_score)
        return float(mean), float(lo), float(hi)

    def iso_grid(self, advice: Advice) -> IsoGrid:
        """Predicted score over (n_sft, n_pft) from nothing to a little past the budget line."""
        import numpy as np

        advisor, _ = self._current()
        inputs, money, (sft_cost, pft_cost) = advice.inputs, advice.recommendation.label_budget, advice.costs
        sfts = np.linspace(0, GRID_REACH * money / sft_cost, GRID_SHAPE[0])
        pfts = np.linspace(0, GRID_REACH * money / pft_cost, GRID_SHAPE[1])
        model = canonical_model(inputs.model)
        return IsoGrid(sfts, pfts, advisor.score_grid(inputs.task, model, sfts, pfts,
                                                       params_b=model_size(model, inputs.params_b),
                                                       base_score=inputs.base_score))
