"""Run the real `engine` CLI in a subprocess against a test's own $BUDGETTUI_HOME, and read what
a run leaves behind. Shared by the run, resume and event-schema tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--task", "gsm8k_math", "--model", "tiny"]


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "BUDGETTUI_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def engine(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`engine ARGS` to completion, output captured as text."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env_for(home),
                          capture_output=True, text=True, timeout=timeout)


def start(home: Path, *args: str, **popen) -> subprocess.Popen:
    """`engine ARGS` in the background, leading its own process group (as the TUI starts it)."""
    options = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env_for(home),
                            start_new_session=True, text=True, **options)


def folder(home: Path, run_id: str) -> Path:
    return home / "runs" / run_id


def events(home: Path, run_id: str) -> list[dict]:
    from engine.record.events import read_events

    return read_events(folder(home, run_id) / "events.jsonl")


def of_type(evs: list[dict], kind: str, **match) -> list[dict]:
    return [e for e in evs if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]


def wait_for_event(home: Path, run_id: str, proc: subprocess.Popen, predicate, timeout: float = 300) -> dict:
    """Poll the run's events file until an event satisfies `predicate`; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(home, run_id) if predicate(e)]
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"engine exited {proc.returncode} before the awaited event: {proc.stderr.read()}")
        time.sleep(0.01)
    raise AssertionError("timed out waiting for an event")


def json_out(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
