"""Where budgettui keeps its state, and the guard that keeps every run path inside the runs folder."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from engine.record.errors import UserError

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def home_dir() -> Path:
    """`$BUDGETTUI_HOME`, else `$XDG_DATA_HOME/budgettui`, else `~/.local/share/budgettui`."""
    explicit = os.environ.get("BUDGETTUI_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(xdg):  # the XDG spec: a relative value is invalid and must be ignored
        xdg = str(Path.home() / ".local" / "share")
    return Path(xdg) / "budgettui"


def runs_dir() -> Path:
    return home_dir() / "runs"


def store_path() -> Path:
    return home_dir() / "runs.sqlite"


def models_dir() -> Path:
    """Cache of converted models (e.g. the demo model); never part of the repository."""
    return home_dir() / "models"


def built_once(target: Path, build) -> Path:
    """`target`, a cache folder of the home built once by `build(tmp_dir)` and renamed into place,
    so a crash never leaves a half-written folder that a later run would trust (a folder counts
    once its config.json is in it)."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first, or a stale folder without config.json
            if not (target / "config.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    """Reject anything that is not a plain run id (no separators, `..`, NUL or absolute paths)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):  # `$` would let "abc\n" through
        raise UserError(f"invalid run id {run_id!r}: use letters, digits, '-' and '_' only")
    return run_id


def run_dir(run_id: str, root: Path | None = None) -> Path:
    """The folder of one run, guaranteed to lie directly inside the runs folder."""
    root = (root or runs_dir()).resolve()
    path = (root / check_run_id(run_id)).resolve()
    if path.parent != root:
        raise UserError(f"run id {run_id!r} leaves the runs folder")
    return path


def inside(base: Path, relative: str | os.PathLike) -> Path:
    """Join a relative path under `base`, refusing anything that would land outside it."""
    text = os.fspath(relative)
    if "\x00" in text:
        raise UserError("path contains a NUL byte")
    base = base.resolve()
    path = (base / text).resolve()
    if path != base and base not in path.parents:
        raise UserError(f"path {text!r} leaves {base}")
    return path
