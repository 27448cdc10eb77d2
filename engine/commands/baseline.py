"""`engine baseline`: score the untrained model on the task's held-out split, buying no labels.

It is an ordinary run with nothing to train (n_sft = n_pft = 0): same folder, events, store row
and exit codes as `engine run`, so its score is the (0, 0) point the advisor fits on and the
base score the plan screen fills in.
"""

from __future__ import annotations

import argparse

from engine.commands.run import add_output_flags, add_settings, print_outcome

# What decides the base model's score: the task and its data, the model and how it is loaded, the evaluation.
SETTINGS = ("task", "model", "sft_file", "pft_file", "metric", "seed", "quant", "trust_remote_code", "threads",
            "max_length", "eval_size", "eval_batch_size", "eval_max_new_tokens")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("baseline", help="score the base model on the task's held-out split (no training)",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", metavar="FILE", help="TOML file with any run setting (training ones are ignored)")
    parser.add_argument("--run-id", help="name the run (letters, digits, '-' and '_'); default: time-based")
    add_output_flags(parser)
    add_settings(parser, SETTINGS)
    parser.set_defaults(handler=baseline)


def baseline(args: argparse.Namespace) -> int:
    from engine.record import config
    from engine.training import train

    overrides = {name: getattr(args, name) for name in SETTINGS} | {"n_sft": 0, "n_pft": 0}
    resolved = config.build(args.config, overrides, baseline=True)
    outcome = train.start(resolved, run_id=args.run_id, events_stdout=args.events_stdout,
                          human=not (args.json or args.events_stdout))
    return print_outcome(outcome, args)
