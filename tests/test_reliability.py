"""What keeps every reader and every run record honest under hostile files, damaged stores,
closed pipes, racing owners and changed inputs (the one-line refusals are in test_bad_input.py)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.safe_files import BadFile, loads, read_text
from advisor.records import load_runs
from engine.record.events import last_ending, parse_line, read_events
from engine.record.home import home_dir
from engine.record.run_lock import RunLock
from engine.record.store import RunStore
from engine.record.errors import UserError
from engine.tasks.data import load_sft, read_rows

ROOT = Path(__file__).resolve().parents[1]
SEPARATORS = "\u2028\u2029\u0085"


def _engine(home: Path, *args: str, **options) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUDGETTUI_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, text=True,
                          **{"capture_output": True, **options})


# --- files ---------------------------------------------------------------------------------------
def test_jsonl_splits_only_at_newlines_and_drops_a_byte_order_mark(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = [{"prompt": f"a{sep}b", "completion": f"c{sep}d"} for sep in SEPARATORS]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode())
    loaded = load_sft(path)
    assert [e["prompt"][0]["content"] for e in loaded] == [f"a{sep}b" for sep in SEPARATORS]
    assert [e["completion"][0]["content"] for e in loaded] == [f"c{sep}d" for sep in SEPARATORS]


def test_a_runs_csv_with_a_byte_order_mark_and_separators_in_a_quoted_field_reads(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_bytes(b"\xef\xbb\xbf" + 'task,model,params_b,n_sft,n_pft,score,source\n'
                     f't,m,8,10,0,0.5,"x{SEPARATORS}y"\n'.encode())
    (run,) = load_runs(path)
    assert (run.task, run.n_sft, run.source) == ("t", 10, f"x{SEPARATORS}y")


def test_guarded_json_refuses_depth_digits_and_surrogates_but_reads_what_is_sane():
    assert loads('{"a": [[[1]]], "n": 123456789012345678901234567890}') == {
        "a": [[[1]]], "n": 123456789012345678901234567890}
    for text, reason in (("[" * 100_000, "nested"), ("[" * 65 + "]" * 65, "nested"), ("9" * 31, "digits"),
                         ('"\\ud800"', "surrogate"), ('{"k": ["\\udc00"]}', "surrogate")):
        with pytest.raises(BadFile, match=reason):
            loads(text)


def test_folders_and_pipes_are_named_as_such(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(BadFile, match="named pipe"):
        read_text(tmp_path / "pipe")
    with pytest.raises(BadFile, match="is a folder"):
        read_text(tmp_path)
    with pytest.raises(BadFile, match="no such file"):
        read_text(tmp_path / "nope")


def test_a_parquet_column_the_task_does_not_use_may_overflow(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    table = pa.table({"prompt": ["q"], "completion": ["a"],
                      "when": pa.array([2**62], type=pa.timestamp("ms"))})
    pq.write_table(table, path)
    ((where, row),) = read_rows(path)
    assert row == {"prompt": "q", "completion": "a"}


def test_hostile_event_lines_are_skipped_like_torn_ones(tmp_path):
    path = tmp_path / "events.jsonl"
    good = {"v": 1, "type": "warning", "run_id": "r", "time": 1.0, "message": f"x{SEPARATORS}y"}
    path.write_text("[" * 100_000 + "\n" + json.dumps(good, ensure_ascii=False) + "\n" + '{"n": ' + "9" * 5000 + "}\n")
    assert parse_line("[" * 100_000) is None
    assert read_events(path) == [good]


def test_the_last_ending_is_the_one_after_the_last_start():
    started, resumed = {"type": "run_started"}, {"type": "resumed"}
    failed, finished = {"type": "run_finished", "status": "failed"}, {"type": "run_finished", "status": "finished"}
    assert last_ending([started, failed]) == "failed"
    assert last_ending([started, failed, resumed]) is None
    assert last_ending([started, failed, resumed, finished]) == "finished"
    assert last_ending([]) is None


# --- home and ids ------------------------------------------------------------------------------
def test_a_relative_xdg_data_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("BUDGETTUI_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    assert home_dir() == tmp_path / ".local" / "share" / "budgettui"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert home_dir() == tmp_path / "xdg" / "budgettui"


# --- the store ---------------------------------------------------------------------------------
def _store_with_damage(home: Path) -> RunStore:
    store = RunStore(home / "runs.sqlite")
    store.create_run("good", task="gsm8k_math", model="Llama-3.1-8B (base)", params_b=8.0, n_sft=100, n_pft=0,
                     config={"seed": 1}, run_dir=str(home / "runs" / "good"), pid=1)
    store.add_eval("good", "sft", "exact_match", 0.4, higher_is_better=True, lower=0.0, upper=1.0)
    store.finish_run("good", status="finished", score=0.4, metric="exact_match", results={})
    with sqlite3.connect(home / "runs.sqlite") as db:
        db.execute("INSERT INTO runs (run_id, task, model, n_sft, n_pft, status, config, run_dir, created_at,"
                   " score) VALUES ('torn', 't', 'm-8B', 1, 1, 'finished', '{x', '/x', 2, 0.5),"
                   " ('texty', 't', 'm-8B', 'ten', 1, 'finished', '{}', '/x', 3, 0.5)")
    db.close()
    return store


def test_readers_skip_damaged_rows_name_them_and_keep_the_others(tmp_path):
    home = tmp_path / "home"
    store = _store_with_damage(home)
    assert [r["run_id"] for r in store.list_runs()] == ["good"]
    assert len(store.damaged) == 2 and all(str(store.path) in line for line in store.damaged)
    assert [r.source for r in store.past_runs()] == ["store:good:sft"]
    with pytest.raises(UserError, match="run 'torn': config is not readable JSON"):
        store.get_run("torn")

    listed = _engine(home, "runs", "list", "--json")
    assert listed.returncode == 0 and [r["run_id"] for r in json.loads(listed.stdout)] == ["good"]
    warnings = listed.stderr.splitlines()
    assert len(warnings) == 2 and "'torn'" in warnings[0] + warnings[1] and "Traceback" not in listed.stderr
    advised = _engine(home, "advise", "--task", "gsm8k_math", "--model", "Llama-3.1-8B (base)", "--budget", "100",
                      "--sft-cost", "1", "--pft-cost", "1", "--json")
    assert advised.returncode == 0, advised.stderr


def test_listing_a_new_home_creates_nothing(tmp_path):
    home = tmp_path / "new"
    done = _engine(home, "runs", "list", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert not home.exists()


def test_a_closed_or_full_stdout_is_no_error(tmp_path):
    home = tmp_path / "home"
    _store_with_damage(home)
    with open("/dev/full", "w") as full:
        done = _engine(home, "runs", "list", "--json", stdout=full, stderr=subprocess.PIPE, capture_output=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    env = {**os.environ, "BUDGETTUI_HOME": str(home), "PYTHONPATH": str(ROOT)}
    piped = subprocess.run(f"{sys.executable} -m engine.cli runs list --json | head -c 10", shell=True, cwd=ROOT,
                           env=env, capture_output=True, text=True, executable="/bin/bash")
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr


def test_listing_reads_a_store_it_cannot_write(tmp_path):
    """A full disk or read-only home: `runs list` opens the store read-only and still lists."""
    home = tmp_path / "home"
    _store_with_damage(home)
    with sqlite3.connect(home / "runs.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    for name in ("runs.sqlite-wal", "runs.sqlite-shm"):
        (home / name).unlink(missing_ok=True)
    os.chmod(home / "runs.sqlite", 0o444)
    os.chmod(home, 0o555)  # no -wal or -shm can be made beside it (for root: see BENCHMARKS.md, tmpfs check)
    try:
        done = _engine(home, "runs", "list", "--json")
    finally:
        os.chmod(home, 0o755)
    assert done.returncode == 0 and [r["run_id"] for r in json.loads(done.stdout)] == ["good"], done.stderr


# --- one owner per run -------------------------------------------------------------------------
def test_a_run_has_one_owner_and_the_os_frees_a_dead_owners_lock(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    held = RunLock(folder, "r").acquire()
    child = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                            "from engine.record.run_lock import RunLock; RunLock(Path(sys.argv[1]), 'r').acquire()",
                            str(folder)], cwd=ROOT, capture_output=True, text=True)
    assert child.returncode != 0 and f"in use by another engine process (pid {os.getpid()})" in child.stderr
    held.release()
    killed = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from engine.record.run_lock import RunLock; RunLock(Path(sys.argv[1]), 'r').acquire(); "
                               "print('held', flush=True); time.sleep(60)", str(folder)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match="in use"):
        RunLock(folder, "r").acquire()
    killed.kill()
    killed.wait()
    RunLock(folder, "r").acquire().release()


def test_a_second_resume_is_refused_in_one_line_and_changes_nothing(tmp_path):
    home = tmp_path / "home"
    store = RunStore(home / "runs.sqlite")
    folder = home / "runs" / "busy"
    folder.mkdir(parents=True)
    store.create_run("busy", task="gsm8k_math", model="tiny", params_b=0.0001, n_sft=1, n_pft=0, config={},
                     run_dir=str(folder), pid=os.getpid())
    store.set_status("busy", "stopped")
    before = store.get_run("busy")
    owner = RunLock(folder, "busy").acquire()  # another process resuming it right now
    try:
        done = _engine(home, "resume", "busy")
    finally:
        owner.release()
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "in use by another engine process" in lines[0], done.stderr
    assert store.get_run("busy") == before


def test_a_dead_run_takes_the_ending_its_events_recorded(tmp_path):
    """A full disk can let a run write its ending to events.jsonl but not to the store: the
    reader that notices the dead process records what the events say, not a guess."""
    home = tmp_path / "home"
    store = RunStore(home / "runs.sqlite")
    folder = home / "runs" / "gone"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.create_run("gone", task="t", model="m", params_b=1.0, n_sft=1, n_pft=0, config={}, run_dir=str(folder),
                     pid=int(dead.stdout))
    (folder / "events.jsonl").write_text('{"type": "run_started"}\n{"type": "run_finished", "status": "failed"}\n')
    assert store.mark_dead_runs() == ["gone"]
    assert store.get_run("gone")["status"] == "failed"


# --- checkpoints and numbers -------------------------------------------------------------------
def test_a_checkpoint_whose_contents_changed_is_damaged_and_the_previous_one_is_used(tmp_path):
    from engine.training import checkpoints

    made = []
    for step in (1, 2):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 3}))
        (folder / "optimizer.pt").write_bytes(bytes(range(256)))
        checkpoints.mark_complete(folder)
        made.append(folder)
    state = made[1] / "trainer_state.json"
    state.write_text(state.read_text().replace('"global_step": 2', '"global_step": 9'))  # same size
    assert checkpoints.latest_complete(tmp_path) == made[1]  # sizes alone cannot tell
    assert checkpoints.damaged(tmp_path) == [made[1]]
    assert checkpoints.latest_complete(tmp_path, verify=True) == made[0]
    checkpoints.prune(tmp_path, keep=2, verify=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1"]


@pytest.mark.parametrize("texts, field, reason", [
    ({"budget": "1e10", "sft_cost": "1e-300"}, "sft_cost", "more examples than can be counted"),
    ({"sft_cost": "0,5"}, "sft_cost", "decimal point"),
    ({"pft_cost": "0,001"}, "pft_cost", "decimal point"),
    ({"budget": "1e400"}, "budget", "finite"),
    ({"budget": "100", "compute_cost": "100"}, "compute_cost", "leaves nothing"),
])
def test_the_form_shows_overflow_and_ambiguous_numbers_beside_the_field(texts, field, reason):
    from tui.inputs import validate

    base = {"task": "gsm8k_math", "model": "tiny", "budget": "1000", "sft_cost": "1", "pft_cost": "0.5"}
    inputs, errors = validate({**base, **texts})
    assert inputs is None and reason in errors[field]


def test_one_number_reading_everywhere():
    from advisor.validate import BadNumber, finite

    assert finite("x", "12,000.5") == 12000.5 and finite("x", " 1_000 ") == 1000.0
    for text in ("0,5", "0,001", "1,00", "12,0000"):
        with pytest.raises(BadNumber, match="decimal point"):
            finite("x", text)


# --- a resume may not change what the run is -----------------------------------------------------
@pytest.mark.slow
def test_resume_works_from_any_folder_and_refuses_changed_inputs(tmp_path, tiny_spec):
    home, work, elsewhere = tmp_path / "home", tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    shutil.copytree(tiny_spec.path, work / "my-model")  # given as a relative folder below
    sft = "".join(json.dumps({"prompt": f"What is {i}+1?", "completion": str(i + 1)}) + "\n" for i in range(40))
    pft = "".join(json.dumps({"prompt": f"What is {i}+2?", "chosen": str(i + 2), "rejected": str(i + 3)}) + "\n"
                  for i in range(40))
    (work / "s.jsonl").write_text(sft)
    (work / "p.jsonl").write_text(pft)
    env = {**os.environ, "BUDGETTUI_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def engine(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=env, capture_output=True,
                              text=True)

    made = engine(work, "run", "--task", "mine", "--model", "my-model", "--sft-file", "s.jsonl", "--pft-file",
                  "p.jsonl", "--n-sft", "4", "--n-pft", "4", "--max-steps", "1", "--eval-size", "2", "--run-id", "r",
                  "--json")
    assert made.returncode == 0, made.stderr
    config = json.loads((home / "runs" / "r" / "config.json").read_text())
    assert config["sft_file"] == str(work / "s.jsonl") and config["model"] == str(work / "my-model")
    store = RunStore(home / "runs.sqlite")
    store.set_status("r", "stopped")  # as if stopped before its ending: resumable
    before = store.get_run("r")

    (work / "p.jsonl").write_text(pft.replace("What is 0+2?", "What is 0+7?"))
    changed = engine(elsewhere, "resume", "r")
    assert changed.returncode == 2 and "its data changed" in changed.stderr and "Traceback" not in changed.stderr
    assert store.get_run("r") == before

    (work / "p.jsonl").write_text(pft)
    config_path = home / "runs" / "r" / "config.json"
    config_path.write_text(json.dumps({**config, "n_pft": 5}))
    edited = engine(elsewhere, "resume", "r")
    assert edited.returncode == 2 and "config.json" in edited.stderr, edited.stderr
    assert store.get_run("r") == before

    config_path.write_text(json.dumps(config))
    resumed = engine(elsewhere, "resume", "r", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert store.get_run("r")["status"] == "finished"


def test_a_second_signal_outside_a_stage_lets_the_stop_record_its_ending():
    import signal

    from engine.training.lifecycle import StopSignal

    stop = StopSignal()
    stop.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # outside a stage: raises at once
        os.kill(os.getpid(), signal.SIGTERM)  # while the run writes `stopped`: ignored, not a second raise
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
    finally:
        stop.uninstall()


def test_a_stop_while_the_run_is_set_up_waits_for_execute_to_record_it():
    import signal

    from engine.training.lifecycle import StopSignal

    stop = StopSignal()
    stop.install()
    stop.hold()  # what a LiveRun does from its creation until `execute`
    try:
        os.kill(os.getpid(), signal.SIGINT)  # lands between run_started and execute: no raise yet
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            stop.release()  # execute's first step: the stop is honoured where it is recorded
    finally:
        stop.uninstall()


def test_sigterm_to_the_engine_exits_130_not_143(tmp_path):
    import signal
    import time

    env = {**os.environ, "BUDGETTUI_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    code = ("import sys, time; from engine import cli; import engine.commands.runs as runs\n"
            "def wait(args):\n    print('ready', flush=True); time.sleep(30)\n"
            "runs.list_runs = wait  # a command that is busy when the signals come\n"
            "sys.exit(cli.main(['runs', 'list']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr.read()


def test_a_stop_that_lands_in_generated_code_still_exits_130(tmp_path):
    """A stop raised inside an `exec` of source text (a dataclass being built while the run starts:
    a race the baseline stop test lost about one time in seven) made CPython end the process by
    SIGINT after the run had recorded itself stopped."""
    import signal

    (tmp_path / "busy_engine.py").write_text(
        "import signal, sys; from engine import cli; import engine.commands.runs as runs\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as a run's stop handler: it raises\n"
        "def wait(args):\n"
        "    exec(\"print('ready', flush=True)\\nimport time\\ntime.sleep(30)\")\n"
        "runs.list_runs = wait\n"
        "sys.exit(cli.main(['runs', 'list']))\n")
    env = {**os.environ, "BUDGETTUI_HOME": str(tmp_path / "home"), "PYTHONPATH": f"{ROOT}:{tmp_path}"}
    # run as a module, as the app, a sweep and the tests start the engine (`python -m engine.cli`)
    proc = subprocess.Popen([sys.executable, "-m", "busy_engine"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 130 and proc.stderr.read().strip() == "engine: interrupted"


def test_a_path_with_brackets_is_printed_as_it_is(capsys):
    from engine.training.report import Report

    Report(True).say("folder /data/[exp]/runs/[/x]")  # was read as markup: `[exp]` vanished, `[/x]` raised
    assert capsys.readouterr().err == "folder /data/[exp]/runs/[/x]\n"


def test_a_damaged_marker_is_named_too_but_an_unmarked_checkpoint_is_routine(tmp_path):
    from engine.training import checkpoints

    marked, unmarked = tmp_path / "checkpoint-1", tmp_path / "checkpoint-2"
    for folder in (marked, unmarked):
        folder.mkdir()
        (folder / "optimizer.pt").write_bytes(b"state")
    checkpoints.mark_complete(marked)
    (marked / checkpoints.MARKER).write_text("{torn")
    assert checkpoints.damaged(tmp_path) == [marked]


@pytest.mark.slow
def test_missing_weights_go_on_only_when_allowed_warn_and_never_teach_the_advisor(tmp_path, tiny_spec):
    import shutil

    from safetensors.torch import load_file, save_file

    partial = tmp_path / "partial"
    shutil.copytree(tiny_spec.path, partial)
    weights = load_file(partial / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".layers.1." not in k}, partial / "model.safetensors",
              metadata={"format": "pt"})
    home = tmp_path / "home"
    args = ["run", "--task", "gsm8k_math", "--model", str(partial), "--n-sft", "2", "--n-pft", "0", "--max-steps", "1",
            "--eval-size", "2", "--eval-max-new-tokens", "2", "--quant", "none", "--run-id", "p"]
    refused = _engine(home, *args)
    assert refused.returncode == 2 and "--allow-missing-weights" in refused.stderr and not (home / "runs" / "p").exists()
    allowed = _engine(home, *args, "--allow-missing-weights")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: the weights lack" in allowed.stderr
    warned = [e for e in read_events(home / "runs" / "p" / "events.jsonl") if e["type"] == "warning"]
    assert any("will not count as a past run" in e["message"] for e in warned)
    store = RunStore(home / "runs.sqlite")
    assert store.get_run("p")["status"] == "finished" and store.past_runs() == []
