"""Predicted score along the budget line: every split of the same money, from all preference
pairs (SFT share 0%) to all SFT (100%), with the interval and the three splits marked."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from tui.advice import Advice
from tui.components.plotting import BLUE, CYAN, GREY, RED, YELLOW, swatch

MARKERS = (("recommended", CYAN), ("sft_only", RED), ("rule_of_thumb", YELLOW))
KEY = (f"{swatch(BLUE, '━')} predicted  {swatch(GREY, '━')} 80% interval  {swatch(CYAN, '●')} recommended  "
       f"{swatch(RED, '●')} SFT only  {swatch(YELLOW, '●')} rule of thumb")


class BudgetLinePlot(PlotextPlot):
    BORDER_TITLE = "Predicted score along the budget line"
    BORDER_SUBTITLE = KEY

    def show(self, advice: Advice) -> None:
        rec = advice.recommendation
        points = sorted(rec.curve, key=lambda p: p.sft_ratio)
        xs = [100 * p.sft_ratio for p in points]
        plt = self.plt
        plt.clear_figure()
        for bound in (0, 1):
            plt.plot(xs, [float(p.interval[bound]) for p in points], marker="braille", color=GREY)
        plt.plot(xs, [float(p.predicted_score) for p in points], marker="braille", color=BLUE)
        marked = {"recommended": rec, **rec.baselines}
        for name, color in MARKERS:
            point = marked.get(name)
            if point is not None:
                x, y = 100 * point.sft_ratio, float(point.predicted_score)
                plt.scatter([x], [y], marker="●", color=color)
        plt.xlim(0, 100)
        plt.xlabel("SFT share of the examples bought (%)")
        self.refresh()
