"""Several processes, one run: data-parallel LoRA training through torchrun or `accelerate launch`.

`engine run --nproc N` (or `--accelerate-config FILE`) keeps the one-process life cycle and adds
a launcher in front of it. The process the user started (the *launcher*) creates the run exactly
as a one-process run does — store row, folder, config.json, `run_started` — then starts the
ranks with `python -m torch.distributed.run --standalone --nproc_per_node N` (or `accelerate
launch --config_file FILE`) running `engine.training.worker`, and watches them:

- It owns the store row's heartbeat and the run's ending (`run_finished`, the store status,
  results.json), decided from each rank's record in `ranks/<rank>.json`: a rank writes
  "running" when it starts and its outcome when it ends, so a rank that died (SIGKILL, OOM
  killer, segfault) is the one still "running" — the run is then *interrupted*, never stuck.
- Rank 0 alone writes events, store metrics, checkpoints' completeness markers and adapters,
  and evaluates (once). The Trainer already saves weights and optimizer on the main process.
- A stop (SIGINT/SIGTERM to the launcher, the TUI's `s`) goes to torchrun as one SIGTERM, which
  hands it to every rank once; the ranks all-reduce their stop flags at each step's end, so
  they stop on the same step, checkpoint it together and report "stopped". A second signal
  kills the ranks at once. torchrun runs in its own session (a terminal's Ctrl-C reaches the
  launcher only); torchrun dies with the launcher and each rank with torchrun (parent-death
  signals on Linux).

Ranks load the base on their own device (`device_map={"": "cuda:<local_rank>"}`, never "auto",
which would split one model over the GPUs and turn data parallelism off), talk NCCL on GPUs and
gloo on CPUs (`ACCELERATE_USE_CPU=1`: `accelerate launch --cpu` silently runs one process, so
CPUs use torchrun).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RANKS_DIR = "ranks"
STOP_GRACE_S = 600  # how long torchrun waits for ranks to checkpoint after a stop before killing them
COLLECTIVE_TIMEOUT_S = 4 * 3600  # ranks wait at a collective while rank 0 alone evaluates
POLL_S = 0.2


# --- where this process stands --------------------------------------------------------------
def wanted(config) -> bool:
    """Whether a run trains in several processes (or under the user's accelerate config)."""
    return config.nproc > 1 or bool(config.accelerate_config)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def device() -> str | None:
    """This rank's own GPU when there are several processes on GPUs; None: the loader's default."""
    import torch

    if world_size() > 1 and torch.cuda.is_available():
        return f"cuda:{local_rank()}"
    return None


def trainer_arguments() -> dict:
    """Extra TRL config for several processes (none for one). LoRA leaves most of the model
    frozen, so DDP must not search for unused parameters; non-reentrant activation checkpointing
    is the variant DDP supports; rank 0's lone evaluations may keep the others waiting."""
    if world_size() == 1:
        return {}
    return {"ddp_find_unused_parameters": False, "ddp_timeout": COLLECTIVE_TIMEOUT_S,
            "activation_checkpointing_kwargs": {"use_reentrant": False}}


def checkpointing_kwargs() -> dict | None:
    return {"use_reentrant": False} if world_size() > 1 else None


def _group():
    import torch.distributed as dist

    return dist if world_size() > 1 and dist.is_available() and dist.is_initialized() else None


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on at least one (an all-reduce; `flag` alone for one process)."""
    dist = _group()
    if dist is None:
        return flag
    import torch

    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], device=on)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    """Wait for every rank (nothing for one process)."""
    dist = _group()
    if dist is not None:
        dist.barrier()


def describe() -> dict:
    """This rank as its record tells it: rank, world size, the backend it actually got, and its
    peak resident memory so far (what one rank costs; bench/ddp_cpu.py reports it)."""
    import resource

    dist = _group()
    return {"rank": rank(), "local_rank": local_rank(), "world_size": dist.get_world_size() if dist else world_size(),
            "backend": dist.get_backend() if dist else None, "pid": os.getpid(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class SilentEvents:
    """The event writer of ranks other than 0: the run has one events file, rank 0's."""

    def emit(self, type: str, **fields) -> dict:
        return {"type": type, **fields}

    def close(self) -> None:
        return None


# --- one rank's record ------------------------------------------------------------------------
def record_path(folder: Path, which: int) -> Path:
    from engine.record.home import inside

    return inside(folder, f"{RANKS_DIR}/{which}.json")


def write_record(folder: Path, status: str, **extra) -> None:
    from engine.training.checkpoints import write_json_atomic

    path = record_path(folder, rank())
    path.parent.mkdir(exist_ok=True)
    write_json_atomic(path, {**describe(), "status": status, "time": time.time(), **extra})


def read_records(folder: Path) -> dict[int, dict]:
    found = {}
    for path in sorted((folder / RANKS_DIR).glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            found[int(data["rank"])] = data
    return found


# --- the launcher -----------------------------------------------------------------------------
def command(config, run_id: str, *, events_stdout: bool, human: bool) -> list[str]:
    """torchrun (standalone rendezvous) or `accelerate launch` with the user's config file."""
    worker = ["-m", "engine.training.worker", run_id] + (["--events-stdout"] if events_stdout else []) + (
        ["--human"] if human else [])
    if config.accelerate_config:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config.accelerate_config]
        if config.nproc > 1:
            launch += ["--num_processes", str(config.nproc)]
        return launch + worker
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(config.nproc),
            *worker]


def die_with_parent() -> None:
    """Get SIGTERM when the parent process dies (Linux): torchrun when the launcher dies, a rank
    when torchrun dies — so no rank outlives the run that started it."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Launcher:
    """Starts the ranks for a run the launcher process already created, and ends the run."""

    def __init__(self, run, *, events_stdout: bool, human: bool):
        self.run = run
        self.events_stdout = events_stdout
        self.human = human

    def execute(self):
        from engine.training.lifecycle import Heartbeat

        run = self.run
        ranks = run.folder / RANKS_DIR
        for old in ranks.glob("*.json") if ranks.is_dir() else []:
            old.unlink()  # a previous launch's records say nothing about this one
        env = {**os.environ, "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(STOP_GRACE_S)}
        argv = command(run.config, run.run_id, events_stdout=self.events_stdout, human=self.human)
        run.logs.write(f"launching: {' '.join(argv)}\n")
        for message in run.plan.warnings:  # the advisor's among them: the ranks rebuild the plan without
            run.events.emit("warning", message=message)
        killed = False
        try:
            if run.stop.requested:  # asked to stop while the run was being set up: no process started
                return run._end("stopped", run._partial_results())
            try:
                child = subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=die_with_parent,
                                         stdin=subprocess.DEVNULL)
            except OSError as exc:
                return run._fail(f"could not start the training processes: {exc}", "internal", 1)
            try:
                with Heartbeat(run.store, run.run_id), run.stop.deferred():
                    self._wait(child)
            except KeyboardInterrupt:  # a second stop request: no checkpoint, stop now
                killed = True
                self._kill(child)
            return self._end(child.returncode, killed)
        finally:
            run.stop.uninstall()
            run.events.close()
            run.logs.close()
            if run.lock is not None:
                run.lock.release()

    def _wait(self, child: subprocess.Popen) -> None:
        forwarded = False
        while child.poll() is None:
            if self.run.stop.requested and not forwarded:
                forwarded = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)  # torchrun hands it to every rank once
            time.sleep(POLL_S)

    def _kill(self, child: subprocess.Popen) -> None:
        """SIGKILL the launcher and every rank still running (torchrun gives each rank its own
        session, so killing its process group would leave them behind)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        for record in read_records(self.run.folder).values():
            if record.get("status") == "running":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(record["pid"]), signal.SIGKILL)
        child.wait()

    def _end(self, returncode: int, killed: bool):
        """The run's one ending, from the ranks' records."""
        from engine.record.events import EventWriter
        from engine.training.train import Outcome

        run = self.run
        writer = run.events  # reopened: a rank killed mid-write may have left a torn last line to close
        writer.close()
        run.events = EventWriter(writer.path, writer.run_id, stdout=writer.stdout)
        records = read_records(run.folder)
        if killed:
            return run._end("stopped", run._partial_results())
        if not records:
            return run._fail(f"the launcher exited with code {returncode} before any training process started "
                             "(its messages are above, on stderr)", "internal", 1)
        expected = max(r.get("world_size") or 1 for r in records.values())  # what the launcher really started
        died = [r for r in range(expected) if records.get(r, {}).get("status") in (None, "running")]
        failed = sorted((r for r in records.values() if r.get("status") == "failed"), key=lambda r: r["time"])
        if died:
            message = (f"training process rank {', '.join(map(str, died))} died without finishing "
                       f"(launcher exit code {returncode}); `engine resume {run.run_id}` continues from "
                       f"the last complete checkpoint")
            if failed:
                message += f"; rank {failed[0]['rank']} then reported: {failed[0].get('error')}"
            with contextlib.suppress(OSError):
                run.events.emit("error", message=message, kind="interrupted")
            run.store.set_status(run.run_id, "interrupted", error=message)
            run.report.say(f"run {run.run_id} interrupted: a training process died")
            return Outcome(run.run_id, "interrupted", run._partial_results(), 1, run.folder, error=message)
        if failed:
            first = failed[0]
            return run._fail(f"rank {first['rank']}: {first.get('error')}",
                             first.get("kind") or "internal",
                             int(first.get("exit_code") or 1))
        status = records[0]["status"]
        return run._end(status if status in ("finished", "stopped") else "stopped", run._partial_results())
