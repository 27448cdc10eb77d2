"""The engine child: its own session, events parsed from stdout, stderr captured, stop by SIGINT,
and a reader that lets go at once (the app can quit while the run goes on)."""

import os
import sys
import threading
import time
from pathlib import Path

from engine.record.events import read_events
from engine.record.home import run_dir
from fake_engine import canned_events
from tui.child import EngineChild, interrupt, stderr_capture

FAKE = str(Path(__file__).with_name("fake_engine.py"))


def fake_argv(run_id, *extra):
    return [sys.executable, FAKE, "run", "--task", "gsm8k_math", "--model", "tiny", "--n-sft", "40",
            "--n-pft", "30", "--events-stdout", "--run-id", run_id, *extra]


def test_events_from_stdout_and_stderr_to_the_capture_file(home):
    child = EngineChild(fake_argv("c1"), stderr_capture("c1"))
    assert child.read_stdout() == 0
    events, stray = child.drain()
    config = {"task": "gsm8k_math", "model": "tiny", "n_sft": 40, "n_pft": 30}
    assert [e["type"] for e in events] == [kind for kind, _ in canned_events(config)]
    assert events == read_events(run_dir("c1") / "events.jsonl")
    assert stray == [] and child.drain() == ([], [])
    assert "fake engine: ok run c1" in stderr_capture("c1").read_text()
    assert stderr_capture("c1").parent == home / "tui" / "stderr"


def test_lines_that_are_not_events_are_kept_apart(home):
    code = "print('loading…'); print('{\"type\": \"warning\", \"message\": \"m\"}'); print('[1, 2]')"
    child = EngineChild([sys.executable, "-c", code], stderr_capture("c2"))
    assert child.read_stdout() == 0
    events, stray = child.drain()
    assert events == [{"type": "warning", "message": "m"}]
    assert stray == ["loading…", "[1, 2]"]


def test_detach_lets_go_at_once_and_sigint_stops_the_run_its_own_group(home):
    child = EngineChild(fake_argv("c3", "--scenario", "slow", "--delay", "0.02"), stderr_capture("c3"))
    result = []
    reader = threading.Thread(target=lambda: result.append(child.read_stdout()))
    reader.start()
    events_file = run_dir("c3") / "events.jsonl"
    deadline = time.monotonic() + 20
    while len(read_events(events_file)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.getpgid(child.pid) == child.pid  # its own session: a terminal's ^C never reaches it
    started = time.monotonic()
    child.detach()
    reader.join(timeout=5)
    assert not reader.is_alive() and result == [None]
    assert time.monotonic() - started < 1.0
    assert child.process.poll() is None  # detaching never stops the run

    assert interrupt(child.pid) is True
    assert child.process.wait(timeout=20) == 130
    last = read_events(events_file)[-1]
    assert last["type"] == "run_finished" and last["status"] == "stopped"
    assert interrupt(child.pid) is False  # already gone
