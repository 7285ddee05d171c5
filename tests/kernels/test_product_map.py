"""product_map: both backends against the float64 evaluation of the reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

from attrstream.kernels import REDUCTIONS, KernelInputError, product_map
from attrstream.kernels._product_map import product_map_torch
from tests.kernels._cases import BACKENDS, DEVICE, bf16, f16, f32, f64, make_nchw
from tests.kernels._launches import forced_blocks, no_map_launch
from tests.kernels._map_checks import assert_map_matches, fuzz, small_inputs

CASES = [
    # (N, C, H, W), x layout, g layout, dtype, reduce, out dtype
    ((1, 1, 1, 1), "contiguous", "contiguous", f32, "sum", f16),  # one element: every loop is a tail
    ((3, 3, 56, 56), "contiguous", "contiguous", f32, "abs_sum", f16),  # image: 4x512 tile, space tail
    ((3, 3, 56, 56), "channels_last", "channels_last", f16, "l2", bf16),  # C <= 4 channels_last: 4x512
    ((3, 64, 13, 11), "channels_last", "channels_last", bf16, "max_abs", f32),  # 64x32 tile, unit C stride
    ((1, 257, 7, 5), "contiguous", "channels_last", f32, "sum", f16),  # mixed layouts; channel tail 257 % 64
    ((3, 257, 7, 5), "strided_view", "contiguous", f16, "max_abs", f16),  # W stride 2 still collapses
    ((3, 64, 13, 11), "crop", "channels_last", f32, "l2", f32),  # crop: one program row per image row
    ((1, 3, 7, 5), "crop", "crop", bf16, "abs_sum", bf16),  # general strides in both tensors
    ((3, 64, 56, 56), "contiguous", "strided_view", f16, "sum", f16),  # 16 channel blocks of a long tile
]


def _reference(x: torch.Tensor, g: torch.Tensor, reduce: str) -> tuple[torch.Tensor, torch.Tensor]:
    return product_map_torch(f64(x), f64(g), reduce, torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "x_layout", "g_layout", "dtype", "reduce", "out_dtype"), CASES)
def test_matches_float64_reference(backend, shape, x_layout, g_layout, dtype, reduce, out_dtype):
    x = make_nchw(shape, dtype, x_layout, seed=1)
    g = make_nchw(shape, dtype, g_layout, seed=2)
    got = product_map(x, g, reduce, out_dtype, backend=backend)
    assert_map_matches(got, _reference(x, g, reduce), dtype, out_dtype)


@fuzz(12, inputs=small_inputs(2), reduce=st.sampled_from(REDUCTIONS))
def test_fuzz_shapes_layouts_small_blocks(backend, inputs, reduce):
    (x, g), blocks = inputs
    with forced_blocks(blocks):
        got = product_map(x, g, reduce, f32, backend=backend)
    assert_map_matches(got, _reference(x, g, reduce), f32, f32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_returns_empty_without_launch(backend):
    x = torch.randn(0, 4, 5, 3, device=DEVICE)
    with no_map_launch():
        values, scale = product_map(x, x, "sum", f16, backend=backend)
    assert values.shape == (0, 5, 3) and values.dtype == f16
    assert scale.shape == (0,) and scale.dtype == f32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_all_zero_map_has_scale_one(backend, reduce):
    x = make_nchw((3, 5, 7, 5), f32, "contiguous")
    g = make_nchw((3, 5, 7, 5), f32, "channels_last", seed=1)
    x[1] = 0.0
    values, scale = product_map(x, g, reduce, f16, backend=backend)
    assert scale[1].item() == 1.0
    assert bool((values[1] == 0).all())
    assert bool((scale[[0, 2]] != 1.0).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf / inf in numpy
def test_non_finite_stays_in_its_example(backend, reduce, bad):
    shape = (3, 70, 6, 5)  # two channel blocks of the 64x32 tile: the bad value is in the tail
    x = make_nchw(shape, f32, "contiguous")
    g = make_nchw(shape, f32, "contiguous", seed=1)
    clean = product_map(x, g, reduce, f16, backend=backend)
    x[1, 66, 2, 3] = bad
    got = product_map(x, g, reduce, f16, backend=backend)
    assert_map_matches(got, _reference(x, g, reduce), f32, f16)
    for clean_part, part in zip(clean, got, strict=True):
        assert torch.equal(clean_part[[0, 2]], part[[0, 2]])
    assert not bool(torch.isfinite(got[1][1]).all())


def test_scale_keeps_tiny_gradients_in_float16():
    # Raw gradients of 1e-9 underflow in float16; the scaled values keep full relative precision.
    x = make_nchw((2, 3, 7, 5), f32, "contiguous")
    g = make_nchw((2, 3, 7, 5), f32, "contiguous", seed=1) * 1e-9
    values, scale = product_map_torch(x, g, "sum", f16)
    assert bool((values.abs().amax((1, 2)) == 1).all())
    assert_map_matches((values, scale), _reference(x, g, "sum"), f32, f16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rejects_float64_on_triton_only(backend):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, device=DEVICE)
    if backend == "triton":
        with pytest.raises(KernelInputError, match="Expected map inputs of dtype float32, float16, bfloat16"):
            product_map(x, x, backend=backend)
    else:
        assert product_map(x, x, backend=backend)[0].shape == (2, 4, 4)


@pytest.mark.parametrize(
    ("x", "g", "kwargs", "message"),
    [
        (torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 5), {}, r"expected g of the same shape as x \(\(2, 3, 4, 4\)\), got \(2, 3, 4, 5\)"),
        (torch.ones(2, 3, 4), torch.ones(2, 3, 4), {}, r"expected x of shape \[N, C, H, W\], got shape \(2, 3, 4\)"),
        (torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4, dtype=f16), {}, "expected g of the same dtype as x"),
        (torch.ones(2, 3, 4, 4, dtype=torch.int32), torch.ones(2, 3, 4, 4), {}, "expected x of a floating dtype"),
        (torch.ones(2, 0, 4, 4), torch.ones(2, 0, 4, 4), {}, "expected x with C, H, W >= 1"),
        (torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4), {"reduce": "mean"}, r"expected reduce in \(sum, abs_sum, l2, max_abs\), got 'mean'"),
        (torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4), {"out_dtype": torch.int8}, "expected out_dtype float16"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_inputs_raise_config_error(backend, x, g, kwargs, message):
    with pytest.raises(KernelInputError, match=message):
        product_map(x.to(DEVICE), g.to(DEVICE), backend=backend, **kwargs)
