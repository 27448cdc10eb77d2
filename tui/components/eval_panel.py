"""The evaluation after each stage, set against what the advisor predicted for this split."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from engine.record.events import EVAL_STAGES

STAGE_NAMES = {"base": "base model", "sft": "after SFT", "dpo": "after DPO"}


def verdict(score: float, prediction: tuple[float, float, float]) -> Text:
    """How the final score sits against the predicted interval, in words and colour."""
    mean, lo, hi = prediction
    delta = f"{score - mean:+.3f} vs predicted"
    if score < lo:
        return Text(f"{delta} (below the interval)", style="bold red")
    if score > hi:
        return Text(f"{delta} (above the interval)", style="bold green")
    return Text(f"{delta} (inside the interval)", style="green")


class EvalPanel(Static):
    """One row per evaluated stage, then the advisor's prediction and the verdict."""

    BORDER_TITLE = "Evaluation"

    def show(self, evals: dict[str, tuple[str, float, int]], prediction: tuple[float, float, float] | None,
             final_stage: str = "dpo") -> None:
        """The prediction is for the whole run, so only the final stage's score is judged against it."""
        table = Table(box=None, expand=True, pad_edge=False)
        table.add_column("stage", style="bold")
        table.add_column("metric", style="dim")
        table.add_column("score", justify="right")
        table.add_column("n", justify="right", style="dim")
        for stage in EVAL_STAGES:
            if stage in evals:
                metric, value, n = evals[stage]
                table.add_row(STAGE_NAMES[stage], metric, f"{value:.3f}", str(n))
            else:
                table.add_row(STAGE_NAMES[stage], "", Text("—", style="dim"), "")
        final = evals[final_stage][1] if final_stage in evals else None
        lines = [table]
        if prediction is not None:
            mean, lo, hi = prediction
            lines.append(Text.assemble(("\nadvisor predicted ", "dim"), (f"{mean:.3f}", "bold"),
                                       (f" ({lo:.3f}–{hi:.3f})", "dim")))
            if final is not None:
                lines.append(verdict(final, prediction))
        self.update(Group(*lines))
