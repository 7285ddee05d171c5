"""saliency: both backends against the float64 reference, and Captum's Saliency(abs=True)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from hypothesis import strategies as st

from attrstream.kernels import SALIENCY_REDUCTIONS, KernelInputError, saliency
from attrstream.kernels._saliency import saliency_torch
from tests.kernels._cases import BACKENDS, DEVICE, bf16, f16, f32, f64, make_nchw
from tests.kernels._launches import forced_blocks, no_map_launch
from tests.kernels._map_checks import assert_map_matches, fuzz, small_inputs

CASES = [
    # (N, C, H, W), layout, dtype, reduce, out dtype
    ((1, 1, 1, 1), "contiguous", f32, "max_abs", f16),  # one element: every loop is a tail
    ((3, 3, 56, 56), "contiguous", f16, "max_abs", f16),  # image gradient: 4x512 tile, space tail
    ((3, 3, 56, 56), "channels_last", bf16, "l2", bf16),  # C <= 4 channels_last: 4x512, unit C stride
    ((3, 64, 13, 11), "channels_last", f32, "abs_sum", f32),  # 64x32 tile, unit C stride
    ((1, 257, 7, 5), "strided_view", f16, "l2", f16),  # channel tail 257 % 64, W stride 2
    ((3, 3, 13, 11), "crop", f32, "max_abs", bf16),  # crop: one program row per image row
]


def _reference(g: torch.Tensor, reduce: str) -> tuple[torch.Tensor, torch.Tensor]:
    return saliency_torch(f64(g), reduce, torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "layout", "dtype", "reduce", "out_dtype"), CASES)
def test_matches_float64_reference(backend, shape, layout, dtype, reduce, out_dtype):
    g = make_nchw(shape, dtype, layout)
    assert_map_matches(saliency(g, reduce, out_dtype, backend=backend), _reference(g, reduce), dtype, out_dtype)


@fuzz(10, inputs=small_inputs(1), reduce=st.sampled_from(SALIENCY_REDUCTIONS))
def test_fuzz_shapes_layouts_small_blocks(backend, inputs, reduce):
    (g,), blocks = inputs
    with forced_blocks(blocks):
        assert_map_matches(saliency(g, reduce, f32, backend=backend), _reference(g, reduce), f32, f32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_captum_saliency(backend):
    # Model and Captum run on CPU; the op gets the very same gradient on the test device.
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    x = make_nchw((3, 3, 9, 7)).cpu().requires_grad_()
    model(x)  # materialise the lazy layer
    target = torch.tensor([0, 3, 1])
    want = Saliency(model).attribute(x, target=target, abs=True).amax(1)
    (g,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    values, scale = (t.cpu() for t in saliency(g.to(DEVICE), "max_abs", f32, backend=backend))
    torch.testing.assert_close(values * scale[:, None, None], want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", SALIENCY_REDUCTIONS)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf / inf in numpy
def test_non_finite_stays_in_its_example(backend, reduce):
    g = make_nchw((3, 70, 6, 5), f32, "contiguous")
    clean = saliency(g, reduce, f16, backend=backend)
    g[1, 66, 2, 3] = float("nan")
    g[2, 1, 0, 0] = float("-inf")
    got = saliency(g, reduce, f16, backend=backend)
    assert_map_matches(got, _reference(g, reduce), f32, f16)
    assert torch.equal(clean[0][0], got[0][0]) and clean[1][0] == got[1][0]
    assert bool(got[0][1].isnan().all()) and got[1][1].isnan()
    assert got[1][2] == float("inf")


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_gradient_and_empty_batch(backend):
    g = make_nchw((2, 4, 5, 3), f32, "channels_last")
    g[0] = 0.0
    values, scale = saliency(g, backend=backend)
    assert scale[0] == 1.0 and bool((values[0] == 0).all())
    with no_map_launch():
        values, scale = saliency(g[:0], backend=backend)
    assert values.shape == (0, 5, 3) and scale.shape == (0,)


def test_signed_sum_is_not_a_saliency():
    with pytest.raises(KernelInputError, match=r"expected reduce in \(max_abs, abs_sum, l2\), got 'sum'"):
        saliency(torch.ones(1, 2, 3, 3, device=DEVICE), "sum")
