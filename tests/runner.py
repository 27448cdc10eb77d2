"""Run the real `engine` CLI in a subprocess against a test's own $BUDGETTUI_HOME, and read what
a run leaves behind. Shared by the run, resume and event-schema tests."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--task", "gsm8k_math", "--model", "tiny"]


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "BUDGETTUI_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def engine(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`engine ARGS` to completion, output captured as text."""
    with_tiny(home, args)
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env_for(home),
                          capture_output=True, text=True, timeout=timeout)


def start(home: Path, *args: str, **popen) -> subprocess.Popen:
    """`engine ARGS` in the background, leading its own process group (as the TUI starts it)."""
    with_tiny(home, args)
    options = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env_for(home),
                            start_new_session=True, text=True, **options)


_tiny_home: list[Path] = []  # the session's home holding the tiny model, once built


def tiny_home() -> Path:
    """A home whose models/ holds the tiny model, built once per test session (it is
    deterministic; a build takes ~5 s). Building it is tested on its own (test_models)."""
    if not _tiny_home:
        session = Path(tempfile.mkdtemp(prefix="budgettui-test-tiny-"))
        atexit.register(shutil.rmtree, session, ignore_errors=True)
        build = "from engine.training.models import resolve_model; resolve_model('tiny')"
        subprocess.run([sys.executable, "-c", build], cwd=ROOT, env=env_for(session), check=True, capture_output=True)
        _tiny_home.append(session)
    return _tiny_home[0]


def with_tiny(home: Path, args) -> None:
    """A command that names the tiny model finds it in its home's model cache, as a user's home
    holds it after the first run: the session's build, copied in."""
    if "tiny" in args and not (home / "models" / "tiny").exists():
        shutil.copytree(tiny_home() / "models" / "tiny", home / "models" / "tiny")


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
