"""`engine run`: train one SFT→DPO finetune and record it.

Every setting of `engine.record.config.RunConfig` is a flag (`lora_r` → `--lora-r`) and a key of the
`--config` TOML file; flags override the file. Size the run with `--n-sft/--n-pft`, or give
`--budget/--sft-cost/--pft-cost` and the advisor picks the split. Exit codes: 0 finished,
130 stopped by SIGINT/SIGTERM (checkpointed; `engine resume RUN_ID` continues), 2 a user
error, 1 an internal error.
"""

from __future__ import annotations

import argparse

from engine.record.config import FIELDS, KIND, flag


SIZE_THE_RUN = ("Size the run in one of two ways, not both: --n-sft and --n-pft, or --budget, --sft-cost "
                "and --pft-cost (the advisor then picks the split).")


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _number(kind: type):
    """An argparse type that reads a number the project's one way (`advisor.validate`); a bad
    one reads "argument --lr: must be a number, got 'abc'", not argparse's "invalid _float value"."""

    def convert(text: str):
        from advisor.validate import BadNumber, finite

        try:
            value = finite("value", text)
        except BadNumber as exc:
            raise argparse.ArgumentTypeError(f"{exc.reason}, got {text!r}") from None
        if kind is int:
            if value != int(value):
                raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}")
            return int(value)
        return value

    convert.__name__ = kind.__name__
    return convert


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """--json / --events-stdout, shared with `engine resume`."""
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object at the end (run_id, status, results)")
    out.add_argument("--events-stdout", action="store_true", help="also print every event as a JSON line on stdout")


def register(sub: argparse._SubParsersAction) -> None:
    from engine.commands.forecast import add_forecast_flags

    parser = sub.add_parser("run", help="run a QLoRA SFT→DPO finetune and record it",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", metavar="FILE", help="TOML file with any of the settings below")
    parser.add_argument("--run-id", help="name the run (letters, digits, '-' and '_'); default: time-based")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the run's forecast (time, memory, cost per stage) and create nothing")
    add_output_flags(parser)
    add_forecast_flags(parser)
    add_settings(parser, FIELDS, SIZE_THE_RUN)
    parser.set_defaults(handler=run)


def add_settings(parser: argparse.ArgumentParser, names, description: str | None = None) -> None:
    """One flag per run setting in `names` (shared with `engine baseline` and `engine sweep`)."""
    from engine.tasks.metrics import METRICS

    settings = parser.add_argument_group("settings (also keys of the --config file)", description)
    listed = {"metric": f"; one of {', '.join(sorted(METRICS))}"}  # the registry, so it never goes stale
    for name in names:
        spec, kind = FIELDS[name], KIND[name]
        default = spec.default if not isinstance(spec.default, tuple) else ",".join(spec.default)
        shown = "" if spec.default in (None, "", False) else f" (default: {default})"
        options = {"dest": name, "default": None, "help": spec.metadata["help"] + listed.get(name, "") + shown}
        if kind is bool:
            settings.add_argument(flag(name), action="store_const", const=True, **options)
        else:
            converter = {tuple: _list, float: _number(float), int: _number(int)}.get(kind, kind)
            choices = spec.metadata.get("choices")
            metavar = "{" + ",".join(choices) + "}" if choices else name.upper()
            settings.add_argument(flag(name), type=converter, choices=choices, metavar=metavar, **options)


def print_outcome(outcome, args: argparse.Namespace) -> int:
    """The end of `run` and `resume`: one JSON object with --json, one error line on failure."""
    import json
    import sys

    from engine.record import output

    if args.json:
        output.say(json.dumps(outcome.to_dict()))  # a closed or full stdout never fails a finished run
    if outcome.error:
        hint = f" (traceback in {outcome.folder / 'engine.log'})" if outcome.exit_code == 1 else ""
        print(f"engine: error: run {outcome.run_id} {outcome.status}: {outcome.error}{hint}", file=sys.stderr)
    return outcome.exit_code


def run(args: argparse.Namespace) -> int:
    from engine.record import config
    from engine.training import train

    overrides = {name: getattr(args, name) for name in FIELDS}
    resolved = config.build(args.config, overrides)
    if args.dry_run:
        from engine.commands.forecast import show_forecast

        return show_forecast(resolved, args)
    outcome = train.start(resolved, run_id=args.run_id, events_stdout=args.events_stdout,
                          human=not (args.json or args.events_stdout), memory_limit=args.memory_limit)
    return print_outcome(outcome, args)

