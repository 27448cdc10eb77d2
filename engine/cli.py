"""`engine`: the headless CLI. Each subcommand lives in `engine.commands.<name>` and imports
its heavy dependencies only when it runs, so `engine --help` and `engine advise` stay fast."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from advisor.errors import AdvisorError
from engine.record.errors import OneLineParser, UserError

COMMANDS = ("advise", "pilot", "forecast", "run", "baseline", "sweep", "resume", "runs")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="engine", description="Plan, run and record SFT→DPO finetunes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"engine.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from engine.training.lifecycle import exit_status

    return exit_status(_main(argv))


def _main(argv: list[str] | None) -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like SIGINT: exit 130, never 143
    try:  # a stop during start-up (importing the commands takes a while) is a stop too
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except (UserError, AdvisorError) as exc:
        print(f"engine: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("engine: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
