"""Feature visualisation by data set examples: what the most active channels of a layer respond to."""

from __future__ import annotations

import numpy as np

from attrstream.engine.render._canvas import FigureLike, image_grid, show_image


def top_examples_grid(
    thumbnails: np.ndarray,
    values: np.ndarray,
    example_ids: np.ndarray,
    channels: np.ndarray,
    *,
    layer: str = "",
    fig: FigureLike | None = None,
) -> FigureLike:
    """One row per channel: its top examples' thumbnails ``[r, k, h, w, 3]``, best first.

    ``values [r, k]`` (the examples' channel means) and ``example_ids [r, k]`` title each
    thumbnail; non-finite values mark empty slots (fewer examples than ``k``).
    """
    rows, k = values.shape
    fig, axes = image_grid(fig, [1.2] * max(k, 1), [1.2] * max(rows, 1), left=0.35)
    for r in range(rows):
        for j in range(k):
            ax = axes[r, j]
            if not np.isfinite(values[r, j]):
                ax.set_axis_off()
                continue
            show_image(ax, thumbnails[r, j], f"#{int(example_ids[r, j])}: {values[r, j]:.3g}")
        axes[r, 0].set_ylabel(f"channel {int(channels[r])}", fontsize=8)
    fig.suptitle(f"Top examples of the most active channels{f' of {layer}' if layer else ''} (by channel mean)",
                 fontsize=10)
    return fig
