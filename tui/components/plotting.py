"""What the plots share: one palette, point thinning, count labels and iso-score crossings.

Colours are RGB, not ANSI names: Textual maps ANSI names through its theme (plotext's "yellow"
can come out purple), and the legends in the border subtitles must match the lines exactly."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

RGB = tuple[int, int, int]
BLUE: RGB = (88, 166, 255)
PINK: RGB = (219, 97, 162)
GREEN: RGB = (63, 185, 80)
AMBER: RGB = (210, 153, 34)
GREY: RGB = (110, 118, 129)
CYAN: RGB = (86, 212, 221)
RED: RGB = (248, 81, 73)
YELLOW: RGB = (227, 179, 65)
WHITE: RGB = (230, 237, 243)
GRADIENT: tuple[RGB, ...] = ((56, 139, 253), (63, 185, 170), (63, 185, 80), (163, 190, 60), (227, 179, 65),
                             (240, 136, 62))


def swatch(color: RGB, text: str) -> str:
    """`text` in `color`, as Textual markup for a border subtitle legend."""
    return "[#{:02x}{:02x}{:02x}]{}[/]".format(*color, text)


def thin(points: list[tuple[float, float]], most: int) -> tuple[list[float], list[float]]:
    """At most about `most` points, evenly strided and always keeping the last, as (xs, ys).

    A terminal plot has a few hundred braille columns; thousands of steps only cost redraw time."""
    stride = max(1, len(points) // max(most, 1))
    kept = points[::stride]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return [p[0] for p in kept], [p[1] for p in kept]


def ticks(top: float, count: int = 5) -> tuple[list[float], list[str]]:
    """`count` whole-number ticks from 0 to `top` for a count axis (steps, examples), labelled compactly."""
    values = sorted({round(top * k / (count - 1)) for k in range(count)})
    return [float(v) for v in values], [compact(v) for v in values]


def compact(value: float) -> str:
    """An axis label for a count: 950, 1.5k, 12k, 1.2M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            text = f"{value / size:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:.0f}"


def crossings(xs: np.ndarray, ys: np.ndarray, z: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Points where the surface z[i, j] (at xs[i], ys[j]) crosses `level`, by linear interpolation
    along every grid column and row: on a fine grid the dots draw the iso-score curve."""
    def cuts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hit = ((a - level) * (b - level) <= 0) & (a != b)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (level - a) / (b - a)
        return hit, t

    hit, t = cuts(z[:, :-1], z[:, 1:])  # along n_pft, at each n_sft
    i, j = np.nonzero(hit)
    along_y = (xs[i], ys[j] + t[i, j] * (ys[j + 1] - ys[j]))
    hit, t = cuts(z[:-1, :], z[1:, :])  # along n_sft, at each n_pft
    i, j = np.nonzero(hit)
    along_x = (xs[i] + t[i, j] * (xs[i + 1] - xs[i]), ys[j])
    return np.concatenate([along_y[0], along_x[0]]), np.concatenate([along_y[1], along_x[1]])


class StepPlot(PlotextPlot):
    """A plot against training step, redrawn only when what it shows has changed: the run screen
    ticks four times a second, and most ticks bring nothing new for a given panel."""

    _drawn: object = None

    def on_mount(self) -> None:
        self.show(None)  # an empty frame with its title until the first event

    def show(self, progress, absent: str | None = None) -> None:
        raise NotImplementedError

    def begin(self, key: object) -> bool:
        """Start a fresh figure for `key`; False (and nothing to do) when `key` is already drawn."""
        if key == self._drawn:
            return False
        self._drawn = key
        self.plt.clear_figure()
        self.plt.xlabel("step")
        return True
