"""Which checkpoints can be trusted after a crash, and atomic saves for the stage adapters.

transformers 5.24's Trainer writes `checkpoint-N` in place (weights, then optimizer, scheduler,
RNG and trainer state), so a process killed mid-save leaves a folder that looks like a
checkpoint but is not one. A checkpoint counts only once `complete.json` — written after the
Trainer returns from saving, listing every file and its size — is in it; resume picks the
newest complete one and clears the rest. The Trainer's own rotation (`save_total_limit`) is
left off because it can delete the last good checkpoint before the new one is marked.

Nothing here unpickles: on resume the Trainer (transformers 5.24) reads optimizer, scheduler and
RNG state with `torch.load(..., weights_only=True)` (numpy's RNG types allow-listed), adapters
load from safetensors, and the pickled `training_args.bin` it writes is never read back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

MARKER = "complete.json"
STATE_FILE = "trainer_state.json"
PATTERN = re.compile(r"^checkpoint-(\d+)$")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: dict) -> None:
    """Write a JSON file through a temporary name, so readers see the old file or the new one."""
    write_text_atomic(path, json.dumps(data, indent=2))


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary name, so readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def mark_complete(checkpoint: Path) -> None:
    """Flush the checkpoint's files to disk, then record them: from now on it can be resumed."""
    files = _listing(checkpoint)
    for name in files:
        _fsync(checkpoint / name)
    sha256 = {name: _digest(checkpoint / name) for name in files}  # lets a resume detect damaged contents
    write_json_atomic(checkpoint / MARKER, {"files": files, "sha256": sha256})
    _fsync(checkpoint)


def is_complete(checkpoint: Path, verify: bool = False) -> bool:
    """True when the marker is there and every file it lists still has its recorded size and,
    with `verify`, its recorded contents (a resume must not trust a corrupted trainer_state.json
    or optimizer.pt, which keep their size)."""
    try:
        record = json.loads((checkpoint / MARKER).read_text(encoding="utf-8"))
        files = record["files"]
        if not all((checkpoint / name).stat().st_size == size for name, size in files.items()):
            return False
        return not verify or all(_digest(checkpoint / name) == digest for name, digest in record.get("sha256", {}).items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := PATTERN.match(p.name))]
    return sorted(found)


def latest_complete(folder: Path, verify: bool = False) -> Path | None:
    """The newest complete checkpoint under a stage's checkpoints folder, or None."""
    complete = [path for _, path in _checkpoints(folder) if is_complete(path, verify)]
    return complete[-1] if complete else None


def damaged(folder: Path) -> list[Path]:
    """Checkpoints once marked complete whose marker or files no longer match (newest last); an
    unmarked one (killed mid-save) is routine and not listed."""
    return [path for _, path in _checkpoints(folder) if (path / MARKER).exists() and not is_complete(path, verify=True)]


def prune(folder: Path, keep: int, verify: bool = False) -> list[Path]:
    """Keep the `keep` newest complete checkpoints; remove older ones and every incomplete one
    (with `verify`, also every damaged one)."""
    checkpoints = [path for _, path in _checkpoints(folder)]
    complete = [path for path in checkpoints if is_complete(path, verify)]
    doomed = [p for p in checkpoints if p not in complete] + complete[:-keep]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def trainer_position(checkpoint: Path) -> tuple[int, int]:
    """(global step, total steps) recorded in a checkpoint's trainer state."""
    state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    return int(state["global_step"]), int(state["max_steps"])


def save_adapter(model, target: Path) -> None:
    """Save a PEFT adapter as `target` all at once: a present `target` is always a whole adapter."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, selected_adapters=["default"])
    for path in tmp.rglob("*"):
        if path.is_file():
            _fsync(path)
    os.replace(tmp, target)
    _fsync(target.parent)
