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
    fifos: tuple[str, ...] = ()  # named pipes to make in the work folder
    tiny: dict[str, object] | None = None  # copy the tiny model to work/<key>, then apply the value
    store_sql: str = ""  # run against the saved store before the snapshot (damaged rows)


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
DEEP = "[" * 100_000
HUGE_INT = "9" * 400
TINY_FILES = ["run", "--task", "gsm8k_math", "--n-sft", "1", "--n-pft", "0", "--quant", "none", "--model"]
LARGE_HEADER = (2**62).to_bytes(8, "little") + b"{}"


def _foreign_store() -> bytes:
    """The bytes of an SQLite file whose `runs` table is some other program's."""
    import sqlite3
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "runs.sqlite"
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE runs (x TEXT)")
            db.execute("INSERT INTO runs VALUES ('kept')")
        db.close()
        return path.read_bytes()


def _partial_weights(folder: Path) -> None:
    """Drop one layer's tensors from a safetensors checkpoint (a partial or cut-down copy)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".layers.1." not in k}, folder / "model.safetensors",
              metadata={"format": "pt"})


def _drop(*names: str):
    def apply(folder: Path) -> None:
        for name in names:
            for path in folder.glob(name):
                path.unlink()
    return apply


CASES += [
    # files that parse into something a loader does not expect
    Case("data-deeply-nested-jsonl", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "nested",
         {"s.jsonl": DEEP, "p.jsonl": GOOD_PFT * 4}),
    Case("data-deeply-nested-json", [*CUSTOM, "--sft-file", "s.json", "--pft-file", "p.jsonl"], "nested",
         {"s.json": DEEP, "p.jsonl": GOOD_PFT * 4}),
    Case("data-nested-65-levels", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "nested",
         {"s.jsonl": '{"prompt": ' + "[" * 65 + "]" * 65 + ', "completion": "a"}\n', "p.jsonl": GOOD_PFT * 4}),
    Case("runs-deeply-nested", advise("--runs", "deep.jsonl"), "deep.jsonl:1", {"deep.jsonl": DEEP}),
    Case("data-huge-int", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "s.jsonl:1",
         {"s.jsonl": '{"prompt": "q", "completion": "a", "id": ' + "9" * 5000 + "}\n", "p.jsonl": GOOD_PFT * 4}),
    Case("runs-huge-int", advise("--runs", "big.jsonl"), "digits",
         {"big.jsonl": '{"task": "t", "model": "m", "params_b": 8, "n_sft": ' + HUGE_INT
                       + ', "n_pft": 0, "score": 0.5}\n'}),
    Case("runs-count-past-any-count", advise("--runs", "big.jsonl"), "n_sft must be at most",
         {"big.jsonl": '{"task": "t", "model": "m", "params_b": 8, "n_sft": 1e20, "n_pft": 0, "score": 0.5}\n'}),
    Case("runs-csv-count-past-any-count", advise("--runs", "big.csv"), "n_sft",
         {"big.csv": "task,model,params_b,n_sft,n_pft,score\nt,m,8,100000000000000000000,0,0.5\n"}),
    Case("data-messages-no-user-turn", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "no user message",
         {"s.jsonl": '{"messages": [{"role": "assistant", "content": "hi"}]}\n', "p.jsonl": GOOD_PFT * 4}),
    Case("data-lone-surrogate-sft", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "surrogate",
         {"s.jsonl": GOOD_SFT + '{"prompt": "\\ud800", "completion": "a"}\n', "p.jsonl": GOOD_PFT * 4}),
    Case("data-lone-surrogate-pft", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "p.jsonl:1",
         {"s.jsonl": GOOD_SFT * 4, "p.jsonl": '{"prompt": "q", "chosen": "\\udfff", "rejected": "b"}\n'}),
    Case("runs-lone-surrogate", advise("--runs", "s.jsonl"), "surrogate",
         {"s.jsonl": '{"task": "\\ud800", "model": "m", "params_b": 8, "n_sft": 1, "n_pft": 0, "score": 0.5}\n'}),
    Case("data-is-a-folder", [*CUSTOM, "--sft-file", "adir.jsonl", "--pft-file", "p.jsonl"], "folder",
         {"adir.jsonl/inside": "x", "p.jsonl": GOOD_PFT * 4}),
    Case("data-is-a-fifo", [*CUSTOM, "--sft-file", "pipe.jsonl", "--pft-file", "p.jsonl"], "pipe",
         {"p.jsonl": GOOD_PFT * 4}, fifos=("pipe.jsonl",)),
    Case("runs-is-a-folder", advise("--runs", "adir.csv"), "folder", {"adir.csv/inside": "x"}),
    Case("runs-is-a-fifo", advise("--runs", "pipe.csv"), "pipe", fifos=("pipe.csv",)),
    Case("config-is-a-folder", [*RUN, "--n-sft", "1", "--n-pft", "0", "--config", "cfg.toml"], "folder",
         {"cfg.toml/inside": "x"}),
    Case("data-not-utf8-after-bom", [*CUSTOM, "--sft-file", "s.jsonl", "--pft-file", "p.jsonl"], "s.jsonl:2",
         {"s.jsonl": b"\xef\xbb\xbf" + GOOD_SFT.encode() + b'{"prompt": "\xff", "completion": "a"}\n',
          "p.jsonl": GOOD_PFT * 4}),
    # numbers at the edges
    Case("advise-buys-past-any-count", advise(prices=["--budget", "1e10", "--sft-cost", "1e-300", "--pft-cost", "1"]),
         "buys more than"),
    Case("advise-decimal-comma", advise(prices=["--budget", "100", "--sft-cost", "0,5", "--pft-cost", "1"]),
         "decimal point"),
    Case("advise-comma-not-thousands", advise(prices=["--budget", "1,00", "--sft-cost", "1", "--pft-cost", "1"]),
         "decimal point"),
    Case("advise-budget-past-float", advise(prices=["--budget", "1e999", "--sft-cost", "1", "--pft-cost", "1"]),
         "finite"),
    Case("run-buys-past-any-count", [*RUN, "--budget", "1e10", "--sft-cost", "1e-300", "--pft-cost", "1"],
         "buys more than"),
    Case("run-decimal-comma", [*RUN, "--budget", "100", "--sft-cost", "0,5", "--pft-cost", "1"], "decimal point"),
    Case("run-seed-past-32-bits", [*RUN, "--n-sft", "1", "--n-pft", "0", "--seed", "4294967296"], "seed"),
    Case("run-threads-100000", [*RUN, "--n-sft", "1", "--n-pft", "0", "--threads", "100000"], "threads"),
    Case("run-threads-past-the-cores", [*RUN, "--n-sft", "1", "--n-pft", "0", "--threads", "1024"],
         "cores this process may run on"),
    Case("forecast-threads-past-the-cores", ["forecast", *RUN[1:], "--n-sft", "1", "--n-pft", "0", "--threads", "1024"],
         "cores this process may run on"),
    Case("run-lora-r-1e9", [*RUN, "--n-sft", "1", "--n-pft", "0", "--lora-r", "1000000000"], "lora_r"),
    Case("run-max-length-1", [*RUN, "--n-sft", "1", "--n-pft", "0", "--max-length", "1"], "max_length"),
    Case("run-lr-word", [*RUN, "--n-sft", "1", "--n-pft", "0", "--sft-lr", "abc"], "--sft-lr: must be a number"),
    Case("run-seed-fraction", [*RUN, "--n-sft", "1", "--n-pft", "0", "--seed", "1.5"], "--seed: must be a whole"),
    Case("run-n-sft-word", [*RUN, "--n-sft", "many", "--n-pft", "0"], "--n-sft: must be a number"),
    Case("config-seed-past-32-bits", [*RUN, "--n-sft", "1", "--n-pft", "0", "--config", "run.toml"], "seed",
         {"run.toml": "seed = 99999999999\n"}),
    Case("config-lora-r-float", [*RUN, "--n-sft", "1", "--n-pft", "0", "--config", "run.toml"], "lora_r",
         {"run.toml": "lora_r = 1e9\n"}),
    Case("config-huge-int", [*RUN, "--n-sft", "1", "--n-pft", "0", "--config", "run.toml"], "eval_size",
         {"run.toml": "eval_size = " + "9" * 30 + "\n"}),
    Case("tui-buys-past-any-count", ["--budget", "1e10", "--sft-cost", "1e-300"], "sft-cost", program="budgettui"),
    Case("tui-decimal-comma", ["--sft-cost", "0,5"], "decimal point", program="budgettui"),
    Case("tui-decimal-comma-thousandth", ["--sft-cost", "0,001"], "decimal point", program="budgettui"),
    Case("tui-budget-past-float", ["--budget", "1e400"], "finite", program="budgettui"),
    # run settings that only the model can check, before the run exists
    Case("run-prompts-longer-than-max-length", [*RUN, "--n-sft", "2", "--n-pft", "0", "--max-length", "16"],
         "max_length", tiny={}),
    Case("run-lora-target-lm-head", [*RUN, "--n-sft", "2", "--n-pft", "0", "--lora-targets", "lm_head"],
         "output layer", tiny={}),
    Case("run-lora-target-not-linear", [*RUN, "--n-sft", "2", "--n-pft", "0", "--lora-targets", "q_proj,model"],
         "'model'", tiny={}),
    # models that are not what they claim
    Case("model-header-claims-2-62-bytes", [*TINY_FILES, "./huge"], "not a readable safetensors",
         tiny={"huge": lambda folder: (folder / "model.safetensors").write_bytes(LARGE_HEADER)}),
    Case("model-partial-weights", [*TINY_FILES, "./partial"], "lack", tiny={"partial": _partial_weights}),
    Case("model-no-safetensors", [*TINY_FILES, "./nosafe"], "safetensors",
         tiny={"nosafe": _drop("*.safetensors")}),
    Case("model-no-tokenizer", [*TINY_FILES, "./notok"], "tokenizer", tiny={"notok": _drop("tokenizer*")}),
    Case("model-garbage-config", [*TINY_FILES, "./garbage"], "config.json",
         tiny={"garbage": lambda folder: (folder / "config.json").write_text("{x")}),
    Case("model-nested-config", [*TINY_FILES, "./deep"], "nested",
         tiny={"deep": lambda folder: (folder / "config.json").write_text(DEEP)}),
    Case("model-wrong-config", [*TINY_FILES, "./wrong"], "config.json",
         tiny={"wrong": lambda folder: (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": -4}')}),
    Case("model-custom-code", [*TINY_FILES, "./custom"], "trust-remote-code",
         tiny={"custom": lambda folder: (folder / "config.json").write_text(
             (folder / "config.json").read_text().replace("{", '{"auto_map": {"AutoModelForCausalLM": "m.M"},', 1))}),
    # ids
    Case("run-id-trailing-newline", [*RUN, "--n-sft", "1", "--n-pft", "0", "--run-id", "abc\n"], "run id"),
    Case("run-id-empty", [*RUN, "--n-sft", "1", "--n-pft", "0", "--run-id", ""], "run id"),
    Case("show-run-id-trailing-newline", ["runs", "show", "kept\n"], "run id"),
    Case("resume-run-id-trailing-newline", ["resume", "kept\n"], "run id"),
    # a damaged store: the reader names the store and the run
    Case("show-damaged-config", ["runs", "show", "bad"], "'bad'",
         store_sql="INSERT INTO runs (run_id, task, model, n_sft, n_pft, status, config, run_dir, created_at)"
                   " VALUES ('bad', 't', 'm', 1, 1, 'finished', '{x', '/nowhere', 1)"),
    Case("show-text-in-number-column", ["runs", "show", "bad"], "n_sft",
         store_sql="INSERT INTO runs (run_id, task, model, n_sft, n_pft, status, config, run_dir, created_at)"
                   " VALUES ('bad', 't', 'm', 'ten', 1, 'finished', '{}', '/nowhere', 1)"),
    Case("resume-damaged-row", ["resume", "bad"], "'bad'",
         store_sql="INSERT INTO runs (run_id, task, model, n_sft, n_pft, status, config, run_dir, created_at)"
                   " VALUES ('bad', 't', 'm', 1, 1, 'stopped', '[[[', '/nowhere', 1)"),
    Case("list-foreign-store", ["runs", "list"], "run store", {"foreign/runs.sqlite": _foreign_store()},
         env={"BUDGETTUI_HOME": "foreign"}),
    Case("show-foreign-store", ["runs", "show", "kept"], "run store",
         {"foreign/runs.sqlite": _foreign_store()}, env={"BUDGETTUI_HOME": "foreign"}),
    Case("list-store-not-sqlite", ["runs", "list"], "run store", {"junk/runs.sqlite": b"not a database" * 100},
         env={"BUDGETTUI_HOME": "junk"}),
    Case("advise-foreign-store", advise(), "run store", {"foreign/runs.sqlite": _foreign_store()},
         env={"BUDGETTUI_HOME": "foreign"}),
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
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, saved_home, request):
    import shutil
    import sqlite3

    work = tmp_path / "work"
    work.mkdir()
    for name, content in case.files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for name in case.fifos:
        os.mkfifo(work / name)
    if case.tiny is not None:
        tiny = request.getfixturevalue("tiny_spec").path
        shutil.copytree(tiny, saved_home / "models" / tiny.name)  # the cache a user already has
        for name, change in case.tiny.items():
            shutil.copytree(tiny, work / name)
            change(work / name)
    if case.store_sql:
        with sqlite3.connect(saved_home / "runs.sqlite") as db:
            db.execute(case.store_sql)
        db.close()
    env = {**os.environ, "BUDGETTUI_HOME": str(saved_home), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), **{k: str(work / v) for k, v in case.env.items()}}
    before = (_snapshot(saved_home), _snapshot(work), RunStore(saved_home / "runs.sqlite").list_runs())
    assert before[2], "the saved run must be readable before the case"

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
    assert len(CASES) >= 100


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
