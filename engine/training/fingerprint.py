"""What a run is made of — its settings, its data and its model — as three digests recorded when
the run is created (`fingerprint.json` in the run folder) and compared on every resume.

A resume may continue a run, never change it: data files edited or replaced (or a relative path
that now means another file), an edited config.json, or a model folder whose weights or
tokenizer changed all refuse the resume in one line instead of training on something else and
recording it as the same run.

The data digest covers the examples the task actually loaded (built-in or the user's files);
the model digest covers config.json, the tokenizer files and each safetensors file's size and
header (tensor names, shapes, dtypes, offsets) — not every weight byte, so a multi-gigabyte
model is fingerprinted in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from engine.record.config import RunConfig
from engine.record.errors import UserError

FINGERPRINT_FILE = "fingerprint.json"
PARTS = ("config", "data", "model")
MODEL_TEXT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja",
                    "model.safetensors.index.json")
MAX_HEADER = 100 << 20


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def model_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in MODEL_TEXT_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    for path in sorted(folder.glob("*.safetensors")):
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            header = handle.read(length) if length <= min(MAX_HEADER, size) else b""
        digest.update(f"{path.name}\0{size}\0".encode() + header)
    return digest.hexdigest()


def of(config: RunConfig, task, model_folder: Path) -> dict[str, str]:
    """The run's three digests."""
    data = [task.sft_pool, task.pref_pool, task.eval_pool, task.metric.name]
    return {"config": _digest(config.to_dict()), "data": _digest(data), "model": model_digest(Path(model_folder))}


def check(saved: dict | None, now: dict[str, str], run_id: str) -> None:
    """Refuse a resume whose inputs differ from the ones the run was created with."""
    if not isinstance(saved, dict):
        return  # a run made before fingerprints were recorded
    changed = [part for part in PARTS if part in saved and saved[part] != now[part]]
    if changed:
        what = {"config": "its config.json", "data": "its data", "model": "its model"}
        raise UserError(f"run {run_id} cannot be resumed: {' and '.join(what[p] for p in changed)} changed since "
                        "it was created (start a new run for new inputs)")
