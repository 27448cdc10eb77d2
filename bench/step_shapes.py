"""One optimizer step at several batch shapes, against the line the calibration draws.

The calibration times one-example steps of a stage's shortest and longest example and forecasts
a batch of several examples as those rows side by side: seconds per micro-batch + seconds per
token × examples × padded length. This times real steps of a model at 1, 2 and 4 examples of the
shortest and the longest length (each shape in a fresh process: the model loaded, a warm-up step,
then `--repeats` timed ones) and prints each shape's median against that line.

    OMP_NUM_THREADS=1 .venv/bin/python bench/step_shapes.py --stage sft
    OMP_NUM_THREADS=1 .venv/bin/python bench/step_shapes.py --stage dpo"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecast import MODELS  # noqa: E402  (the bench models folder: the demo model converted once)

SHAPES = [(1, "shortest"), (1, "longest"), (2, "shortest"), (2, "longest"), (4, "shortest"), (4, "longest")]


def step_seconds(args, models, plan, example: dict, examples: int) -> float:
    """The median seconds of `args.repeats` optimizer steps of `examples` copies of `example`."""
    from transformers import TrainerCallback

    from engine.training import stages

    seconds: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            seconds.append(time.perf_counter() - self.began)

    config = dataclasses.replace(plan.config, batch_size=examples, grad_accum=1, max_steps=1 + args.repeats,
                                 checkpoint_every=10**9)
    with tempfile.TemporaryDirectory(prefix="bench-step-shapes-") as tmp:
        build = stages.sft_trainer if args.stage == "sft" else stages.dpo_trainer
        trainer = build(config, models.fresh(), models.tokenizer, [example], Path(tmp), [Timer()])
        trainer.train_dataset = trainer.train_dataset.select([0] * examples * (1 + args.repeats))
        trainer.args.train_sampling_strategy = "sequential"
        trainer.train()
    return statistics.median(seconds[1:])  # the first step is a warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("sft", "dpo"), default="sft")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shape", help=argparse.SUPPRESS)  # "N,shortest|longest": one shape, in this process
    args = parser.parse_args()
    if args.shape:
        one_shape(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-step-shapes-home-") as home:
        MODELS.mkdir(exist_ok=True)
        (Path(home) / "models").symlink_to(MODELS)
        env = {**os.environ, "BUDGETTUI_HOME": home}
        measured = {}
        for n, which in SHAPES:  # each in a fresh process: a process that has loaded and trained before is slower
            done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--shape", f"{n},{which}"], env=env,
                                  capture_output=True, text=True, check=True)
            measured[n, which] = json.loads(done.stdout.strip().splitlines()[-1])
    lengths = {which: figures["length"] for (_, which), figures in measured.items()}
    per_token = ((measured[1, "longest"]["seconds"] - measured[1, "shortest"]["seconds"])
                 / (lengths["longest"] - lengths["shortest"]))
    per_batch = measured[1, "shortest"]["seconds"] - per_token * lengths["shortest"]
    print(f"{args.model} {args.stage}, max length {args.max_length}, {os.environ.get('OMP_NUM_THREADS', 'all')} "
          f"thread(s): shortest {lengths['shortest']} tokens, longest {lengths['longest']}; line through the "
          f"one-example steps: {per_batch:.3f} s + {1000 * per_token:.2f} ms per example-token")
    print(f"  {'examples':>8} {'length':>6} {'tokens':>6} {'measured s':>10} {'line s':>7} {'measured/line':>13}")
    for (n, which), figures in measured.items():
        tokens = n * lengths[which]
        line = per_batch + per_token * tokens
        print(f"  {n:>8} {lengths[which]:>6} {tokens:>6} {figures['seconds']:>10.2f} {line:>7.2f} "
              f"{figures['seconds'] / line:>13.2f}")


def one_shape(args) -> None:
    """Print {"length", "seconds"} for one shape of args.stage's shortest or longest example."""
    from engine.record import config as run_config
    from engine.training import calibrate
    from engine.training.models import load_tokenizer
    from engine.training.train import BaseModels, build_plan, settle_imports

    examples_per_step, which = args.shape.split(",")
    config = run_config.build(None, {"task": "gsm8k_math", "model": args.model, "n_sft": 32, "n_pft": 16,
                                     "max_length": args.max_length, "epochs": 1})
    plan, _ = build_plan(config)
    settle_imports()
    examples = plan.examples(args.stage)
    tokenizer, _ = load_tokenizer(plan.spec.path)
    lengths = calibrate.token_lengths(tokenizer, examples, args.stage, config.max_length)
    longest, shortest = calibrate._longest_and_shortest(lengths)  # the calibration's own two examples
    pick = shortest if which == "shortest" else longest
    models = BaseModels(plan, warn=lambda message: None)
    seconds = step_seconds(args, models, plan, examples[pick], int(examples_per_step))
    print(json.dumps({"length": lengths[pick], "seconds": seconds}))


if __name__ == "__main__":
    main()
