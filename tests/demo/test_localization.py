"""Localization scores on hand-built maps and masks: hits, misses, and maps with no evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrstream.engine.demo.localization import (
    chance_level,
    energy_fraction,
    localization_table,
    pointing_game,
    upsample_maps,
)
from attrstream.engine.errors import ConfigError


def _masks() -> np.ndarray:
    masks = np.zeros((5, 4, 4), dtype=bool)
    masks[:, 1:3, 1:3] = True  # a 2×2 object in the middle: area 4 / 16
    return masks


def _maps() -> np.ndarray:
    maps = np.zeros((5, 4, 4))
    maps[0, 1, 2] = 3.0  # hit
    maps[0, 0, 0] = 1.0
    maps[1, 1, 1] = 1.0  # miss: larger |map| outside, and negative (scores use |map|)
    maps[1, 3, 3] = -2.0
    maps[2, 1, 1] = np.nan  # NaN anywhere: no evidence
    maps[2, 2, 2] = 5.0
    # maps[3] all zero: no evidence
    maps[4, 2, 2] = np.inf  # inf: no evidence either
    return maps


def test_pointing_game_hit_miss_nan_zero_inf():
    np.testing.assert_array_equal(pointing_game(_maps(), _masks()), [True, False, False, False, False])


def test_energy_fraction_exact_and_no_evidence_is_zero():
    np.testing.assert_allclose(energy_fraction(_maps(), _masks()), [0.75, 1 / 3, 0.0, 0.0, 0.0])


def test_energy_fraction_of_a_uniform_map_is_chance():
    masks = _masks()
    masks[1, 0, :] = True  # a different area: 8 / 16
    np.testing.assert_allclose(energy_fraction(np.ones(masks.shape), masks), chance_level(masks))
    np.testing.assert_allclose(chance_level(masks), [0.25, 0.5, 0.25, 0.25, 0.25])


def test_pointing_game_ties_take_the_first_position():
    masks = np.zeros((1, 2, 2), dtype=bool)
    masks[0, 1, 1] = True
    assert not pointing_game(np.ones((1, 2, 2)), masks)[0]
    masks[0, 0, 0] = True
    assert pointing_game(np.ones((1, 2, 2)), masks)[0]


def test_localization_table_rows_and_upsampled_layer_maps():
    masks = _masks()
    coarse = np.zeros((5, 2, 2))
    coarse[:, 0, 0] = 1.0  # upsampled to 4×4, the peak stays in the top-left corner: a miss
    rows = localization_table({"exact": _maps(), "coarse": coarse}, masks)
    assert [r["method"] for r in rows] == ["exact", "coarse"]
    assert rows[0] == {"method": "exact", "pointing": 0.2, "energy": pytest.approx((0.75 + 1 / 3) / 5),
                       "chance": 0.25, "n": 5}
    assert rows[1]["pointing"] == 0.0
    # Rows and columns of the upsampled corner weigh (1, .75, .25, 0): (.75 + .25)² of 2² inside.
    assert rows[1]["energy"] == pytest.approx(0.25)


def test_upsample_maps_matches_torch_bilinear():
    maps = np.random.default_rng(0).normal(size=(3, 5, 7))
    ours = upsample_maps(maps, (16, 12))
    ref = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(16, 12), mode="bilinear",
                                          align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("maps_shape, masks_shape", [
    ((5, 4, 4), (5, 4, 3)),  # different resolution: must be upsampled first
    ((5, 4, 4), (4, 4, 4)),  # different N
    ((4, 4), (4, 4)),  # no example axis
    ((2, 0, 4), (2, 0, 4)),  # empty image
])
def test_shape_mismatch_is_a_config_error(maps_shape, masks_shape):
    with pytest.raises(ConfigError, match="Expected maps and masks"):
        pointing_game(np.zeros(maps_shape), np.zeros(masks_shape, dtype=bool))
    with pytest.raises(ConfigError, match="Expected maps and masks"):
        energy_fraction(np.zeros(maps_shape), np.zeros(masks_shape, dtype=bool))
