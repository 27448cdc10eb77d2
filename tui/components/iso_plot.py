"""Iso-score curves over (SFT examples, preference pairs), with the budget line across them:
the best split is where the line touches the highest curve it reaches (drawn in cyan)."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

from tui.advice import Advice, IsoGrid
from tui.components.plotting import CYAN, GRADIENT, WHITE, crossings, swatch, ticks

QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9, 0.98)


def levels(grid: IsoGrid) -> list[float]:
    """Scores to draw: spread by quantile over the grid (the surface saturates, so even steps
    in score would crowd near the origin), rounded so each label reads cleanly."""
    return sorted({round(float(q), 3) for q in np.quantile(grid.scores, QUANTILES)})


class IsoScorePlot(PlotextPlot):
    BORDER_TITLE = "Iso-score curves · x SFT examples · y preference pairs"

    def show(self, advice: Advice, grid: IsoGrid) -> None:
        best = advice.prediction[0]
        money, (sft_cost, pft_cost) = advice.recommendation.label_budget, advice.costs  # GPU time included
        plt = self.plt
        plt.clear_figure()
        drawn = [level for level in levels(grid) if abs(level - best) > 0.005]
        for level, color in zip(drawn, GRADIENT):
            xs, ys = crossings(grid.n_sft, grid.n_pft, grid.scores, level)
            if len(xs):
                plt.scatter(xs.tolist(), ys.tolist(), marker="braille", color=color)
        xs, ys = crossings(grid.n_sft, grid.n_pft, grid.scores, best)
        if len(xs):
            plt.scatter(xs.tolist(), ys.tolist(), marker="braille", color=CYAN)
        line_x = np.linspace(0, money / sft_cost, 60)
        plt.plot(line_x.tolist(), ((money - line_x * sft_cost) / pft_cost).tolist(), marker="braille", color=WHITE)
        n_sft, n_pft = advice.split
        plt.scatter([n_sft], [n_pft], marker="●", color=CYAN)
        plt.xlim(0, float(grid.n_sft[-1]))
        plt.ylim(0, float(grid.n_pft[-1]))
        plt.xticks(*ticks(float(grid.n_sft[-1])))
        plt.yticks(*ticks(float(grid.n_pft[-1])))
        key = " ".join(swatch(color, f"{level:.2f}") for level, color in zip(drawn, GRADIENT))
        self.border_subtitle = f"score {key}  {swatch(CYAN, f'━● {best:.3f} recommended')}  ━ budget line"
        self.refresh()
