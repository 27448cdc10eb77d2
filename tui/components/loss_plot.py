"""A live loss curve for one training stage (SFT or DPO), redrawn only when it has new points."""

from __future__ import annotations

from tui.components.plotting import BLUE, PINK, StepPlot, thin, ticks
from tui.runstate import StageProgress

STAGE_TITLES = {"sft": "SFT loss", "dpo": "DPO loss"}


class LossPlot(StepPlot):
    """Loss against optimizer step, the x axis spanning the stage's planned steps."""

    def __init__(self, stage: str, **kwargs):
        super().__init__(**kwargs)
        self.stage = stage
        self.border_title = STAGE_TITLES[stage]

    def show(self, progress: StageProgress | None, absent: str | None = None) -> None:
        """Redraw with the stage's progress; `absent` says why a run has no such stage."""
        if not self.begin((absent,) if progress is None else (len(progress.loss), progress.total_steps)):
            return
        plt = self.plt
        if progress is None or not progress.loss:
            plt.title(absent or "waiting for the first step")
        else:
            steps, losses = thin(progress.loss, self.size.width * 2)
            plt.plot(steps, losses, marker="braille", color=BLUE if self.stage == "sft" else PINK)
            plt.title(f"last {progress.loss[-1][1]:.4f} at step {progress.loss[-1][0]}")
            top = max(progress.total_steps, progress.loss[-1][0])
            plt.xlim(0, top * 1.02)  # a little room: a point on the last step would sit on the frame
            plt.xticks(*ticks(top))
        self.refresh()
