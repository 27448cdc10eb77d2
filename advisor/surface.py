"""`Advisor`: the surface of `advisor.curves` fitted to past runs with partial pooling.

Each (task, model) panel's parameters are  φ = μ + τ[task] + m[model] + ε[panel]:  a shared mean,
a task effect, a model effect and the panel's own deviation, each pulled toward zero by a ridge
penalty (a Gaussian prior). A panel with few or no runs therefore borrows from panels that share
its task or its model, and a base-model score given by the user pins its starting point. The fit
is one `scipy.optimize.least_squares` on data residuals plus prior residuals; its Gauss-Newton
Hessian gives a Laplace posterior, and intervals come from draws of that posterior (plus, for a
panel or task or model never seen, a fresh effect from its prior) and the residual scale.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares
from scipy.special import logit

from advisor import curves
from advisor.errors import AdvisorError
from advisor.records import Run, model_key
from advisor.validate import fraction, positive

# How far to trust a digitised point: its noise is this many times a measured run's.
CONFIDENCE_NOISE = {None: 1.0, "high": 1.0, "medium": 1.5, "low": 3.0}
INTERVAL = (0.1, 0.9)  # an 80% interval
MEAN_PRIOR_SCALE = 2.0  # weak prior on the shared mean (unconstrained units)
GLOBAL_PRIOR_SCALE = 1.0
DRAW_CACHE_SIZE = 64  # panels (with their base scores) whose posterior draws are kept


class Advisor:
    """Fitted performance surface: `fit(runs)`, then `predict`, `score_grid` and `recommend`.

    Scales are prior standard deviations on the unconstrained (logit/log) parameter scale: tasks
    and models differ a lot (one unit: a factor e in a data scale or a large shift in a share),
    and a panel's own deviation from its task + model is smaller. `noise` is the score noise of a
    measured run (figure digitising error ±0.02 plus run-to-run spread).

    `spread` scales the parameter draws behind the intervals. Independent Gaussian effects on
    seven parameters move the curve more than real panels differ, so intervals at spread 1 are
    too wide; 0.54 is what puts 80% of held-out points inside their intervals in leave-one-panel-
    out over the shipped runs (`bench/advisor_cv.py --calibrate` measures it, and checks it on
    panels the calibration did not see).
    """

    def __init__(self, *, task_scale: float = 1.0, model_scale: float = 1.0, panel_scale: float = 0.7,
                 noise: float = 0.03, spread: float = 0.54, n_draws: int = 400, random_state: int = 0):
        self.task_scale = task_scale
        self.model_scale = model_scale
        self.panel_scale = panel_scale
        self.noise = noise
        self.spread = spread
        self.n_draws = n_draws
        self.random_state = random_state

    # --- fitting ---------------------------------------------------------------------------

    def fit(self, runs) -> "Advisor":
        runs = list(runs)
        if not runs:
            raise AdvisorError("no past runs to fit on")
        if not all(isinstance(run, Run) for run in runs):
            raise AdvisorError("past runs must be advisor.records.Run records")
        self.tasks_ = sorted({r.task for r in runs})
        self.models_ = sorted({model_key(r.model) for r in runs})
        self.panels_ = sorted({(r.task, model_key(r.model)) for r in runs})
        self.based_panels_ = {(r.task, model_key(r.model)) for r in runs if r.n_sft + r.n_pft == 0}
        sizes = [r.params_b for r in runs]
        examples = [r.n_sft + r.n_pft for r in runs if r.n_sft + r.n_pft > 0]
        self.params_range_ = (min(sizes), max(sizes))
        self.examples_range_ = (min(examples), max(examples)) if examples else (0, 0)
        self.n_runs_ = len(runs)

        n_sft = np.array([r.n_sft for r in runs], dtype=float)
        n_pft = np.array([r.n_pft for r in runs], dtype=float)
        y = np.array([r.score for r in runs])
        sd = self.noise * np.array([CONFIDENCE_NOISE[r.confidence] for r in runs])
        groups = self._groups(runs)  # (n, G) 0/1: which of μ, τ, m, ε each run uses
        n_groups, p = groups.shape[1], curves.N_PANEL
        scales = np.concatenate([
            np.full(p, MEAN_PRIOR_SCALE),
            np.full(p * len(self.tasks_), self.task_scale),
            np.full(p * len(self.models_), self.model_scale),
            np.full(p * len(self.panels_), self.panel_scale),
            np.full(len(curves.GLOBALS), GLOBAL_PRIOR_SCALE)])
        prior_mean = np.zeros_like(scales)
        prior_mean[:p] = [mean for _, mean in curves.PANEL]
        prior_mean[-len(curves.GLOBALS):] = [mean for _, mean in curves.GLOBALS]

        def split(theta):
            return theta[:-len(curves.GLOBALS)].reshape(n_groups, p), theta[-len(curves.GLOBALS):]

        def residuals(theta):
            effects, glob = split(theta)
            fitted = curves.score(groups @ effects, glob, n_sft, n_pft)
            return np.concatenate([(y - fitted) / sd, (theta - prior_mean) / scales])

        def jacobian(theta):
            effects, glob = split(theta)
            d_phi, d_glob = _gradients(groups @ effects, glob, n_sft, n_pft)
            d_effects = (groups[:, :, None] * d_phi[:, None, :]).reshape(len(y), -1)
            data = -np.hstack([d_effects, d_glob]) / sd[:, None]
            return np.vstack([data, np.diag(1.0 / scales)])

        result = least_squares(residuals, prior_mean, jac=jacobian, method="trf")
        if not np.all(np.isfinite(result.x)):
            raise AdvisorError("the fit did not converge on these runs")
        self.theta_ = result.x
        self.cov_ = np.linalg.inv(result.jac.T @ result.jac)
        data_jac = result.jac[:len(y)]
        effective_params = float(np.einsum("ij,jk,ik->", data_jac, self.cov_, data_jac))
        scaled = result.fun[:len(y)] * self.noise  # residuals in a measured run's units
        self.sigma_ = math.sqrt(float(scaled @ scaled) / max(len(y) - effective_params, 1.0))
        self._draw_cache = {}
        return self

    def _groups(self, runs) -> np.ndarray:
        columns = self._columns()
        groups = np.zeros((len(runs), len(columns)))
        for i, run in enumerate(runs):
            model = model_key(run.model)
            for key in (("mean",), ("task", run.task), ("model", model), ("panel", (run.task, model))):
                groups[i, columns[key]] = 1.0
        return groups

    def _columns(self) -> dict:
        keys = [("mean",)] + [("task", t) for t in self.tasks_] + [("model", m) for m in self.models_] \
            + [("panel", pm) for pm in self.panels_]
        return {key: i for i, key in enumerate(keys)}

    # --- predicting ------------------------------------------------------------------------

    def _check_fitted(self):
        if not hasattr(self, "theta_"):
            raise AdvisorError("the advisor has not been fitted on past runs yet")

    def panel(self, task: str, model: str, base_score: float | None = None):
        """Point estimate and posterior draws of (φ, globals) for one panel, base score pinned."""
        self._check_fitted()
        model = model_key(model)
        key = (task, model, base_score)
        if key not in self._draw_cache:
            if len(self._draw_cache) >= DRAW_CACHE_SIZE:  # a user trying many base scores
                self._draw_cache.pop(next(iter(self._draw_cache)))
            self._draw_cache[key] = self._panel(task, model, base_score)
        return self._draw_cache[key]

    def _panel(self, task, model, base_score):
        p, n_glob = curves.N_PANEL, len(curves.GLOBALS)
        columns = self._columns()
        pick = np.zeros((p + n_glob, len(self.theta_)))
        fresh = np.zeros(p + n_glob)  # prior variance of effects this panel has never been seen with
        for key, scale in ((("mean",), MEAN_PRIOR_SCALE), (("task", task), self.task_scale),
                           (("model", model), self.model_scale), (("panel", (task, model)), self.panel_scale)):
            if key in columns:
                start = columns[key] * p
                pick[:p, start:start + p] = np.eye(p)
            else:
                fresh[:p] += scale ** 2
        pick[p:, -n_glob:] = np.eye(n_glob)
        mean = pick @ self.theta_
        cov = pick @ self.cov_ @ pick.T + np.diag(fresh)
        rng = np.random.default_rng(self.random_state)
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(mean)))
        draws = mean + rng.standard_normal((self.n_draws, len(mean))) @ chol.T
        if base_score is not None:
            pinned = logit(np.clip(base_score, 1e-4, 1 - 1e-4))
            mean[curves.BASE] = pinned
            draws[:, curves.BASE] = pinned
        return mean, draws

    def predict(self, task: str, model: str, n_sft, n_pft, params_b: float | None = None,
                base_score: float | None = None):
        """(mean, lo, hi): the predicted score and its 80% interval, for scalars or arrays.

        `params_b` is checked but not used: two model sizes are too few to learn a size effect, so
        the size only feeds `recommend`'s extrapolation warnings."""
        if params_b is not None:
            positive("params_b", params_b)
        base_score = None if base_score is None else fraction("base_score", base_score)
        n_sft = _examples("n_sft", n_sft)
        n_pft = _examples("n_pft", n_pft)
        n_sft, n_pft = np.broadcast_arrays(n_sft, n_pft)
        mean_phi, draws = self.panel(task, model, base_score)
        draws = mean_phi + self.spread * (draws - mean_phi)
        p = curves.N_PANEL
        mean = curves.score(mean_phi[:p], mean_phi[p:], n_sft, n_pft)
        flat_s, flat_p = n_sft.ravel(), n_pft.ravel()
        sampled = curves.score(draws[:, None, :p], draws[:, None, p:], flat_s[None], flat_p[None])
        # One noise draw per posterior draw: each point's interval is then the same whichever
        # other points are asked for alongside it.
        noise = np.random.default_rng(self.random_state + 1).standard_normal((self.n_draws, 1))
        sampled = sampled + self.sigma_ * noise
        lo, hi = (np.clip(q, 0.0, 1.0).reshape(n_sft.shape) for q in np.quantile(sampled, INTERVAL, axis=0))
        lo, hi = np.minimum(lo, mean), np.maximum(hi, mean)
        if mean.ndim == 0:
            return float(mean), float(lo), float(hi)
        return mean, lo, hi

    def score_grid(self, task: str, model: str, n_sft, n_pft, *, base_score: float | None = None) -> np.ndarray:
        """Predicted score on a grid for iso-score contours: result[i, j] at (n_sft[i], n_pft[j])."""
        self._check_fitted()
        base_score = None if base_score is None else fraction("base_score", base_score)
        n_sft = _examples("n_sft", np.asarray(n_sft, dtype=float).ravel())
        n_pft = _examples("n_pft", np.asarray(n_pft, dtype=float).ravel())
        mean_phi, _ = self.panel(task, model, base_score)
        p = curves.N_PANEL
        return curves.score(mean_phi[:p], mean_phi[p:], n_sft[:, None], n_pft[None, :])

    def recommend(self, task: str, model: str, budget: float, sft_cost: float, pft_cost: float, *,
                  params_b: float | None = None, base_score: float | None = None, ratios=None,
                  compute_cost: float = 0.0):
        """The best split of `budget` on this task and model; see `advisor.recommend.recommend`."""
        from advisor.recommend import recommend

        return recommend(self, task, model, budget, sft_cost, pft_cost, params_b=params_b,
                         base_score=base_score, ratios=ratios, compute_cost=compute_cost)


def _examples(name: str, values) -> np.ndarray:
    """Example counts as floats; non-numbers, NaN, infinite or negative counts are refused."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise AdvisorError(f"{name} must be numbers, got {values!r}") from None
    if not np.all(np.isfinite(array)):
        raise AdvisorError(f"{name} must be finite numbers")
    if np.any(array < 0):
        raise AdvisorError(f"{name} must be 0 or more")
    return array


def _gradients(phi, glob, n_sft, n_pft, step: float = 1e-6):
    """d score / d φ (n, P) and d score / d globals (n, 3) by forward differences, row by row."""
    base = curves.score(phi, glob, n_sft, n_pft)
    d_phi = np.empty_like(phi)
    for j in range(phi.shape[1]):
        moved = phi.copy()
        moved[:, j] += step
        d_phi[:, j] = (curves.score(moved, glob, n_sft, n_pft) - base) / step
    d_glob = np.empty((len(base), len(glob)))
    for j in range(len(glob)):
        moved = glob.copy()
        moved[j] += step
        d_glob[:, j] = (curves.score(phi, moved, n_sft, n_pft) - base) / step
    return d_phi, d_glob
