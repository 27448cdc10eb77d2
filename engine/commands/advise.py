"""`engine advise`: how many SFT examples and preference pairs to buy with a budget, the score to
expect (with an 80% interval), the same for SFT-only and the paper's rule of thumb, and the
predicted score along the budget line. Fits the advisor on the past runs each time (well under a
second); never loads torch or textual.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PLOT_WIDTH, PLOT_HEIGHT = 61, 12


def _checked(check, what: str):
    """An argparse type from an `advisor.validate` check: a bad value is one line, exit 2."""

    def convert(text: str):
        from advisor.errors import AdvisorError

        try:
            return check(what, text)
        except AdvisorError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _shares(text: str) -> list[float]:
    from advisor.validate import fraction

    return [_checked(fraction, "an SFT share")(part) for part in text.split(",")]


def register(sub: argparse._SubParsersAction) -> None:
    from advisor.validate import fraction, non_negative, positive

    parser = sub.add_parser("advise", help="recommend how to split a labeling budget between SFT and preference data",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, help="task name, e.g. gsm8k_math")
    parser.add_argument("--model", required=True, help='model name, e.g. "Llama-3.1-8B (base)"')
    parser.add_argument("--params-b", type=_checked(positive, "the model size"), metavar="X",
                        help="model size in billions of parameters (read from the model name when it says, e.g. 8B)")
    parser.add_argument("--budget", required=True, type=_checked(positive, "the budget"), metavar="B",
                        help="money for labels (and compute, if --compute-cost is given)")
    parser.add_argument("--sft-cost", required=True, type=_checked(positive, "the SFT cost"), metavar="C",
                        help="price of one SFT example")
    parser.add_argument("--pft-cost", required=True, type=_checked(positive, "the preference-pair cost"), metavar="C",
                        help="price of one preference pair")
    parser.add_argument("--compute-cost", type=_checked(non_negative, "the compute cost"), default=0.0, metavar="X",
                        help="money spent on GPU time, taken off the budget before buying labels")
    parser.add_argument("--gpu-hour-price", type=_checked(non_negative, "the GPU-hour price"), metavar="P",
                        help="price of one GPU-hour: adds the GPU time each example needs, measured by your "
                             "finished runs of this model, to its price, and forecasts the hours")
    parser.add_argument("--base-score", type=_checked(fraction, "the base score"), metavar="S",
                        help="the untrained model's score on the task (0-1); anchors the curve")
    parser.add_argument("--runs", nargs="+", type=Path, metavar="FILE",
                        help="fit on exactly these .csv/.jsonl files "
                             "(default: the shipped paper runs and your finished runs)")
    parser.add_argument("--ratios", type=_shares, metavar="R,R,…",
                        help="allowed SFT shares of examples, e.g. 1,0.75,0.5,0.25,0 (default: any)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=advise)


def advise(args: argparse.Namespace) -> int:
    from advisor import Advisor
    from advisor.records import parse_params_b
    from engine.record.compute import effective_costs, measured_price
    from engine.record.errors import UserError
    from engine.record.past_runs import load_past_runs

    params_b = args.params_b or parse_params_b(args.model)
    if params_b is None:
        raise UserError(f"--params-b is needed: the model name {args.model!r} states no size (e.g. 8 for an 8B model)")
    price = None if args.gpu_hour_price is None else measured_price(args.gpu_hour_price, args.task, args.model)
    sft_cost, pft_cost = effective_costs(args.sft_cost, args.pft_cost, price)
    runs = load_past_runs(args.runs)
    rec = Advisor().fit(runs).recommend(args.task, args.model, args.budget, sft_cost, pft_cost,
                                        params_b=params_b, base_score=args.base_score, ratios=args.ratios,
                                        compute_cost=args.compute_cost)
    compute = price.forecast(rec.n_sft, rec.n_pft) if price else None
    if args.json:
        import json

        from engine.record import output

        output.say(json.dumps(rec.to_dict() | {"params_b": params_b} | ({"compute": compute} if compute else {})))
    else:
        _show(rec, args, compute)
    return 0


def _show(rec, args, compute: dict | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.task} · {args.model} · {rec.label_budget:,.2f} for labels"
                       + (" and their GPU time" if compute else ""),
                  caption=f"predicted score; fitted on {rec.n_past_runs} past runs", title_justify="left")
    for column in ("", "SFT", "pairs", "SFT share", "score", "80% interval", "vs rec."):
        table.add_column(column, justify="left" if not column else "right")
    rows = [("recommended", rec), ("SFT only", rec.baselines["sft_only"]),
            ("rule of thumb", rec.baselines["rule_of_thumb"])]
    for name, point in rows:
        lo, hi = point.interval
        delta = "" if point is rec else f"{point.predicted_score - rec.predicted_score:+.3f}"
        table.add_row(name, f"{point.n_sft:,}", f"{point.n_pft:,}", f"{point.sft_ratio:.0%}",
                      f"{point.predicted_score:.3f}", f"{lo:.3f}–{hi:.3f}", delta,
                      style="bold cyan" if point is rec else None)
    from engine.record import output

    console = Console(file=output.stdout())
    console.print(table)
    if compute:
        console.print(f"GPU time for the recommended split: {compute['forecast_hours']:,.2f} hours × "
                      f"{compute['gpu_hour_price']:g} = {compute['forecast_cost']:,.2f}, included in the budget "
                      f"(measured on {compute['measured_runs']} of your runs, {compute['epochs']:g} epochs)",
                      highlight=False)
    for warning in rec.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print()
    console.print(_plot(rec), highlight=False)


def _plot(rec) -> str:
    """Predicted score (●) and its interval (·) along the budget line, SFT share 0% → 100%;
    R marks the recommendation. Drawn in characters: the engine never loads a plotting library."""
    lows = [p.interval[0] for p in rec.curve]
    highs = [p.interval[1] for p in rec.curve]
    bottom, top = min(lows), max(highs)
    span = max(top - bottom, 1e-6)

    def row(score: float) -> int:
        return round((top - score) / span * (PLOT_HEIGHT - 1))

    grid = [[" "] * PLOT_WIDTH for _ in range(PLOT_HEIGHT)]
    for point in rec.curve:
        column = round(point.sft_ratio * (PLOT_WIDTH - 1))
        for r in range(row(point.interval[1]), row(point.interval[0]) + 1):
            if grid[r][column] == " ":
                grid[r][column] = "[dim]·[/]"
        grid[row(point.predicted_score)][column] = "[blue]●[/]"
    grid[row(rec.predicted_score)][round(rec.sft_ratio * (PLOT_WIDTH - 1))] = "[bold cyan]R[/]"
    lines = [f"{top - i * span / (PLOT_HEIGHT - 1):6.3f} │" + "".join(cells) for i, cells in enumerate(grid)]
    lines.append(" " * 7 + "└" + "─" * PLOT_WIDTH)
    lines.append(" " * 8 + "0% SFT" + " " * (PLOT_WIDTH - 25) + "SFT share of examples  100%")
    legend = "score along the budget line:  [blue]●[/] predicted  [dim]·[/] 80% interval  [bold cyan]R[/] recommended"
    return legend + "\n" + "\n".join(lines)
