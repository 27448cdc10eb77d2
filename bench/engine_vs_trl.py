"""What `engine run` costs over the bare TRL script it wraps: the same tiny-model QLoRA SFT→DPO
(same data, steps, LoRA, seed, checkpoint interval) both ways, alternated in one session, each
in a fresh process so its wall time and peak RSS (from `os.wait4`) are its own.

    OMP_NUM_THREADS=1 .venv/bin/python bench/engine_vs_trl.py [--repeats 5] [--out bench/results/engine.md]

The engine run adds what the bare script lacks — events, the run store and its heartbeat,
complete-checkpoint marking, three evaluations (held to one example and one new token here, so
the comparison is about orchestration) and one extra load of the base model for evaluation.
Also times the README's smoke run once. Uses a throw-away $BUDGETTUI_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_SFT = N_PFT = 64
SHARED = {"batch_size": 4, "grad_accum": 4, "epochs": 2, "seed": 42, "checkpoint_every": 4}
ENGINE_ARGS = ["--task", "gsm8k_math", "--model", "tiny", "--n-sft", str(N_SFT), "--n-pft", str(N_PFT),
               "--batch-size", "4", "--grad-accum", "4", "--epochs", "2", "--seed", "42", "--checkpoint-every", "4",
               "--eval-size", "1", "--eval-max-new-tokens", "1"]
BF16 = "bare TRL, TRL's bf16 LoRA"
ACCEPTANCE_ARGS = ["--task", "gsm8k_math", "--model", "tiny", "--n-sft", "32", "--n-pft", "32"]


def bare_trl(out_dir: str, lora_dtype: str, model: str = "tiny", device: str = "cpu",
             figures: str | None = None) -> None:
    """The baseline: what a user would write with TRL alone for the same SFT→DPO. With
    lora_dtype "fp32" the LoRA weights are put back to fp32 after TRL's QLoRA cast to bf16, as
    `engine.training.stages` does, so both sides compute the same; "bf16" keeps TRL's cast.
    On "cuda" it computes in bf16 with activation checkpointing, as the engine does on a GPU;
    `figures` names a JSON file for each stage's tokens/s, peak GPU memory and first DPO margin
    (bench/gpu_check.sh reads it)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, set_seed
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from engine.training.models import resolve_model
    from engine.tasks.catalog import get_task, select

    path = resolve_model(model).path
    gpu = device == "cuda"
    dtype = torch.bfloat16 if gpu and torch.cuda.is_bf16_supported() else torch.float32
    splits = select(get_task("gsm8k_math"), N_SFT, N_PFT, 1, SHARED["seed"])
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token

    def base():
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=dtype,
                                                     device_map={"": device})
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gpu)

    def args(config_class, stage, lr, **extra):
        return config_class(output_dir=f"{out_dir}/{stage}", learning_rate=lr, lr_scheduler_type="cosine",
                            warmup_steps=0.1, per_device_train_batch_size=SHARED["batch_size"],
                            gradient_accumulation_steps=SHARED["grad_accum"], num_train_epochs=SHARED["epochs"],
                            max_length=1024, logging_steps=1, save_steps=SHARED["checkpoint_every"],
                            seed=SHARED["seed"], report_to=[], disable_tqdm=True, use_cpu=not gpu,
                            bf16=dtype == torch.bfloat16, activation_checkpointing=gpu, **extra)

    lora = LoraConfig(r=32, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    set_seed(SHARED["seed"])
    sft = SFTTrainer(model=base(), args=args(SFTConfig, "sft", 5e-5), train_dataset=Dataset.from_list(splits.sft),
                     processing_class=tokenizer, peft_config=lora)
    keep_lora(sft, lora_dtype)
    found = {"sft": stage_figures(sft)}
    sft.save_model(f"{out_dir}/sft/adapter")
    set_seed(SHARED["seed"])
    policy = PeftModel.from_pretrained(base(), f"{out_dir}/sft/adapter", is_trainable=True)
    dpo = DPOTrainer(model=policy, args=args(DPOConfig, "dpo", 5e-6, beta=1.0),
                     train_dataset=Dataset.from_list(splits.pft), processing_class=tokenizer)
    keep_lora(dpo, lora_dtype)
    found["dpo"] = stage_figures(dpo)
    dpo.save_model(f"{out_dir}/dpo/adapter")
    if figures:
        Path(figures).write_text(json.dumps(found))


def stage_figures(trainer) -> dict:
    """Train, and say how fast (tokens/s over the Trainer's own runtime), how much GPU memory
    it peaked at, and the first logged DPO margin."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    history = trainer.state.log_history
    tokens = max((h["num_tokens"] for h in history if "num_tokens" in h), default=None)
    runtime = next((h["train_runtime"] for h in history if "train_runtime" in h), None)
    margins = [h["rewards/margins"] for h in history if "rewards/margins" in h]
    return {"tokens": tokens, "seconds": runtime, "tokens_per_s": tokens / runtime if tokens and runtime else None,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
            "first_margin": margins[0] if margins else None}


def keep_lora(trainer, lora_dtype: str) -> None:
    if lora_dtype == "fp32":
        for name, param in trainer.model.named_parameters():
            if "lora_" in name:
                param.data = param.data.float()


def measure(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "engine.md"))
    parser.add_argument("--bare-trl", metavar="DIR", help=argparse.SUPPRESS)  # the baseline's child process
    parser.add_argument("--lora-dtype", choices=("fp32", "bf16"), default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="tiny", help=argparse.SUPPRESS)  # the baseline's model and device
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--figures", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_trl:
        return bare_trl(args.bare_trl, args.lora_dtype, args.model, args.device, args.figures)

    home = tempfile.mkdtemp(prefix="bench-engine-")
    env = {**os.environ, "BUDGETTUI_HOME": home, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", "from engine.training.models import resolve_model; resolve_model('tiny')"],
                   cwd=ROOT, env=env, check=True)
    python = sys.executable
    commands = {
        "bare TRL": lambda i: [python, __file__, "--bare-trl", f"{home}/bare-{i}"],
        "engine run": lambda i: [python, "-m", "engine.cli", "run", *ENGINE_ARGS, "--run-id", f"bench-{i}", "--json"],
        BF16: lambda i: [python, __file__, "--bare-trl", f"{home}/bf16-{i}", "--lora-dtype", "bf16"],
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for i in range(args.repeats):
        order = list(commands) if i % 2 == 0 else list(reversed(commands))
        for name in order:
            samples[name].append(measure(commands[name](i), env))
            print(f"round {i + 1} {name}: {samples[name][-1][0]:.1f} s, {samples[name][-1][1]:.0f} MiB", flush=True)
    acceptance = measure([python, "-m", "engine.cli", "run", *ACCEPTANCE_ARGS, "--run-id", "acceptance", "--json"], env)
    Path(args.out).write_text(report(samples, acceptance, args.repeats, env["OMP_NUM_THREADS"]))
    print(Path(args.out).read_text())


def report(samples: dict, acceptance: tuple[float, float], repeats: int, threads: str) -> str:
    medians = {name: (statistics.median(w for w, _ in runs), statistics.median(r for _, r in runs))
               for name, runs in samples.items()}
    (bare_wall, bare_rss), (eng_wall, eng_rss) = medians["bare TRL"], medians["engine run"]
    bf16_wall, bf16_rss = medians[BF16]
    rows = "\n".join(f"| {name} | {wall:.2f} | {rss:.0f} | "
                     f"{', '.join(f'{w:.1f}' for w, _ in samples[name])} | {', '.join(f'{r:.0f}' for _, r in samples[name])} |"
                     for name, (wall, rss) in medians.items())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"""# engine: `engine run` against bare TRL

Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()},
OMP_NUM_THREADS={threads}, no GPU. Command:

    OMP_NUM_THREADS={threads} .venv/bin/python bench/engine_vs_trl.py --repeats {repeats}

Tiny Llama (≈115k parameters) in bitsandbytes NF4, QLoRA r=32 on all projections, {N_SFT} SFT examples
then {N_PFT} GSM8K preference pairs, batch 4 × accumulation 4, 2 epochs (8 optimizer steps per stage),
a checkpoint every 4 steps, seed 42; each run a fresh process (imports included), the three
alternated for {repeats} rounds (order reversed every other round). `engine run` also writes
events, the store and its heartbeat, marks checkpoints complete, evaluates base/SFT/DPO (here
on 1 example, 1 new token) and loads the base once more for evaluation; it also moves the
imported libraries' objects out of the garbage collector's view (`gc.freeze`, see
`engine/training/train.py`), which makes the full collections (its own and the Trainer's) nearly free. "bare TRL" keeps the
LoRA weights in fp32 as the engine does (`engine/training/stages.py`), so the two compute the same;
the third row leaves TRL's QLoRA cast of the LoRA weights to bf16 in place, for reference.

| | median wall (s) | median peak RSS (MiB) | wall per round (s) | peak RSS per round (MiB) |
| --- | ---: | ---: | --- | --- |
{rows}

**Ratios (engine / bare TRL): wall {eng_wall / bare_wall:.3f}×, peak RSS {eng_rss / bare_rss:.3f}×**
(targets ≤ 1.05× and ≤ 1.10×). Against TRL with its bf16 LoRA cast: wall {eng_wall / bf16_wall:.3f}×,
peak RSS {eng_rss / bf16_rss:.3f}× (on this CPU, bf16 LoRA weights are slower and larger).

Acceptance command `engine run {' '.join(ACCEPTANCE_ARGS)}` (defaults: 4-bit, 64 held-out
examples evaluated three times, 128 new tokens): {acceptance[0]:.1f} s wall, {acceptance[1]:.0f} MiB peak RSS.

No GPU was lent to this session, so the GPU benchmark (a real model on CUDA) was not run.
"""


if __name__ == "__main__":
    main()
