"""Localization scores of attribution maps against ground-truth object masks (pure numpy).

Maps are ``[N, H, W]`` (any float dtype, signed or not: every score uses ``|map|``), masks
``[N, H, W]`` bool (or 0/1). A map with a NaN, or with no mass at all (all zeros), carries no
evidence of where the object is (nor does one with an inf): it counts as a miss in the pointing game and as 0 energy inside
the mask, so a broken method scores below chance instead of disappearing from the mean.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from attrstream.engine.errors import ConfigError


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """bool ``[N]``: whether the arg-max of ``|map|`` lies inside the mask (ties: first in C order)."""
    magnitude, inside = _check(maps, masks)
    flat = magnitude.reshape(len(magnitude), -1)
    hit = inside.reshape(len(inside), -1)[np.arange(len(flat)), flat.argmax(axis=1)]
    return hit & _informative(flat)


def energy_fraction(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """float64 ``[N]``: ``Σ|map|`` inside the mask over ``Σ|map|``."""
    magnitude, inside = _check(maps, masks)
    flat = magnitude.reshape(len(magnitude), -1)
    total = flat.sum(axis=1)
    within = np.where(inside.reshape(len(inside), -1), flat, 0.0).sum(axis=1)
    ok = _informative(flat)
    return np.where(ok, within / np.where(ok, total, 1.0), 0.0)


def chance_level(masks: np.ndarray) -> np.ndarray:
    """float64 ``[N]``: the mask's area fraction, both scores' expectation for a map with no information."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1] * masks.shape[2] == 0:
        raise ConfigError(f"Expected masks shaped [N, H, W] with H, W >= 1, got shape {masks.shape}.")
    return masks.astype(bool).reshape(len(masks), -1).mean(axis=1, dtype=np.float64)


def upsample_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[N, h, w]`` maps to ``size`` (half-pixel centres, as ``align_corners=False``).

    Layer maps (Grad-CAM at a 16×16 block) are scored against full-resolution masks this way.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ConfigError(f"Expected maps shaped [N, h, w], got shape {maps.shape}.")
    rows = _interpolation_matrix(maps.shape[1], size[0])
    cols = _interpolation_matrix(maps.shape[2], size[1])
    return np.einsum("yh,nhw,xw->nyx", rows, maps, cols)


def localization_table(maps_by_method: Mapping[str, np.ndarray], masks: np.ndarray) -> list[dict]:
    """One row per method: ``method``, mean ``pointing``, mean ``energy``, ``chance`` (mean mask area), ``n``.

    Maps at a coarser resolution than the masks (layer maps) are upsampled bilinearly first.
    """
    masks = np.asarray(masks)
    chance = float(chance_level(masks).mean()) if len(masks) else float("nan")
    rows = []
    for method, maps in maps_by_method.items():
        maps = np.asarray(maps)
        if maps.ndim == 3 and masks.ndim == 3 and maps.shape[1:] != masks.shape[1:]:
            maps = upsample_maps(maps, masks.shape[1:])
        rows.append({
            "method": method,
            "pointing": float(pointing_game(maps, masks).mean()) if len(maps) else float("nan"),
            "energy": float(energy_fraction(maps, masks).mean()) if len(maps) else float("nan"),
            "chance": chance,
            "n": len(maps),
        })
    return rows


def _check(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps, masks = np.asarray(maps), np.asarray(masks)
    if maps.ndim != 3 or maps.shape != masks.shape or maps.shape[1] * maps.shape[2] == 0:
        raise ConfigError(f"Expected maps and masks of one shape [N, H, W] with H, W >= 1, got maps {maps.shape} and masks "
                          f"{masks.shape} (upsample layer maps with upsample_maps first).")
    return np.abs(maps.astype(np.float64, copy=False)), masks.astype(bool, copy=False)


def _informative(flat_magnitude: np.ndarray) -> np.ndarray:
    """Per row: finite, non-zero total mass (a NaN or inf anywhere makes the total non-finite)."""
    total = flat_magnitude.sum(axis=1)
    return np.isfinite(total) & (total > 0)


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` weights of 1-D linear interpolation at half-pixel centres, edges clamped."""
    centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    centres = np.clip(centres, 0, n_in - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    frac = centres - low
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), low), 1 - frac)
    np.add.at(weights, (np.arange(n_out), high), frac)
    return weights
