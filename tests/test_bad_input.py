"""The bad-input matrix: every case is a real process (or a library call) that must give
one line naming the problem (file and line where there is one), exit 2, no traceback, and leave
everything already saved exactly as it was."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.record.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
GOOD_SFT = '{"prompt": "What is 2+2?", "completion": "4"}\n'
GOOD_PFT = '{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}\n'
ADVISE = ["advise", "--task", "gsm8k_math", "--model", "Llama-3.1-8B (base)"]
PRICES = ["--budget", "1000", "--sft-cost", "1", "--pft-cost", "1"]
RUN = ["run", "--task", "gsm8k_math", "--model", "tiny"]
CUSTOM = ["run", "--task", "mine", "--model", "tiny", "--metric", "preference_accuracy", "--n-sft", "1", "--n-pft", "1"]


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    program: str = "engine"
    env: dict[str, str] = field(default_factory=dict)


def advise(*extra: str, prices=PRICES) -> list[str]:
    return [*ADVISE, *prices, *extra]


CASES = [
    # engine advise: numbers
    Case("advise-cost-zero", advise(prices=["--budget", "100", "--sft-cost", "0", "--pft-cost", "1"]), "SFT cost"),
    Case("advise-cost-negative", advise(prices=["--budget", "100", "--sft-cost", "1", "--pft-cost", "-2"]), "cost"),
    Case("advise-cost-nan", advise(prices=["--budget", "100", "--sft-cost", "nan", "--pft-cost", "1"]), "nan"),
    Case("advise-budget-inf", advise(prices=["--budget", "inf", "--sft-cost", "1", "--pft-cost", "1"]), "inf"),
    Case("advise-budget-word", advise(prices=["--budget", "lots", "--sft-cost", "1", "--pft-cost", "1"]), "lots"),
    Case("advise-buys-nothing", advise(prices=["--budget", "0.5", "--sft-cost", "1", "--pft-cost", "2"]), "buys no"),
    Case("advise-model-no-size", [*ADVISE[:3], "--model", "mystery-model", *PRICES], "size"),
    # engine advise: runs files
    Case("runs-missing", advise("--runs", "nope.csv"), "nope.csv"),
    Case("runs-empty", advise("--runs", "empty.csv"), "empty.csv", {"empty.csv": ""}),
    Case("runs-bad-row", advise("--runs", "bad.csv"), "bad.csv:3",
         {"bad.csv": "task,model,params_b,n_sft,n_pft,score\nt,m,8,10,0,0.5\nt,m,8,ten,0,0.5\n"}),
    Case("runs-not-utf8", advise("--runs", "latin.csv"), "latin.csv",
         {"latin.csv": "task,model,params_b,n_sft,n_pft,score\n\xe9t\xe9,m,8,1,0,0.5\n".encode("latin-1")}),
    Case("runs-truncated-jsonl", advise("--runs", "cut.jsonl"), "cut.jsonl:2",
         {"cut.jsonl": '{"task": "t", "model": "m", "params_b": 8, "n_sft": 1, "n_pft": 0, "score": 0.5}\n'
                       '{"task": "t", "model": "m", "par'}),
    # engine run: sizes, names, models
    Case("run-n-sft-negative", [*RUN, "--n-sft", "-1", "--n-pft", "1"], "n_sft"),
    Case("run-too-many", [*RUN, "--n-sft", "100000", "--n-pft", "0"], "100000"),
    Case("run-unknown-task", ["run", "--task", "gsm8k_maths", "--model", "tiny", "--n-sft", "1", "--n-pft", "0"],
         "gsm8k_math"),
    Case("run-unknown-metric", [*RUN, "--n-sft", "1", "--n-pft", "0", "--metric", "bleu"], "bleu"),
    Case("run-model-missing", ["run", "--task", "gsm8k_math", "--model", "./no/such/model", "--n-sft", "1",
                               "--n-pft", "0"], "no/such/model"),
    Case("run-model-not-a-model", ["run", "--task", "gsm8k_math", "--model", "./plain", "--n-sft", "1", "--n-pft",
                                   "0"], "plain", {"plain/readme.txt": "hello"}),
    Case("run-model-corrupt-weights", ["run", "--task", "gsm8k_math", "--model", "./broken", "--n-sft", "1",
                                       "--n-pft", "0", "--quant", "none"], "broken",
         {"broken/config.json": '{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, '
                                '"num_attention_heads": 1, "intermediate_size": 8, "vocab_size": 16}',
          "broken/model.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00not a header"}),
    Case("run-budget-cost-zero", [*RUN, "--budget", "100", "--sft-cost", "0", "--pft-cost", "1"], "sft_cost"),
    Case("run-bad-run-id", [*RUN, "--n-sft", "1", "--n-pft", "0", "--run-id", "../evil"], "run id"),
    Case("run-nul-run-id", [*RUN, "--n-sft", "1", "--n-pft", "0", "--run-id", "a\x01b"], "run id"),
    # engine run: config files
    Case("config-unknown-key", [*RUN, "--n-sft", "1", "--n-pft", "0", "--config", "run.toml"], "lora_r",
         {"run.toml": "lora_rr = 8\n"}),
    Case("config-bad-toml", [*RUN, "--n-sft", "1", "--n-pft", "0", "--config", "run.toml"], "run.toml",
         {"run.toml": "seed = = 3\n"}),
    Case("config-wrong-type", [*RUN, "--n-sft", "1", "--n-pft", "0", "--config", "run.toml"], "beta",
         {"run.toml": 'beta = "high"\n'}),
    # engine run: data files
    Case("data-missing", [*CUSTOM, "--sft-file", "nope.jsonl", "--pft-file", "p.jsonl"], "nope.jsonl",
         {"p.jsonl": GOOD_PFT * 4}),
    Case("data-empty", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "s.jsonl",
         {"s.jsonl": "", "p.jsonl": GOOD_PFT * 4}),
    Case("data-truncated", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "s.jsonl:3",
         {"s.jsonl": GOOD_SFT * 2 + '{"prompt": "x", "compl', "p.jsonl": GOOD_PFT * 4}),
    Case("data-not-utf8", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "s.jsonl",
         {"s.jsonl": b'{"prompt": "\xff\xfe", "completion": "a"}\n', "p.jsonl": GOOD_PFT * 4}),
    Case("data-malformed-json", [*CUSTOM, "--sft-file", "s.json", "--pft-file", "p.jsonl"], "s.json",
         {"s.json": '[{"prompt": "a", "completion": "b"},', "p.jsonl": GOOD_PFT * 4}),
    Case("data-missing-chosen", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "p.jsonl:2",
         {"s.jsonl": GOOD_SFT * 4, "p.jsonl": GOOD_PFT + '{"prompt": "q", "rejected": "r"}\n'}),
    Case("data-missing-prompt", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "p.jsonl:1",
         {"s.jsonl": GOOD_SFT * 4, "p.jsonl": '{"chosen": "a", "rejected": "b"}\n'}),
    Case("data-chosen-is-rejected", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "p.jsonl:1",
         {"s.jsonl": GOOD_SFT * 4, "p.jsonl": '{"prompt": "q", "chosen": "same", "rejected": "same"}\n'}),
    # runs, resume
    Case("show-unknown-run", ["runs", "show", "no-such-run"], "no-such-run"),
    Case("show-escaping-run-id", ["runs", "show", "../../etc"], "run id"),
    Case("resume-unknown-run", ["resume", "no-such-run"], "no-such-run"),
    Case("resume-absolute-run-id", ["resume", "/tmp/x"], "run id"),
    # budgettui flags
    Case("tui-budget-nan", ["--budget", "nan"], "budget", program="budgettui"),
    Case("tui-cost-negative", ["--sft-cost", "-3"], "cost", program="budgettui"),
    Case("tui-budget-word", ["--budget", "many"], "many", program="budgettui"),
    Case("tui-attach-unknown", ["--attach", "no-such-run"], "no-such-run", program="budgettui"),
    # environment
    Case("home-not-writable", [*RUN, "--n-sft", "1", "--n-pft", "0"], "run store",
         {"blocker": "a file where the home folder should be"}, env={"BUDGETTUI_HOME": "blocker/home"}),
]
PROGRAMS = {"engine": [sys.executable, "-m", "engine.cli"], "budgettui": [sys.executable, "-m", "tui.app"]}


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its hash, leaving out SQLite's transient -wal/-shm files."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


@pytest.fixture
def saved_home(tmp_path):
    """A home folder that already holds a finished run, to prove nothing saved is touched."""
    home = tmp_path / "home"
    store = RunStore(home / "runs.sqlite")
    store.create_run("kept", task="gsm8k_math", model="tiny", params_b=0.0001, n_sft=8, n_pft=8,
                     config={"seed": 1}, run_dir=str(home / "runs" / "kept"), pid=1)
    store.finish_run("kept", status="finished", score=0.25, metric="exact_match", results={"dpo": 0.25})
    (home / "runs" / "kept").mkdir(parents=True)
    (home / "runs" / "kept" / "events.jsonl").write_text('{"type": "run_finished"}\n')
    return home


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, saved_home):
    work = tmp_path / "work"
    work.mkdir()
    for name, content in case.files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    env = {**os.environ, "BUDGETTUI_HOME": str(saved_home), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), **{k: str(work / v) for k, v in case.env.items()}}
    before = (_snapshot(saved_home), _snapshot(work), RunStore(saved_home / "runs.sqlite").list_runs())

    done = subprocess.run([*PROGRAMS[case.program], *case.argv], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)

    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert case.expect.lower() in lines[0].lower(), lines[0]
    assert re.match(r"(engine|budgettui)( \w+)*: error: ", lines[0]), lines[0]
    after = (_snapshot(saved_home), _snapshot(work), RunStore(saved_home / "runs.sqlite").list_runs())
    assert after == before


def test_matrix_is_big_enough():
    assert len(CASES) >= 30


def test_4bit_where_bitsandbytes_cannot_load_is_one_line(tmp_path, saved_home):
    """A bitsandbytes that fails to import (as on a machine without its native library)."""
    fake = tmp_path / "shadow" / "bitsandbytes"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('simulated: libbitsandbytes not found')\n")
    env = {**os.environ, "BUDGETTUI_HOME": str(saved_home), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}"}
    before = RunStore(saved_home / "runs.sqlite").list_runs()
    done = subprocess.run([*PROGRAMS["engine"], *RUN, "--n-sft", "1", "--n-pft", "0", "--quant", "4bit"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith("engine: error:") and "bitsandbytes" in lines[-1], done.stderr
    assert RunStore(saved_home / "runs.sqlite").list_runs() == before


def test_disk_full_while_running_is_one_line_and_keeps_saved_runs(tmp_path, saved_home, tiny_spec):
    """Writes past a small file-size limit fail like a full disk (EFBIG); the run ends with one
    line and exit 2, recorded as failed, and the runs saved before it are untouched."""
    import resource
    import shutil

    shutil.copytree(tiny_spec.path, saved_home / "models" / tiny_spec.path.name)  # the cache a user already has

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, 100 * 1024))

    env = {**os.environ, "BUDGETTUI_HOME": str(saved_home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    kept_before = RunStore(saved_home / "runs.sqlite").get_run("kept")
    kept_events = (saved_home / "runs" / "kept" / "events.jsonl").read_bytes()
    done = subprocess.run([*PROGRAMS["engine"], *RUN, "--n-sft", "4", "--n-pft", "0", "--max-steps", "1",
                           "--eval-size", "2", "--quant", "none", "--run-id", "full", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and "disk" in lines[0].lower(), done.stderr
    store = RunStore(saved_home / "runs.sqlite")
    assert store.get_run("kept") == kept_before
    assert (saved_home / "runs" / "kept" / "events.jsonl").read_bytes() == kept_events
    assert store.get_run("full")["status"] == "failed"
