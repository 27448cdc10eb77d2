"""The event stream: the one contract between a run and everything that watches it.

Schema version 1. One JSON object per line in `<run dir>/events.jsonl` (and on stdout with
`engine run --events-stdout`). Every event carries:

    v        int    schema version (1)
    type     str    one of EVENT_FIELDS below
    run_id   str
    time     float  seconds since the epoch

and, by type (extra keys are allowed; a `log` event carries the trainer's keys unchanged):

    run_started     config: dict (the resolved run config), pid: int; also threads: int, device: str
                    and forecast: `engine forecast --json`'s object, or null without a calibration
    stage_started   stage: "sft" | "dpo", total_steps: int, n_examples: int, world_size: int
                    (training processes; steps are always global optimizer steps)
    log             stage, step: int, then e.g. loss, learning_rate, grad_norm and for DPO
                    rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
                    logps/chosen, logps/rejected
    eval            stage: "base" | "sft" | "dpo", metric: str, value: float, n: int; for a
                    generation metric also generations: str (relative path of a JSONL file with
                    one {prompt, output, reference, score} per held-out example)
    checkpoint      stage, step, path: str (relative to the run folder)
    stage_finished  stage, step, adapter: str (relative path, "" when nothing was trained)
    resumed         stage, step (where training continues from)
    warning         message: str
    error           message: str, kind: str
    run_finished    status: "finished" | "stopped" | "failed", results: dict

Readers skip a line that does not parse (a run killed mid-write leaves a torn last line).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from advisor.safe_files import loads
from engine.record.output import SafeOut

SCHEMA_VERSION = 1
NUMBER = (int, float)

COMMON_FIELDS: dict[str, type | tuple] = {"v": int, "type": str, "run_id": str, "time": NUMBER}
EVENT_FIELDS: dict[str, dict[str, type | tuple]] = {
    "run_started": {"config": dict, "pid": int},
    "stage_started": {"stage": str, "total_steps": int, "n_examples": int},
    "log": {"stage": str, "step": int},
    "eval": {"stage": str, "metric": str, "value": NUMBER, "n": int},
    "checkpoint": {"stage": str, "step": int, "path": str},
    "stage_finished": {"stage": str, "step": int, "adapter": str},
    "resumed": {"stage": str, "step": int},
    "warning": {"message": str},
    "error": {"message": str, "kind": str},
    "run_finished": {"status": str, "results": dict},
}
TRAIN_STAGES = ("sft", "dpo")
EVAL_STAGES = ("base", "sft", "dpo")
FINAL_STATUSES = ("finished", "stopped", "failed")


def problems(event: Any) -> list[str]:
    """Everything wrong with one event against the schema; empty when it conforms."""
    if not isinstance(event, dict):
        return ["event is not an object"]
    found = []
    kind = event.get("type")
    if kind not in EVENT_FIELDS:
        return [f"unknown event type {kind!r}"]
    for name, expected in {**COMMON_FIELDS, **EVENT_FIELDS[kind]}.items():
        value = event.get(name)
        if value is None:
            found.append(f"{kind}: missing {name!r}")
        elif isinstance(value, bool) or not isinstance(value, expected):
            found.append(f"{kind}: {name!r} has type {type(value).__name__}")
    if event.get("v") != SCHEMA_VERSION:
        found.append(f"{kind}: schema version {event.get('v')!r}, expected {SCHEMA_VERSION}")
    stage = event.get("stage")
    if kind in ("stage_started", "log", "checkpoint", "stage_finished", "resumed") and stage not in TRAIN_STAGES:
        found.append(f"{kind}: stage {stage!r} is not one of {TRAIN_STAGES}")
    if kind == "eval" and stage not in EVAL_STAGES:
        found.append(f"eval: stage {stage!r} is not one of {EVAL_STAGES}")
    if kind == "run_finished" and event.get("status") not in FINAL_STATUSES:
        found.append(f"run_finished: status {event.get('status')!r} is not one of {FINAL_STATUSES}")
    return found


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null so every reader can parse every line."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class EventWriter:
    """Appends events to a run's events file (and optionally stdout), one flushed line each."""

    def __init__(self, path: Path, run_id: str, stdout: IO[str] | None = None):
        self.path = Path(path)
        self.run_id = run_id
        self.stdout = None if stdout is None else stdout if isinstance(stdout, SafeOut) else SafeOut(stdout)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")
        if self._file.tell() > 0 and not self._ends_with_newline():
            self._file.write("\n")  # close a line torn by a killed writer; readers skip it
            self._file.flush()

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def emit(self, type: str, **fields: Any) -> dict:
        event = {"v": SCHEMA_VERSION, "type": type, "run_id": self.run_id, "time": time.time(), **fields}
        line = json.dumps(_clean(event), allow_nan=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            if self.stdout is not None:  # a SafeOut: the reader may leave (`| head`), the events file goes on
                self.stdout.write(line + "\n")
                self.stdout.flush()
        return event

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_line(line: str | bytes) -> dict | None:
    """One event from one line, or None for a blank, torn or non-object line."""
    try:
        event = loads(line)  # guarded: a hostile line (nested 100,000 deep) is skipped like a torn one
    except ValueError:  # also UnicodeDecodeError and the guards' BadFile
        return None
    return event if isinstance(event, dict) else None


def read_events(path: Path) -> list[dict]:
    """Every readable event of a file, in order; unreadable lines are skipped."""
    return EventTail(Path(path)).read_new(final=True)


def last_ending(events: list[dict]) -> str | None:
    """How the last attempt of a run ended by its own account: the status of the last
    `run_finished` after the last `run_started`/`resumed`, or None when it wrote none (it died)."""
    starts = [i for i, e in enumerate(events) if e.get("type") in ("run_started", "resumed")]
    endings = [e.get("status") for e in events[starts[-1] if starts else 0:] if e.get("type") == "run_finished"]
    return endings[-1] if endings and endings[-1] in FINAL_STATUSES else None


@dataclass
class LineTail:
    """Follows a growing file: each call returns the lines completed since the last one (a
    line still being written waits for its newline, unless `final`)."""

    path: Path
    offset: int = 0
    _partial: bytes = field(default=b"", repr=False)

    def read_lines(self, final: bool = False) -> list[bytes]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = b"" if final else lines.pop()
        return lines

    @property
    def pending(self) -> bytes:
        """The line still being written (a progress bar redraws one with carriage returns)."""
        return self._partial


class EventTail(LineTail):
    """Follows a growing events file: each call returns the events whose lines are complete."""

    def read_new(self, final: bool = False) -> list[dict]:
        return [e for e in map(parse_line, self.read_lines(final)) if e is not None]


__all__ = [
    "SCHEMA_VERSION", "EVENT_FIELDS", "EventWriter", "EventTail", "LineTail", "read_events", "parse_line", "problems",
    "last_ending",
]
