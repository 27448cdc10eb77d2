"""The arguments `engine advise` and `engine pilot` share — which task, model and metric, the
budget and label prices, the past runs — and fitting the advisor on them. One place, so both
commands read and refuse them the same way (a bad value is one line, exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path


def checked(check, what: str):
    """An argparse type from an `advisor.validate` check: a bad value is one line, exit 2."""

    def convert(text: str):
        from advisor.errors import AdvisorError

        try:
            return check(what, text)
        except AdvisorError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def shares(text: str) -> list[float]:
    """A comma-separated list of SFT shares (fractions)."""
    from advisor.validate import fraction

    return [checked(fraction, "an SFT share")(part) for part in text.split(",")]


def amounts(text: str) -> list[float]:
    """A comma-separated list of amounts of money (each greater than 0)."""
    from advisor.validate import positive

    return [checked(positive, "a pilot budget")(part) for part in text.split(",")]


def add_panel_arguments(parser: argparse.ArgumentParser) -> None:
    """--task, --model, --metric, --params-b, --base-score, --runs, --budget and the label prices."""
    from advisor.records import REQUIRED, shipped_runs
    from advisor.validate import fraction, positive

    known = ", ".join(sorted({run.task for run in shipped_runs()}))
    parser.add_argument("--task", required=True,
                        help=f"task name; the past runs know {known} (another name borrows from them)")
    parser.add_argument("--model", required=True, help='model name, e.g. "Llama-3.1-8B (base)"')
    parser.add_argument("--metric", metavar="M",
                        help="the metric to predict in (default: the one the task's past runs use)")
    parser.add_argument("--params-b", type=checked(positive, "the model size"), metavar="X",
                        help="model size in billions of parameters (default: as your runs of the model "
                             "recorded it, else as its name says, e.g. 8B)")
    parser.add_argument("--budget", required=True, type=checked(positive, "the budget"), metavar="B",
                        help="money for labels (and compute, if --compute-cost is given)")
    parser.add_argument("--sft-cost", required=True, type=checked(positive, "the SFT cost"), metavar="C",
                        help="price of one SFT example")
    parser.add_argument("--pft-cost", required=True, type=checked(positive, "the preference-pair cost"), metavar="C",
                        help="price of one preference pair")
    parser.add_argument("--base-score", type=checked(fraction, "the base score"), metavar="S",
                        help="the untrained model's score on the task (0-1); anchors the curve")
    parser.add_argument("--runs", nargs="+", type=Path, metavar="FILE",
                        help="fit on exactly these .csv/.jsonl files, one past run per row or line with "
                             f"{', '.join(REQUIRED)} (score in 0-1) and optionally params_b, metric, source, "
                             "confidence (default: the shipped paper runs and your finished runs)")


def fitted_advisor(args: argparse.Namespace):
    """(advisor fitted on the past runs, the model's size): a size nobody states is refused."""
    from advisor import Advisor
    from engine.record.errors import UserError
    from engine.record.model_names import canonical_model, model_size
    from engine.record.past_runs import load_past_runs

    args.model = canonical_model(args.model)  # `demo` is SmolLM2-135M-Instruct, and pools with its runs
    advisor = Advisor().fit(load_past_runs(args.runs))
    params_b = advisor.size_of(args.model, args.params_b) or model_size(args.model, None)
    if params_b is None:
        raise UserError(f"--params-b is needed: the model name {args.model!r} states no size and no past run "
                        f"records it (e.g. 8 for an 8B model)")
    return advisor, params_b
