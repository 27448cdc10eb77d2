"""The performance surface score(n_sft, n_pft) for one (task, model), as a closed form.

Scores are fractions in [0, 1], so the surface works on the *gap* to a perfect score and lets
each mechanism the paper describes close a share of what is left (shares multiply, so gains
saturate and never pass 1):

    gap(n_s, n_p) = (1 - base)
                    · (1 - fmt  · H(n_s + n_p; 10, 2))              any finetuning teaches the format
                    · (1 - reach_s · H(n_s + λ·n_p; k_s, a))         task learning, saturating in log data
                    · (1 - reach_p · H(n_p; k_p, a_p) · H(n_s; k_q, a))   preference gain, unlocked by SFT
    score = 1 - gap

H(n; k, a) = n^a / (n^a + k^a) is a logistic curve in log n: gains saturate in log-data. A
preference pair is worth λ SFT examples for learning the task (λ ≪ 1 on math: the cold start);
the gain only preference data give is gated by H(n_s; k_q, a), so it needs some SFT first, and it
acts on the gap SFT leaves (the SFT × PFT interaction). No past run has between 0 and 100
examples, so the format step's scale (10 examples, slope 2) cannot be fitted and is fixed.

Per-panel parameters (unconstrained: logits and logs) are pooled across tasks and models by
`advisor.surface`; the shape parameters in `GLOBALS` are shared by every panel.

Model size. The past runs a user starts from are all 7.6-8B models, and a 135M model does not
close half of its gap to a perfect GSM8K score after 1,000 examples because an 8B model does.
So the four shares — the base score and the shares of the gap that format, task learning and
preference data close — have odds that scale as a power of the model's size:
logit(share) += size_slope · ln(params_b / 8). The slope is a global parameter like the others:
fitted where the runs span sizes (the user's own small-model runs), and otherwise set by its
prior, a slope of 1 ± 0.5 (the odds of each share in proportion to size, give or take a factor
of size^0.5). Two sizes 5% apart cannot teach it, so on the paper's runs alone it is the prior,
and its spread widens intervals the further a model's size is from 8B.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

# Per-panel parameters: name, prior mean (on the unconstrained scale) and why.
PANEL = (
    ("base", 0.0),          # logit of the base model's score
    ("sft_reach", 0.0),     # logit of the share of the gap SFT can close at saturation
    ("sft_half", np.log(300.0)),    # log examples at which task learning is half done
    ("pair_worth", np.log(0.1)),    # log SFT examples one preference pair is worth for the task
    ("pref_reach", -1.0),   # logit of the share of the remaining gap preference data can close
    ("pref_half", np.log(3000.0)),  # log pairs at which the preference gain is half done
    ("format", -2.0),       # logit of the share of the gap closed by any finetuning at all
)
GLOBALS = (
    ("slope", 0.0),                 # log slope of task learning in log data
    ("unlock_half", np.log(100.0)), # log SFT examples that half-unlock the preference gain
    ("pref_slope", 0.0),            # log slope of the preference gain in log data
    ("size_slope", 1.0),            # change in the shares' log odds per e-fold of model size
)
GLOBAL_SCALES = (1.0, 1.0, 1.0, 0.5)  # prior standard deviations of the globals
SIZE_REFERENCE_B = 8.0  # the paper's models: other parameters' priors speak of this size
SIZED = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0])  # base, sft_reach, pref_reach, format: shares
N_PANEL = len(PANEL)
BASE = 0
SIZE_SLOPE = 3  # index of size_slope in GLOBALS
FORMAT_HALF, FORMAT_SLOPE = 10.0, 2.0


def hill(n, log_half, slope):
    """n^a / (n^a + k^a), written as a logistic in log n; 0 at n = 0."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore"):
        return expit(slope * (np.log(n) - log_half))


def log_size(params_b):
    """The size covariate ln(params_b / 8); 0 (the reference) for a model of unknown size."""
    return 0.0 if params_b is None else np.log(np.asarray(params_b, dtype=float) / SIZE_REFERENCE_B)


def score(phi, glob, n_sft, n_pft, size=0.0):
    """Predicted score; `phi` (..., N_PANEL) and `glob` (..., 4) broadcast against n_sft, n_pft;
    `size` is `log_size` of the model (broadcasting like n_sft)."""
    phi, glob = np.asarray(phi, dtype=float), np.asarray(glob, dtype=float)
    phi = phi + (glob[..., SIZE_SLOPE] * np.asarray(size, dtype=float))[..., None] * SIZED
    base, sft_reach, sft_half, pair_worth, pref_reach, pref_half, fmt = (phi[..., i] for i in range(N_PANEL))
    slope, unlock_half, pref_slope = np.exp(glob[..., 0]), glob[..., 1], np.exp(glob[..., 2])
    fmt_gap = 1 - expit(fmt) * hill(n_sft + n_pft, np.log(FORMAT_HALF), FORMAT_SLOPE)
    task_gap = 1 - expit(sft_reach) * hill(n_sft + np.exp(pair_worth) * n_pft, sft_half, slope)
    pref_gap = 1 - expit(pref_reach) * hill(n_pft, pref_half, pref_slope) * hill(n_sft, unlock_half, slope)
    return 1 - (1 - expit(base)) * fmt_gap * task_gap * pref_gap
