"""One rank of a several-process run, as torchrun or `accelerate launch` starts it:

    python -m torch.distributed.run --standalone --nproc_per_node N -m engine.training.worker RUN_ID

The launcher (`engine.training.distributed.Launcher`) has already created the run; this process
rebuilds its plan from config.json, trains its share of every step and leaves its outcome in
`ranks/<rank>.json`, from which the launcher ends the run. Not a user command.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import traceback

from engine.record.errors import UserError, first_line
from engine.record.home import check_run_id, run_dir
from engine.training import distributed
from engine.training.lifecycle import exit_status
from engine.training.train import EXIT_CODES, LiveRun, Outcome, saved_plan


class RankRun(LiveRun):
    """A run as one rank lives it: it trains (rank 0 also records and evaluates), but the
    launcher keeps the heartbeat and writes the run's ending."""

    failure_kind: str | None = None

    def _heartbeat(self):
        return contextlib.nullcontext()

    def _end(self, status: str, results: dict) -> Outcome:
        return Outcome(self.run_id, status, results, EXIT_CODES[status], self.folder)

    def _fail(self, message: str, kind: str, exit_code: int) -> Outcome:
        self.failure_kind = kind
        return Outcome(self.run_id, "failed", {}, exit_code, self.folder, error=message)


def _prepare_device() -> None:
    """gloo on CPUs (through accelerate's MULTI_CPU, which `ACCELERATE_USE_CPU` selects), and
    on GPUs this rank's own device before anything touches CUDA."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(distributed.local_rank())
    else:
        os.environ.setdefault("ACCELERATE_USE_CPU", "1")


def _rank_run(run_id: str, *, events_stdout: bool, human: bool) -> RankRun:
    from engine.record.store import RunStore
    from engine.training.report import LibraryLogs, Report

    folder = run_dir(check_run_id(run_id))
    plan = dataclasses.replace(saved_plan(folder), warnings=())  # the launcher has said them, once
    asked, got = plan.config.nproc, distributed.world_size()
    if asked > 1 and got != asked:
        raise UserError(f"asked for {asked} processes but the launcher started a world of {got} "
                        "(`accelerate launch --cpu` runs one process: on CPUs leave out --accelerate-config)")
    main = distributed.is_main()
    return RankRun(run_id, folder, plan, RunStore() if main else None, events_stdout and main,
                   Report(human and main), LibraryLogs(also_stderr=events_stdout and main), main=main)


def main(argv: list[str] | None = None) -> int:
    return exit_status(_main(argv))


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="engine.training.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--events-stdout", action="store_true")
    parser.add_argument("--human", action="store_true")
    args = parser.parse_args(argv)
    folder = run_dir(check_run_id(args.run_id))
    distributed.die_with_parent()
    distributed.write_record(folder, "running")
    try:
        _prepare_device()
        run = _rank_run(args.run_id, events_stdout=args.events_stdout, human=args.human)
        outcome = run.execute()
    except KeyboardInterrupt:
        distributed.write_record(folder, "stopped")
        return 0
    except UserError as exc:
        distributed.write_record(folder, "failed", error=str(exc), kind="user", exit_code=2)
        return 2
    except Exception as exc:
        traceback.print_exc()
        distributed.write_record(folder, "failed", error=f"{type(exc).__name__}: {first_line(exc)}",
                                 kind="internal", exit_code=1)
        return 1
    distributed.write_record(folder, outcome.status, error=outcome.error, kind=run.failure_kind,
                             exit_code=outcome.exit_code)
    # finished or stopped: exit 0 so torchrun does not tear the others down before they report
    return 0 if outcome.status in ("finished", "stopped") else outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
