"""What the model wrote: a few held-out examples of each evaluation — prompt, the model's
output, the reference and its score — read from the run folder's `evals/<stage>.jsonl`, so a
score of 0.000 can be looked into."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.record.events import EVAL_STAGES
from engine.record.generations import read_generations

SHOWN = 3  # examples per stage
CLIP = 240  # characters of each text


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= CLIP else text[: CLIP - 1] + "…"


def generations_text(folder: Path, stages: list[str]) -> Text:
    """The first few generations of each stage's evaluation, or why there are none."""
    out = Text()
    for stage in stages:
        rows = read_generations(folder, stage, SHOWN)
        if not rows:
            continue
        out.append(f"{stage}\n", style="bold")
        for row in rows:
            out.append(f"  score {row.get('score', 0):.3f}  ", style="bold green" if row.get("score") else "bold red")
            out.append(_clip(row.get("prompt", "")) + "\n", style="dim")
            out.append("  wrote      ", style="dim")
            out.append((_clip(row.get("output", "")) or "(nothing)") + "\n")
            out.append("  reference  ", style="dim")
            out.append(_clip(row.get("reference", "")) + "\n\n")
    if not out:
        out.append("No generations saved yet: they appear once an evaluation with a generation metric "
                   "(exact_match, rouge_l) has finished.", style="dim")
    return out


class GenerationsScreen(ModalScreen[None]):
    """A few of the run's generations per evaluated stage; esc or g closes it."""

    BINDINGS = [Binding("escape,g", "dismiss", "Close")]

    def __init__(self, folder: Path, evals: dict):
        super().__init__()
        self.folder = folder
        self.stages = [stage for stage in EVAL_STAGES if stage in evals]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="generations") as scroll:
            scroll.border_title = "What the model wrote"
            yield Static(generations_text(self.folder, self.stages), id="generations-text")
