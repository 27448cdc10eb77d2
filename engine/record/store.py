"""The run store: one SQLite file (stdlib sqlite3, WAL) that every engine process writes and
the TUI reads. Short IMMEDIATE transactions and a busy timeout let several processes share it
without `database is locked`; each call opens its own connection, so threads need no locks."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from advisor.safe_files import loads
from engine.record import home
from engine.record.errors import UserError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
STALE_HEARTBEAT_S = 600.0
STATUSES = ("running", "finished", "stopped", "failed", "interrupted")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    params_b REAL,
    n_sft INTEGER NOT NULL,
    n_pft INTEGER NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    pid INTEGER,
    host TEXT,
    created_at REAL NOT NULL,
    heartbeat_at REAL,
    finished_at REAL,
    score REAL,
    metric TEXT,
    results TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    stage TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id);
"""


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _opened(uri: str) -> sqlite3.Connection:
    """A connection that has read the schema (so a file SQLite cannot open fails here)."""
    db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    db.row_factory = sqlite3.Row
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db


def _told_ending(run_dir: object) -> str:
    """A dead run's status by its own events (a full disk may have let it write its ending
    there but not here), else `interrupted`: the row then agrees with events.jsonl."""
    from engine.record.events import last_ending, read_events

    if not isinstance(run_dir, str):
        return "interrupted"
    try:
        return last_ending(read_events(Path(run_dir) / "events.jsonl")) or "interrupted"
    except OSError:
        return "interrupted"


class DamagedRow(UserError):
    """A row of the store that cannot be read as a run; the message names the store and the run."""


NEEDED_COLUMNS = ("run_id", "task", "model", "n_sft", "n_pft", "status", "config", "run_dir", "created_at")
NUMBER_COLUMNS = ("params_b", "n_sft", "n_pft", "pid", "created_at", "heartbeat_at", "finished_at", "score")


def _row(row: sqlite3.Row, store: Path) -> dict:
    """One run from its row — the one decoder every reader goes through. A damaged row (JSON
    that does not parse, text in a number column, a foreign table) is a `DamagedRow`."""
    record = dict(row)
    where = f"run store {store}, run {record.get('run_id')!r}"
    missing = [column for column in NEEDED_COLUMNS if column not in record]
    if missing:
        raise DamagedRow(f"run store {store}: not a budgettui runs table (no column {', '.join(missing)})")
    for key in NUMBER_COLUMNS:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DamagedRow(f"{where}: {key} holds {value!r}, not a number")
    for key in ("run_id", "task", "model", "status", "run_dir"):
        if not isinstance(record[key], str):
            raise DamagedRow(f"{where}: {key} holds {record[key]!r}, not text")
    for key in ("config", "results"):
        text = record.get(key)
        try:
            record[key] = loads(text) if text else None
        except (ValueError, TypeError):
            raise DamagedRow(f"{where}: {key} is not readable JSON") from None
        if record[key] is not None and not isinstance(record[key], dict):
            raise DamagedRow(f"{where}: {key} is not a JSON object")
    return record


class RunStore:
    """Runs (config, status, times, results) and their metrics, in `home/runs.sqlite`."""

    def __init__(self, path: Path | None = None, *, create: bool = True):
        self.path = Path(path) if path is not None else home.store_path()
        self.damaged: list[str] = []  # one line per row the last read skipped
        if not create:  # a reader: never creates the store, and opens it read-only (a full disk can still list)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    db.execute("BEGIN IMMEDIATE")
                    db.executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the run store {self.path}: {exc}") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            yield db
        finally:
            db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection (None when there is no store yet: reading never creates one);
        any SQLite error is one line naming the store."""
        if not self.path.exists():
            yield None
            return
        try:
            db = self._read_only()
            try:
                yield db
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise UserError(f"cannot read the run store {self.path}: {exc}") from None

    def _read_only(self) -> sqlite3.Connection:
        """Read-only; where not even SQLite's shared-memory file can be made (a full disk, a
        read-only folder) the main file is read as it stands, without the not yet merged WAL."""
        uri = self.path.resolve().as_uri()
        try:
            return _opened(f"{uri}?mode=ro")
        except sqlite3.OperationalError:
            return _opened(f"{uri}?mode=ro&immutable=1")

    def _decoded(self, rows) -> list[dict]:
        """Rows as runs; damaged ones are skipped and named in `self.damaged`."""
        runs, self.damaged = [], []
        for row in rows:
            try:
                runs.append(_row(row, self.path))
            except DamagedRow as exc:
                self.damaged.append(str(exc))
        return runs

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short IMMEDIATE transaction: takes the write lock up front, so it never deadlocks."""
        try:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise UserError(f"run store {self.path}: {exc}") from None

    # --- writes -------------------------------------------------------------------------
    def create_run(self, run_id: str, *, task: str, model: str, params_b: float | None, n_sft: int,
                   n_pft: int, config: dict, run_dir: str, pid: int) -> None:
        home.check_run_id(run_id)
        now = time.time()
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise UserError(f"run {run_id} already exists")
            db.execute(
                "INSERT INTO runs (run_id, task, model, params_b, n_sft, n_pft, status, config, run_dir,"
                " pid, host, created_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (run_id, task, model, params_b, n_sft, n_pft, json.dumps(config), run_dir, pid,
                 socket.gethostname(), now, now),
            )

    def heartbeat(self, run_id: str, pid: int | None = None) -> None:
        with self._write() as db:
            db.execute("UPDATE runs SET heartbeat_at = ?, pid = COALESCE(?, pid) WHERE run_id = ?",
                       (time.time(), pid, run_id))

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._write() as db:
            self._require(db, run_id)
            db.execute("UPDATE runs SET status = ?, error = COALESCE(?, error), heartbeat_at = ? WHERE run_id = ?",
                       (status, error, time.time(), run_id))

    def add_metric(self, run_id: str, stage: str, name: str, value: float | None) -> None:
        with self._write() as db:
            db.execute("INSERT INTO metrics (run_id, stage, name, value, time) VALUES (?, ?, ?, ?, ?)",
                       (run_id, stage, name, value, time.time()))

    def finish_run(self, run_id: str, *, status: str, score: float | None, metric: str | None,
                   results: dict) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = time.time()
        with self._write() as db:
            self._require(db, run_id)
            db.execute(
                "UPDATE runs SET status = ?, score = ?, metric = ?, results = ?, finished_at = ?,"
                " heartbeat_at = ? WHERE run_id = ?",
                (status, score, metric, json.dumps(results), now, now, run_id),
            )

    def mark_dead_runs(self) -> list[str]:
        """Mark as interrupted every 'running' run whose process is gone (same host) or silent too long."""
        host, now = socket.gethostname(), time.time()
        dead = []
        with self._write() as db:
            for row in db.execute("SELECT run_id, pid, host, heartbeat_at, run_dir FROM runs WHERE status = 'running'"):
                local_and_gone = row["host"] == host and not _pid_alive(row["pid"])
                silent = (now - (row["heartbeat_at"] or 0)) > STALE_HEARTBEAT_S
                if local_and_gone or silent:
                    dead.append((_told_ending(row["run_dir"]), row["run_id"]))
            db.executemany("UPDATE runs SET status = ? WHERE run_id = ? AND status = 'running'", dead)
        return [run_id for _, run_id in dead]

    # --- reads --------------------------------------------------------------------------
    @staticmethod
    def _require(db: sqlite3.Connection, run_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UserError(f"no run with id {run_id!r} (see `engine runs list`)")
        return row

    def get_run(self, run_id: str) -> dict:
        with self._read() as db:
            if db is None:
                raise UserError(f"no run with id {run_id!r} (see `engine runs list`)")
            return _row(self._require(db, run_id), self.path)

    def list_runs(self) -> list[dict]:
        """Every readable run, newest first; damaged rows are skipped and named in `damaged`."""
        with self._read() as db:
            return [] if db is None else self._decoded(db.execute("SELECT * FROM runs ORDER BY created_at DESC, run_id"))

    def metrics(self, run_id: str) -> list[dict]:
        with self._read() as db:
            return [] if db is None else [dict(r) for r in db.execute(
                "SELECT stage, name, value, time FROM metrics WHERE run_id = ? ORDER BY id", (run_id,))]

    def past_runs(self) -> list:
        """Finished runs scored as a fraction in [0, 1] (a loss is no score to maximise), as the
        advisor's past runs; unfinished, stopped and failed runs never count."""
        from advisor.errors import AdvisorError
        from advisor.records import Run

        with self._read() as db:
            rows = [] if db is None else self._decoded(db.execute(
                "SELECT * FROM runs WHERE status = 'finished' AND score BETWEEN 0 AND 1 ORDER BY created_at"))
        runs = []
        for r in rows:
            if (r["config"] or {}).get("allow_missing_weights"):
                continue  # trained from partly random weights: not evidence of what data buys
            try:
                runs.append(Run(task=r["task"], model=r["model"], params_b=r["params_b"], n_sft=r["n_sft"],
                                n_pft=r["n_pft"], score=r["score"], metric=r["metric"] or "",
                                source=f"store:{r['run_id']}"))
            except AdvisorError as exc:  # damaged: skipped like any other unreadable row
                self.damaged.append(f"run store {self.path}, run {r['run_id']!r}: {exc}")
        return runs

    def _stage_seconds(self, model: str) -> dict[str, dict[str, float]]:
        """{stage: {run_id: seconds per example}} over finished runs of `model` (any spelling of it)."""
        from advisor.records import model_key

        with self._read() as db:
            rows = [] if db is None else db.execute(
                "SELECT r.run_id, r.model, m.stage, m.value FROM metrics m JOIN runs r USING (run_id)"
                " WHERE r.status = 'finished' AND m.name = 'seconds_per_example' AND m.value > 0"
                " ORDER BY m.id").fetchall()
        timings: dict[str, dict[str, float]] = {}
        for row in rows:
            if not isinstance(row["value"], float) or not isinstance(row["model"], str):
                continue  # a damaged metric row
            if model_key(row["model"]) == model_key(model):
                timings.setdefault(row["stage"], {})[row["run_id"]] = row["value"]  # a run's latest timing
        return timings

    def seconds_per_example(self, model: str) -> dict[str, float]:
        """Median measured training seconds per example seen, per stage ("sft", "dpo"), over this
        machine's finished runs of `model`; a stage never timed is absent (empty dict: none)."""
        return {stage: statistics.median(runs.values()) for stage, runs in self._stage_seconds(model).items()}

    def timed_runs(self, model: str) -> int:
        """How many finished runs of `model` the timings of `seconds_per_example` come from."""
        return len({run_id for runs in self._stage_seconds(model).values() for run_id in runs})
