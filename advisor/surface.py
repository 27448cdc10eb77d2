"""`Advisor`: the surface of `advisor.curves` fitted to past runs with partial pooling.

Each (task, metric, model) panel's parameters are  φ = μ + τ[task, metric] + m[model] + ε[panel]
(+ the size term of `advisor.curves`): a shared mean, a task effect, a model effect and the
panel's own deviation, each pulled toward zero by a ridge penalty (a Gaussian prior). A panel
with few or no runs therefore borrows from panels that share its task or its model, and a
base-model score given by the user pins its starting point. Runs of one task in two metrics
(say ROUGE-L and preference accuracy) measure different things on different scales, so the
task effect is per (task, metric) and they never pool; `advisor.records.metric_key` folds the
names that mean one measurement. The fit
is one `scipy.optimize.least_squares` on data residuals plus prior residuals; its Gauss-Newton
Hessian gives a Laplace posterior, and intervals come from draws of that posterior (plus, for a
panel or task or model never seen, a fresh effect from its prior) and the residual scale.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter, defaultdict

import numpy as np
from scipy.optimize import least_squares
from scipy.special import logit

from advisor import curves
from advisor.errors import AdvisorError
from advisor.records import Run, metric_key, model_key, parse_params_b
from advisor.validate import fraction, positive

# How far to trust a digitised point: its noise is this many times a measured run's.
CONFIDENCE_NOISE = {None: 1.0, "high": 1.0, "medium": 1.5, "low": 3.0}
INTERVAL = (0.1, 0.9)  # an 80% interval
MEAN_PRIOR_SCALE = 2.0  # weak prior on the shared mean (unconstrained units)
DRAW_CACHE_SIZE = 64  # panels whose posterior draws are kept


class Advisor:
    """Fitted performance surface: `fit(runs)`, then `predict`, `score_grid` and `recommend`.

    Scales are prior standard deviations on the unconstrained (logit/log) parameter scale: tasks
    and models differ a lot (one unit: a factor e in a data scale or a large shift in a share),
    and a panel's own deviation from its task + model is smaller. `noise` is the score noise of a
    measured run (figure digitising error ±0.02 plus run-to-run spread).

    `spread` scales the parameter draws behind the intervals. Independent Gaussian effects on
    seven parameters move the curve more than real panels differ, so intervals at spread 1 are
    too wide; 0.56 is what puts 80% of held-out points inside their intervals in leave-one-panel-
    out over the shipped runs (`bench/advisor_cv.py --calibrate` measures it, and checks it on
    panels the calibration did not see).
    """

    def __init__(self, *, task_scale: float = 1.0, model_scale: float = 1.0, panel_scale: float = 0.7,
                 noise: float = 0.03, spread: float = 0.56, n_draws: int = 400, random_state: int = 0):
        self.task_scale = task_scale
        self.model_scale = model_scale
        self.panel_scale = panel_scale
        self.noise = noise
        self.spread = spread
        self.n_draws = n_draws
        self.random_state = random_state

    def get_params(self, deep: bool = False) -> dict:
        """The constructor's settings, as scikit-learn's `get_params` (no nested estimators)."""
        return {name: getattr(self, name) for name in _init_names()}

    def set_params(self, **params) -> "Advisor":
        """Change settings in place (scikit-learn's `set_params`); a fitted state is dropped
        because it no longer matches them."""
        names = _init_names()
        for name, value in params.items():
            if name not in names:
                raise AdvisorError(f"Advisor has no setting {name!r} (settings: {', '.join(names)})")
            setattr(self, name, value)
        if params and hasattr(self, "theta_"):
            for attribute in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
                delattr(self, attribute)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(Advisor.__init__).parameters.items()
                    if name in _init_names()}
        changed = [f"{name}={value!r}" for name, value in self.get_params().items() if value != defaults[name]]
        return f"Advisor({', '.join(changed)})"

    # --- fitting ---------------------------------------------------------------------------

    def fit(self, runs) -> "Advisor":
        runs = list(runs)
        if not runs:
            raise AdvisorError("no past runs to fit on")
        if not all(isinstance(run, Run) for run in runs):
            raise AdvisorError("past runs must be advisor.records.Run records")
        keys = [_panel_key(r.task, r.metric, r.model) for r in runs]
        self.tasks_ = sorted({task for task, _, _ in keys})
        metrics = defaultdict(set)
        for task, metric, _ in keys:
            metrics[task].add(metric)
        self.metrics_ = {task: sorted(found) for task, found in metrics.items()}
        self.task_metrics_ = sorted({(task, metric) for task, metric, _ in keys})
        self.models_ = sorted({model for _, _, model in keys})
        self.panels_ = sorted(set(keys))
        self.sizes_ = {model: r.params_b for (_, _, model), r in zip(keys, runs)}
        self.panel_counts_ = Counter(key for key, r in zip(keys, runs) if r.n_sft + r.n_pft > 0)
        bases = defaultdict(list)
        for key, r in zip(keys, runs):
            if r.n_sft + r.n_pft == 0:
                bases[key].append(r.score)
        self.panel_bases_ = {key: float(np.mean(scores)) for key, scores in bases.items()}
        sizes = [r.params_b for r in runs]
        examples = [r.n_sft + r.n_pft for r in runs if r.n_sft + r.n_pft > 0]
        self.params_range_ = (min(sizes), max(sizes))
        self.examples_range_ = (min(examples), max(examples)) if examples else (0, 0)
        self.n_runs_ = len(runs)

        n_sft = np.array([r.n_sft for r in runs], dtype=float)
        n_pft = np.array([r.n_pft for r in runs], dtype=float)
        size = curves.log_size(sizes)
        y = np.array([r.score for r in runs])
        sd = self.noise * np.array([CONFIDENCE_NOISE[r.confidence] for r in runs])
        groups = self._groups(keys)  # (n, G) 0/1: which of μ, τ, m, ε each run uses
        n_groups, p, n_glob = groups.shape[1], curves.N_PANEL, len(curves.GLOBALS)
        scales = np.concatenate([
            np.full(p, MEAN_PRIOR_SCALE),
            np.full(p * len(self.task_metrics_), self.task_scale),
            np.full(p * len(self.models_), self.model_scale),
            np.full(p * len(self.panels_), self.panel_scale),
            curves.GLOBAL_SCALES])
        prior_mean = np.zeros_like(scales)
        prior_mean[:p] = [mean for _, mean in curves.PANEL]
        prior_mean[-n_glob:] = [mean for _, mean in curves.GLOBALS]

        def split(theta):
            return theta[:-n_glob].reshape(n_groups, p), theta[-n_glob:]

        def residuals(theta):
            effects, glob = split(theta)
            fitted = curves.score(groups @ effects, glob, n_sft, n_pft, size)
            return np.concatenate([(y - fitted) / sd, (theta - prior_mean) / scales])

        def jacobian(theta):
            effects, glob = split(theta)
            d_phi, d_glob = _gradients(groups @ effects, glob, n_sft, n_pft, size)
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

    def _groups(self, keys) -> np.ndarray:
        columns = self._columns()
        groups = np.zeros((len(keys), len(columns)))
        for i, (task, metric, model) in enumerate(keys):
            for key in (("mean",), ("task", (task, metric)), ("model", model), ("panel", (task, metric, model))):
                groups[i, columns[key]] = 1.0
        return groups

    def _columns(self) -> dict:
        keys = [("mean",)] + [("task", tm) for tm in self.task_metrics_] + [("model", m) for m in self.models_] \
            + [("panel", pm) for pm in self.panels_]
        return {key: i for i, key in enumerate(keys)}

    # --- predicting ------------------------------------------------------------------------

    def _check_fitted(self):
        if not hasattr(self, "theta_"):
            raise AdvisorError("the advisor has not been fitted on past runs yet")

    def metric_for(self, task: str, metric: str | None = None) -> str:
        """The metric a prediction for `task` is in: `metric` (folded by `metric_key`) when
        named; else the one metric the task's past runs use; a task with runs in several metrics
        needs one named, and a task with no runs has no known metric ("")."""
        self._check_fitted()
        if metric is not None and str(metric).strip():
            return metric_key(metric)
        known = self.metrics_.get(task, [])
        if len(known) > 1:
            names = ", ".join(name or "(unnamed)" for name in known)
            raise AdvisorError(f"task {task!r} has past runs in several metrics ({names}): name the one to predict")
        return known[0] if known else ""

    def size_of(self, model: str, params_b: float | None = None) -> float | None:
        """The model's size in billions: as given, else as its past runs recorded it, else as its
        name states; None when nothing says."""
        if params_b is not None:
            return positive("params_b", params_b)
        self._check_fitted()
        known = self.sizes_.get(model_key(model))
        return known if known is not None else parse_params_b(model)

    def panel(self, task: str, model: str, *, metric: str | None = None):
        """Posterior mean and draws of (φ, globals) for one panel, before any base score is pinned
        (draws at full width; `surfaces` scales them by `spread`)."""
        key = (task, self.metric_for(task, metric), model_key(model))
        if key not in self._draw_cache:
            if len(self._draw_cache) >= DRAW_CACHE_SIZE:  # a user trying many panels
                self._draw_cache.pop(next(iter(self._draw_cache)))
            self._draw_cache[key] = self._panel(*key)
        return self._draw_cache[key]

    def _panel(self, task, metric, model):
        p, n_glob = curves.N_PANEL, len(curves.GLOBALS)
        columns = self._columns()
        pick = np.zeros((p + n_glob, len(self.theta_)))
        fresh = np.zeros(p + n_glob)  # prior variance of effects this panel has never been seen with
        for key, scale in ((("mean",), MEAN_PRIOR_SCALE), (("task", (task, metric)), self.task_scale),
                           (("model", model), self.model_scale),
                           (("panel", (task, metric, model)), self.panel_scale)):
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
        return mean, draws

    def surfaces(self, task: str, model: str, *, metric: str | None = None, params_b: float | None = None,
                 base_score: float | None = None):
        """(mean, draws, size): the panel's parameters at the posterior mean and `n_draws` draws
        scaled by `spread` (the draws behind the intervals), with the base score pinned, and
        the size covariate to pass to `advisor.curves.score`."""
        base_score = None if base_score is None else fraction("base_score", base_score)
        size = curves.log_size(self.size_of(model, params_b))
        mean_phi, draws = self.panel(task, model, metric=metric)
        mean_phi, draws = mean_phi.copy(), mean_phi + self.spread * (draws - mean_phi)
        if base_score is not None:
            # pin the base score at the model's own size: the size term shifts the base logit too
            pinned = logit(np.clip(base_score, 1e-4, 1 - 1e-4))
            slope = curves.N_PANEL + curves.SIZE_SLOPE
            mean_phi[curves.BASE] = pinned - mean_phi[slope] * size
            draws[:, curves.BASE] = pinned - draws[:, slope] * size
        return mean_phi, draws, size

    def predict(self, task: str, model: str, n_sft, n_pft, *, metric: str | None = None,
                params_b: float | None = None, base_score: float | None = None) -> "Prediction":
        """The predicted score and its 80% interval, for scalars or arrays: a `Prediction`, which
        unpacks as (mean, lo, hi) and says which metric the scores are in.

        `params_b` (default: the size the model's runs recorded, else its name's) places the model
        on the size covariate; `metric` as in `metric_for`."""
        metric = self.metric_for(task, metric)
        n_sft = _examples("n_sft", n_sft)
        n_pft = _examples("n_pft", n_pft)
        n_sft, n_pft = np.broadcast_arrays(n_sft, n_pft)
        mean_phi, draws, size = self.surfaces(task, model, metric=metric, params_b=params_b, base_score=base_score)
        p = curves.N_PANEL
        mean = curves.score(mean_phi[:p], mean_phi[p:], n_sft, n_pft, size)
        flat_s, flat_p = n_sft.ravel(), n_pft.ravel()
        sampled = curves.score(draws[:, None, :p], draws[:, None, p:], flat_s[None], flat_p[None], size)
        # One noise draw per posterior draw: each point's interval is then the same whichever
        # other points are asked for alongside it.
        noise = np.random.default_rng(self.random_state + 1).standard_normal((self.n_draws, 1))
        sampled = sampled + self.sigma_ * noise
        lo, hi = (np.clip(q, 0.0, 1.0).reshape(n_sft.shape) for q in np.quantile(sampled, INTERVAL, axis=0))
        lo, hi = np.minimum(lo, mean), np.maximum(hi, mean)
        if mean.ndim == 0:
            return Prediction(float(mean), float(lo), float(hi), metric)
        return Prediction(mean, lo, hi, metric)

    def score_grid(self, task: str, model: str, n_sft, n_pft, *, metric: str | None = None,
                   params_b: float | None = None, base_score: float | None = None) -> np.ndarray:
        """Predicted score on a grid for iso-score contours: result[i, j] at (n_sft[i], n_pft[j])."""
        self._check_fitted()
        n_sft = _examples("n_sft", np.asarray(n_sft, dtype=float).ravel())
        n_pft = _examples("n_pft", np.asarray(n_pft, dtype=float).ravel())
        mean_phi, _, size = self.surfaces(task, model, metric=metric, params_b=params_b, base_score=base_score)
        p = curves.N_PANEL
        return curves.score(mean_phi[:p], mean_phi[p:], n_sft[:, None], n_pft[None, :], size)

    def basis(self, task: str, model: str, *, metric: str | None = None, params_b: float | None = None,
              base_score: float | None = None) -> str:
        """One line on what a prediction for this panel rests on: its own runs or whose runs it
        is pooled from, what anchors its start, and whether the model's size is covered."""
        metric = self.metric_for(task, metric)
        key = (task, metric, model_key(model))
        own = self.panel_counts_.get(key, 0)
        if own:
            evidence = f"fitted on {own} run{'s' * (own > 1)} of this model on this task"
        else:
            sizes = [self.sizes_[m] for (t, mt, m), n in self.panel_counts_.items() if (t, mt) == (task, metric) and n]
            where = "this task" if sizes else "other tasks"
            sizes = sizes or [self.sizes_[m] for (_, _, m), n in self.panel_counts_.items() if n]
            evidence = f"pooled from {size_range(sizes)} runs on {where}"
        if base_score is not None:
            anchor = f"anchored on your base score {base_score:.3f}"
        elif key in self.panel_bases_:
            anchor = f"anchored on its measured base score {self.panel_bases_[key]:.3f}"
        else:
            anchor = "base score guessed from other models (measure it to anchor the curve)"
        size = self.size_of(model, params_b)
        low, high = self.params_range_
        if size is None:
            note = "size unknown: treated as 8B"
        elif key[2] not in self.models_ and not low <= size <= high:
            note = f"no runs of a model this size ({size_range([size])}): gains scaled to its size"
        else:
            return f"{evidence}, {anchor}"
        return f"{evidence}, {anchor}; {note}"

    def recommend(self, task: str, model: str, budget: float, sft_cost: float, pft_cost: float, *,
                  metric: str | None = None, params_b: float | None = None, base_score: float | None = None,
                  ratios=None, compute_cost: float = 0.0):
        """The best split of `budget` on this task and model; see `advisor.recommend.recommend`."""
        from advisor.recommend import recommend

        return recommend(self, task, model, budget, sft_cost, pft_cost, metric=metric, params_b=params_b,
                         base_score=base_score, ratios=ratios, compute_cost=compute_cost)


class Prediction(tuple):
    """(mean, lo, hi) — unpacks like the plain tuple it is — plus the metric the scores are in."""

    def __new__(cls, mean, lo, hi, metric: str):
        prediction = super().__new__(cls, (mean, lo, hi))
        prediction.metric = metric
        return prediction

    def to_dict(self) -> dict:
        mean, lo, hi = (np.asarray(v).tolist() for v in self)
        return {"predicted_score": mean, "interval": [lo, hi], "metric": self.metric}


def _init_names() -> list[str]:
    return [name for name in inspect.signature(Advisor.__init__).parameters if name != "self"]


def _panel_key(task: str, metric: str, model: str) -> tuple[str, str, str]:
    return task, metric_key(metric), model_key(model)


def size_range(sizes) -> str:
    """Parameter counts in billions as people read them, to three figures: 0.135B, 0.000115–8B."""
    low, high = min(sizes), max(sizes)
    return f"{low:.3g}B" if low == high else f"{low:.3g}–{high:.3g}B"


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


def _gradients(phi, glob, n_sft, n_pft, size, step: float = 1e-6):
    """d score / d φ (n, P) and d score / d globals (n, G) by forward differences, row by row."""
    base = curves.score(phi, glob, n_sft, n_pft, size)
    d_phi = np.empty_like(phi)
    for j in range(phi.shape[1]):
        moved = phi.copy()
        moved[:, j] += step
        d_phi[:, j] = (curves.score(moved, glob, n_sft, n_pft, size) - base) / step
    d_glob = np.empty((len(base), len(glob)))
    for j in range(len(glob)):
        moved = glob.copy()
        moved[j] += step
        d_glob[:, j] = (curves.score(phi, moved, n_sft, n_pft, size) - base) / step
    return d_phi, d_glob
