"""One name per model, however a user spells it, so every run of a model counts for it.

`demo`, `SmolLM2-135M-Instruct` and `HuggingFaceTB/SmolLM2-135M-Instruct` are the same weights:
the store records them under one canonical name (the one that states the size, so the advisor
reads 0.135B from it), and `engine advise`, `engine baseline`/`sweep` and the TUI ask about that
name. A model folder is named by its absolute path (`./my-model` is the same model from any
folder). Other names are kept as written; the advisor's `model_key` already folds case, an
organisation prefix and a "(base)" tag. Light: no torch, readable by the TUI."""

from __future__ import annotations

from pathlib import Path

DEMO_NAME = "SmolLM2-135M-Instruct"
DEMO_NAMES = ("demo", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct")


def model_folder(name: str) -> str | None:
    """The absolute path when `name` is a local model folder (not `tiny` or the demo's names,
    which the engine builds), else None."""
    text = name.strip()
    if not text or text == "tiny" or text.lower() in DEMO_NAMES:
        return None
    folder = Path(text).expanduser()
    return str(folder.resolve()) if folder.is_dir() else None


def canonical_model(name: str) -> str:
    """The name the store and the advisor use for `name` (the demo model's aliases fold into one)."""
    text = name.strip()
    return DEMO_NAME if text.lower() in DEMO_NAMES else (model_folder(text) or text)


def same_model(a: str, b: str) -> bool:
    """Whether two spellings name one model (the advisor's pooling rule, after the aliases fold)."""
    from advisor.records import model_key

    return model_key(canonical_model(a)) == model_key(canonical_model(b))


def model_size(model: str, params_b: float | None = None) -> float | None:
    """The model's size in billions: as given, else as its (canonical) name states it, else as
    the store measured it on an earlier run of the same model; None when nothing says."""
    from advisor.records import parse_params_b

    if params_b is not None:
        return params_b
    stated = parse_params_b(canonical_model(model))
    if stated is not None:
        return stated
    from engine.record import home

    if not home.store_path().exists():
        return None
    from engine.record.store import RunStore

    return RunStore().known_params_b(model)
