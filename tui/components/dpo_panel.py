"""DPO's own signals: how often the chosen answer out-scores the rejected one, and by how much."""

from __future__ import annotations

from tui.components.plotting import AMBER, GREEN, StepPlot, swatch, thin, ticks
from tui.runstate import StageProgress

ACCURACY, MARGIN = "rewards/accuracies", "rewards/margins"


class DpoPanel(StepPlot):
    """Reward accuracy (left axis, 0–1) and reward margin (right axis) against DPO step."""

    BORDER_TITLE = "DPO rewards"
    BORDER_SUBTITLE = f"{swatch(GREEN, '━')} accuracy (left)  {swatch(AMBER, '━')} margin (right)"

    def show(self, progress: StageProgress | None, absent: str | None = None) -> None:
        """Redraw with the DPO stage's rewards; `absent` says why a run has no DPO stage."""
        rewards = progress.rewards if progress is not None else {}
        if not self.begin((absent, *(len(rewards.get(k, ())) for k in (ACCURACY, MARGIN)))):
            return
        plt = self.plt
        if not rewards.get(ACCURACY) and not rewards.get(MARGIN):
            plt.title(absent or "no DPO steps yet")
            self.refresh()
            return
        title = []
        top = max(progress.total_steps, progress.step)
        plt.xlim(0, top * 1.02)
        plt.xticks(*ticks(top))
        if rewards.get(ACCURACY):
            steps, values = thin(rewards[ACCURACY], self.size.width * 2)
            plt.plot(steps, values, marker="braille", color=GREEN)
            plt.ylim(0, 1, yside="left")
            title.append(f"acc {values[-1]:.2f}")
        if rewards.get(MARGIN):
            steps, values = thin(rewards[MARGIN], self.size.width * 2)
            plt.plot(steps, values, marker="braille", color=AMBER, yside="right")
            title.append(f"margin {values[-1]:+.3f}")
        plt.title("  ".join(title))
        self.refresh()
