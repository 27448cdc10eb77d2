"""Forecast against measurement: for each plan, `engine forecast --json` (calibrating this
machine, timed), then the real `engine run`, then measured ÷ forecast wall time and peak memory
per stage from the run store. `--default-plan` instead forecasts the app's default plan (demo
model, budget 1000, SFT 1, pairs 0.5) on 1 thread and on all cores, without running it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/forecast.py            # tiny and demo plans
    OMP_NUM_THREADS=1 .venv/bin/python bench/forecast.py --plans tiny-a,tiny-b,tiny-c --repeats 3
    .venv/bin/python bench/forecast.py --plans demo-a,demo-d --threads ""   # every core, as the app runs
    .venv/bin/python bench/forecast.py --default-plan
    .venv/bin/python bench/forecast.py --plans demo-t --threads ""   # data written from one template

Each plan gets a fresh BUDGETTUI_HOME (no history, so every forecast is calibration-only) whose
models/ folder is shared between plans, so the demo model is converted once."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--epochs", "1", "--eval-size", "16", "--eval-max-new-tokens", "32"]
PLANS = {
    "tiny-a": ["--model", "tiny", "--n-sft", "32", "--n-pft", "32"],
    "tiny-b": ["--model", "tiny", "--n-sft", "96", "--n-pft", "0", "--batch-size", "8"],
    "tiny-c": ["--model", "tiny", "--n-sft", "16", "--n-pft", "64", "--max-length", "256"],
    "demo-a": ["--model", "demo", "--n-sft", "16", "--n-pft", "8", "--max-length", "256", *SMALL],
    "demo-b": ["--model", "demo", "--n-sft", "24", "--n-pft", "16", "--max-length", "384", "--batch-size", "2", *SMALL],
    "tiny-d": ["--model", "tiny", "--n-sft", "128", "--n-pft", "96"],
    "demo-c": ["--model", "demo", "--n-sft", "32", "--n-pft", "16", "--max-length", "256", *SMALL],
    "demo-d": ["--model", "demo", "--n-sft", "64", "--n-pft", "32", "--max-length", "256", *SMALL],
}
# A task written from one template, as many users' data sets are: every example within a few tokens
# of the others (made by `write_template_task`), evaluated at the default 128-token cap.
TEMPLATE = Path(tempfile.gettempdir()) / "budgettui-bench-template"
PLANS["demo-t"] = ["--model", "demo", "--task", "sums", "--sft-file", str(TEMPLATE / "sft.jsonl"),
                   "--pft-file", str(TEMPLATE / "pairs.jsonl"), "--eval-file", str(TEMPLATE / "eval.jsonl"),
                   "--metric", "exact_match", "--n-sft", "24", "--n-pft", "12", "--eval-size", "8", "--epochs", "1"]
# Plans forecast from another plan's calibration (same stages, another split): nothing recalibrates.
CALIBRATED_BY = {"tiny-d": "tiny-a", "demo-c": "demo-a"}
MODELS = Path(tempfile.gettempdir()) / "budgettui-bench-models"
DEFAULT_PLAN = ["--model", "demo", "--budget", "1000", "--sft-cost", "1", "--pft-cost", "0.5"]


def write_template_task() -> None:
    """Sums of two two-digit numbers: SFT answers, pairs whose rejected sum is off by ten, and an
    evaluation set — the same, seeded, on every machine."""
    import random

    rng = random.Random(0)
    TEMPLATE.mkdir(exist_ok=True)
    sums = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(120)]

    def prompt(a: int, b: int) -> str:
        return f"What is {a} plus {b}? Answer with the sum."

    answered = [{"prompt": prompt(a, b), "completion": f"The sum is {a + b}."} for a, b in sums]
    files = {"eval.jsonl": answered[:20], "sft.jsonl": answered[20:70],
             "pairs.jsonl": [{"prompt": prompt(a, b), "chosen": f"The sum is {a + b}.",
                              "rejected": f"The sum is {a + b + 10}."} for a, b in sums[70:]]}
    for name, rows in files.items():
        (TEMPLATE / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def engine(home: Path, *args: str, threads: str | None = "1") -> tuple[float, subprocess.CompletedProcess]:
    MODELS.mkdir(exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(MODELS)
    env = {**os.environ, "BUDGETTUI_HOME": str(home), "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = threads
    else:
        env.pop("OMP_NUM_THREADS", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"engine {' '.join(args)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started, done


def calibrations(home: Path) -> list[dict]:
    """The home's cached calibrations, as `engine.training.calibrate` stores them."""
    return [json.loads(path.read_text()) for path in (home / "calibration").glob("*.json")]


def calibration_seconds(made: list[dict]) -> float:
    return sum(calibration["calibration_seconds"] for calibration in made)


def calibration_steps(made: list[dict]) -> dict[str, dict]:
    """{training stage: its calibration figures}, for its steps' [seconds, padded tokens] and the
    memory its measured steps added."""
    return {stage: figures for calibration in made
            for stage, figures in calibration["stages"].items() if "calibration_steps" in figures}


def timed_base(made: list[dict]) -> dict | None:
    """The calibration's base evaluation where it timed the base model's answers (None for a scoring metric)."""
    timed = [c["stages"]["base_eval"] for c in made if c["stages"]["base_eval"].get("early_decode_seconds_per_token")]
    return timed[0] if timed else None


def measured(home: Path) -> dict[str, dict[str, float]]:
    db = sqlite3.connect(home / "runs.sqlite")
    rows = db.execute("SELECT stage, name, value FROM metrics WHERE name IN ('stage_seconds', 'peak_memory_bytes')")
    out: dict[str, dict[str, float]] = {}
    for stage, name, value in rows:
        out.setdefault(stage, {})[name] = value
    return out


def bench_plan(name: str, args: list[str], threads: str | None) -> dict[str, tuple[float, float]]:
    """One fresh-home forecast and run of the plan with OMP_NUM_THREADS=`threads` (None: unset),
    printed; {stage: (time ratio, memory ratio)}."""
    with tempfile.TemporaryDirectory(prefix=f"bench-forecast-{name}-") as tmp:
        home = Path(tmp)
        task = args if "--task" in args else ["--task", "gsm8k_math", *args]
        if name in CALIBRATED_BY:
            engine(home, "forecast", "--task", "gsm8k_math", *PLANS[CALIBRATED_BY[name]], "--json", threads=threads)
        asked, done = engine(home, "forecast", *task, "--json", *(["--cached-only"] if name in CALIBRATED_BY else []),
                             threads=threads)
        forecast = json.loads(done.stdout)
        made = calibrations(home)
        calibration, steps, base = calibration_seconds(made), calibration_steps(made), timed_base(made)
        run_wall, _ = engine(home, "run", *task, "--json", threads=threads)
        actual = measured(home)
    reused = f", forecast from {CALIBRATED_BY[name]}'s calibration" if name in CALIBRATED_BY else ""
    print(f"\n{name}: {' '.join(args)}  ({forecast['device']}, {forecast['threads']} thread(s){reused})")
    if reused:
        print(f"  no calibration of its own (the borrowed one took {calibration:.1f} s): `engine forecast` "
              f"{asked:.1f} s; run {run_wall:.1f} s wall")
    else:
        other = forecast["calibration"]["other_cores"]
        print(f"  calibration {calibration:.1f} s = {calibration / run_wall:.0%} of the run's {run_wall:.1f} s "
              f"wall time; other work took {other if other is not None else '?'} of {forecast['calibration']['cores']} "
              "cores while it was timed")
        print("  its steps, [seconds, padded tokens]: "
              + "; ".join(f"{stage} {[[round(t, 2), n] for t, n in figures['calibration_steps']]}"
                          for stage, figures in steps.items()))
        print("  memory the longest example's timed step added, MiB: " + "; ".join(
            f"{stage} {figures['calibration_growth_bytes'] / 2**20:.0f}" for stage, figures in steps.items()))
        if base is not None:  # a trained evaluation's rate is scaled by that growth
            from engine.training.forecast import decode_growth

            print(f"  base model's answers: {base['decoded_tokens']} tokens decoded, forecast at "
                  f"{base['answer_tokens']}; its decode over them ÷ over its first tokens: {decode_growth(base):.2f}")
    print(f"  {'stage':<10} {'forecast s':>10} {'measured s':>10} {'ratio':>6}  {'forecast MiB':>12} "
          f"{'measured MiB':>12} {'ratio':>6}")
    ratios = {}
    for stage, figure in forecast["stages"].items():
        seconds, memory = actual[stage]["stage_seconds"], actual[stage]["peak_memory_bytes"]
        ratios[stage] = (seconds / figure["seconds"], memory / figure["peak_memory_bytes"])
        print(f"  {stage:<10} {figure['seconds']:>10.1f} {seconds:>10.1f} {seconds / figure['seconds']:>6.2f}  "
              f"{figure['peak_memory_bytes'] / 2**20:>12.0f} {memory / 2**20:>12.0f} "
              f"{memory / figure['peak_memory_bytes']:>6.2f}")
    total = sum(actual[stage]["stage_seconds"] for stage in forecast["stages"])
    ratio = total / forecast["total_seconds"]
    print(f"  {'total':<10} {forecast['total_seconds']:>10.1f} {total:>10.1f} {ratio:>6.2f}")
    for stage, figure in forecast["stages"].items():
        if "seconds_at_cap" in figure:  # what the forecast says if the trained model's answers run to the cap
            seconds = actual[stage]["stage_seconds"]
            print(f"  {stage} if its answers run to the cap: {figure['seconds_at_cap']:.1f} s, measured ÷ that "
                  f"{seconds / figure['seconds_at_cap']:.2f}")
    return ratios | {"total": (ratio, float("nan"))}


def summary(name: str, repeats: list[dict[str, tuple[float, float]]]) -> None:
    """Per stage, the median ratio over the repeats and its range."""
    print(f"\n{name}, {len(repeats)} repeats: median (min–max) measured ÷ forecast")
    for stage in repeats[0]:
        cells = []
        for which in (0, 1):
            values = sorted(r[stage][which] for r in repeats)
            if values[0] == values[0]:  # not NaN
                cells.append(f"{statistics.median(values):.2f} ({values[0]:.2f}–{values[-1]:.2f})")
        print(f"  {stage:<10} time {cells[0]}" + (f"   memory {cells[1]}" if len(cells) > 1 else ""))


def default_plan(thread_counts: list[str | None]) -> None:
    for threads in thread_counts:
        with tempfile.TemporaryDirectory(prefix="bench-forecast-default-") as tmp:
            wall, done = engine(Path(tmp), "forecast", "--task", "gsm8k_math", *DEFAULT_PLAN, "--json", threads=threads)
            forecast = json.loads(done.stdout)
            calibration = calibration_seconds(calibrations(Path(tmp)))
        print(f"default plan, OMP_NUM_THREADS={threads or '(unset)'}: {forecast['threads']} thread(s), forecast "
              f"{forecast['total_seconds'] / 60:.1f} min "
              + ", ".join(f"{s} {f['seconds'] / 60:.1f} min" for s, f in forecast["stages"].items())
              + f"; calibration {calibration:.1f} s (forecast command {wall:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", default=",".join(PLANS), help="comma-separated plan names")
    parser.add_argument("--repeats", type=int, default=1, help="forecast and run each plan this many times")
    parser.add_argument("--default-plan", action="store_true")
    parser.add_argument("--threads", help="comma-separated OMP_NUM_THREADS, each measured in turn ('' = unset: "
                                          "every core); default 1 for plans, '1,' for --default-plan")
    args = parser.parse_args()
    threads = args.threads if args.threads is not None else "1," if args.default_plan else "1"
    thread_counts = [value or None for value in threads.split(",")]
    if args.default_plan:
        default_plan(thread_counts)
        return
    if "demo-t" in args.plans.split(","):
        write_template_task()
    for name in args.plans.split(","):
        for count in thread_counts:
            repeats = [bench_plan(name, PLANS[name], count) for _ in range(args.repeats)]
            if args.repeats > 1:
                summary(f"{name} (OMP_NUM_THREADS={count or 'unset'})", repeats)


if __name__ == "__main__":
    main()
