"""A sweep's figure, as in the paper: score against budget (log scale), one line per SFT share,
the advisor's prediction (with its 80% interval) beside each measured point. Drawn in terminal
characters with rich and written as SVG by hand: the engine loads no plotting library.

The predictions come from the advisor fitted on every past run except this sweep's own cells,
so each is what the advisor would have said before the cell was run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from engine.record.errors import UserError
from engine.record.model_names import canonical_model
from engine.sweep.grid import Cell, Sweep

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
RICH_COLOURS = ("blue", "red", "green", "magenta", "yellow", "cyan", "bright_red", "bright_blue")
PLOT_WIDTH, PLOT_HEIGHT = 60, 16


@dataclass
class Row:
    cell: Cell
    status: str | None  # None: not run yet
    measured: float | None
    prediction: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        return {"run_id": self.cell.run_id, "budget": self.cell.budget, "share": self.cell.share,
                "n_sft": self.cell.n_sft, "n_pft": self.cell.n_pft, "status": self.status, "measured": self.measured,
                "predicted": None if self.prediction is None else dict(zip(("mean", "lo", "hi"), self.prediction))}


@dataclass
class SweepTable:
    sweep: Sweep
    rows: list[Row]
    metric: str | None
    note: str = ""

    def to_dict(self) -> dict:
        return {"name": self.sweep.name, "task": self.sweep.task, "model": self.sweep.model, "metric": self.metric,
                "note": self.note, "cells": [row.to_dict() for row in self.rows]}


def measure(sweep: Sweep) -> SweepTable:
    """Each cell's final score (finished cells) and the advisor's prediction for it."""
    from engine.record.store import RunStore

    store = RunStore()
    store.mark_dead_runs()
    runs = {run["run_id"]: run for run in store.list_runs()}
    rows, metrics = [], set()
    for cell in sweep.cells:
        run = runs.get(cell.run_id)
        finished = run is not None and run["status"] == "finished"
        if finished and run["metric"]:
            metrics.add(run["metric"])
        rows.append(Row(cell, run["status"] if run else None, run["score"] if finished else None))
    metric = next(iter(metrics)) if len(metrics) == 1 else None
    table = SweepTable(sweep, rows, metric)
    _predict(table, store)
    return table


def _predict(table: SweepTable, store) -> None:
    """Fill each row's prediction, or say in `note` why there is none."""
    from advisor import Advisor, AdvisorError
    from advisor.records import shipped_runs

    sweep = table.sweep
    if table.metric is not None and not any(e["metric"] == table.metric and e["score"] for e in store.evaluations()):
        table.note = f"no advisor predictions: {table.metric} is not a score in [0, 1]"
        return
    model = canonical_model(sweep.model)
    own = {row.cell.run_id for row in table.rows}
    base = store.base_scores(sweep.task, model).get(table.metric) if table.metric else None
    try:
        advisor = Advisor().fit([*shipped_runs(), *store.past_runs(exclude=own)])
        for row in table.rows:
            mean, lo, hi = advisor.predict(sweep.task, model, row.cell.n_sft, row.cell.n_pft, base_score=base)
            row.prediction = (float(mean), float(lo), float(hi))
    except AdvisorError as exc:
        table.note = f"no advisor predictions: {exc}"
        return
    anchor = f", anchored on the measured base score {base:.3f}" if base is not None else ""
    table.note = f"predictions: the advisor fitted on every past run but this sweep's cells{anchor}"


# --- the terminal ------------------------------------------------------------------------------
def _budget_positions(budgets: list[float]) -> dict[float, float]:
    """Each budget's place along [0, 1] on a log scale (one budget sits in the middle)."""
    low, high = math.log(min(budgets)), math.log(max(budgets))
    span = high - low
    return {b: 0.5 if span == 0 else (math.log(b) - low) / span for b in budgets}


def _y_range(table: SweepTable) -> tuple[float, float]:
    values = [r.measured for r in table.rows if r.measured is not None]
    for row in table.rows:
        if row.prediction is not None:
            values += [row.prediction[1], row.prediction[2]]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = max((high - low) * 0.08, 0.01)
    return (max(low - pad, 0.0) if low >= 0 else low - pad), (min(high + pad, 1.0) if high <= 1 else high + pad)


def terminal_figure(table: SweepTable) -> None:
    """The figure in characters (● measured, ○ predicted, one colour per SFT share), then every cell in a table."""
    from rich.console import Console
    from rich.markup import escape as markup_escape
    from rich.table import Table
    from rich.text import Text

    console = Console()
    sweep = table.sweep
    console.print(f"[bold]sweep {sweep.name}[/]: {markup_escape(sweep.task)} · {markup_escape(sweep.model)} · "
                  f"{table.metric or 'score'} against budget (SFT {sweep.sft_cost:g}, pair {sweep.pft_cost:g})",
                  highlight=False)
    bottom, top = _y_range(table)
    positions = _budget_positions(sweep.budgets)
    grid = [[" "] * PLOT_WIDTH for _ in range(PLOT_HEIGHT)]
    offsets = len(sweep.ratios)

    def cell_at(row: Row, value: float) -> tuple[int, int]:
        share_index = sweep.ratios.index(row.cell.share)
        x = positions[row.cell.budget] * (PLOT_WIDTH - 2 * offsets - 1) + 2 * share_index
        y = (top - value) / (top - bottom) * (PLOT_HEIGHT - 1)
        return round(y), round(x)

    for row in table.rows:
        colour = RICH_COLOURS[sweep.ratios.index(row.cell.share) % len(RICH_COLOURS)]
        if row.prediction is not None:
            y, x = cell_at(row, row.prediction[0])
            grid[y][x + 1] = f"[{colour}]○[/]"
        if row.measured is not None:
            y, x = cell_at(row, row.measured)
            grid[y][x] = f"[bold {colour}]●[/]"
    lines = [f"{top - i * (top - bottom) / (PLOT_HEIGHT - 1):6.3f} │" + "".join(cells) for i, cells in enumerate(grid)]
    lines.append(" " * 7 + "└" + "─" * PLOT_WIDTH)
    ticks = [" "] * PLOT_WIDTH
    for budget, place in positions.items():
        label = f"{budget:g}"
        start = min(max(0, round(place * (PLOT_WIDTH - 2 * offsets - 1))), PLOT_WIDTH - len(label))
        ticks[start:start + len(label)] = list(label)
    lines.append(" " * 8 + "".join(ticks) + " budget")
    legend = "  ".join(f"[{RICH_COLOURS[i % len(RICH_COLOURS)]}]●[/] {share:.0%} SFT"
                       for i, share in enumerate(sweep.ratios))
    console.print(legend + "   ● measured  ○ predicted", highlight=False)
    console.print("\n".join(lines), highlight=False)
    cells = Table(title=None, caption=Text(table.note) if table.note else None, caption_justify="left")
    for column in ("cell", "SFT", "pairs", "status", "measured", "predicted (80%)"):
        cells.add_column(column, justify="left" if column in ("cell", "status") else "right", no_wrap=True,
                         min_width=max(len(row.cell.run_id) for row in table.rows) if column == "cell" else None)
    for row in table.rows:
        mean, lo, hi = row.prediction or (None, None, None)
        predicted = "—" if mean is None else f"{mean:.3f} ({lo:.3f}–{hi:.3f})"
        cells.add_row(row.cell.run_id, str(row.cell.n_sft), str(row.cell.n_pft), row.status or "not run",
                      _number(row.measured), predicted)
    console.print(cells)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


# --- the image ---------------------------------------------------------------------------------
SVG_SIZE = (720, 440)
MARGIN = {"left": 70, "right": 150, "top": 50, "bottom": 60}


def svg_figure(table: SweepTable) -> str:
    """The figure as a standalone SVG document: a solid line per SFT share through the measured
    points, a dashed line through the predictions, each prediction's 80% interval as a bar."""
    width, height = SVG_SIZE
    left, right = MARGIN["left"], width - MARGIN["right"]
    top_px, bottom_px = MARGIN["top"], height - MARGIN["bottom"]
    sweep = table.sweep
    bottom, top = _y_range(table)
    positions = _budget_positions(sweep.budgets)
    shift = 6  # shares side by side at one budget, so intervals do not hide each other

    def x_of(row: Row) -> float:
        middle = (len(sweep.ratios) - 1) / 2
        side = (sweep.ratios.index(row.cell.share) - middle) * shift
        return left + 20 + positions[row.cell.budget] * (right - left - 40) + side

    def y_of(value: float) -> float:
        return bottom_px - (value - bottom) / (top - bottom) * (bottom_px - top_px)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="24" font-size="15">'
             f'{escape(f"{sweep.task} · {sweep.model} · sweep {sweep.name}")}</text>',
             f'<line x1="{left}" y1="{bottom_px}" x2="{right}" y2="{bottom_px}" stroke="black"/>',
             f'<line x1="{left}" y1="{top_px}" x2="{left}" y2="{bottom_px}" stroke="black"/>']
    for i in range(6):
        value = bottom + i * (top - bottom) / 5
        parts.append(f'<line x1="{left - 4}" y1="{y_of(value):.1f}" x2="{left}" y2="{y_of(value):.1f}" stroke="black"/>'
                     f'<text x="{left - 8}" y="{y_of(value) + 4:.1f}" text-anchor="end">{value:.3f}</text>')
    for budget, place in positions.items():
        x = left + 20 + place * (right - left - 40)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom_px}" x2="{x:.1f}" y2="{bottom_px + 4}" stroke="black"/>'
                     f'<text x="{x:.1f}" y="{bottom_px + 18}" text-anchor="middle">{budget:g}</text>')
    parts.append(f'<text x="{(left + right) / 2}" y="{height - 16}" text-anchor="middle">label budget (log scale)</text>')
    parts.append(f'<text x="18" y="{(top_px + bottom_px) / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 18 {(top_px + bottom_px) / 2})">{escape(table.metric or "score")}</text>')
    for index, share in enumerate(sweep.ratios):
        colour = COLOURS[index % len(COLOURS)]
        rows = sorted((r for r in table.rows if r.cell.share == share), key=lambda r: r.cell.budget)
        measured = [(x_of(r), y_of(r.measured)) for r in rows if r.measured is not None]
        predicted = [(x_of(r), y_of(r.prediction[0])) for r in rows if r.prediction is not None]
        if len(measured) > 1:
            parts.append(f'<polyline class="measured" fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in measured) + '"/>')
        if len(predicted) > 1:
            parts.append(f'<polyline class="predicted" fill="none" stroke="{colour}" stroke-dasharray="4 3" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in predicted) + '"/>')
        for row in rows:
            if row.prediction is not None:
                mean, lo, hi = row.prediction
                x = x_of(row)
                parts.append(f'<line class="interval" x1="{x:.1f}" y1="{y_of(lo):.1f}" x2="{x:.1f}" y2="{y_of(hi):.1f}" '
                             f'stroke="{colour}" stroke-opacity="0.45" stroke-width="3"/>'
                             f'<circle class="prediction" cx="{x:.1f}" cy="{y_of(mean):.1f}" r="4" fill="white" '
                             f'stroke="{colour}"><title>{escape(row.cell.run_id)} predicted {mean:.3f} '
                             f'({lo:.3f}–{hi:.3f})</title></circle>')
            if row.measured is not None:
                parts.append(f'<circle class="measurement" cx="{x_of(row):.1f}" cy="{y_of(row.measured):.1f}" r="4" '
                             f'fill="{colour}"><title>{escape(row.cell.run_id)} measured {row.measured:.3f}</title></circle>')
        y = top_px + 16 * index
        parts.append(f'<line x1="{right + 16}" y1="{y}" x2="{right + 36}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{right + 42}" y="{y + 4}">{share:.0%} SFT</text>')
    y = top_px + 16 * len(sweep.ratios) + 10
    parts.append(f'<text x="{right + 16}" y="{y}">● measured</text>'
                 f'<text x="{right + 16}" y="{y + 16}">○ predicted (80%)</text>')
    if table.note:
        parts.append(f'<text x="{left}" y="40" font-size="10" fill="#555">{escape(table.note)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_plot(table: SweepTable, file: str) -> Path:
    """Write the figure to `file`: SVG only (no image library is installed to rasterise a PNG)."""
    path = Path(file).expanduser()
    if path.suffix.lower() != ".svg":
        raise UserError(f"--plot {file}: only SVG images can be written (name it FILE.svg)")
    try:
        path.write_text(svg_figure(table), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--plot {file}: cannot write it ({exc.strerror or exc})") from None
    return path
