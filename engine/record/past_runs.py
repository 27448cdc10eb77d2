"""The past runs the advisor fits on: the paper's shipped runs plus every finished local run."""

from __future__ import annotations

from pathlib import Path

from advisor.records import Run, load_runs, shipped_runs
from engine.record import home


def load_past_runs(files: list[Path] | None = None) -> list[Run]:
    """Exactly `files` when given (how the advisor is cross-validated); else shipped + store."""
    if files:
        return [run for path in files for run in load_runs(Path(path))]
    runs = list(shipped_runs())
    if home.store_path().exists():
        from engine.record.store import RunStore

        runs.extend(RunStore(create=False).past_runs())
    return runs
