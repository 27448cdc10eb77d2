"""`engine sweep` on the tiny Llama over a 2 × 2 grid: every cell an ordinary run, a Ctrl-C stops
the current cell cleanly, the same command continues it and then skips what finished, and
`engine sweep show` draws the measured scores beside the advisor's predictions."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree

import pytest

from runner import ROOT, engine, env_for, events, json_out, start, wait_for_event

GRID = ["sweep", "--task", "gsm8k_math", "--model", "tiny", "--budgets", "32,16", "--ratios", "1,0.5",
        "--sft-cost", "1", "--pft-cost", "1", "--name", "grid", "--max-steps", "1", "--eval-size", "2",
        "--eval-max-new-tokens", "8"]
CELLS = {"grid-b16-s100": (16, 0), "grid-b16-s50": (8, 8), "grid-b32-s100": (32, 0), "grid-b32-s50": (16, 16)}
SVG = "{http://www.w3.org/2000/svg}"


def _stop_in_first_cell(home):
    """Start the sweep and Ctrl-C it once its first cell has started: (exit code, stderr). The
    cell ends about 2 s after it starts, so a test process stalled that long (a busy CI machine)
    sends the stop as the cell finishes (the sweep then stops after it): that attempt is redone in
    a fresh home, at most twice."""
    for attempt in range(3):
        where = home / f"attempt-{attempt}"
        where.mkdir()
        proc = start(where, *GRID)
        wait_for_event(where, "grid-b16-s100", proc, lambda e: e["type"] == "run_started")
        os.kill(proc.pid, signal.SIGINT)  # the sweep alone, as a terminal's Ctrl-C reaches it
        stopped = proc.wait(timeout=120), proc.stderr.read()
        ended = [e for e in events(where, "grid-b16-s100") if e["type"] == "run_finished"]
        if not (ended and ended[-1]["status"] == "finished"):  # the stop reached the first cell
            break
    return where, stopped


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Stopped in its first cell, continued, then run a third time."""
    commands = engine(tmp_path_factory.mktemp("fresh"), *GRID, "--print-commands")
    home, stopped = _stop_in_first_cell(tmp_path_factory.mktemp("home"))
    status_after_stop = json_out(engine(home, "runs", "list", "--json"))
    commands_after_stop = engine(home, *GRID, "--print-commands").stdout.splitlines()
    continued = engine(home, *GRID)
    again = engine(home, *GRID)
    return {"home": home, "commands": commands, "stopped": stopped, "after_stop": status_after_stop,
            "commands_after_stop": commands_after_stop,
            "continued": continued, "again": again}


@pytest.mark.slow
def test_a_stop_ends_the_current_cell_cleanly_and_the_same_command_continues(swept):
    code, stderr = swept["stopped"]
    assert code == 130 and "stopped in grid-b16-s100; run the same command again to continue" in stderr
    assert [(r["run_id"], r["status"]) for r in swept["after_stop"]] == [("grid-b16-s100", "stopped")]
    assert swept["commands_after_stop"][0] == "engine resume grid-b16-s100"  # a stopped cell is continued
    assert len(swept["commands_after_stop"]) == 4
    continued = swept["continued"]
    assert continued.returncode == 0, continued.stderr
    assert "cell 1/4 grid-b16-s100 (16 SFT, 0 pairs) resuming" in continued.stderr
    assert "cell 4/4 grid-b32-s50 (16 SFT, 16 pairs) starting" in continued.stderr
    assert [e["type"] for e in events(swept["home"], "grid-b16-s100")].count("run_finished") == 2


@pytest.mark.slow
def test_every_cell_is_an_ordinary_finished_run_and_a_rerun_skips_them(swept):
    runs = {r["run_id"]: r for r in json_out(engine(swept["home"], "runs", "list", "--json"))}
    assert set(runs) == set(CELLS)
    for run_id, split in CELLS.items():
        assert runs[run_id]["status"] == "finished" and (runs[run_id]["n_sft"], runs[run_id]["n_pft"]) == split
    again = swept["again"]
    assert again.returncode == 0 and again.stderr.count("finished already, skipped") == 4
    lines = swept["commands"].stdout.splitlines()
    assert lines[0] == ("engine run --task gsm8k_math --model tiny --n-sft 16 --n-pft 0 --run-id grid-b16-s100 "
                        "--max-steps 1 --eval-size 2 --eval-max-new-tokens 8")
    assert len(lines) == 4
    assert json.loads((swept["home"] / "sweeps" / "grid.json").read_text())["budgets"] == [16.0, 32.0]


@pytest.mark.slow
def test_show_draws_measured_scores_beside_predictions(swept, tmp_path):
    home = swept["home"]
    table = json_out(engine(home, "sweep", "show", "grid", "--json"))
    runs = {r["run_id"]: r for r in json_out(engine(home, "runs", "list", "--json"))}
    assert table["metric"] == "exact_match" and [c["run_id"] for c in table["cells"]] == list(CELLS)
    for cell in table["cells"]:
        assert cell["measured"] == runs[cell["run_id"]]["score"]
        predicted = cell["predicted"]
        assert 0 <= predicted["lo"] <= predicted["mean"] <= predicted["hi"] <= 1
    assert "fitted on every past run but this sweep's cells" in table["note"]

    plot = tmp_path / "grid.svg"
    shown = subprocess.run([sys.executable, "-m", "engine.cli", "sweep", "show", "grid", "--plot", str(plot)],
                           cwd=ROOT, env={**env_for(home), "COLUMNS": "200"}, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    for run_id in CELLS:
        assert run_id in shown.stdout
    assert "● measured  ○ predicted" in shown.stdout and "100% SFT" in shown.stdout
    svg = ElementTree.parse(plot).getroot()
    circles = svg.iter(f"{SVG}circle")
    assert sorted(c.get("class") for c in circles) == ["measurement"] * 4 + ["prediction"] * 4
    assert len([p for p in svg.iter(f"{SVG}polyline") if p.get("class") == "measured"]) == 2


@pytest.mark.parametrize("args, problem", [
    (["--budgets", "16,x"], "'x' is not a number"),
    (["--ratios", "1.5"], "1.5 is not between 0 and 1"),
    (["--budgets", "0.5"], "buys no examples"),
    (["--name", "../up"], "invalid sweep name"),
    (["--ratios", "0.5,0.5"], "lists a value twice"),
    (["--eval-size", "0"], "eval_size must be at least 1"),
    (["--n-sft", "3"], "invalid choice"),  # a stray value: the sweep takes no position but `show`
])
def test_bad_input_is_one_line_and_saves_nothing(tmp_path, args, problem):
    flags = {"--budgets": "16", "--ratios": "1", "--name": "ok"}
    for flag, value in zip(args[::2], args[1::2]):
        flags[flag] = value
    argv = ["sweep", "--task", "gsm8k_math", "--model", "tiny", "--sft-cost", "1", "--pft-cost", "1",
            *[part for pair in flags.items() for part in pair]]
    result = engine(tmp_path, *argv)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and problem in lines[0], result.stderr
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "runs").exists()


def test_a_changed_grid_under_the_same_name_and_unknown_sweeps_are_refused(tmp_path):
    base = ["sweep", "--task", "gsm8k_math", "--model", "tiny", "--budgets", "16", "--ratios", "1",
            "--sft-cost", "1", "--pft-cost", "1", "--print-commands"]
    assert engine(tmp_path, *base).returncode == 0
    saved = (tmp_path / "sweeps" / "gsm8k_math-tiny.json").read_text()
    changed = engine(tmp_path, *base, "--max-steps", "2")
    assert changed.returncode == 2 and "already exists with other settings" in changed.stderr
    assert (tmp_path / "sweeps" / "gsm8k_math-tiny.json").read_text() == saved
    missing = engine(tmp_path, "sweep", "show", "nope")
    assert missing.returncode == 2 and "no sweep named 'nope'" in missing.stderr
    png = engine(tmp_path, "sweep", "show", "gsm8k_math-tiny", "--plot", str(tmp_path / "f.png"))
    assert png.returncode == 2 and "only SVG" in png.stderr and not (tmp_path / "f.png").exists()


def test_the_terminal_figure_prints_a_bracketed_model_as_typed(capsys):
    from engine.sweep.figure import Row, SweepTable, terminal_figure
    from engine.sweep.grid import Sweep

    sweep = Sweep("s", "gsm8k_math", "org/[/x]-8B", [100.0], [1.0], 1.0, 1.0)
    terminal_figure(SweepTable(sweep, [Row(cell, None, None) for cell in sweep.cells], None, note="note [/y]"))
    out = capsys.readouterr().out
    assert "org/[/x]-8B" in out and "note [/y]" in out  # names and notes are words, not rich markup


def test_a_stop_that_reaches_a_finishing_cell_is_still_remembered(tmp_path):
    """The cell may finish anyway (the Ctrl-C came as it ended): `_run_cell` still says a stop
    was asked for, and the sweep stops after that cell instead of starting the next one."""
    from engine.commands.sweep import _run_cell

    ready = tmp_path / "ready"
    finishing = (f"import pathlib, signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                 f"pathlib.Path({str(ready)!r}).touch(); time.sleep(1)")

    def guard(signum, frame):  # a Ctrl-C that `_run_cell` did not catch fails this test, not the session
        pass

    def ctrl_c_once_ready():
        while not ready.exists() or signal.getsignal(signal.SIGINT) is guard:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, guard)
    try:
        threading.Thread(target=ctrl_c_once_ready, daemon=True).start()
        assert _run_cell([sys.executable, "-c", finishing]) == (0, True)
        assert _run_cell([sys.executable, "-c", "pass"]) == (0, False)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_sweep_stops_after_a_cell_that_finished_as_the_stop_came(home, monkeypatch, capsys):
    from engine.cli import build_parser
    from engine.commands import sweep

    started = []
    monkeypatch.setattr(sweep, "_run_cell", lambda argv: started.append(argv) or (0, True))
    args = build_parser().parse_args(GRID)
    assert args.handler(args) == 130
    assert len(started) == 1 and "grid-b16-s100" in started[0]
    assert "stopped after grid-b16-s100; run the same command again to continue" in capsys.readouterr().err
