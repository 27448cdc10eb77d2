"""Everything about a model folder and the run's settings for it that can be checked before the
run exists: a run that is created is a run that can start.

Refused here, in one line, instead of failing (or worse, silently training) after the run is
recorded: no safetensors weights, a config.json transformers cannot read, a folder that needs
its own code without `--trust-remote-code`, no tokenizer, weights missing from the checkpoint
(transformers would fill them with random values and the run would teach the advisor a lie;
`--allow-missing-weights` goes on with a warning, and such a run never becomes a past run),
LoRA targets that are not linear projections. (A max_length every prompt of a stage fills is
refused by the forecast's token count, `engine.training.forecast`, which every run makes first.)
"""

from __future__ import annotations

from pathlib import Path

from advisor.safe_files import BadFile, loads, read_text
from engine.record.config import RunConfig
from engine.record.errors import UserError, first_line

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def _config_json(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        data = loads(read_text(path, "model config", max_bytes=16 << 20))
    except (BadFile, ValueError) as exc:
        raise UserError(f"{path} is not a readable model config: {first_line(exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise UserError(f"{path} is not a model config (no model_type)")
    return data


def _weight_names(folder: Path) -> set[str]:
    from engine.training.models import safetensors_header

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserError(f"{folder} holds no .safetensors weights (models load from safetensors only)")
    return {name for file in files for name in safetensors_header(file) if name != "__metadata__"}


def _meta_model(folder: Path, trust_remote_code: bool):
    """The architecture without its weights (on the meta device: no memory, no time)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises ValueError, KeyError, TypeError… for a bad config
        raise UserError(f"{folder / 'config.json'} does not describe a causal language model transformers "
                        f"can build: {first_line(exc)}") from None


def _missing_weights(model, present: set[str]) -> list[str]:
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else ""
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})

    def stored(name: str) -> bool:
        return name in present or (prefix and name.startswith(prefix) and name[len(prefix):] in present)

    return sorted(name for name in model.state_dict() if name not in tied and not stored(name))


def _check_targets(model, config: RunConfig) -> None:
    import torch

    head = model.get_output_embeddings()
    by_suffix: dict[str, list] = {}
    for name, module in model.named_modules():
        by_suffix.setdefault(name.rsplit(".", 1)[-1], []).append(module)
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear) and module is not head})
    for target in config.lora_targets:
        modules = by_suffix.get(target, [])
        if modules and all(isinstance(m, torch.nn.Linear) and m is not head for m in modules):
            continue
        why = "is the output layer" if head is not None and head in modules else (
            "is not a linear layer" if modules else "is not a module")
        raise UserError(f"LoRA target {target!r} {why} of this model; lora_targets must be linear "
                        f"projections such as: {', '.join(linear)}")


def weights_floor(folder: Path, config: RunConfig) -> tuple[int, int]:
    """(bytes, parameters): a lower bound of the memory the loaded weights take, counted on the
    architecture alone (no weight is read): in 4-bit half a byte per parameter of the quantised
    linear layers (all but the output layer), the rest at the compute width (fp32 on the CPU, at
    least bf16 on a GPU). It lets a model that cannot fit be refused before anything loads it."""
    import torch

    from engine.training import meter
    from engine.training.models import bitsandbytes_problem

    model = _meta_model(Path(folder), config.trust_remote_code)
    head = model.get_output_embeddings()
    total = sum(p.numel() for p in model.parameters())  # a tied output layer counts once
    four_bit = config.quant != "none" and bitsandbytes_problem() is None
    quantised = sum(m.weight.numel() for m in model.modules()
                    if four_bit and isinstance(m, torch.nn.Linear) and m is not head)
    width = 4 if meter.device() == "cpu" else 2
    return quantised // 2 + (total - quantised) * width, total


def preflight(folder: Path, config: RunConfig) -> list[str]:
    """Check the model folder and the settings that depend on it; a UserError names the first
    problem. Returns the warnings a run allowed to go on despite them must show."""
    folder = Path(folder)
    data = _config_json(folder)
    if data.get("auto_map") and not config.trust_remote_code:
        raise UserError(f"{folder} needs its own Python code (auto_map in config.json); budgettui never runs it "
                        "unless you pass --trust-remote-code")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{folder} has no tokenizer ({', '.join(TOKENIZER_FILES)})")
    present = _weight_names(folder)
    model = _meta_model(folder, config.trust_remote_code)
    missing = _missing_weights(model, present)
    warnings = []
    if missing and not config.allow_missing_weights:
        raise UserError(f"{folder}: the weights lack {len(missing)} of the model's tensors (e.g. {missing[0]}); "
                        "a partial checkpoint would train on random values (--allow-missing-weights to go on)")
    if missing:
        warnings.append(f"the weights lack {len(missing)} of the model's tensors (e.g. {missing[0]}): they start "
                        "random, and this run will not count as a past run for the advisor")
    _check_targets(model, config)
    return warnings


__all__ = ["preflight", "weights_floor"]
