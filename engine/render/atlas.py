"""The channel atlas: what a layer's channels detect, by optimized input and by data set examples.

Per channel (one row): the input optimized to excite it (``attrstream features``), the examples of
the data set that activate it most, and the examples where it mattered most to the decision (its
relevance, activation × gradient of the target score), each with its value. Reading a row left to
right separates what a channel responds to from what the model uses it for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attrstream.engine.render._canvas import FigureLike, image_grid, show_image

CELL = 1.15  # inches per image
GAP = 0.3  # inches between the blocks of a row


@dataclass(frozen=True)
class ExampleBlock:
    """One block of an atlas row: the top examples of each channel by some value.

    ``thumbnails [r, k, h, w, 3]``, ``values [r, k]`` and data set ``indices [r, k]``; a non-finite
    value marks an empty slot (fewer examples than ``k``).
    """

    title: str
    thumbnails: np.ndarray
    values: np.ndarray
    indices: np.ndarray


def channel_atlas(
    channels: np.ndarray,
    row_labels: Sequence[str],
    blocks: Sequence[ExampleBlock],
    *,
    optimized: np.ndarray | None = None,
    optimized_values: np.ndarray | None = None,
    title: str = "",
    fig: FigureLike | None = None,
) -> FigureLike:
    """One row per channel of ``channels``: its optimized input (when ``optimized [r, S, S, 3]`` is given;
    a NaN in ``optimized_values`` marks a channel without one), then each block's examples.

    ``row_labels`` name each row (channel and the value it was ranked by).
    """
    rows = len(channels)
    widths: list[float] = []
    headers: list[tuple[str, int, int]] = []  # (title, first column, columns) of the optimized column and every block
    if optimized is not None:
        headers.append(("optimized input", 0, 1))
        widths.append(CELL)
    firsts = []
    for block in blocks:
        if widths:
            widths.append(GAP)
        firsts.append(len(widths))
        headers.append((block.title, len(widths), max(block.values.shape[1], 1)))
        widths += [CELL] * max(block.values.shape[1], 1)
    fig, axes = image_grid(fig, widths, [CELL] * max(rows, 1), gap_h=0.35, left=1.25, top=1.2)
    for ax in axes.flat:
        ax.set_axis_off()
    for r in range(rows):
        if optimized is not None:
            ax = axes[r, 0]
            if optimized_values is not None and np.isfinite(optimized_values[r]):
                ax.set_axis_on()
                show_image(ax, optimized[r], f"activation {optimized_values[r]:.3g}")
            else:
                ax.text(0.5, 0.5, "not\noptimized", ha="center", va="center", fontsize=7, color="0.5",
                        transform=ax.transAxes)
        for block, first in zip(blocks, firsts, strict=True):
            for j in range(block.values.shape[1]):
                if np.isfinite(block.values[r, j]):
                    ax = axes[r, first + j]
                    ax.set_axis_on()
                    show_image(ax, block.thumbnails[r, j], f"#{int(block.indices[r, j])}: {block.values[r, j]:.3g}")
        axes[r, 0].text(-0.12, 0.5, row_labels[r], ha="right", va="center", fontsize=8, transform=axes[r, 0].transAxes)
    for name, first, count in headers:
        left, right = axes[0, first].get_position(), axes[0, first + count - 1].get_position()
        fig.text((left.x0 + right.x1) / 2, left.y1 + 0.35 * CELL / fig.get_figheight(), name, ha="center",
                 va="bottom", fontsize=9, weight="bold")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def optimized_grid(images: np.ndarray, channels: np.ndarray, values: np.ndarray, *, columns: int = 8,
                   title: str = "", fig: FigureLike | None = None) -> FigureLike:
    """Every optimized input ``images [K, S, S, 3]`` of a layer, ``columns`` per row, titled by channel and activation."""
    count = len(images)
    cols = max(1, min(columns, count))
    rows = max(1, -(-count // cols))
    fig, axes = image_grid(fig, [CELL] * cols, [CELL] * rows, gap_h=0.35, top=0.6)
    for i, ax in enumerate(axes.flat):
        if i < count:
            show_image(ax, images[i], f"ch {int(channels[i])}: {values[i]:.3g}")
        else:
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
