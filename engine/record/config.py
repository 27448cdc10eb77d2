"""One resolved run configuration: defaults ← TOML file ← command-line flags.

The defaults follow the paper's released code (LoRA r=32/alpha=32/dropout 0 on every attention
and MLP projection, lr 5e-5 SFT / 5e-6 DPO, cosine, warmup 0.1, 2 epochs, beta 1.0, max length
1024, effective batch 16). The same field names are the TOML keys and, with dashes, the flags,
so the three sources can never disagree about what a setting is called.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor import validate
from advisor.errors import AdvisorError
from advisor.safe_files import BadFile, read_text
from engine.record.errors import UserError, did_you_mean
from engine.record.model_names import model_folder

QUANT_CHOICES = ("auto", "4bit", "none")  # 4-bit NF4 where bitsandbytes loads, insist on it, or none
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SPLIT_KEYS = ("n_sft", "n_pft")
BUDGET_KEYS = ("budget", "sft_cost", "pft_cost")


def _help(text: str, **extra: Any) -> Any:
    return {"help": text, **extra}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written to the run folder as config.json and read back on resume."""

    task: str = field(default="", metadata=_help("task: gsm8k_math, chat_preference, or your own name with --sft-file/--pft-file"))
    model: str = field(default="", metadata=_help("'tiny', 'demo', a local model folder or a cached HF id"))
    n_sft: int | None = field(default=None, metadata=_help("SFT examples to train on"))
    n_pft: int | None = field(default=None, metadata=_help("preference pairs to train on"))
    budget: float | None = field(default=None, metadata=_help("label budget; the advisor picks the split"))
    sft_cost: float | None = field(default=None, metadata=_help("price of one SFT example"))
    pft_cost: float | None = field(default=None, metadata=_help("price of one preference pair"))
    sft_file: str | None = field(default=None, metadata=_help("your own SFT data file for the task"))
    pft_file: str | None = field(default=None, metadata=_help("your own preference data file"))
    eval_file: str | None = field(default=None, metadata=_help(
        "your own evaluation file for a custom task (SFT rows; pairs for preference_accuracy); "
        "default: a fixed tenth of the prompts is held out"))
    metric: str | None = field(default=None, metadata=_help(
        "evaluation metric (default: the task's own; a custom task: preference_accuracy with a --pft-file, "
        "else rouge_l)"))
    seed: int = field(default=42, metadata=_help("seed for data selection, LoRA init and data order"))
    quant: str = field(default="auto", metadata=_help("base-model weights: auto/4bit = QLoRA, none = full",
                                                     choices=QUANT_CHOICES))
    trust_remote_code: bool = field(default=False, metadata=_help("allow the model folder's own code to run"))
    allow_missing_weights: bool = field(default=False, metadata=_help(
        "train a model whose checkpoint lacks some weights (they start random; the run never counts as a past run)"))
    threads: int | None = field(default=None, metadata=_help(
        "torch CPU threads (default: $OMP_NUM_THREADS, else every core torch sees)"))
    lora_r: int = field(default=32, metadata=_help("LoRA rank"))
    lora_alpha: int = field(default=32, metadata=_help("LoRA alpha"))
    lora_dropout: float = field(default=0.0, metadata=_help("LoRA dropout"))
    lora_targets: tuple[str, ...] = field(default=ALL_PROJECTIONS,
                                          metadata=_help("comma-separated module names to adapt"))
    sft_lr: float = field(default=5e-5, metadata=_help("SFT learning rate"))
    dpo_lr: float = field(default=5e-6, metadata=_help("DPO learning rate"))
    lr_scheduler: str = field(default="cosine", metadata=_help("learning-rate schedule", choices=SCHEDULERS))
    warmup_ratio: float = field(default=0.1, metadata=_help("share of steps spent warming up"))
    epochs: float = field(default=2.0, metadata=_help("epochs per stage"))
    max_steps: int | None = field(default=None, metadata=_help("cap on optimizer steps per stage"))
    batch_size: int = field(default=4, metadata=_help("examples per device per micro-batch"))
    grad_accum: int = field(default=4, metadata=_help("micro-batches per optimizer step"))
    max_length: int = field(default=1024, metadata=_help("longest tokenised example (longer ones are cut)"))
    beta: float = field(default=1.0, metadata=_help("DPO beta"))
    eval_size: int = field(default=64, metadata=_help("held-out examples to evaluate on"))
    eval_batch_size: int = field(default=16, metadata=_help("examples per evaluation batch"))
    eval_max_new_tokens: int = field(default=128, metadata=_help("longest generated answer"))
    checkpoint_every: int = field(default=50, metadata=_help("optimizer steps between checkpoints"))
    keep_checkpoints: int = field(default=2, metadata=_help("complete checkpoints kept per stage"))
    nproc: int = field(default=1, metadata=_help("training processes, one per GPU (data parallel through torchrun)"))
    accelerate_config: str | None = field(default=None, metadata=_help(
        "launch the processes with `accelerate launch --config_file FILE` (your FSDP/DeepSpeed settings)"))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        return data


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
OPTIONAL = {name for name, f in FIELDS.items() if f.default is None}
KIND = {name: type(f.default) for name, f in FIELDS.items() if f.default is not None}
KIND.update({"n_sft": int, "n_pft": int, "budget": float, "sft_cost": float, "pft_cost": float,
             "sft_file": str, "pft_file": str, "eval_file": str, "metric": str, "threads": int, "max_steps": int,
             "accelerate_config": str})
POSITIVE = {"lora_r", "lora_alpha", "sft_lr", "dpo_lr", "epochs", "max_steps", "batch_size", "grad_accum",
            "max_length", "beta", "eval_size", "eval_batch_size", "eval_max_new_tokens", "checkpoint_every",
            "keep_checkpoints", "threads", "nproc", "budget", "sft_cost", "pft_cost"}
NON_NEGATIVE = {"n_sft", "n_pft", "seed", "lora_dropout", "warmup_ratio"}
BELOW_ONE = {"lora_dropout", "warmup_ratio"}
# Bounds past which a setting is accepted and then fails (or asks for absurd memory) once the
# run exists: numpy seeds are 32-bit, a rank or length beyond these is no QLoRA run on any machine.
INT_BOUNDS = {"seed": (0, 2**32 - 1), "threads": (1, 1024), "lora_r": (1, 1024), "lora_alpha": (1, 1 << 16),
              "max_length": (16, 1 << 20), "batch_size": (1, 1 << 16), "grad_accum": (1, 1 << 16),
              "eval_batch_size": (1, 1 << 16), "eval_max_new_tokens": (1, 1 << 16)}


def _in_range(name: str, value: Any) -> Any:
    """A number through the project's one set of number checks (`advisor.validate`)."""
    kind = KIND[name]
    if kind is int:
        low, high = INT_BOUNDS.get(name, (1 if name in POSITIVE else 0, validate.MAX_COUNT))
        return validate.count(name, value, at_least=low, at_most=high)
    if kind is not float:
        return value
    if name in BELOW_ONE:
        return validate.below_one(name, value)
    return (validate.positive if name in POSITIVE else validate.non_negative if name in NON_NEGATIVE
            else validate.finite)(name, value)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _key_line(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def load_file(path: str | os.PathLike) -> dict[str, tuple[Any, str]]:
    """Read a run.toml into {key: (value, where)}; unknown keys and bad TOML are one-line errors."""
    path = Path(path)
    try:
        text = read_text(path, "config file", max_bytes=1 << 20)
    except BadFile as exc:
        raise UserError(f"cannot read config: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    values = {}
    for key, value in data.items():
        line = _key_line(text, key)
        where = f"{path} line {line}" if line else str(path)
        if key not in FIELDS:
            raise UserError(f"{where}: unknown key {key!r}{did_you_mean(key, list(FIELDS))}")
        values[key] = (value, where)
    return values


def _check_value(name: str, value: Any, where: str) -> Any:
    """The value converted to the field's kind, or a UserError that names the key and its source."""
    if value is None and name in OPTIONAL:
        return None
    kind = KIND[name]
    ok = (isinstance(value, kind) or (kind is float and isinstance(value, int))) and not (
        isinstance(value, bool) and kind is not bool)
    if kind is tuple:
        ok = isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) and v for v in value)
        value = tuple(value) if ok else value
    if not ok:
        wanted = {tuple: "a list of module names", float: "a number", int: "a whole number", str: "a string",
                  bool: "true or false"}[kind]
        raise UserError(f"{where}: {name} must be {wanted}, got {value!r}")
    try:
        value = _in_range(name, value)
    except AdvisorError as exc:
        raise UserError(f"{where}: {exc}") from None
    choices = FIELDS[name].metadata.get("choices")
    if choices and value not in choices:
        raise UserError(f"{where}: {name} must be one of {', '.join(choices)}, got {value!r}{did_you_mean(value, choices)}")
    return value


def _checked(values: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    """Every (value, where) checked against its field; task and model are required."""
    for key, (_, where) in values.items():
        if key not in FIELDS:
            raise UserError(f"{where}: unknown key {key!r}{did_you_mean(key, list(FIELDS))}")
    checked = {key: _check_value(key, value, where) for key, (value, where) in values.items()}
    for key in ("task", "model"):
        if not checked.get(key):
            raise UserError(f"no {key} given: pass {flag(key)} or set {key} in the config file")
    return checked


def _check_split_form(checked: dict[str, Any], baseline: bool = False) -> None:
    """Exactly one way to size the run: n_sft and n_pft, or a budget with both prices."""
    has_split = [k for k in SPLIT_KEYS if checked.get(k) is not None]
    has_budget = [k for k in BUDGET_KEYS if checked.get(k) is not None]
    if has_split and has_budget:
        raise UserError(f"give either {flag('n_sft')}/{flag('n_pft')} or "
                        f"{flag('budget')}/{flag('sft_cost')}/{flag('pft_cost')}, not both")
    if not has_split and not has_budget:
        raise UserError(f"size the run: give {flag('n_sft')} and {flag('n_pft')}, or {flag('budget')}, "
                        f"{flag('sft_cost')} and {flag('pft_cost')} (the advisor then picks the split)")
    wanted = SPLIT_KEYS if has_split else BUDGET_KEYS
    missing = [flag(k) for k in wanted if checked.get(k) is None]
    if missing:
        raise UserError(f"missing {', '.join(missing)} (a run needs {' and '.join(flag(k) for k in wanted)})")
    if checked.get("n_sft") == 0 and checked.get("n_pft") == 0 and not baseline:
        raise UserError("n_sft and n_pft are both 0: nothing to train")
    if wanted == BUDGET_KEYS:
        try:
            validate.check_purchase(*(checked[k] for k in BUDGET_KEYS))
        except AdvisorError as exc:
            raise UserError(str(exc)) from None


def build(file: str | None, overrides: dict[str, Any], baseline: bool = False) -> RunConfig:
    """The run's config: the TOML file (if any), then every flag the user actually passed.

    A split form given on the command line replaces the other form from the file, so a config
    file with n_sft/n_pft can still be run with --budget and vice versa. `threads` defaults to
    $OMP_NUM_THREADS and is recorded, so a resumed run uses the same number. `baseline`: a run
    that only evaluates the base model (n_sft = n_pft = 0, `engine baseline`)."""
    values = load_file(file) if file else {}
    given = {key: (value, flag(key)) for key, value in overrides.items() if value is not None}
    for form, other in ((SPLIT_KEYS, BUDGET_KEYS), (BUDGET_KEYS, SPLIT_KEYS)):
        if any(key in given for key in form):
            for key in other:
                values.pop(key, None)
    values.update(given)
    checked = _checked(values)
    _check_split_form(checked, baseline)
    for key in ("sft_file", "pft_file", "eval_file"):  # resolved now, so a resume from any folder reads the same files
        if checked.get(key):
            checked[key] = os.path.abspath(os.path.expanduser(checked[key]))
    if checked.get("model"):  # a model folder, likewise
        checked["model"] = model_folder(checked["model"]) or checked["model"]
    if checked.get("accelerate_config"):  # recorded absolute, so `engine resume` finds it from anywhere
        accelerate_file = Path(checked["accelerate_config"]).expanduser().resolve()
        if not accelerate_file.is_file():
            raise UserError(f"{flag('accelerate_config')}: no such file {accelerate_file}")
        checked["accelerate_config"] = str(accelerate_file)
    if checked.get("threads") is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        low, high = INT_BOUNDS["threads"]
        threads = int(os.environ["OMP_NUM_THREADS"])
        checked["threads"] = threads if low <= threads <= high else None
    return RunConfig(**checked)


def from_dict(data: dict, source: str) -> RunConfig:
    """A resolved config read back (a run folder's config.json), with the same checks."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a JSON object")
    checked = _checked({key: (value, source) for key, value in data.items()})
    if checked.get("n_sft") is None or checked.get("n_pft") is None:
        raise UserError(f"{source}: n_sft and n_pft must be set in a resolved config")
    return RunConfig(**checked)


def with_split(config: RunConfig, n_sft: int, n_pft: int) -> RunConfig:
    """The config with the advisor's split filled in (the budget stays recorded)."""
    return dataclasses.replace(config, n_sft=int(n_sft), n_pft=int(n_pft))
