"""The recommendation in words and numbers: the split to buy, its predicted score and interval,
and the same for SFT-only and the paper's rule of thumb at the same money, with the advisor's
warnings and how many past runs it stands on; with a GPU-hour price, the forecast GPU time."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui.advice import Advice

BASELINE_NAMES = {"sft_only": "SFT only", "rule_of_thumb": "rule of thumb"}


def _score(point) -> tuple[float, float, float]:
    lo, hi = point.interval
    return float(point.predicted_score), float(lo), float(hi)


def _delta(value: float) -> Text:
    if abs(value) < 0.0005:
        return Text("same", style="dim")
    return Text(f"{value:+.3f}", style="red" if value < 0 else "green")


def comparison(advice: Advice) -> Table:
    """Recommended, SFT-only and rule-of-thumb splits of the same money, side by side."""
    rec = advice.recommendation
    table = Table(box=None, expand=True, pad_edge=False, collapse_padding=True, header_style="dim")
    table.add_column("split", no_wrap=True, min_width=13)
    for name in ("SFT", "pairs", "SFT %", "score", "80% interval", "vs rec."):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    rows = [("recommended", rec)] + [(BASELINE_NAMES.get(k, k), p) for k, p in rec.baselines.items()]
    for label, point in rows:
        mean, lo, hi = _score(point)
        style = "bold" if point is rec else ""
        table.add_row(Text(label, style="bold cyan" if point is rec else ""),
                      Text(f"{int(point.n_sft):,}", style=style), Text(f"{int(point.n_pft):,}", style=style),
                      f"{100 * point.sft_ratio:.0f}%", Text(f"{mean:.3f}", style=style),
                      Text(f"{lo:.3f}–{hi:.3f}", style="dim"),
                      Text("") if point is rec else _delta(mean - _score(rec)[0]))
    return table


def forecast_text(forecast: dict) -> Text:
    """The GPU time a split needs, its cost, and what the hours were measured on."""
    return Text(f"+ {forecast['forecast_hours']:,.2f} GPU-hours × {forecast['gpu_hour_price']:g} = "
                f"{forecast['forecast_cost']:,.2f} forecast (measured on {forecast['measured_runs']} of your runs, "
                f"{forecast['epochs']:g} epochs)", style="dim")


class RecommendationView(Static):
    """Shows one `Advice`, or why there is none (invalid inputs, the advisor's refusal)."""

    BORDER_TITLE = "Recommendation"

    def show(self, advice: Advice) -> None:
        rec = advice.recommendation
        mean, lo, hi = advice.prediction
        n_sft, n_pft = advice.split
        headline = Text.assemble(
            ("Buy ", ""), (f"{n_sft:,}", "bold cyan"), (" SFT examples + ", ""), (f"{n_pft:,}", "bold cyan"),
            (" preference pairs  →  ", ""), (f"{mean:.3f}", "bold"), (f" ({lo:.3f}–{hi:.3f})", "dim"),
        )
        spend = n_sft * advice.inputs.sft_cost + n_pft * advice.inputs.pft_cost
        spent = (f"{spend:,.2f} on labels + {advice.forecast['forecast_cost']:,.2f} on GPU time of "
                 f"{rec.label_budget:,.2f}" if advice.forecast else f"{spend:,.2f} of {rec.label_budget:,.2f} on labels")
        detail = Text(f"spends {spent} · {100 * rec.sft_ratio:.0f}% of the examples are SFT", style="dim")
        parts = [headline, detail]
        if rec.basis:  # what the prediction rests on, and in which metric
            parts.append(Text(f"{rec.metric or 'score'}: {rec.basis}", style="dim italic"))
        if advice.forecast:
            parts.append(forecast_text(advice.forecast))
        parts += [Text(""), comparison(advice)]
        if advice.compute_problem:
            parts.append(Text(f"⚠ GPU time left out: {advice.compute_problem}", style="yellow"))
        for warning in rec.warnings:
            parts.append(Text(f"⚠ {warning}", style="yellow"))
        self.update(Group(*parts))
        local = f", {advice.n_local} yours" if advice.n_local else ""
        self.border_subtitle = f"fitted on {advice.n_runs} past runs{local}"

    def show_problem(self, reason: str) -> None:
        self.update(Text(reason, style="bold red" if reason else ""))
