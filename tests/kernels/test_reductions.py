"""The channel reductions of product_map and saliency against an independent numpy float64 oracle.

The other map tests compare an op with its own torch reference run in float64; here the oracle
shares no code with the ops: numpy, float64 from the same input values, each reduction written out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrstream.kernels import REDUCTIONS, SALIENCY_REDUCTIONS, product_map, saliency
from tests.kernels._cases import BACKENDS, TOLERANCE, f32, make_nchw

NUMPY_REDUCE = {
    "sum": lambda p: p.sum(axis=1),
    "abs_sum": lambda p: np.abs(p).sum(axis=1),
    "l2": lambda p: np.sqrt((p * p).sum(axis=1)),
    "max_abs": lambda p: np.abs(p).max(axis=1),
}

SHAPES = [
    (2, 5, 4, 3),  # few channels: the 4x512 tile, one channel loop step with a tail
    (1, 70, 3, 2),  # 70 channels: the 64x32 tile's channel loop runs twice, the second a tail
]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _assert_matches_numpy(got: tuple[torch.Tensor, torch.Tensor], want_map: np.ndarray) -> None:
    """``values * scale`` is the map and ``scale`` its per-example max |value| (1 if all zero)."""
    values, scale = (_numpy(t) for t in got)
    amax = np.abs(want_map).reshape(len(want_map), -1).max(axis=1)
    np.testing.assert_allclose(scale, np.where(amax == 0, 1.0, amax), **TOLERANCE[f32])
    np.testing.assert_allclose(values * scale[:, None, None], want_map, rtol=1e-5, atol=1e-5 * amax.max())


def test_the_oracle_knows_every_reduction():
    assert set(NUMPY_REDUCE) == set(REDUCTIONS) >= set(SALIENCY_REDUCTIONS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_product_map(backend, reduce, shape):
    x = make_nchw(shape, f32, "contiguous", seed=1)
    g = make_nchw(shape, f32, "channels_last", seed=2)
    got = product_map(x, g, reduce, f32, backend=backend)
    _assert_matches_numpy(got, NUMPY_REDUCE[reduce](_numpy(x) * _numpy(g)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", SALIENCY_REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_saliency(backend, reduce, shape):
    g = make_nchw(shape, f32, "contiguous", seed=3)
    got = saliency(g, reduce, f32, backend=backend)
    _assert_matches_numpy(got, NUMPY_REDUCE[reduce](np.abs(_numpy(g))))
