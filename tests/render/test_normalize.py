"""Attribution normalisation against Captum's ``_normalize_attr`` (the behaviour users know)."""

from __future__ import annotations

import numpy as np
import pytest
from captum.attr._utils.visualization import _cumulative_sum_threshold, _normalize_attr

from attrstream.engine.errors import ConfigError
from attrstream.engine.render.normalize import SIGNS, cumulative_threshold, normalize_attr, sign_for


def _maps(seed: int, shape: tuple[int, ...] = (5, 12, 9)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # heavy tails, so that the clipping percentile bites; float64 as Captum accumulates in the input dtype
    return rng.standard_t(2, shape) * rng.uniform(0.01, 100, (shape[0], 1, 1))


@pytest.mark.parametrize("sign", SIGNS)
@pytest.mark.parametrize("outlier_perc", [0.5, 2, 10, 37.5])
def test_per_example_matches_captum(sign: str, outlier_perc: float) -> None:
    maps = _maps(seed=int(outlier_perc * 10) + len(sign))
    normed, thresholds = normalize_attr(maps, sign, outlier_perc)
    for i, m in enumerate(maps):
        np.testing.assert_allclose(normed[i], _normalize_attr(m, sign, outlier_perc), rtol=1e-12, atol=0)
    assert np.all(thresholds <= 0) if sign == "negative" else np.all(thresholds >= 0)


@pytest.mark.parametrize("sign", SIGNS)
def test_shared_scale_is_captum_over_all_examples(sign: str) -> None:
    maps = _maps(seed=7)
    normed, thresholds = normalize_attr(maps, sign, 2, shared=True)
    # Captum on the examples stacked into one tall map: one threshold over all values
    expected = _normalize_attr(maps.reshape(-1, maps.shape[-1]), sign, 2).reshape(maps.shape)
    np.testing.assert_allclose(normed, expected, rtol=1e-12, atol=0)
    assert len(set(thresholds.tolist())) == 1


def test_single_map_and_threshold_index_rule() -> None:
    m = _maps(seed=3, shape=(1, 30, 30))[0]
    normed, _ = normalize_attr(m, "all", 2)
    assert normed.shape == m.shape
    values = np.abs(m)
    for perc in (0, 50, 98, 100):
        assert cumulative_threshold(values, perc) == _cumulative_sum_threshold(values, perc)


@pytest.mark.parametrize("sign", SIGNS)
def test_no_clipping_divides_by_the_max(sign: str) -> None:
    # Captum's own index rule fails here (IndexError) when rounding puts 1.0 × total above the last
    # cumulative sum; the threshold is then the largest value, which is what 0 % clipping means.
    maps = _maps(seed=11)
    _, thresholds = normalize_attr(maps, sign, 0)
    filtered = {"all": maps, "positive": np.maximum(maps, 0), "negative": np.minimum(maps, 0),
                "absolute_value": maps}[sign]
    expected = np.abs(filtered).reshape(len(maps), -1).max(1)
    np.testing.assert_array_equal(np.abs(thresholds), expected)


def test_zero_map_normalises_to_zero_where_captum_asserts() -> None:
    maps = np.zeros((2, 4, 4))
    maps[1, 0, 0] = 3.0
    normed, thresholds = normalize_attr(maps, "all", 2)
    assert thresholds[0] == 0 and np.all(normed[0] == 0)
    assert normed[1, 0, 0] == 1.0


def test_non_finite_values_do_not_poison_the_threshold() -> None:
    maps = np.ones((1, 4, 4))
    maps[0, 0, 0] = np.nan
    _, thresholds = normalize_attr(maps, "all", 2)
    assert thresholds[0] == 1.0


def test_invalid_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="absolute_value"):
        normalize_attr(np.ones((1, 2, 2)), "absolute", 2)
    with pytest.raises(ConfigError, match=r"outlier_perc in \[0, 100\)"):
        normalize_attr(np.ones((1, 2, 2)), "all", 100)
    with pytest.raises(ConfigError, match=r"\[n, H, W\]"):
        normalize_attr(np.ones(3), "all", 2)


def test_default_signs() -> None:
    signed = np.array([[[-1.0, 2.0]]])
    assert sign_for("saliency", signed) == "absolute_value"
    assert sign_for("grad_cam", signed) == "positive"
    assert sign_for("grad_x_input", np.abs(signed)) == "absolute_value"  # unknown kinds: by the data
    assert sign_for("grad_x_input", signed) == "all"
