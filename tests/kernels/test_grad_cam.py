"""grad_cam: both backends against the float64 reference, and Captum's LayerGradCam."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam

from attrstream.kernels import KernelInputError, grad_cam
from attrstream.kernels._grad_cam import grad_cam_torch
from tests.kernels._cases import BACKENDS, DEVICE, bf16, f16, f32, f64, make_nchw
from tests.kernels._launches import forced_blocks, no_map_launch
from tests.kernels._map_checks import assert_map_matches, fuzz, small_inputs

CASES = [
    # (N, C, H, W), a layout, g layout, dtype, out dtype
    ((1, 1, 1, 1), "contiguous", "contiguous", f32, f16),  # one element: every loop is a tail
    ((3, 64, 56, 56), "contiguous", "contiguous", f16, f16),  # 4x512 tile, 16 channel blocks
    ((3, 64, 13, 11), "channels_last", "channels_last", bf16, bf16),  # 64x32 tile, unit C stride
    ((1, 257, 7, 5), "channels_last", "contiguous", f32, f32),  # mixed layouts; channel tail 257 % 64
    ((3, 3, 7, 5), "strided_view", "crop", f16, f32),  # only a is read by the kernel: W stride 2
    ((3, 64, 13, 11), "crop", "channels_last", f32, f16),  # crop: one program row per image row
]


def _reference(a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return grad_cam_torch(f64(a), f64(g), torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "a_layout", "g_layout", "dtype", "out_dtype"), CASES)
def test_matches_float64_reference(backend, shape, a_layout, g_layout, dtype, out_dtype):
    a = make_nchw(shape, dtype, a_layout, seed=1)
    g = make_nchw(shape, dtype, g_layout, seed=2)
    got = grad_cam(a, g, out_dtype, backend=backend)
    assert_map_matches(got, _reference(a, g), dtype, out_dtype)
    assert bool((got[0] >= 0).all())


@fuzz(10, inputs=small_inputs(2))
def test_fuzz_shapes_layouts_small_blocks(backend, inputs):
    (a, g), blocks = inputs
    with forced_blocks(blocks):
        assert_map_matches(grad_cam(a, g, f32, backend=backend), _reference(a, g), f32, f32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_captum_layer_grad_cam(backend):
    # Model and Captum run on CPU; the op gets the very same activation and gradient on the test device.
    conv = torch.nn.Conv2d(3, 6, 3)
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    x = make_nchw((3, 3, 11, 9)).cpu()
    model(x)  # materialise the lazy layer
    target = torch.tensor([2, 0, 3])
    want = LayerGradCam(model, conv).attribute(x, target=target, relu_attributions=True)[:, 0].detach()

    a = conv(x)
    (g,) = torch.autograd.grad(model[1:](a).gather(1, target[:, None]).sum(), a)
    values, scale = (t.cpu() for t in grad_cam(a.detach().to(DEVICE), g.to(DEVICE), f32, backend=backend))
    assert bool((want > 0).any()) and bool((want == 0).any())  # the ReLU clips part of each map
    torch.testing.assert_close(values * scale[:, None, None], want, rtol=1e-5, atol=1e-6 * float(want.max()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_map_is_all_zero_with_scale_one(backend):
    # Activations after a ReLU are non-negative: with non-negative gradients too, every weight of
    # example 0 is positive; negated, every weight of example 1 is negative.
    a = make_nchw((2, 5, 6, 4), seed=0).abs()
    g = make_nchw((2, 5, 6, 4), seed=1).abs()
    g[1] = -g[1]  # every weight negative on non-negative activations: the CAM is ReLU'd to zero
    values, scale = grad_cam(a, g, f16, backend=backend)
    assert scale[1] == 1.0 and bool((values[1] == 0).all())
    assert scale[0] > 0 and float(values[0].max()) == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("tensor", "where"), [("a", (1, 66, 2, 3)), ("g", (1, 3, 0, 0))])
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # numpy under the interpreter
def test_nan_stays_in_its_example(backend, tensor, where):
    a = make_nchw((3, 70, 6, 5), f32, "contiguous", seed=1)
    g = make_nchw((3, 70, 6, 5), f32, "channels_last", seed=2)
    clean = grad_cam(a, g, f16, backend=backend)
    {"a": a, "g": g}[tensor][where] = float("nan")
    got = grad_cam(a, g, f16, backend=backend)
    assert_map_matches(got, _reference(a, g), f32, f16)
    assert torch.equal(clean[0][[0, 2]], got[0][[0, 2]]) and torch.equal(clean[1][[0, 2]], got[1][[0, 2]])
    assert got[1][1].isnan()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_and_invalid_input(backend):
    a = torch.randn(0, 4, 5, 3, device=DEVICE)
    with no_map_launch():
        values, scale = grad_cam(a, a, backend=backend)
    assert values.shape == (0, 5, 3) and scale.shape == (0,)
    with pytest.raises(KernelInputError, match=r"grad_cam: expected g of the same shape as a"):
        grad_cam(torch.ones(1, 4, 5, 3, device=DEVICE), torch.ones(1, 4, 3, 5, device=DEVICE), backend=backend)
