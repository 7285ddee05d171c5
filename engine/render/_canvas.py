"""Figure plumbing shared by the figure modules: no pyplot, so no global state and no GUI backend.

Figures are built from :class:`matplotlib.figure.Figure` directly; saving goes through the Agg
canvas that ``Figure.savefig`` attaches on its own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

FigureLike = Figure | SubFigure

# A unit square in data coordinates, y down: every image (thumbnail, full-size map, coarse layer
# map, mask) is drawn onto it, so matplotlib resamples each one straight to the output pixels.
EXTENT = (0.0, 1.0, 1.0, 0.0)


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained", dpi=100)


def axes_or_new(ax: Axes | None, width: float = 6.0, height: float = 4.0) -> Axes:
    """The caller's axes, or the only axes of a fresh figure (the ``ax=None`` convention)."""
    return new_figure(width, height).add_subplot() if ax is None else ax


def figure_or_new(fig: FigureLike | None, width: float, height: float) -> FigureLike:
    """The caller's (sub)figure to draw a multi-panel layout into, or a fresh one."""
    return new_figure(width, height) if fig is None else fig


def image_grid(
    fig: FigureLike | None,
    widths: Sequence[float],
    heights: Sequence[float],
    *,
    gap_w: float = 0.1,
    gap_h: float = 0.3,
    left: float = 0.1,
    right: float = 0.1,
    top: float = 0.65,
    bottom: float = 0.1,
) -> tuple[FigureLike, np.ndarray]:
    """A grid of axes laid out in inches (column ``widths``, row ``heights``, gaps and margins).

    Grids of images skip constrained layout: it measures every panel's title and ticks at save
    time, about half the cost of a thumbnail grid, while these decorations have fixed sizes. A
    given (sub)figure keeps its size; the margins then scale with it.
    """
    width = left + right + sum(widths) + gap_w * (len(widths) - 1)
    height = top + bottom + sum(heights) + gap_h * (len(heights) - 1)
    fig = Figure(figsize=(width, height), dpi=100) if fig is None else fig
    grid = fig.add_gridspec(
        len(heights), len(widths), width_ratios=widths, height_ratios=heights,
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
        wspace=gap_w / float(np.mean(widths)), hspace=gap_h / float(np.mean(heights)),
    )
    axes = np.array([[fig.add_subplot(grid[i, j]) for j in range(len(widths))] for i in range(len(heights))])
    return fig, axes


def class_name(index: int, class_names: Sequence[str] | None) -> str:
    """A class index as shown to the reader: its name when known, ``"?"`` for unknown labels (-1)."""
    if index < 0:
        return "?"
    if class_names is not None and index < len(class_names):
        return str(class_names[index])
    return str(index)


def show_image(ax: Axes, image: np.ndarray, title: str | None = None, **kwargs) -> None:
    """Draw an RGB or single-channel image on the unit square without ticks."""
    ax.imshow(image, extent=EXTENT, **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG, whole or not at all.

    There is nothing to close: figures made without pyplot are never registered globally, so
    the caller dropping its reference frees it (``Figure.clear`` would only cost time).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
