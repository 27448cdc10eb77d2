"""`engine resume RUN_ID`: continue a stopped, interrupted or failed run where it left off.

Training continues from the stage's last complete checkpoint (weights, optimizer, scheduler and
RNG state), the events file gets a `resumed` event and the rest of the run, and evaluations the
run already finished are not repeated. Same exit codes as `engine run`.
"""

from __future__ import annotations

import argparse

from engine.commands.run import add_output_flags


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("resume", help="continue a stopped or crashed run from its last checkpoint",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id", metavar="RUN_ID")
    add_output_flags(parser)
    parser.set_defaults(handler=resume)


def resume(args: argparse.Namespace) -> int:
    from engine.training import train
    from engine.commands.run import print_outcome

    outcome = train.resume(args.run_id, events_stdout=args.events_stdout,
                           human=not (args.json or args.events_stdout))
    return print_outcome(outcome, args)
