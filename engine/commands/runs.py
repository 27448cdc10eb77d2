"""`engine runs list` and `engine runs show RUN_ID`: the run store as rich tables or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from engine.record.errors import local_time

from engine.record import output


def register(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="list past runs or show one")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="{list,show}")
    listing = runs_sub.add_parser("list", help="every run in the store, newest first")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(handler=list_runs)
    show = runs_sub.add_parser("show", help="one run: config, status, metrics, results")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=show_run)


def _store():
    """The store, read-only: listing never creates one, and still works on a full disk."""
    import contextlib

    from engine.record.errors import UserError
    from engine.record.store import RunStore

    store = RunStore(create=False)
    if store.path.exists():
        store.list_runs()  # a store that cannot be read is refused before anything writes to it
        with contextlib.suppress(UserError):  # a full disk or read-only home: list what is recorded
            store.mark_dead_runs()
    return store


def _report_damage(store) -> None:
    """One line on stderr per row a reader had to skip."""
    for line in store.damaged:
        print(f"engine: warning: skipped {line}", file=sys.stderr)


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def list_runs(args: argparse.Namespace) -> int:
    store = _store()
    runs = store.list_runs()
    _report_damage(store)
    if args.json:
        output.say(json.dumps(runs, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(runs)} run{'' if len(runs) == 1 else 's'}", title_justify="left")
    # the run id is what a user copies: it never shrinks, whatever the width (or no terminal at all)
    table.add_column("run id", no_wrap=True, min_width=max((len(run["run_id"]) for run in runs), default=6))
    for column in ("status", "task", "model", "n_sft", "n_pft", "score", "metric", "started"):
        table.add_column(column, justify="right" if column in ("n_sft", "n_pft", "score") else "left")
    for run in runs:
        table.add_row(run["run_id"], run["status"], run["task"], run["model"], str(run["n_sft"]),
                      str(run["n_pft"]), _score(run["score"]), run["metric"] or "—", local_time(run["created_at"]))
    # a pipe gets every column whole (rich would squeeze the table into 80 columns)
    Console(file=output.stdout(), width=None if sys.stdout.isatty() else 1000, markup=False).print(table)
    return 0


def show_run(args: argparse.Namespace) -> int:
    from engine.record.home import check_run_id

    store = _store()
    run = store.get_run(check_run_id(args.run_id))
    run["metrics"] = store.metrics(args.run_id)
    if args.json:
        output.say(json.dumps(run, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(file=output.stdout(), markup=False)  # names, folders and errors are the user's words
    summary = Table(show_header=False, title=f"run {run['run_id']}", title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    for key in ("status", "task", "model", "params_b", "n_sft", "n_pft", "metric"):
        summary.add_row(key, str(run[key]))
    summary.add_row("score", _score(run["score"]))
    summary.add_row("started", local_time(run["created_at"]))
    summary.add_row("finished", local_time(run["finished_at"]))
    summary.add_row("folder", run["run_dir"])
    if run["error"]:
        summary.add_row("error", run["error"])
    console.print(summary)
    if run["metrics"]:
        metrics = Table(title="metrics", title_justify="left")
        for column in ("stage", "name", "value"):
            metrics.add_column(column)
        for row in run["metrics"]:
            metrics.add_row(row["stage"], row["name"], _score(row["value"]))
        console.print(metrics)
    return 0
