"""Gradient visualisation: attribution maps overlaid on the example they explain.

Every image is drawn onto the same unit square, so a 7×7 Grad-CAM, a 224×224 input map and a
64×64 thumbnail line up without resizing code and matplotlib resamples each once, to the output
pixels. The overlay's opacity follows the square root of the normalised magnitude (Captum's
``alpha_scaling`` idea, lifted so that sparse maps stay visible), so weak regions show the example
rather than a wash of colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.patheffects import withStroke
from PIL import Image

from attrstream.engine.render._canvas import EXTENT, FigureLike, image_grid, show_image
from attrstream.engine.render.normalize import normalize_attr, sign_for

SIGNED_CMAP = "RdBu_r"
MAGNITUDE_CMAP = "inferno"
_MAX_ALPHA = 0.85


def _draw_mask(ax: Axes, mask: np.ndarray) -> None:
    h, w = mask.shape
    xs, ys = (np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h
    if mask.any() and not mask.all():
        contour = ax.contour(xs, ys, mask, levels=[0.5], colors="white", linewidths=0.9)
        contour.set_path_effects([withStroke(linewidth=2.2, foreground="black")])  # visible on any colour


def _note_all_zero(ax: Axes) -> None:
    """Say so in a panel whose map is zero everywhere, instead of leaving it looking blank."""
    ax.text(0.5, 0.5, "all zero", transform=ax.transAxes, ha="center", va="center", fontsize=7,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "linewidth": 0})


def normalized_map(
    name: str, maps: np.ndarray, *, sign: str | None = None, outlier_perc: float = 2, shared: bool = False
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``maps [n, h, w]`` as every reader draws them: ``(normed in [-1, 1], thresholds [n], signed)``.

    The sign defaults to the map kind's (:func:`sign_for`); ``signed`` picks the colour map.
    """
    sign = sign or sign_for(name, maps)
    normed, thresholds = normalize_attr(maps, sign, outlier_perc, shared=shared)
    return normed, thresholds, sign == "all"


def map_colors(signed: bool) -> tuple[Colormap, Normalize]:
    """Diverging colours for signed maps, sequential ones for magnitudes."""
    return colormaps[SIGNED_CMAP if signed else MAGNITUDE_CMAP], Normalize(-1 if signed else 0, 1)


def map_rgba(normed: np.ndarray, signed: bool) -> np.ndarray:
    """RGBA floats of a normalised map; opacity grows with the square root of the magnitude."""
    cmap, norm = map_colors(signed)
    rgba = cmap(norm(normed))
    rgba[..., 3] = np.sqrt(np.clip(np.abs(normed), 0, 1)) * _MAX_ALPHA
    return rgba


def overlay(ax: Axes, thumbnail: np.ndarray, normed: np.ndarray, signed: bool) -> None:
    """Draw one normalised map (values in [-1, 1]) over a grey copy of ``thumbnail``."""
    show_image(ax, thumbnail.mean(axis=-1), cmap="gray", vmin=0, vmax=255)
    coarse = normed.shape[0] < thumbnail.shape[0]
    ax.imshow(map_rgba(normed, signed), extent=EXTENT, interpolation="bilinear" if coarse else "antialiased")


def overlay_image(thumbnail: np.ndarray, normed: np.ndarray, signed: bool) -> np.ndarray:
    """The overlay of :func:`overlay` as pixels: uint8 ``[h, w, 3]`` at the thumbnail's size.

    The map is resampled bilinearly to the thumbnail (antialiased when it shrinks), for viewers
    that take finished images (TensorBoard).
    """
    h, w = thumbnail.shape[:2]
    resized = np.asarray(Image.fromarray(normed.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    rgba = map_rgba(resized, signed)
    grey = np.repeat(thumbnail.mean(axis=-1, keepdims=True) / 255.0, 3, axis=-1)
    alpha = rgba[..., 3:]
    return np.round((rgba[..., :3] * alpha + grey * (1 - alpha)) * 255).astype(np.uint8)


def attribution_grid(
    thumbnails: np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    signs: Mapping[str, str] | None = None,
    outlier_perc: float = 2,
    shared_scale: bool = False,
    masks: np.ndarray | None = None,
    row_titles: Sequence[str] | None = None,
    fig: FigureLike | None = None,
) -> FigureLike:
    """Rows of examples: the input, then each named map ``[n, h, w]`` normalised and overlaid.

    ``signs`` overrides the per-map sign (default: :func:`sign_for`); signed maps use a
    diverging colour map, magnitudes a sequential one. With ``shared_scale`` each column is
    normalised by one threshold over all its examples, printed in the column title.
    ``masks [n, H, W]`` (ground-truth objects) are outlined on the inputs.
    """
    names = list(maps)
    n, cols = len(thumbnails), len(names) + 1
    fig, axes = image_grid(fig, [1.5] * cols, [1.5] * n + [0.12], gap_w=0.25, gap_h=0.1, left=0.35, top=0.75, bottom=0.3)
    axes[n, 0].set_axis_off()
    for i in range(n):
        show_image(axes[i, 0], thumbnails[i], "input" if i == 0 else None)
        if masks is not None:
            _draw_mask(axes[i, 0], masks[i])
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
    for j, name in enumerate(names, start=1):
        normed, thresholds, signed = normalized_map(name, maps[name], sign=(signs or {}).get(name),
                                                    outlier_perc=outlier_perc, shared=shared_scale)
        cmap, norm = map_colors(signed)
        for i in range(n):
            overlay(axes[i, j], thumbnails[i], normed[i], signed)
            if not np.any(maps[name][i]):
                _note_all_zero(axes[i, j])
        scale = f"\n±{abs(thresholds[0]):.3g}" if shared_scale and n else ""
        axes[0, j].set_title(f"{name}{scale}", fontsize=8)
        bar = fig.colorbar(ScalarMappable(norm, cmap), cax=axes[n, j], orientation="horizontal")
        bar.set_ticks([-1, 0, 1] if signed else [0, 0.5, 1])
        bar.ax.tick_params(labelsize=7)
    clip = f"clipped at {100 - outlier_perc:g}% of |map| mass"
    fig.suptitle(f"Attributions ({'shared' if shared_scale else 'per-example'} scale, {clip})", fontsize=10)
    return fig
