"""Checks shared by the map-op tests (product_map, saliency, grad_cam, layer_maps).

Every map op returns ``(values, scale)``; it is compared with the float64 evaluation of its torch
reference (on CPU, see ``_cases.f64``): the scale, the normalised values (up to the output dtype's
rounding) and the reconstruction ``values * scale`` against the float64 map.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels._cases import ALL_LAYOUTS, BACKENDS, SMALL_SHAPES, TOLERANCE, f32, make_nchw

# One unit in the last place at 1.0: values lie in [-1, 1], so this bounds their output rounding.
OUT_ULP = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23}

# Tiny power-of-two (BLOCK_C, BLOCK_P) for the fuzz tests (see ``_launches.forced_blocks``).
SMALL_BLOCKS = st.sampled_from([(1, 2), (2, 4), (4, 2)])


@st.composite
def small_inputs(draw: st.DrawFn, count: int) -> tuple[list[torch.Tensor], tuple[int, int]]:
    """``count`` float32 ``[N,C,H,W]`` tensors of one small shape, each in a layout of its own,
    and a tiny tile to force: the fuzz tests' inputs."""
    shape, seed = draw(SMALL_SHAPES), draw(st.integers(0, 2**16))
    layouts = [draw(st.sampled_from(ALL_LAYOUTS)) for _ in range(count)]
    return [make_nchw(shape, f32, layout, seed=seed + i) for i, layout in enumerate(layouts)], draw(SMALL_BLOCKS)


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


def fuzz(max_examples: int, **strategies: st.SearchStrategy):
    """The fuzz tests' decorators: both backends, ``strategies`` drawn by hypothesis, no deadline
    (the interpreter's first launch of a kernel is slow)."""
    def decorate(test):
        test = settings(max_examples=max_examples, deadline=None)(test)
        return pytest.mark.parametrize("backend", BACKENDS)(given(**strategies)(test))
    return decorate
