"""`engine sweep`: the paper's grid in one command — every (budget, SFT share) cell an ordinary
`engine run`, finished cells skipped, a stopped one resumed; `engine sweep show NAME` draws it.

Each cell runs as its own `engine run` child process, so a cell is exactly what a user would run
(`--print-commands` prints those commands for a cluster's scheduler instead). Ctrl-C stops the
current cell cleanly (it is checkpointed and recorded as stopped); the same command continues.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

from engine.commands.run import add_settings
from engine.record.config import FIELDS

SETTINGS = [name for name in FIELDS if name not in ("task", "model", "n_sft", "n_pft", "budget", "sft_cost",
                                                      "pft_cost")]


def _numbers(minimum: float, maximum: float | None = None):
    def convert(text: str) -> list[float]:
        values = []
        for part in text.split(","):
            try:
                value = float(part)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a number") from None
            if not (value >= minimum and (maximum is None or value <= maximum)) or value != value:
                bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"above {minimum:g}"
                raise argparse.ArgumentTypeError(f"{part.strip()} is not {bound}")
            values.append(value)
        return values

    return convert


def _price(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sweep", help="run the paper's grid of budgets × SFT shares, each cell an ordinary run",
                            description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--task", help="task name, e.g. gsm8k_math")
    parser.add_argument("--model", help="model name, e.g. tiny or demo")
    parser.add_argument("--budgets", type=_numbers(1e-9), metavar="B,B,…",
                        help="label budgets, e.g. 64,256,1024")
    parser.add_argument("--ratios", type=_numbers(0.0, 1.0), metavar="R,R,…",
                        help="SFT shares of the examples, e.g. 1,0.75,0.5,0.25,0")
    parser.add_argument("--sft-cost", type=_price, metavar="C", help="price of one SFT example")
    parser.add_argument("--pft-cost", type=_price, metavar="C", help="price of one preference pair")
    parser.add_argument("--name", help="the sweep's name (default: TASK-MODEL); `engine sweep show NAME` draws it")
    parser.add_argument("--print-commands", action="store_true",
                        help="print the command of every cell still to run, one a line, and run nothing")
    add_settings(parser, SETTINGS)
    parser.set_defaults(handler=sweep)
    actions = parser.add_subparsers(dest="sweep_command", metavar="{show}", parser_class=type(parser))
    show = actions.add_parser("show", help="draw a sweep: score against budget, one line per SFT share")
    show.add_argument("name", help="the sweep's name")
    show.add_argument("--plot", metavar="FILE.svg", help="also write the figure as an SVG image")
    show.add_argument("--json", action="store_true", help="print the cells as one JSON object")
    show.set_defaults(handler=show_sweep)


def _definition(args: argparse.Namespace):
    from engine.record.errors import UserError
    from engine.sweep.grid import Sweep, check, default_name

    missing = [flag for flag, value in (("--task", args.task), ("--model", args.model), ("--budgets", args.budgets),
                                        ("--ratios", args.ratios), ("--sft-cost", args.sft_cost),
                                        ("--pft-cost", args.pft_cost)) if value is None]
    if missing:
        raise UserError(f"a sweep needs {', '.join(missing)}")
    settings = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    name = args.name if args.name is not None else default_name(args.task, args.model)
    return check(Sweep(name, args.task, args.model, sorted(args.budgets), list(args.ratios), args.sft_cost,
                       args.pft_cost, settings))


def sweep(args: argparse.Namespace) -> int:
    import shlex

    from engine.record.store import RunStore
    from engine.sweep.grid import save

    definition = _definition(args)
    path = save(definition)
    store = RunStore()
    store.mark_dead_runs()
    status = {run["run_id"]: run["status"] for run in store.list_runs()}
    cells = definition.cells
    if args.print_commands:
        for cell in cells:
            if status.get(cell.run_id) != "finished":
                print(shlex.join(definition.command(cell, status.get(cell.run_id), ["engine"])))
        return 0
    say = lambda text: print(f"sweep {definition.name}: {text}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"{len(cells)} cells ({path})")
    for number, cell in enumerate(cells, start=1):
        where = f"cell {number}/{len(cells)} {cell.run_id} ({cell.n_sft} SFT, {cell.n_pft} pairs)"
        state = status.get(cell.run_id)
        if state == "finished":
            say(f"{where} finished already, skipped")
            continue
        if state == "running":
            from engine.record.errors import UserError

            raise UserError(f"{where} is running in another process; wait for it or stop it first")
        say(f"{where} {'resuming' if state else 'starting'}")
        code, asked = _run_cell(definition.command(cell, state, [sys.executable, "-m", "engine.cli"]))
        if code in STOPPED or (asked and code == 0):  # a stop that came as the cell ended stops here
            ended = "in" if code in STOPPED else "after"
            say(f"stopped {ended} {cell.run_id}; run the same command again to continue")
            return 130
        if code != 0:
            say(f"{cell.run_id} failed (exit {code}; `engine runs show {cell.run_id}`); "
                "run the same command again to retry it")
            return code
    say(f"all {len(cells)} cells finished; `engine sweep show {definition.name}` draws them")
    return 0


# a cell that stopped: it recorded itself (130), or the signal reached it before it could
# (killed by SIGINT or SIGTERM while Python was still starting)
STOPPED = (130, -signal.SIGINT, -signal.SIGTERM)


def _run_cell(argv: list[str]) -> tuple[int, bool]:
    """Run one cell to its end: (its exit code, whether a stop was asked for meanwhile). It leads
    its own process group, so a Ctrl-C reaches it once, from here: it checkpoints, records itself
    stopped and exits 130, and the sweep stops too — also when the cell was already finishing."""
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    asked = []

    def forward(signum, frame):
        asked.append(signum)
        try:
            child.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass

    for sig in previous:
        signal.signal(sig, forward)
    try:
        return child.wait(), bool(asked)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def show_sweep(args: argparse.Namespace) -> int:
    from engine.sweep.figure import measure, terminal_figure, write_plot
    from engine.sweep.grid import load

    definition = load(args.name)
    table = measure(definition)
    if args.plot:
        write_plot(table, args.plot)
    if args.json:
        import json

        print(json.dumps(table.to_dict()))
    else:
        terminal_figure(table)
    return 0
