"""A model's 4-bit weights, quantised once and kept: bitsandbytes quantises every weight each time
a model loads, and a run loads three times (an evaluation copy and a fresh copy per training
stage). A second load of the demo model in a process takes 3.16 s quantising and 0.42 s from the
kept copy on a 2-core CPU (`bench/models_eval.py --kept-copy-only`); the weights are the same
tensors, bit for bit.

The copy lives in `models_dir()/nf4/<digest>`, keyed by the source model's fingerprint (its
config, tokenizer and safetensors headers and sizes) and each weight file's modification time and
inode — weights rewritten in place keep their header and size, and reading every byte of a large
model at each load would cost more than quantising it — the device type, the quantisation
settings and the bitsandbytes and transformers versions: an edited model or an upgraded library
quantises afresh, and the folder's older copy is removed. It is written as safetensors (never
pickle) in a temporary folder renamed into place; a copy that no longer loads is removed and
made again."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from engine.record.home import built_once, models_dir

SOURCE_FILE = "source.json"  # in each copy: the model folder it was made from


def folder(source: Path, options: dict) -> Path:
    """Where the kept copy of `source` loaded with `options` (from_pretrained's dtype,
    device_map and quantization_config) lives."""
    from importlib.metadata import version

    from engine.training.fingerprint import model_digest

    device = str(next(iter(options["device_map"].values()))).split(":")[0]
    weights = [[path.name, stat.st_mtime_ns, stat.st_ino]
               for path in sorted(source.glob("*.safetensors")) for stat in [path.stat()]]
    key = {"model": model_digest(source), "weights": weights, "device": device, "dtype": str(options["dtype"]),
           "quant": options["quantization_config"].to_dict(),
           "libraries": [version("bitsandbytes"), version("transformers")]}
    return models_dir() / "nf4" / hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def load(source: Path, options: dict):
    """The model at `source`, 4-bit: from its kept copy, else quantised from `source` and kept."""
    from transformers import AutoModelForCausalLM

    if _stored_quantised(source):  # it loads without quantising: nothing to keep
        return AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, **options)
    kept = folder(source, options)
    if (kept / "config.json").is_file():
        try:  # the copy's own config carries the quantisation settings
            return AutoModelForCausalLM.from_pretrained(kept, use_safetensors=True, dtype=options["dtype"],
                                                        device_map=options["device_map"])
        except Exception:  # a damaged copy (truncated, edited): quantise again
            shutil.rmtree(kept, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, **options)
    try:
        _keep(model, source, kept)
    except OSError:  # a full disk or a read-only home: this load is done, the next quantises again
        pass
    return model


def _keep(model, source: Path, kept: Path) -> None:
    """Writes the copy, then removes any older copy of the same model folder (an edited model's):
    one copy per folder, so edits do not pile up copies on disk."""
    origin = str(source.resolve())

    def build(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / SOURCE_FILE).write_text(json.dumps({"source": origin}), encoding="utf-8")

    built_once(kept, build)
    for other in kept.parent.iterdir():
        if other != kept and not other.name.startswith(".") and _source_of(other) == origin:  # "." : being built
            shutil.rmtree(other, ignore_errors=True)


def _source_of(copy: Path) -> str | None:
    try:
        return json.loads((copy / SOURCE_FILE).read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError, AttributeError):
        return None


def is_kept(source: Path, options: dict) -> bool:
    return _stored_quantised(source) or (folder(source, options) / "config.json").is_file()


def _stored_quantised(source: Path) -> bool:
    """A model published already quantised (its config names how)."""
    try:
        return "quantization_config" in json.loads((source / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False  # the load says what is wrong with it
