"""`engine forecast`: what a planned run will cost on this machine before it starts — seconds and
peak memory per stage (base evaluation, SFT, SFT evaluation, DPO, DPO evaluation), in total, its
device-hours and money at --gpu-hour-price — each figure with its source. Takes the flags of
`engine run`; `engine run --dry-run` prints the same. The first forecast of a plan calibrates
this machine (a few timed steps of the real model, cached in the home folder). Exit 2, with the
shortfall and the setting that fixes it, when the run will not fit in memory.
"""

from __future__ import annotations

import argparse


def add_forecast_flags(parser: argparse.ArgumentParser) -> None:
    """--memory-limit and --gpu-hour-price, shared with `engine run`."""
    from advisor.validate import non_negative
    from engine.commands.planning import checked
    from engine.training.forecast import memory_size

    parser.add_argument("--memory-limit", type=memory_size, metavar="SIZE",
                        help="memory the run may use, e.g. 8GiB (default: what this machine has available)")
    parser.add_argument("--gpu-hour-price", type=checked(non_negative, "the GPU-hour price"), metavar="P",
                        help="price of one hour of this machine's device; the forecast adds its money")


def register(sub: argparse._SubParsersAction) -> None:
    from engine.commands.run import SIZE_THE_RUN, add_settings
    from engine.record.config import FIELDS

    parser = sub.add_parser("forecast", help="forecast a run's time, memory and cost per stage on this machine",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--cached-only", action="store_true",
                      help="never calibrate: forecast from this machine's cached calibration of the plan, or say "
                           "there is none (exit 2)")
    when.add_argument("--recalibrate", action="store_true",
                      help="calibrate this machine again and replace the cached calibration (one timed while "
                           "other work took its cores forecasts long)")
    parser.add_argument("--config", metavar="FILE", help="TOML file with any of the settings below")
    add_forecast_flags(parser)
    add_settings(parser, FIELDS, SIZE_THE_RUN)
    parser.set_defaults(handler=forecast, dry_run=True)


def forecast(args: argparse.Namespace) -> int:
    from engine.record import config
    from engine.record.config import FIELDS

    resolved = config.build(args.config, {name: getattr(args, name) for name in FIELDS})
    return show_forecast(resolved, args)


def show_forecast(resolved, args: argparse.Namespace) -> int:
    """Forecast (calibrating if needed), refuse what will not fit, print; creates no run. The
    libraries' warnings during the calibration are the run's business, not the forecast's."""
    import logging
    import signal
    import time
    import warnings

    from engine.record.errors import UserError
    from engine.training import forecast as forecasting
    from engine.training.report import quiet_libraries
    from engine.training.train import build_plan

    logging.getLogger().setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _interrupted)  # a superseded forecast still removes its calibration folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, _ = build_plan(resolved)
        quiet_libraries()
        started = time.time()
        result = forecasting.forecast(plan, gpu_hour_price=args.gpu_hour_price, memory_limit=args.memory_limit,
                                      run_if_missing=not getattr(args, "cached_only", False),
                                      recalibrate=getattr(args, "recalibrate", False))
    if result is None:
        raise UserError("no calibration of this plan on this machine yet: `engine forecast` without --cached-only "
                        "makes one (a few timed steps of the model; minutes for a larger model on a CPU)")
    forecasting.refuse_if_too_big(result, args.memory_limit)
    if args.json:
        import json

        print(json.dumps(result.as_dict()))
    else:
        _show(result, plan, made_now=result.calibrated_at >= started)
    return 0


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def _show(result, plan, *, made_now: bool) -> None:
    import time

    from rich.console import Console
    from rich.table import Table

    from engine.record.compute import calibration_note, forecast_rows, threads_text

    figures, config = result.as_dict(), plan.config
    table = Table(title=f"forecast · {config.task} · {config.model} · {config.n_sft} SFT, {config.n_pft} pairs · "
                        f"{figures['device']}, {threads_text(figures)}",
                  title_justify="left")
    for column in ("stage", "time", "peak memory", "source"):
        table.add_column(column, justify="left" if column in ("stage", "source") else "right")
    *stages, total = forecast_rows(figures)
    for row in stages:
        table.add_row(*row)
    table.add_row(*total, style="bold")
    console = Console(markup=False)  # the task and model are the user's words
    console.print(table)
    money = "" if figures["money"] is None else f", {figures['money']:,.2f} at the hour price"
    made = "just now" if made_now else time.strftime("cached from %Y-%m-%d %H:%M", time.localtime(result.calibrated_at))
    console.print(f"{figures['gpu_hours']:.3f} {figures['device']}-hours{money}; calibration took "
                  f"{result.calibration_seconds:.1f} s, {made}", highlight=False)
    note = calibration_note(figures, again="`engine forecast --recalibrate`")
    if note:
        console.print(note, style="yellow", highlight=False)
