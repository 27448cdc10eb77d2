"""A stand-in for `engine run` in the TUI's tests: prints canned schema-v1 events.

It takes the same arguments the app passes to `engine run` (`run --task … --model … --n-sft …
--n-pft … --events-stdout --run-id ID`), writes its events with the real `EventWriter` to
`<runs_dir>/<run id>/events.jsonl` and stdout, and records the run in the real `RunStore`, so the
app under test sees exactly what it would see from the engine. `--scenario` picks the story:

    ok      SFT then DPO, evals after each, run_finished "finished" (exit 0)
    error   an `error` event mid-SFT, run_finished "failed" (exit 1)
    die     a few events, then exit 3 with no run_finished (a crash)
    flood   `--n-logs` SFT log events as fast as it can, then finishes
    slow    one log event every `--delay` s until SIGINT, then run_finished "stopped"

`baseline … --json` records a base-only run scoring BASE_SCORE (or fails with $FAKE_BASELINE=error,
or takes 8 s with $FAKE_BASELINE=slow)
and `pilot … --json` prints PILOTS, in the shapes `engine baseline` and `engine pilot` print.
`forecast … --json` prints `FORECAST` (the shape `engine forecast --json` prints, its sources
refined by the store's finished runs) once a forecast without `--cached-only` has "calibrated", or,
when $FAKE_ENGINE_FORECAST is "refuse", the engine's one-line refusal and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.record.events import SCHEMA_VERSION, EventWriter  # noqa: E402
from engine.record.home import home_dir, run_dir, store_path  # noqa: E402
from engine.record.store import RunStore  # noqa: E402

SFT_STEPS, DPO_STEPS = 24, 16
METRIC = "exact_match"  # what the real engine records for gsm8k_math
FAKE_PARAMS_B = 0.1  # what the engine would count in the model's weights


def sft_log(step: int) -> dict:
    return {"stage": "sft", "step": step, "loss": round(2.2 * math.exp(-step / 10) + 0.4, 4),
            "learning_rate": 5e-5, "grad_norm": 1.1}


def dpo_log(step: int) -> dict:
    return {"stage": "dpo", "step": step, "loss": round(0.693 * math.exp(-step / 12), 4), "learning_rate": 5e-6,
            "rewards/chosen": round(0.02 * step, 4), "rewards/rejected": round(-0.03 * step, 4),
            "rewards/accuracies": round(min(1.0, 0.5 + step / 32), 4), "rewards/margins": round(0.05 * step, 4)}


def canned_events(config: dict, scenario: str = "ok", n_logs: int = 2000) -> list[tuple[str, dict]]:
    """The (type, fields) a run tells for `scenario`; `slow` is driven by `main` instead."""
    events = [("run_started", {"config": config, "pid": 0}),
              ("eval", {"stage": "base", "metric": METRIC, "value": 0.25, "n": 40})]
    if scenario == "flood":
        events += [("stage_started", {"stage": "sft", "total_steps": n_logs, "n_examples": config["n_sft"]})]
        events += [("log", sft_log(step)) for step in range(1, n_logs + 1)]
        events += [("stage_finished", {"stage": "sft", "step": n_logs, "adapter": "sft/adapter"}),
                   ("run_finished", {"status": "finished", "results": {"score": 0.3, "metric": METRIC}})]
        return events
    events += [("stage_started", {"stage": "sft", "total_steps": SFT_STEPS, "n_examples": config["n_sft"]})]
    if scenario == "die":
        return events + [("log", sft_log(step)) for step in range(1, 4)]
    if scenario == "error":
        return events + [("log", sft_log(step)) for step in range(1, 6)] + [
            ("error", {"message": "CUDA out of memory while training SFT step 6", "kind": "oom"}),
            ("run_finished", {"status": "failed", "results": {}})]
    events += [("log", sft_log(step)) for step in range(1, SFT_STEPS + 1)]
    events += [("stage_finished", {"stage": "sft", "step": SFT_STEPS, "adapter": "sft/adapter"}),
               ("eval", {"stage": "sft", "metric": METRIC, "value": 0.4, "n": 40}),
               ("stage_started", {"stage": "dpo", "total_steps": DPO_STEPS, "n_examples": config["n_pft"]}),
               ("warning", {"message": "3 preference pairs were longer than max_length and were cut"})]
    events += [("log", dpo_log(step)) for step in range(1, DPO_STEPS + 1)]
    events += [("stage_finished", {"stage": "dpo", "step": DPO_STEPS, "adapter": "dpo/adapter"}),
               ("eval", {"stage": "dpo", "metric": METRIC, "value": 0.45, "n": 40}),
               ("run_finished", {"status": "finished", "results": {"score": 0.45, "metric": METRIC}})]
    return events


def timed(run_id: str, canned: list[tuple[str, dict]], start: float = 1_800_000_000.0,
          gap: float = 0.5) -> list[dict]:
    """Whole events with fixed times `gap` apart (for events files that must render the same every time)."""
    return [{"v": SCHEMA_VERSION, "type": kind, "run_id": run_id, "time": start + i * gap, **fields}
            for i, (kind, fields) in enumerate(canned)]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake_engine")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--task", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--n-sft", type=int, required=True)
    parser.add_argument("--n-pft", type=int, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--events-stdout", action="store_true")
    parser.add_argument("--scenario", default="ok", choices=["ok", "error", "die", "flood", "slow"])
    parser.add_argument("--n-logs", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.05)
    args, _ = parser.parse_known_args(argv)
    return args


BASE_SCORE = 0.031
PILOTS = {"pilots": [{"n_sft": 16, "n_pft": 16, "cost": 24.0, "expected_regret_after": 0.012},
                     {"n_sft": 32, "n_pft": 0, "cost": 32.0, "expected_regret_after": 0.008}],
          "pilot_cost": 56.0, "expected_regret_now": 0.021, "expected_regret_after": 0.008,
          "reason": "two pilots lower the expected regret by more than they cost"}
PILOT_ARGV_FILE = "fake-pilot-argv.json"


def baseline(argv: list[str]) -> int:
    """`baseline --task T --model M --json`: a finished run with nothing trained and a base score."""
    parser = argparse.ArgumentParser(prog="fake_engine baseline")
    parser.add_argument("--task", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--json", action="store_true")
    args, _ = parser.parse_known_args(argv)
    if os.environ.get("FAKE_BASELINE") == "error":
        print(f"engine: error: unknown task {args.task!r}", file=sys.stderr)
        return 2
    run_id = f"base-{os.getpid()}"
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    store = RunStore()
    config = {"task": args.task, "model": args.model, "n_sft": 0, "n_pft": 0}
    store.create_run(run_id, task=args.task, model=args.model, params_b=FAKE_PARAMS_B, n_sft=0, n_pft=0,
                     config=config, run_dir=str(folder), pid=os.getpid())
    writer = EventWriter(folder / "events.jsonl", run_id)
    writer.emit("run_started", config=config, pid=os.getpid())
    if os.environ.get("FAKE_BASELINE") == "slow":  # the base model answering for a while
        time.sleep(8)
    writer.emit("eval", stage="base", metric="exact_match", value=BASE_SCORE, n=40)
    store.add_eval(run_id, "base", "exact_match", BASE_SCORE, higher_is_better=True, lower=0.0, upper=1.0)
    results = {"metric": "exact_match", "n_sft": 0, "n_pft": 0, "n_eval": 40, "scores": {"base": BASE_SCORE},
               "score": BASE_SCORE}
    writer.emit("run_finished", status="finished", results=results)
    store.finish_run(run_id, status="finished", score=BASE_SCORE, metric="exact_match", results=results)
    print(json.dumps({"run_id": run_id, "status": "finished", "results": results}))
    return 0


def pilot(argv: list[str]) -> int:
    """`pilot … --json`: a canned proposal in `engine pilot --json`'s shape; the argv is kept for the test."""
    home_dir().mkdir(parents=True, exist_ok=True)
    (home_dir() / PILOT_ARGV_FILE).write_text(json.dumps(argv))
    print(json.dumps(PILOTS))


FORECAST = {"device": "cpu", "threads": 2, "total_seconds": 754.0, "total_seconds_at_cap": 814.0,
            "peak_memory_bytes": 3 * 2**30,
            "gpu_hours": 754.0 / 3600, "money": None,
            "stages": {"base_eval": {"seconds": 60.0, "peak_memory_bytes": 2**30, "source": "calibration"},
                       "sft": {"seconds": 512.0, "peak_memory_bytes": 3 * 2**30, "source": "calibration"},
                       "sft_eval": {"seconds": 182.0, "seconds_at_cap": 242.0, "peak_memory_bytes": 2 * 2**30,
                                    "source": "calibration"}},
            "calibration": {"seconds": 28.0, "other_cores": 0.0, "cores": 2}}
BUSY_CALIBRATION = {"seconds": 41.0, "other_cores": 1.5, "cores": 2}  # other work took 1.5 of 2 cores
REFUSAL = ("the run needs about 3.00 GiB at its peak (SFT) but 1.00 GiB is available; "
           "use a smaller batch (--batch-size 1)")


NO_CALIBRATION = "no calibration of this plan on this machine yet"
CALIBRATED_FILE = "fake-calibrated"  # in the home: a forecast without --cached-only has calibrated
RECALIBRATED_FILE = "fake-recalibrated"  # in the home: a forecast with --recalibrate has calibrated again


def forecast(argv: list[str]) -> int:
    """`forecast … --json [--cached-only | --recalibrate]`: FORECAST once calibrated (a forecast
    without --cached-only calibrates), else the engine's refusal; or REFUSAL with
    $FAKE_ENGINE_FORECAST=refuse; with $FAKE_ENGINE_FORECAST=busy, FORECAST from a calibration
    timed while other work took the cores, until --recalibrate makes a quiet one; with
    $FAKE_ENGINE_FORECAST=slow, a --cached-only answer takes 30 s and any other 2 s, and SIGTERM
    ends it as it ends the engine's."""
    if os.environ.get("FAKE_ENGINE_FORECAST") == "slow":
        signal.signal(signal.SIGTERM, _interrupted)
        time.sleep(30 if "--cached-only" in argv else 2)
    calibrated = home_dir() / CALIBRATED_FILE
    if "--cached-only" in argv and not calibrated.exists():
        print(f"engine: error: {NO_CALIBRATION}: `engine forecast` without --cached-only makes one", file=sys.stderr)
        return 2
    home_dir().mkdir(parents=True, exist_ok=True)
    calibrated.touch()
    if os.environ.get("FAKE_ENGINE_FORECAST") == "refuse":
        print(f"engine: error: {REFUSAL}", file=sys.stderr)
        return 2
    if "--recalibrate" in argv:
        (home_dir() / RECALIBRATED_FILE).touch()
    busy = os.environ.get("FAKE_ENGINE_FORECAST") == "busy" and not (home_dir() / RECALIBRATED_FILE).exists()
    print(json.dumps(_with_history(FORECAST | {"calibration": BUSY_CALIBRATION} if busy else FORECAST)))
    return 0


def _with_history(forecast: dict) -> dict:
    """As the engine refines a forecast by the finished runs in the store: each stage's source
    says `× history (N finished runs)`."""
    finished = sum(run["status"] == "finished" for run in RunStore().list_runs()) \
        if store_path().exists() else 0
    if not finished:
        return forecast
    said = f" × history ({finished} finished run{'s' * (finished != 1)})"
    return forecast | {"stages": {stage: figure | {"source": figure["source"] + said}
                                  for stage, figure in forecast["stages"].items()}}


def _interrupted(signum, frame):
    print("engine: interrupted", file=sys.stderr)
    sys.exit(130)


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("baseline", "pilot", "forecast"):
        return {"baseline": baseline, "pilot": pilot, "forecast": forecast}[argv[0]](argv[1:])
    args = parse_args(argv)
    folder = run_dir(args.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"task": args.task, "model": args.model, "n_sft": args.n_sft, "n_pft": args.n_pft}
    store = RunStore()
    store.create_run(args.run_id, task=args.task, model=args.model, params_b=FAKE_PARAMS_B, n_sft=args.n_sft,
                     n_pft=args.n_pft, config=config, run_dir=str(folder), pid=os.getpid())
    writer = EventWriter(folder / "events.jsonl", args.run_id, stdout=sys.stdout if args.events_stdout else None)
    print(f"fake engine: {args.scenario} run {args.run_id}", file=sys.stderr, flush=True)
    if args.scenario == "slow":
        return slow(writer, store, args, config)
    for kind, fields in canned_events(config, args.scenario, args.n_logs):
        if kind == "run_started":
            fields = {**fields, "pid": os.getpid()}
        writer.emit(kind, **fields)
        if kind == "eval":  # as the engine does: each evaluation is a point the advisor fits on
            store.add_eval(args.run_id, fields["stage"], fields["metric"], fields["value"], higher_is_better=True,
                           lower=0.0, upper=1.0)
    if args.scenario == "die":
        print("fake engine: Segmentation fault (simulated)", file=sys.stderr, flush=True)
        return 3
    if args.scenario == "error":
        store.set_status(args.run_id, "failed", error="CUDA out of memory")
        return 1
    score = 0.3 if args.scenario == "flood" else 0.45
    store.finish_run(args.run_id, status="finished", score=score, metric=METRIC, results={"score": score})
    return 0


def slow(writer: EventWriter, store: RunStore, args: argparse.Namespace, config: dict) -> int:
    """Logs until SIGINT, then stops the way the engine does: a final event and a 'stopped' status."""
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    writer.emit("run_started", config=config, pid=os.getpid())
    writer.emit("stage_started", stage="sft", total_steps=100_000, n_examples=args.n_sft)
    step = 0
    while not stopping:
        step += 1
        writer.emit("log", **sft_log(step))
        time.sleep(args.delay)
    writer.emit("run_finished", status="stopped", results={"step": step})
    store.finish_run(args.run_id, status="stopped", score=None, metric=None, results={"step": step})
    return 130


# --- for the tests that drive the app against this fake --------------------------------------
ENGINE_CMD = [sys.executable, str(Path(__file__).resolve())]


async def wait_until(pilot, predicate, timeout: float = 20.0, what: str = "condition") -> float:
    """Let the app run until `predicate()` holds; the seconds it took (AssertionError on timeout)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.05)
    return time.monotonic() - started


async def wait_shown(pilot, app, *texts: str, timeout: float = 20.0) -> None:
    """Let the app render until each of `texts` is on its screen: a state change reaches the screen a frame later."""
    def missing():
        shown = screen_text(app)
        return [text for text in texts if text not in shown]

    try:
        await wait_until(pilot, lambda: not missing(), timeout, what=f"{texts!r} on screen")
    except AssertionError as error:
        raise AssertionError(f"{error}; missing {missing()!r}") from None


def screen_text(app) -> str:
    """The text on the app's screen right now, as a person would read it (from its SVG screenshot)."""
    import html
    import re

    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg.split("</style>")[-1])).replace("\xa0", " ")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
