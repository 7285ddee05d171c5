"""layer_maps: the fused per-layer pass equals the three separate ops, in two launches."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import strategies as st

from attrstream.kernels import (
    REDUCTIONS,
    KernelInputError,
    _channel_stats,
    _maps,
    channel_stats,
    grad_cam,
    layer_maps,
    product_map,
)
from attrstream.kernels._grad_cam import grad_cam_torch
from attrstream.kernels._product_map import product_map_torch
from attrstream.kernels.names import RELEVANCE, STAT_NAMES
from tests.kernels._cases import (
    BACKENDS,
    DEVICE,
    RELEVANCE_RTOL,
    assert_stats_match,
    bf16,
    f16,
    f32,
    f64,
    make_nchw,
)
from tests.kernels._launches import forced_blocks, no_map_launch
from tests.kernels._map_checks import assert_map_matches, fuzz, small_inputs

RELEVANCE_COLUMN = STAT_NAMES.index(RELEVANCE)

CASES = [
    # (N, C, H, W), a layout, g layout, dtype, reduce, out dtype
    ((1, 1, 1, 1), "contiguous", "contiguous", f32, "sum", f16),  # one element: every loop is a tail
    ((2, 16, 23, 13), "contiguous", "contiguous", f16, "sum", f16),  # 4x512 tile, space tail 299 % 512
    ((3, 64, 13, 11), "channels_last", "channels_last", bf16, "abs_sum", bf16),  # 64x32 tile, unit C stride
    ((1, 257, 7, 5), "channels_last", "contiguous", f32, "max_abs", f32),  # mixed; channel tail 257 % 64
    ((3, 3, 7, 5), "strided_view", "crop", f16, "l2", f16),  # crop in g: one program row per image row
]


def _check_against_float64(got, a, g, reduce, dtype, out_dtype):
    stats, grad_x_act, cam = got
    a64, g64 = f64(a), f64(g)
    assert_stats_match(stats, a, dtype, g=g)
    assert_map_matches(grad_x_act, product_map_torch(a64, g64, reduce, torch.float64), dtype, out_dtype)
    assert_map_matches(cam, grad_cam_torch(a64, g64, torch.float64), dtype, out_dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "a_layout", "g_layout", "dtype", "reduce", "out_dtype"), CASES)
def test_matches_float64_reference(backend, shape, a_layout, g_layout, dtype, reduce, out_dtype):
    a = make_nchw(shape, dtype, a_layout, seed=1)
    g = make_nchw(shape, dtype, g_layout, seed=2)
    _check_against_float64(layer_maps(a, g, reduce, out_dtype, backend=backend), a, g, reduce, dtype, out_dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_equals_the_three_separate_ops(backend, reduce):
    a = make_nchw((3, 5, 6, 5), f16, "channels_last", seed=1)
    g = make_nchw((3, 5, 6, 5), f16, "channels_last", seed=2)
    stats, grad_x_act, cam = layer_maps(a, g, reduce, f16, backend=backend)
    assert torch.equal(stats, channel_stats(a, g=g, backend=backend))
    separate = product_map(a, g, reduce, f16, backend=backend)
    assert torch.equal(grad_x_act[0], separate[0]) and torch.equal(grad_x_act[1], separate[1])
    # The CAM weights come from a different reduction order (pass 1 kernel vs torch mean): close.
    separate = grad_cam(a, g, f16, backend=backend)
    torch.testing.assert_close(cam[1], separate[1], rtol=1e-6, atol=0)
    torch.testing.assert_close(cam[0], separate[0], rtol=0, atol=2.0**-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_relevance_sums_to_the_grad_x_act_map(backend, layout):
    """Σ_c relevance = Σ_c Σ_hw a·g = Σ_hw of the grad×act map (reduce=sum): pass 1 and pass 2 agree."""
    a = make_nchw((3, 21, 6, 5), f32, layout, seed=3)
    g = make_nchw((3, 21, 6, 5), f32, layout, seed=4)
    stats, (values, scale), _ = layer_maps(a, g, "sum", f32, backend=backend)
    from_stats = stats[..., RELEVANCE_COLUMN].double().sum(1).cpu()
    from_map = (values.double() * scale.double()[:, None, None]).sum((1, 2)).cpu()
    bound = RELEVANCE_RTOL * (f64(a) * f64(g)).abs().sum((1, 2, 3))  # fp32 sums of the same products, two orders
    assert bool(((from_stats - from_map).abs() <= bound).all()), (from_stats, from_map)


def test_triton_reads_inputs_in_two_launches():
    a = make_nchw((2, 5, 7, 5), f32, "contiguous", seed=1)
    g = make_nchw((2, 5, 7, 5), f32, "contiguous", seed=2)
    calls = []

    class Counted:
        def __init__(self, module, name):
            self.kernel, self.name = getattr(module, name), name

        def __getitem__(self, grid):
            calls.append(self.name)
            return self.kernel[grid]

    with mock.patch.object(_channel_stats, "_channel_stats_kernel", Counted(_channel_stats, "_channel_stats_kernel")), \
            mock.patch.object(_maps, "_channel_maps_kernel", Counted(_maps, "_channel_maps_kernel")), \
            mock.patch.object(_maps, "_normalize_kernel", Counted(_maps, "_normalize_kernel")):  # fmt: skip
        got = layer_maps(a, g, "sum", f16, backend="triton")
    # pass 1 reads a and g, pass 2 reads a and g; the scaling reads only the small maps
    assert calls == ["_channel_stats_kernel", "_channel_maps_kernel", "_normalize_kernel"]
    _check_against_float64(got, a, g, "sum", f32, f16)


@fuzz(10, inputs=small_inputs(2), reduce=st.sampled_from(REDUCTIONS))
def test_fuzz_shapes_layouts_small_blocks(backend, inputs, reduce):
    (a, g), blocks = inputs
    with forced_blocks(blocks):
        _check_against_float64(layer_maps(a, g, reduce, f32, backend=backend), a, g, reduce, f32, f32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # numpy under the interpreter
def test_nan_stays_in_its_example(backend):
    a = make_nchw((3, 6, 6, 5), f32, "contiguous", seed=1)
    g = make_nchw((3, 6, 6, 5), f32, "contiguous", seed=2)
    with forced_blocks((4, 8)):  # the NaN lands in the channel tail of the second block
        clean = layer_maps(a, g, "max_abs", f16, backend=backend)
        a[1, 5, 2, 3] = float("nan")
        got = layer_maps(a, g, "max_abs", f16, backend=backend)
    _check_against_float64(got, a, g, "max_abs", f32, f16)
    assert torch.equal(clean[0][[0, 2]], got[0][[0, 2]])
    assert got[0][1, 5, 0].isnan() and got[0][1, 5, 5].isnan() and not bool(got[0][1, :5].isnan().any())
    for clean_map, got_map in zip(clean[1:], got[1:], strict=True):
        assert torch.equal(clean_map[0][[0, 2]], got_map[0][[0, 2]]) and got_map[1][1].isnan()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_and_invalid_input(backend):
    a = torch.randn(0, 4, 5, 3, device=DEVICE)
    with no_map_launch():
        stats, (gxa, gxa_scale), (cam, cam_scale) = layer_maps(a, a, backend=backend)
    assert stats.shape == (0, 4, 6) and gxa.shape == cam.shape == (0, 5, 3)
    assert gxa_scale.shape == cam_scale.shape == (0,)
    with pytest.raises(KernelInputError, match=r"layer_maps: expected reduce in \(sum, abs_sum, l2, max_abs\)"):
        layer_maps(torch.ones(1, 4, 5, 3, device=DEVICE), torch.ones(1, 4, 5, 3, device=DEVICE), "mean", backend=backend)
