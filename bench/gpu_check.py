"""The pieces of bench/gpu_check.sh: run a command while sampling GPU memory, read an engine
run's figures from its events, and write the report. Not meant to be run by hand.

    python bench/gpu_check.py measure NAME FIGURES_DIR -- COMMAND...   # wall time + peak GPU memory
    python bench/gpu_check.py engine-figures NAME FIGURES_DIR RUN_ID    # tokens/s, first margin
    python bench/gpu_check.py bare-figures NAME FIGURES_DIR FILE        # the bare TRL script's figures
    python bench/gpu_check.py forecast FIGURES_DIR -- COMMAND...        # the forecast's memory, if any
    python bench/gpu_check.py skip-forecast FIGURES_DIR
    python bench/gpu_check.py kept-copy FIGURES_DIR [DEVICE]            # the kept 4-bit copy (default cuda)
    python bench/gpu_check.py report FIGURES_DIR OUT_FILE

Peak GPU memory is sampled with nvidia-smi (`memory.used` per device, every 0.2 s, CUDA context
included) so the engine and the bare TRL script are measured the same way; the bare script
also reports torch's own `max_memory_allocated`.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gpu_memory_used() -> list[float]:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    return [float(line) for line in out.split()]


def measure(name: str, figures: Path, command: list[str]) -> int:
    """Run `command`, sampling every GPU's memory; record wall seconds, exit code and peaks (MiB)."""
    baseline = gpu_memory_used()
    peaks = list(baseline)
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            for i, used in enumerate(gpu_memory_used()):
                peaks[i] = max(peaks[i], used)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    code = subprocess.call(command)
    done.set()
    sampler.join()
    _merge(figures, name, {"wall_s": time.perf_counter() - began, "exit_code": code,
                           "peak_gpu_mib_per_device": [p - b for p, b in zip(peaks, baseline)]})
    return code


def engine_figures(name: str, figures: Path, run_id: str) -> None:
    """Per stage: tokens/s over the Trainer's runtime (its own summary log), first DPO margin, world size."""
    from engine.record.events import read_events
    from engine.record.home import run_dir

    events = read_events(run_dir(run_id) / "events.jsonl")
    found = {}
    for stage in ("sft", "dpo"):
        logs = [e for e in events if e["type"] == "log" and e["stage"] == stage]
        tokens = max((e["num_tokens"] for e in logs if e.get("num_tokens")), default=None)
        runtime = next((e["train_runtime"] for e in logs if "train_runtime" in e), None)
        margins = [e["rewards/margins"] for e in logs if "rewards/margins" in e]
        started = [e for e in events if e["type"] == "stage_started" and e["stage"] == stage]
        found[stage] = {"tokens": tokens, "seconds": runtime,
                        "tokens_per_s": tokens / runtime if tokens and runtime else None,
                        "first_margin": margins[0] if margins else None,
                        "world_size": started[-1].get("world_size") if started else None}
    final = [e for e in events if e["type"] == "run_finished"]
    found["status"] = final[-1]["status"] if final else "no run_finished event"
    _merge(figures, name, found)


def forecast(figures: Path, command: list[str]) -> None:
    """The forecast's memory figure, if `engine forecast` exists and gives one (its output is
    searched for a key naming memory, in MiB or GiB)."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        _merge(figures, "forecast", {"skipped": (result.stderr.strip().splitlines() or ["failed"])[-1]})
        return
    try:
        data = json.loads(result.stdout)
    except ValueError:
        _merge(figures, "forecast", {"skipped": "its output is not JSON"})
        return
    found = {}

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and "mem" in path.lower():
            found[path] = value

    walk(data, "")
    _merge(figures, "forecast", {"memory_figures": found} if found else {"skipped": "no memory figure in its output"})


def kept_copy(figures: Path, device: str) -> None:
    """The demo model's kept 4-bit copy (`engine.training.nf4_copy`) on `device`: a load that
    quantises and keeps it, then a load from it — seconds, and whether both give the same logits."""
    import shutil

    import torch

    from engine.record.home import models_dir
    from engine.training.models import load_model, resolve_model

    spec = resolve_model("demo")
    shutil.rmtree(models_dir() / "nf4", ignore_errors=True)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], device=device)
    seconds, logits = [], []
    for _ in range(2):
        began = time.perf_counter()
        model, _ = load_model(spec, quant="4bit", device=device)
        seconds.append(time.perf_counter() - began)
        with torch.no_grad():
            logits.append(model(input_ids=ids).logits.float().cpu())
        del model
    kept = sorted(p.name for p in (models_dir() / "nf4").glob("*/*"))
    _merge(figures, "kept 4-bit copy", {"device": device, "quantising_s": seconds[0], "from_copy_s": seconds[1],
                                        "files": kept, "same_logits": bool(torch.equal(*logits))})


def _merge(figures: Path, name: str, data: dict) -> None:
    path = figures / "figures.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current[name] = {**current.get(name, {}), **data}
    path.write_text(json.dumps(current, indent=2))


def report(figures: Path, out: Path) -> None:
    data = json.loads((figures / "figures.json").read_text())
    try:
        gpus = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True).stdout.strip().splitlines()
    except OSError:
        gpus = ["(nvidia-smi not found)"]
    lines = [f"# GPU check, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"GPUs: {'; '.join(gpus)}. Python {platform.python_version()}. Command: `bash bench/gpu_check.sh`", "",
             "| run | stage | tokens/s | trainer s | first DPO margin | peak GPU MiB (nvidia-smi, per device) | "
             "wall s | exit |", "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    copy = data.pop("kept 4-bit copy", {})
    for name, entry in data.items():
        if name == "forecast":
            continue
        for stage in ("sft", "dpo"):
            fig = entry.get(stage, {})
            rate = fig.get("tokens_per_s")
            margin = fig.get("first_margin")
            lines.append(f"| {name} | {stage} | {rate:.0f} | {fig.get('seconds') or 0:.1f} | "
                         f"{'—' if margin is None else margin} | "
                         f"{', '.join(f'{p:.0f}' for p in entry.get('peak_gpu_mib_per_device', []))} | "
                         f"{entry.get('wall_s', 0):.0f} | {entry.get('exit_code')} |" if rate else
                         f"| {name} | {stage} | — | — | — | — | {entry.get('wall_s', 0):.0f} | {entry.get('exit_code')} |")
    engine, bare = data.get("engine 1 GPU", {}), data.get("bare TRL 1 GPU", {})
    for stage in ("sft", "dpo"):
        a, b = engine.get(stage, {}).get("tokens_per_s"), bare.get(stage, {}).get("tokens_per_s")
        if a and b:
            lines.append(f"\n{stage.upper()} tokens/s, engine / bare TRL: {a / b:.3f}×")
        if bare.get(stage, {}).get("peak_gpu_mib") is not None:
            lines.append(f"bare TRL {stage} torch max_memory_allocated: {bare[stage]['peak_gpu_mib']:.0f} MiB")
    margins = {name: entry.get("dpo", {}).get("first_margin") for name, entry in data.items() if name != "forecast"}
    lines.append(f"\nFirst DPO margin (must be 0): {margins}")
    fc = data.get("forecast", {})
    if "memory_figures" in fc and engine.get("peak_gpu_mib_per_device"):
        measured = max(engine["peak_gpu_mib_per_device"])
        lines.append(f"Forecast memory figures {fc['memory_figures']} against the measured peak {measured:.0f} MiB "
                     "(nvidia-smi, CUDA context included)")
    else:
        lines.append(f"Forecast: skipped ({fc.get('skipped', 'not run')})")
    if copy:
        lines.append(f"Kept 4-bit copy on {copy['device']}: a quantising load {copy['quantising_s']:.1f} s, a load from "
                     f"the copy {copy['from_copy_s']:.1f} s, same logits: {copy['same_logits']}, files {copy['files']}")
    else:
        lines.append("Kept 4-bit copy: not measured")
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def main(argv: list[str]) -> int:
    action, rest = argv[0], argv[1:]
    command = rest[rest.index("--") + 1:] if "--" in rest else []
    rest = rest[:rest.index("--")] if "--" in rest else rest
    if action == "measure":
        return measure(rest[0], Path(rest[1]), command)
    if action == "engine-figures":
        engine_figures(rest[0], Path(rest[1]), rest[2])
    elif action == "bare-figures":  # the bare TRL script's own per-stage figures, when it got that far
        if Path(rest[2]).is_file():
            _merge(Path(rest[1]), rest[0], json.loads(Path(rest[2]).read_text()))
    elif action == "forecast":
        forecast(Path(rest[0]), command)
    elif action == "skip-forecast":
        _merge(Path(rest[0]), "forecast", {"skipped": "this engine has no `engine forecast` command"})
    elif action == "kept-copy":
        kept_copy(Path(rest[0]), rest[1] if len(rest) > 1 else "cuda")
    elif action == "report":
        report(Path(rest[0]), Path(rest[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
