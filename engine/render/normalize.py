"""Attribution-map normalisation as Captum users know it (``visualization._normalize_attr``).

A map is first filtered by ``sign``, then divided by the value under which ``100 - outlier_perc``
percent of its absolute mass lies, and clipped to [-1, 1]: a few extreme pixels no longer wash out
the rest of the map. Thresholds are per example or, with ``shared=True``, one threshold over all
examples so that their colours compare. Unlike Captum, an all-zero map normalises to zeros
instead of failing an assertion: an empty map is a legitimate result (e.g. Grad-CAM of a
suppressed class).
"""

from __future__ import annotations

import numpy as np

from attrstream.engine.errors import ConfigError, close_matches

SIGNS = ("all", "positive", "negative", "absolute_value")

# Methods whose maps are non-negative by construction; everything else is signed.
_METHOD_SIGN = {"saliency": "absolute_value", "grad_cam": "positive"}


def cumulative_threshold(values: np.ndarray, percentile: float) -> float:
    """The smallest value below (or at) which ``percentile`` % of the total mass of ``values`` lies.

    ``values`` must be non-negative; non-finite entries are ignored. Same index rule as Captum's
    ``_cumulative_sum_threshold`` (accumulated in float64).
    """
    flat = values[np.isfinite(values)]
    if flat.size == 0:
        return 0.0
    sorted_vals = np.sort(flat, axis=None)
    cum = np.cumsum(sorted_vals, dtype=np.float64)
    i = int(np.searchsorted(cum, cum[-1] * 0.01 * percentile, side="left"))
    return float(sorted_vals[min(i, sorted_vals.size - 1)])


def check_sign(sign: str) -> None:
    if sign not in SIGNS:
        raise ConfigError(f"Expected sign in {', '.join(SIGNS)}, got {sign!r}.{close_matches(sign, SIGNS)}")


def check_outlier_perc(outlier_perc: float) -> None:
    if not 0 <= outlier_perc < 100:
        raise ConfigError(f"Expected outlier_perc in [0, 100) (percent of |map| mass clipped), got {outlier_perc!r}.")


def sign_for(method: str, maps: np.ndarray) -> str:
    """Default sign for a map kind: absolute for saliency, positive for Grad-CAM, else signed.

    Unknown methods whose maps hold no negative value are shown as absolute maps.
    """
    if method in _METHOD_SIGN:
        return _METHOD_SIGN[method]
    return "absolute_value" if maps.size and np.nanmin(maps) >= 0 else "all"


def normalize_attr(
    maps: np.ndarray, sign: str = "all", outlier_perc: float = 2, *, shared: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise maps ``[n, H, W]`` (or one ``[H, W]``) to [-1, 1]; returns ``(normed, thresholds [n])``.

    ``thresholds`` are in the maps' units (negative for ``sign="negative"``, as in Captum), so a
    caption can state what the colour bar's end means. A zero threshold leaves the map at zero.
    """
    check_sign(sign)
    check_outlier_perc(outlier_perc)
    single = maps.ndim == 2
    batch = np.asarray(maps[None] if single else maps, dtype=np.float64)
    if batch.ndim != 3:
        raise ConfigError(f"Expected maps of shape [n, H, W] or [H, W], got {maps.shape}.")
    if sign == "positive":
        batch = np.maximum(batch, 0)
    elif sign == "negative":
        batch = np.minimum(batch, 0)
    elif sign == "absolute_value":
        batch = np.abs(batch)
    magnitude = np.abs(batch)
    if shared:
        thresholds = np.full(len(batch), cumulative_threshold(magnitude, 100.0 - outlier_perc))
    else:
        thresholds = np.array([cumulative_threshold(m, 100.0 - outlier_perc) for m in magnitude])
    if sign == "negative":
        thresholds = -thresholds
    safe = np.where(thresholds == 0, 1.0, thresholds)[:, None, None]
    normed = np.where(thresholds[:, None, None] == 0, 0.0, np.clip(batch / safe, -1, 1))
    return (normed[0] if single else normed), thresholds
