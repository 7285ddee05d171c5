"""Input visualisation: the stored thumbnails, as the model's examples looked."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from attrstream.engine.render._canvas import FigureLike, class_name, image_grid, show_image


def thumbnail_grid(
    thumbnails: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    class_names: Sequence[str] | None = None,
    indices: np.ndarray | None = None,
    columns: int = 8,
    fig: FigureLike | None = None,
) -> FigureLike:
    """A grid of thumbnails ``uint8 [n, h, w, 3]``, each titled with its label and dataset index."""
    n = len(thumbnails)
    cols = max(1, min(columns, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = image_grid(fig, [1.3] * cols, [1.3] * rows)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        parts = [] if indices is None else [f"#{int(indices[i])}"]
        if labels is not None:
            parts.append(class_name(int(labels[i]), class_names))
        show_image(ax, thumbnails[i], " ".join(parts) or None)
    fig.suptitle(f"Inputs ({n} examples)")
    return fig
