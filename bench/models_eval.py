"""Cost of the model and evaluation layer: building/converting models, loading them 4-bit vs
unquantised (alternated, each in a fresh process so peak RSS is its own), a 4-bit load that
quantises against one from the kept 4-bit copy (`engine.training.nf4_copy`), and evaluating.

    OMP_NUM_THREADS=1 .venv/bin/python bench/models_eval.py [--repeats 3] [--skip-demo]
    .venv/bin/python bench/models_eval.py --kept-copy-only    # only the quantising vs kept-copy loads

Uses a throw-away $BUDGETTUI_HOME; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
from engine.training.models import resolve_model, load_model, count_linear4bit
from engine.tasks.catalog import get_task, select
from engine.tasks.evaluate import evaluate
what, name, quant = sys.argv[1:4]
out = {}
t = time.perf_counter(); spec = resolve_model(name); out["resolve_s"] = time.perf_counter() - t
if what != "resolve":
    t = time.perf_counter(); model, tok = load_model(spec, quant=quant, device="cpu")
    out["load_s"] = time.perf_counter() - t
    out["linear4bit"] = count_linear4bit(model)
if what in ("reload", "requantise"):  # a second load in the same process, as a run's later stages load
    if what == "requantise":
        import shutil
        from engine.record.home import models_dir
        shutil.rmtree(models_dir() / "nf4")
    del model
    t = time.perf_counter(); load_model(spec, quant=quant, device="cpu"); out["load_again_s"] = time.perf_counter() - t
if what == "eval":
    for task, metric in (("chat_preference", "preference_accuracy"), ("gsm8k_math", "exact_match"),
                         ("gsm8k_math", "heldout_loss")):
        examples = select(get_task(task), 0, 0, 16, seed=0).eval
        t = time.perf_counter(); result = evaluate(model, tok, examples, metric, batch_size=8, max_new_tokens=128)
        out[f"{metric}_s"] = time.perf_counter() - t
        out[metric] = result.value
out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(json.dumps(out))
"""


def child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--kept-copy-only", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["BUDGETTUI_HOME"] = tempfile.mkdtemp(prefix="bench-home-")
    rows = [("tiny: first build", child("resolve", "tiny", "none"), "resolve_s")]
    names = ["tiny"]
    if not args.skip_demo:
        rows.append(("demo: GGUF → safetensors conversion", child("resolve", "demo", "none"), "resolve_s"))
        names.append("demo")
    print("| what | seconds | peak RSS GB |\n| --- | --- | --- |")
    for label, result, key in rows:
        print(f"| {label} | {result[key]:.2f} | {result['peak_rss_gb']:.2f} |")
    for name in names:
        kept_copy(name, args.repeats)
    for name in [] if args.kept_copy_only else names:
        loads = {"auto": [], "none": []}
        for _ in range(args.repeats):  # alternate A and B so machine load hits both alike
            for quant in loads:
                loads[quant].append(child("eval", name, quant))
        for quant, results in loads.items():
            med = {k: statistics.median(r[k] for r in results) for k in results[0]}
            print(f"| {name} load quant={quant} ({med['linear4bit']:.0f} Linear4bit) | {med['load_s']:.2f} | "
                  f"{med['peak_rss_gb']:.2f} |")
            for metric in ("preference_accuracy", "exact_match", "heldout_loss"):
                print(f"| {name} quant={quant} evaluate {metric}, 16 examples (value {med[metric]:.3f}) | "
                      f"{med[metric + '_s']:.2f} | |")
        ratio = statistics.median(r["peak_rss_gb"] for r in loads["auto"]) / statistics.median(
            r["peak_rss_gb"] for r in loads["none"])
        print(f"| {name} peak RSS ratio 4-bit / unquantised | {ratio:.2f} | |")


def kept_copy(name: str, repeats: int) -> None:
    """4-bit loads that quantise (no kept copy) against loads from the kept copy, alternated: a
    process's first load, then a second one in the same process (as a run's later stages load)."""
    loads = {"quantising": [], "from the kept copy": []}
    copies = Path(os.environ["BUDGETTUI_HOME"]) / "models" / "nf4"
    for _ in range(repeats):
        shutil.rmtree(copies, ignore_errors=True)
        loads["quantising"].append(child("requantise", name, "auto"))  # leaves no copy behind
        shutil.rmtree(copies, ignore_errors=True)
        child("load", name, "auto")  # makes the copy
        loads["from the kept copy"].append(child("reload", name, "auto"))
    for label, results in loads.items():
        first, again, rss = (statistics.median(r[key] for r in results)
                             for key in ("load_s", "load_again_s", "peak_rss_gb"))
        print(f"| {name} 4-bit load {label}, first / second in a process (median of {repeats}) | "
              f"{first:.2f} / {again:.2f} | {rss:.2f} |")


if __name__ == "__main__":
    main()
