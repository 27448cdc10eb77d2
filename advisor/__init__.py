"""The advisor: past finetuning runs in, a fitted SFT × preference-data performance surface with
intervals, and the best split of a labeling budget out. Pure numpy/scipy; imports neither torch
nor textual.

Names load on first use (PEP 562), so `from advisor.errors import AdvisorError` in a CLI parser
does not pull in numpy and scipy."""

import importlib

from advisor.errors import AdvisorError

_HOMES = {
    "Advisor": "advisor.surface",
    "Point": "advisor.recommend",
    "Prediction": "advisor.surface",
    "Recommendation": "advisor.recommend",
    "Run": "advisor.records",
    "load_runs": "advisor.records",
    "metric_key": "advisor.records",
    "model_key": "advisor.records",
    "parse_params_b": "advisor.records",
    "propose_pilots": "advisor.pilot",
    "shipped_runs": "advisor.records",
}
__all__ = ["AdvisorError", *_HOMES]


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'advisor' has no attribute {name!r}")
