"""Checks shared by the map-op tests (product_map, saliency, grad_cam, layer_maps).

Every map op returns ``(values, scale)``; it is compared with the float64 evaluation of its torch
reference (on CPU, see ``_cases.f64``): the scale, the normalised values (up to the output dtype's
rounding) and the reconstruction ``values * scale`` against the float64 map.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

import torch
from hypothesis import strategies as st

from attrstream.kernels import _maps
from tests.kernels._cases import TOLERANCE

# One unit in the last place at 1.0: values lie in [-1, 1], so this bounds their output rounding.
OUT_ULP = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23}

# Tiny power-of-two (BLOCK_C, BLOCK_P) for the fuzz tests (see ``forced_blocks``).
SMALL_BLOCKS = st.sampled_from([(1, 2), (2, 4), (4, 2)])


def assert_map_matches(
    got: tuple[torch.Tensor, torch.Tensor],
    want: tuple[torch.Tensor, torch.Tensor],
    in_dtype: torch.dtype,
    out_dtype: torch.dtype,
) -> None:
    """``got`` from an op; ``want`` from its reference on float64 inputs with float64 output."""
    values, scale = (t.cpu() for t in got)
    want_values, want_scale = want
    assert values.dtype == out_dtype and scale.dtype == torch.float32
    assert values.shape == want_values.shape and scale.shape == want_scale.shape
    tol = TOLERANCE[in_dtype]
    torch.testing.assert_close(scale.double(), want_scale, equal_nan=True, **tol)
    value_atol = tol["atol"] + OUT_ULP[out_dtype]
    torch.testing.assert_close(values.double(), want_values, equal_nan=True, rtol=tol["rtol"], atol=value_atol)
    want_map = want_values * want_scale[:, None, None]
    finite = torch.isfinite(want_map)
    error = (values.double() * scale.double()[:, None, None] - want_map).abs()
    bound = value_atol * want_scale[:, None, None] + tol["rtol"] * want_map.abs()
    assert bool((error[finite] <= bound[finite]).all()), f"max reconstruction error {error[finite].max()}"


@contextlib.contextmanager
def forced_blocks(blocks: tuple[int, int] | None) -> Iterator[None]:
    """Tiny (BLOCK_C, BLOCK_P) so that channel and space loop tails run on small shapes."""
    with mock.patch.object(_maps, "FORCED_BLOCKS", blocks):
        yield


@contextlib.contextmanager
def no_map_launch() -> Iterator[None]:
    """Any launch of the map kernels fails inside this block (empty inputs must not launch)."""
    with mock.patch.object(_maps, "_channel_maps_kernel", None), mock.patch.object(_maps, "_normalize_kernel", None):
        yield
