"""The event stream: writing, schema checks, following a growing file and torn lines."""

import io
import json

from engine.record.events import EventTail, EventWriter, problems, read_events


def test_writer_emits_valid_events_to_file_and_stdout(tmp_path):
    out = io.StringIO()
    with EventWriter(tmp_path / "events.jsonl", "r1", stdout=out) as writer:
        writer.emit("run_started", config={"seed": 1}, pid=42)
        writer.emit("log", stage="sft", step=1, loss=float("nan"), learning_rate=5e-5)
        writer.emit("eval", stage="base", metric="exact_match", value=0.1, n=16)
    events = read_events(tmp_path / "events.jsonl")
    assert [e["type"] for e in events] == ["run_started", "log", "eval"]
    assert events[1]["loss"] is None  # NaN is written as null so every reader can parse it
    assert all(problems(e) == [] for e in events)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == events


def test_problems_name_what_is_wrong():
    assert problems({"type": "nope"}) == ["unknown event type 'nope'"]
    bad = {"v": 1, "type": "log", "run_id": "r", "time": 1.0, "stage": "ppo", "step": "3"}
    assert problems(bad) == ["log: 'step' has type str", "log: stage 'ppo' is not one of ('sft', 'dpo')"]


def test_tail_returns_only_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read_new() == []
    path.write_text('{"type": "a"}\n{"type": "b"')
    assert tail.read_new() == [{"type": "a"}]
    with open(path, "a") as handle:
        handle.write(', "x": 1}\n')
    assert tail.read_new() == [{"type": "b", "x": 1}]


def test_torn_last_line_is_skipped_and_closed_on_reopen(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path, "r1") as writer:
        writer.emit("warning", message="first")
    with open(path, "a") as handle:
        handle.write('{"v": 1, "type": "log", "ru')  # a writer killed mid-line
    assert [e["message"] for e in read_events(path)] == ["first"]
    with EventWriter(path, "r1") as writer:
        writer.emit("resumed", stage="sft", step=4)
    assert [e["type"] for e in read_events(path)] == ["warning", "resumed"]
