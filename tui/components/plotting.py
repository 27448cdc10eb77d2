"""Small helpers shared by the plots."""

from __future__ import annotations

import numpy as np


def thin(points: list[tuple[float, float]], most: int) -> tuple[list[float], list[float]]:
    """At most about `most` points, evenly strided and always keeping the last, as (xs, ys).

    A terminal plot has a few hundred braille columns; thousands of steps only cost redraw time."""
    stride = max(1, len(points) // max(most, 1))
    kept = points[::stride]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return [p[0] for p in kept], [p[1] for p in kept]


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
