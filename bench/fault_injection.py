"""Fault injection: kill, corrupt and fill the disk at random points of a tiny run, then resume.

Each trial starts `engine run` on the tiny model and, at a point drawn from the trial's seed,
- `kill`: SIGKILLs it after a random number of events;
- `corrupt`: SIGKILLs it the same way, then overwrites bytes in the middle of a random file of
  its newest checkpoint (same size: only a content check can see it);
- `disk-full`: runs it under a random file-size limit (`RLIMIT_FSIZE`, so writes fail with
  EFBIG exactly as on a full disk, without root or a special filesystem);
then `engine resume`s it until it ends (at most a few times). A trial passes when
- every command that failed said so in one line on stderr with exit 2 (never a traceback), and
- after every command the store row agrees with the events file (the last ending recorded in
  events.jsonl after the last start, or `interrupted` when the process died before writing one),
- and the run ends `finished` with adapters bit-identical to an uninterrupted run's and the same
  scores.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fault_injection.py --trials 12 [--write]

`tests/test_fault_injection.py` runs three trials of the same code in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's engine, not an installed one
RUN_ARGS = ["--task", "gsm8k_math", "--model", "tiny", "--n-sft", "8", "--n-pft", "8", "--max-steps", "3",
            "--batch-size", "2", "--grad-accum", "2", "--checkpoint-every", "1", "--eval-size", "2",
            "--eval-max-new-tokens", "4", "--sft-lr", "5e-3", "--dpo-lr", "5e-3"]
FAULTS = ("kill", "corrupt", "disk-full")
MAX_RESUMES = 3


@dataclass
class Trial:
    seed: int
    fault: str
    point: str
    commands: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    final_status: str | None = None
    equal: bool | None = None

    @property
    def passed(self) -> bool:
        """Finished equal to the uninterrupted run, or refused in one line with a truthful record."""
        if self.problems:
            return False
        if self.final_status == "finished":
            return bool(self.equal)
        return bool(self.commands) and self.commands[-1]["exit"] == 2


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "BUDGETTUI_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _engine(home: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def _events(home: Path, run_id: str) -> list[dict]:
    from engine.record.events import read_events

    return read_events(home / "runs" / run_id / "events.jsonl")


def _store_status(home: Path, run_id: str) -> str | None:
    """The row's status as a reader sees it (dead runs marked, as `engine runs list` does)."""
    from engine.record.store import RunStore

    store = RunStore(home / "runs.sqlite")
    store.mark_dead_runs()
    try:
        return store.get_run(run_id)["status"]
    except Exception:
        return None


def events_ending(events: list[dict]) -> str:
    """What the events file says of the last attempt (`interrupted` when it wrote no ending)."""
    from engine.record.events import last_ending

    return last_ending(events) or "interrupted"


def _check_command(trial: Trial, home: Path, run_id: str, what: str, code: int, stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    record = {"command": what, "exit": code}
    if "Traceback" in stderr:
        trial.problems.append(f"{what}: traceback on stderr")
    if code not in (0, 130, -signal.SIGKILL):
        errors = [line for line in lines if line.startswith("engine: error:")]
        if code != 2 or len(errors) != 1:
            trial.problems.append(f"{what}: exit {code}, stderr {lines[-3:]}")
        record["said"] = errors[-1] if errors else (lines[-1] if lines else "")
    stored, told = _store_status(home, run_id), events_ending(_events(home, run_id))
    record.update(store=stored, events=told)
    if stored is not None and stored != told:
        trial.problems.append(f"{what}: store says {stored}, events say {told}")
    trial.commands.append(record)


def _kill_after(home: Path, run_id: str, proc: subprocess.Popen, n_events: int) -> None:
    """SIGKILL once the run has written `n_events` events (or let it end first)."""
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if len(_events(home, run_id)) >= n_events:
            proc.kill()
            break
        time.sleep(0.005)
    proc.wait()


def _corrupt_newest_checkpoint(home: Path, run_id: str, rng: random.Random) -> tuple[str, bool]:
    """(what was corrupted, whether the resume must warn: a complete checkpoint of an unfinished stage)."""
    from engine.training import checkpoints

    folder = home / "runs" / run_id
    candidates = sorted(folder.glob("*/checkpoints/checkpoint-*"), key=lambda p: p.stat().st_mtime)
    files = [p for p in candidates[-1].rglob("*") if p.is_file()] if candidates else []
    if not files:
        return "nothing to corrupt yet", False
    stage_done = (candidates[-1].parents[1] / "adapter").exists()
    must_warn = (candidates[-1] / checkpoints.MARKER).exists() and not stage_done
    victim = rng.choice(sorted(files))
    data = bytearray(victim.read_bytes())
    if data:
        start = rng.randrange(len(data))
        for i in range(start, min(len(data), start + 16)):
            data[i] ^= 0xFF
        victim.write_bytes(bytes(data))
    return str(victim.relative_to(folder)), must_warn and bool(data)


def run_trial(seed: int, home: Path, reference: dict, total_events: int) -> Trial:
    """One trial in `home` (holding the tiny model already), compared against `reference`."""
    rng = random.Random(seed)
    must_warn = False
    fault = FAULTS[seed % len(FAULTS)]
    run_id = f"trial-{seed}"
    args = ["run", *RUN_ARGS, "--seed", str(reference["seed"]), "--run-id", run_id]
    if fault == "disk-full":
        limit = rng.choice([64, 256, 1024, 4096, 16384]) * 1024
        trial = Trial(seed, fault, f"file-size limit {limit // 1024} KiB")

        def small_files() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        proc = _engine(home, *args, preexec_fn=small_files)
        _, stderr = proc.communicate(timeout=900)
    else:
        n_events = rng.randrange(2, max(3, total_events))
        trial = Trial(seed, fault, f"after {n_events} of ~{total_events} events")
        proc = _engine(home, *args)
        _kill_after(home, run_id, proc, n_events)
        stderr = proc.stderr.read()
        if fault == "corrupt":
            victim, must_warn = _corrupt_newest_checkpoint(home, run_id, rng)
            trial.point += f"; corrupted {victim}" + (" (resume must say so)" if must_warn else "")
    _check_command(trial, home, run_id, "run", proc.returncode, stderr)
    for attempt in range(MAX_RESUMES):
        status = _store_status(home, run_id)
        if status in (None, "finished"):
            break
        proc = _engine(home, "resume", run_id)
        _, stderr = proc.communicate(timeout=900)
        _check_command(trial, home, run_id, f"resume {attempt + 1}", proc.returncode, stderr)
    if fault == "corrupt" and must_warn and not any(
            e.get("type") == "warning" and "damaged" in e.get("message", "") for e in _events(home, run_id)):
        trial.problems.append("a damaged checkpoint was passed over without a warning")
    trial.final_status = _store_status(home, run_id)
    if trial.final_status == "finished":
        trial.equal = outcome(home, run_id) == reference["outcome"]
        if not trial.equal:
            trial.problems.append("finished, but not equal to the uninterrupted run")
    return trial


def outcome(home: Path, run_id: str) -> dict:
    """What must match an uninterrupted run: the adapters' bytes-level tensors and the scores."""
    import hashlib

    from safetensors.torch import load_file

    folder = home / "runs" / run_id
    digests = {}
    for stage in ("sft", "dpo"):
        tensors = load_file(folder / stage / "adapter" / "adapter_model.safetensors")
        digests[stage] = hashlib.sha256(b"".join(tensors[k].numpy().tobytes() for k in sorted(tensors))).hexdigest()
    results = json.loads((folder / "results.json").read_text())
    return {"adapters": digests, "scores": results["scores"]}


def reference_run(home: Path, seed: int = 7) -> dict:
    """The uninterrupted run every trial must end equal to (also builds the tiny model in `home`)."""
    proc = _engine(home, "run", *RUN_ARGS, "--seed", str(seed), "--run-id", "reference")
    _, stderr = proc.communicate(timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"the reference run failed: {stderr[-2000:]}")
    return {"seed": seed, "outcome": outcome(home, "reference"), "events": len(_events(home, "reference"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="write bench/results/fault_injection.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        started = time.monotonic()
        reference = reference_run(home)
        trials = [run_trial(seed, home, reference, reference["events"])
                  for seed in range(args.first_seed, args.first_seed + args.trials)]
        seconds = time.monotonic() - started
    rows = ["| seed | fault | where | commands (exit → store / events) | end | equal | problems |",
            "| ---: | --- | --- | --- | --- | --- | --- |"]
    for t in trials:
        steps = "; ".join(f"{c['command']} {c['exit']} → {c['store']} / {c['events']}"
                          + (f" («{c['said']}»)" if c.get("said") else "") for c in t.commands)
        rows.append(f"| {t.seed} | {t.fault} | {t.point} | {steps} | {t.final_status} | {t.equal} | "
                    f"{'; '.join(t.problems) or '—'} |")
    tracebacks = sum("traceback" in p for t in trials for p in t.problems)
    disagree = sum("store says" in p for t in trials for p in t.problems)
    summary = (f"{len(trials)} trials, {sum(t.passed for t in trials)} passed; {tracebacks} tracebacks; "
               f"{disagree} records disagreeing with their events; "
               f"{sum(len(t.commands) for t in trials)} commands; {seconds:.0f} s")
    report = "\n".join(["# Fault injection", "", f"`{' '.join(sys.argv)}`", "", summary, "", *rows, ""])
    print(report)
    if args.write:
        (ROOT / "bench" / "results" / "fault_injection.md").write_text(report)


if __name__ == "__main__":
    main()
