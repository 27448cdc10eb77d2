"""`engine advise`: how many SFT examples and preference pairs to buy with a budget, the score to
expect (with an 80% interval), the same for SFT-only and the paper's rule of thumb, and the
predicted score along the budget line. Fits the advisor on the past runs each time (well under a
second); never loads torch or textual unless `--forecast` asks for the recommended run's forecast
on this machine (which calibrates it, as `engine forecast` does).
"""

from __future__ import annotations

import argparse

from engine.commands.planning import add_panel_arguments, checked, fitted_advisor, shares

PLOT_WIDTH, PLOT_HEIGHT = 61, 12


def register(sub: argparse._SubParsersAction) -> None:
    from advisor.validate import non_negative

    parser = sub.add_parser("advise", help="recommend how to split a labeling budget between SFT and preference data",
                            description=__doc__.split("\n\n")[0])
    add_panel_arguments(parser)
    parser.add_argument("--compute-cost", type=checked(non_negative, "the compute cost"), default=0.0, metavar="X",
                        help="money spent on GPU time, taken off the budget before buying labels")
    parser.add_argument("--gpu-hour-price", type=checked(non_negative, "the GPU-hour price"), metavar="P",
                        help="price of one GPU-hour: adds the GPU time each example needs, measured by your "
                             "finished runs of this model, to its price, and forecasts the hours")
    parser.add_argument("--ratios", type=shares, metavar="R,R,…",
                        help="allowed SFT shares of examples, e.g. 1,0.75,0.5,0.25,0 (default: any)")
    parser.add_argument("--forecast", action="store_true",
                        help="add the recommended run's forecast on this machine (time and memory per stage, "
                             "device-hours, money) to the compute block; needs a model `engine run` can load")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=advise)


def advise(args: argparse.Namespace) -> int:
    from engine.record.compute import effective_costs, measured_price

    advisor, params_b = fitted_advisor(args)
    price = None if args.gpu_hour_price is None else measured_price(args.gpu_hour_price, args.task, args.model)
    sft_cost, pft_cost = effective_costs(args.sft_cost, args.pft_cost, price)
    rec = advisor.recommend(args.task, args.model, args.budget, sft_cost, pft_cost, metric=args.metric,
                            params_b=params_b, base_score=args.base_score, ratios=args.ratios,
                            compute_cost=args.compute_cost)
    compute = price.forecast(rec.n_sft, rec.n_pft) if price else None
    if args.forecast:
        compute = (compute or {}) | {"forecast": _run_forecast(args, rec.n_sft, rec.n_pft)}
    if args.json:
        import json

        from engine.record import output

        output.say(json.dumps(rec.to_dict() | {"params_b": params_b} | ({"compute": compute} if compute else {})))
    else:
        _show(rec, args, compute)
    return 0


def _run_forecast(args, n_sft: int, n_pft: int) -> dict:
    """`engine forecast --json` for the recommended split with the engine's default settings."""
    from engine.record import config
    from engine.training import forecast
    from engine.training.train import build_plan

    if n_sft + n_pft == 0:
        from engine.record.errors import UserError

        raise UserError("the recommendation buys no examples: there is no run to forecast")
    plan, _ = build_plan(config.build(None, {"task": args.task, "model": args.model, "n_sft": n_sft, "n_pft": n_pft}))
    return forecast.forecast(plan, gpu_hour_price=args.gpu_hour_price).as_dict()


def _show(rec, args, compute: dict | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{args.task} ({rec.metric or 'unnamed metric'}) · {args.model} · "  # the user's words
                             f"{rec.label_budget:,.2f} for labels"
                             + (" and their GPU time" if compute and "forecast_hours" in compute else "")),
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
    console.print(f"basis: {rec.basis}", markup=False, highlight=False)
    if compute and "forecast_hours" in compute:
        console.print(f"GPU time for the recommended split: {compute['forecast_hours']:,.2f} hours × "
                      f"{compute['gpu_hour_price']:g} = {compute['forecast_cost']:,.2f}, included in the budget "
                      f"(measured on {compute['measured_runs']} of your runs, {compute['epochs']:g} epochs)",
                      highlight=False)
    if compute and "forecast" in compute:
        figures = compute["forecast"]
        console.print(f"forecast on this machine ({figures['device']}, {figures['threads']} threads): "
                      f"{figures['total_seconds'] / 60:,.1f} min, "
                      f"peak memory {figures['peak_memory_bytes'] / 2**30:.2f} GiB "
                      "(`engine forecast` shows each stage)", highlight=False)
    for warning in rec.warnings:
        console.print(Text.assemble(("warning:", "yellow"), f" {warning}"), highlight=False)
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
