"""What the model wrote at each evaluation: `evals/<stage>.jsonl` in the run folder, one
{prompt, output, reference, score} per held-out example of a generation metric — so a score of
0.000 can be looked into. Written by the engine, read by `engine runs` users and the TUI."""

from __future__ import annotations

import json
from pathlib import Path

from engine.record.home import inside

GENERATIONS_DIR = "evals"


def generations_file(stage: str) -> str:
    """The file's path relative to the run folder (as the `eval` event names it)."""
    return f"{GENERATIONS_DIR}/{stage}.jsonl"


def read_generations(run_folder: Path, stage: str, limit: int | None = None) -> list[dict]:
    """The first `limit` generations of a stage's evaluation ([] when it saved none)."""
    try:
        text = inside(run_folder, generations_file(stage)).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return []
    rows = []
    for line in text.splitlines()[:limit]:
        try:
            rows.append(json.loads(line))
        except ValueError:  # a file cut short mid-write by a crash: show what is whole
            break
    return rows
