"""Library warnings known to be harmless here, so they are filed once in a run's engine.log and
kept off the terminal and the TUI's log pane:

- bitsandbytes, at every import on a CPU with AVX-512 BF16 without the optional `kernels` package:
  "Failed to load CPU gemm_4bit_forward" (it falls back to its own CPU path);
- transformers 5, each time TRL asks a model: the FutureWarning that `is_gradient_checkpointing`
  is renamed `is_activation_checkpointing`.
"""

from __future__ import annotations

KNOWN_HARMLESS = ("Failed to load CPU gemm_4bit_forward", "`is_gradient_checkpointing` is deprecated")


def known_harmless(text: str) -> str | None:
    """Which known-harmless warning `text` is (its marker), or None."""
    return next((marker for marker in KNOWN_HARMLESS if marker in text), None)


def without_known_harmless(lines: list[str]) -> list[str]:
    """Log lines less the known-harmless warnings and their indented continuation lines
    (Python's warnings add the source line below the message)."""
    kept, skipping = [], False
    for line in lines:
        if known_harmless(line):
            skipping = True
            continue
        if skipping and (not line.strip() or line[:1].isspace()):
            continue
        skipping = False
        kept.append(line)
    return kept
