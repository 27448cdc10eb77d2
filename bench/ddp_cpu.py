"""Two processes against one on the CPU, same global batch: `engine run --nproc 2 --batch-size B`
(torchrun, gloo) against `engine run --batch-size 2B`, the tiny model in 4-bit, SFT then DPO.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ddp_cpu.py [--repeats 3] [--out bench/results/ddp_cpu.md]

Reports, per setting, the median wall time of the whole command (imports, model loads and the
three evaluations included), the median training time (first `stage_started` to last
`stage_finished` in the events), the peak RSS of each training process (one process: `os.wait4`;
two: each rank's own `getrusage` peak from its `ranks/<rank>.json` record) and how far the two
runs' logged losses, DPO margins and saved adapters are apart. Alternates the two settings,
each in a fresh process, in a throw-away $BUDGETTUI_HOME.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = ["--task", "gsm8k_math", "--model", "tiny", "--n-sft", "64", "--n-pft", "64", "--grad-accum", "4",
        "--checkpoint-every", "4", "--eval-size", "4", "--eval-max-new-tokens", "8", "--sft-lr", "5e-3",
        "--dpo-lr", "5e-3"]
SETTINGS = {"1 process, batch 4": [*BASE, "--batch-size", "4"],
            "2 processes, batch 2 each": [*BASE, "--batch-size", "2", "--nproc", "2"]}


def run_once(name: str, run_id: str, env: dict) -> dict:
    from engine.record.events import read_events
    from engine.training.distributed import read_records

    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", *SETTINGS[name], "--run-id", run_id, "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed: {proc.stderr.read().decode()[-2000:]}")
    folder = Path(env["BUDGETTUI_HOME"]) / "runs" / run_id
    events = read_events(folder / "events.jsonl")
    times = [e["time"] for e in events if e["type"] in ("stage_started", "stage_finished")]
    records = read_records(folder)
    rss = [r["peak_rss_mb"] for _, r in sorted(records.items())] or [usage.ru_maxrss / 1024]
    return {"wall": wall, "train": times[-1] - times[0], "rss": rss, "folder": folder, "events": events}


def differences(a: dict, b: dict) -> dict[str, float]:
    from safetensors.torch import load_file

    def logged(events, key):
        return {(e["stage"], e["step"]): e[key] for e in events if e["type"] == "log" and key in e}

    found = {}
    for key in ("loss", "rewards/margins"):
        x, y = logged(a["events"], key), logged(b["events"], key)
        assert x.keys() == y.keys(), key
        found[key] = max(abs(x[k] - y[k]) for k in x)
    for stage in ("sft", "dpo"):
        x, y = (load_file(run["folder"] / stage / "adapter" / "adapter_model.safetensors") for run in (a, b))
        found[f"{stage} adapter"] = max((x[k] - y[k]).abs().max().item() for k in x)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ddp_cpu.md"))
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    env = {**os.environ, "BUDGETTUI_HOME": tempfile.mkdtemp(prefix="bench-ddp-"), "OMP_NUM_THREADS": threads,
           "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", "from engine.training.models import resolve_model; resolve_model('tiny')"],
                   cwd=ROOT, env=env, check=True)
    samples: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for i in range(args.repeats):
        for name in (SETTINGS if i % 2 == 0 else reversed(list(SETTINGS))):
            samples[name].append(run_once(name, f"r{i}-{len(samples[name])}-{name[0]}", env))
            s = samples[name][-1]
            print(f"round {i + 1} {name}: {s['wall']:.1f} s wall, {s['train']:.1f} s training, "
                  f"RSS {', '.join(f'{r:.0f}' for r in s['rss'])} MiB", flush=True)
    one, two = (samples[name] for name in SETTINGS)
    diff = differences(one[0], two[0])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report(samples, diff, args.repeats, threads))
    print(Path(args.out).read_text())


def report(samples: dict, diff: dict, repeats: int, threads: str) -> str:
    def median(name, key):
        return statistics.median(s[key] for s in samples[name])

    (one, two) = SETTINGS

    def row(name):
        runs = samples[name]
        rss = " / ".join(f"{statistics.median(run['rss'][r] for run in runs):.0f}" for r in range(len(runs[0]["rss"])))
        walls = ", ".join(f"{run['wall']:.1f}" for run in runs)
        return f"| {name} | {median(name, 'wall'):.1f} | {median(name, 'train'):.1f} | {rss} | {walls} |"

    rows = "\n".join(row(name) for name in SETTINGS)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    diffs = ", ".join(f"{key} {value:.1e}" for key, value in diff.items())
    return f"""# Scale-out on CPU: `engine run --nproc 2` against one process

Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores ({cpu}), shared with other work,
Python {platform.python_version()}, OMP_NUM_THREADS={threads} per process, no GPU. Command:

    OMP_NUM_THREADS={threads} .venv/bin/python bench/ddp_cpu.py --repeats {repeats}

Tiny Llama in NF4, 64 SFT examples then 64 preference pairs, global batch 16 (accumulation 4),
2 epochs: 8 optimizer steps per stage; evaluations on 4 examples. Medians of {repeats} alternated rounds.

| setting | wall (s) | training (s) | peak RSS per process (MiB) | wall per round (s) |
| --- | ---: | ---: | ---: | --- |
{rows}

**Two processes / one: wall {median(two, 'wall') / median(one, 'wall'):.2f}×, training
{median(two, 'train') / median(one, 'train'):.2f}×** (below 1 is a speed-up). Largest differences
between the two settings' results (round 1): {diffs}.
"""


if __name__ == "__main__":
    main()
