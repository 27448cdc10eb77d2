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
from engine.record.model_names import canonical_model, same_model

SCHEMA_VERSION = 2  # 2: an evaluation row records its metric's direction and bounds
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
    time REAL NOT NULL,
    higher_is_better INTEGER,
    lower_bound REAL,
    upper_bound REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id);
"""
EVAL_COLUMNS = (("higher_is_better", "INTEGER"), ("lower_bound", "REAL"), ("upper_bound", "REAL"))
# The metrics a version-1 store could hold evaluations of, with their direction and bounds then
# (tests/test_store.py checks these agree with engine.tasks.metrics): what the migration fills in.
V1_METRICS = {"exact_match": (1, 0.0, 1.0), "rouge_l": (1, 0.0, 1.0), "preference_accuracy": (1, 0.0, 1.0),
              "heldout_loss": (0, 0.0, None)}
EVAL_STAGES = ("base", "sft", "dpo")


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


def _upgrade(db: sqlite3.Connection) -> None:
    """Create the tables, or bring a version-1 store up to date in place (its rows kept): the
    evaluation rows gain their metric's direction and bounds. The version is read again under
    the write lock, so two processes opening an old store migrate it once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            present = {row["name"] for row in db.execute("PRAGMA table_info(metrics)")}
            for column, kind in EVAL_COLUMNS:
                if column not in present:
                    db.execute(f"ALTER TABLE metrics ADD COLUMN {column} {kind}")
            if version == 1:
                db.executemany("UPDATE metrics SET higher_is_better = ?, lower_bound = ?, upper_bound = ?"
                               f" WHERE name = ? AND stage IN {EVAL_STAGES} AND higher_is_better IS NULL",
                               [(*bounds, name) for name, bounds in V1_METRICS.items()])
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _is_score(row: sqlite3.Row) -> bool:
    """A true score: higher is better and bounded in [0, 1] (a loss or an unbounded value is not)."""
    return (row["higher_is_better"] == 1 and row["lower_bound"] == 0 and row["upper_bound"] == 1
            and row["value"] is not None and 0 <= row["value"] <= 1)


def _point(stage: str, run: dict) -> tuple[int, int]:
    """Where an evaluation stands: the base at (0, 0), the SFT policy at (n_sft, 0), the final one at (n_sft, n_pft)."""
    return {"base": (0, 0), "sft": (run["n_sft"], 0), "dpo": (run["n_sft"], run["n_pft"])}[stage]


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
                    _upgrade(db)
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
                (run_id, task, canonical_model(model), params_b, n_sft, n_pft, json.dumps(config), run_dir, pid,
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

    def add_eval(self, run_id: str, stage: str, metric: str, value: float, *, higher_is_better: bool,
                 lower: float | None, upper: float | None) -> None:
        """One evaluation of a stage, with its metric's direction and bounds (what makes it a score)."""
        with self._write() as db:
            db.execute("INSERT INTO metrics (run_id, stage, name, value, time, higher_is_better, lower_bound,"
                       " upper_bound) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (run_id, stage, metric, value, time.time(), int(bool(higher_is_better)), lower, upper))

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

    def evaluations(self) -> list[dict]:
        """Every evaluation a run finished, with where it stands: one dict per (run, stage) with
        the run's task, canonical model, params_b and status, the stage, its point (n_sft, n_pft),
        the metric, its value and whether it is a true score. A running run's are left out until
        it ends; a stopped, failed or interrupted run keeps the evaluations it finished."""
        with self._read() as db:
            if db is None:
                return []
            runs = {run["run_id"]: run for run in self._decoded(db.execute(
                "SELECT * FROM runs WHERE status != 'running' ORDER BY created_at, run_id"))
                    if not (run["config"] or {}).get("allow_missing_weights")}  # partly random weights: no evidence
            rows = db.execute("SELECT run_id, stage, name, value, higher_is_better, lower_bound, upper_bound"
                              f" FROM metrics WHERE higher_is_better IS NOT NULL AND stage IN {EVAL_STAGES}"
                              " ORDER BY id").fetchall()
        latest = {}
        for row in rows:
            value = row["value"]
            if row["run_id"] in runs and isinstance(value, (int, float)) and not isinstance(value, bool):
                latest[(row["run_id"], row["stage"])] = row  # a stage evaluated twice: its last
        order = {run_id: index for index, run_id in enumerate(runs)}
        points = []
        for (run_id, stage), row in sorted(latest.items(), key=lambda item: order[item[0][0]]):
            run = runs[run_id]
            n_sft, n_pft = _point(stage, run)
            points.append({"run_id": run_id, "task": run["task"], "model": canonical_model(run["model"]),
                           "params_b": run["params_b"], "status": run["status"], "stage": stage, "n_sft": n_sft,
                           "n_pft": n_pft, "metric": row["name"], "value": row["value"], "score": _is_score(row)})
        return points

    def past_runs(self, exclude: set[str] | frozenset[str] = frozenset()) -> list:
        """The advisor's past runs from this store: every evaluated stage of every run is a point —
        the base model at (0, 0), the SFT policy at (n_sft, 0), the final policy at (n_sft, n_pft)
        — each in its own metric, and only true scores (bounded, higher is better; never a loss).

        The base model is the same model on the same held-out examples in every run of a (task,
        metric, model), so its evaluations are one measurement repeated, not independent
        evidence: they become one point, their mean, so ten runs do not pin the curve's start ten
        times harder. `exclude`: run ids to leave out (a sweep's own cells, to predict them)."""
        from advisor.errors import AdvisorError
        from advisor.records import Run, model_key

        bases: dict[tuple, list[dict]] = {}
        points = []
        for point in self.evaluations():
            if not point["score"] or point["run_id"] in exclude:
                continue
            if point["stage"] == "base":
                bases.setdefault((point["task"], point["metric"], model_key(point["model"])), []).append(point)
            else:
                points.append((point, point["value"], f"store:{point['run_id']}:{point['stage']}"))
        for same in bases.values():
            ids = ",".join(p["run_id"] for p in same)
            points.append((same[0], statistics.fmean(p["value"] for p in same), f"store:{ids}:base"))
        runs = []
        for point, score, source in points:
            try:
                runs.append(Run(task=point["task"], model=point["model"], params_b=point["params_b"],
                                n_sft=point["n_sft"], n_pft=point["n_pft"], score=score, metric=point["metric"],
                                source=source))
            except AdvisorError as exc:  # damaged: skipped like any other unreadable row
                self.damaged.append(f"run store {self.path}, run {point['run_id']!r}: {exc}")
        return runs

    def known_params_b(self, model: str) -> float | None:
        """The size the engine measured on the latest run of `model` (any spelling of it), if any."""
        runs = [run for run in self.list_runs() if isinstance(run["params_b"], (int, float)) and run["params_b"] > 0]
        return next((run["params_b"] for run in runs if same_model(run["model"], model)), None)

    def base_scores(self, task: str, model: str) -> dict[str, float]:
        """{metric: mean base-model score} measured for this task and model (any spelling of it)."""
        found: dict[str, list[float]] = {}
        for point in self.evaluations():
            if (point["stage"] == "base" and point["score"] and point["task"] == task
                    and same_model(point["model"], model)):
                found.setdefault(point["metric"], []).append(point["value"])
        return {metric: statistics.fmean(values) for metric, values in found.items()}

    def _stage_seconds(self, model: str) -> dict[str, dict[str, float]]:
        """{stage: {run_id: seconds per example}} over finished runs of `model` (any spelling of it)."""
        with self._read() as db:
            rows = [] if db is None else db.execute(
                "SELECT r.run_id, r.model, m.stage, m.value FROM metrics m JOIN runs r USING (run_id)"
                " WHERE r.status = 'finished' AND m.name = 'seconds_per_example' AND m.value > 0"
                " ORDER BY m.id").fetchall()
        timings: dict[str, dict[str, float]] = {}
        for row in rows:
            if not isinstance(row["value"], float) or not isinstance(row["model"], str):
                continue  # a damaged metric row
            if same_model(row["model"], model):
                timings.setdefault(row["stage"], {})[row["run_id"]] = row["value"]  # a run's latest timing
        return timings

    def seconds_per_example(self, model: str) -> dict[str, float]:
        """Median measured training seconds per example seen, per stage ("sft", "dpo"), over this
        machine's finished runs of `model`; a stage never timed is absent (empty dict: none)."""
        return {stage: statistics.median(runs.values()) for stage, runs in self._stage_seconds(model).items()}

    def timed_runs(self, model: str) -> int:
        """How many finished runs of `model` the timings of `seconds_per_example` come from."""
        return len({run_id for runs in self._stage_seconds(model).values() for run_id in runs})

    def stage_measurements(self, model: str, threads: int) -> list[dict]:
        """Per (finished run of `model` on this host with `threads` CPU threads, stage): its measured
        stage_seconds and peak_memory_bytes, the forecast_* figures it was launched with (0 when
        it had none) and the cores other work took while it ran (None when not recorded)."""
        blank = {"stage_seconds": 0.0, "peak_memory_bytes": 0.0, "forecast_seconds": 0.0,
                 "forecast_peak_memory_bytes": 0.0, "other_cores": None}
        names = tuple(blank)
        with self._read() as db:
            if db is None:
                return []
            runs = {run["run_id"]: run for run in self._decoded(db.execute(
                "SELECT * FROM runs WHERE status = 'finished' AND host = ?", (socket.gethostname(),)))}
            rows = db.execute(f"SELECT run_id, stage, name, value FROM metrics WHERE name IN"
                              f" ({', '.join('?' * len(names))}) ORDER BY id", names).fetchall()
        found: dict[tuple[str, str], dict] = {}
        for row in rows:
            run = runs.get(row["run_id"])
            if run is None or not isinstance(row["value"], (int, float)):
                continue
            if same_model(run["model"], model) and (run["config"] or {}).get("threads") == threads:
                entry = found.setdefault((row["run_id"], row["stage"]),
                                         {"run_id": row["run_id"], "stage": row["stage"], **blank})
                entry[row["name"]] = row["value"] or 0.0
        return list(found.values())
