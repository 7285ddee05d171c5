"""Shared cases of the kernel tests: device, backends, layouts, dtypes, tolerances, float64 oracles.

Every op is tested with one body parametrized over backends (the torch reference and the Triton
kernel), both against a float64 evaluation of the reference on CPU. Inputs live on
``ATTRSTREAM_TEST_DEVICE``: cpu by default, where Triton runs under the interpreter
(``TRITON_INTERPRET=1``, set in conftest); ``benchmarks/gpu_check.sh`` sets cuda with
``TRITON_INTERPRET=0`` to run the compiled kernels on the same cases.
"""

from __future__ import annotations

import os

import torch
from hypothesis import strategies as st

DEVICE = torch.device(os.environ.get("ATTRSTREAM_TEST_DEVICE", "cpu"))

BACKENDS = ("torch", "triton")

f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
DTYPES = (f32, f16, bf16)

# Tolerances of a result against the float64 reference, by *input* dtype. Inputs are upcast on
# load and accumulate in fp32, so the error is fp32 accumulation error plus, for half outputs,
# the output rounding (checked separately through the stored dtype).
TOLERANCE = {
    f32: dict(rtol=1e-5, atol=1e-5),
    f16: dict(rtol=1e-3, atol=1e-3),
    bf16: dict(rtol=1e-2, atol=1e-2),
}

# Layouts whose H and W merge into one strided axis (the kernels' one-loop path) ...
LAYOUTS = ("contiguous", "channels_last", "strided_view")
# ... and ``crop``, a spatial crop of a larger tensor, whose H and W do not (the general-stride path).
ALL_LAYOUTS = (*LAYOUTS, "crop")

# Small [N,C,H,W] shapes for the fuzz tests, which force tiny blocks so every loop has a tail.
SMALL_SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 19), st.integers(1, 9), st.integers(1, 9))


def make_nchw(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype = f32,
    layout: str = "contiguous",
    seed: int = 0,
    offset: float = 0.0,
) -> torch.Tensor:
    """A random ``[N,C,H,W]`` tensor on :data:`DEVICE` in the requested memory layout.

    The values are drawn on CPU (the same on every device); the view that makes the layout is
    taken on the device, so strides and storage offsets are those of the layout. ``strided_view``
    takes every other column of a wider tensor, so that no stride is 1 along W.
    """
    n, c, h, w = shape
    wide = {"strided_view": (h, 2 * w), "crop": (h + 2, w + 3)}.get(layout, (h, w))
    gen = torch.Generator().manual_seed(seed)
    base = (torch.randn(n, c, *wide, generator=gen, dtype=torch.float64) + offset).to(dtype).to(DEVICE)
    if layout == "strided_view":
        return base[..., ::2]
    if layout == "crop":
        return base[:, :, 1 : h + 1, 2 : w + 2]
    if layout == "channels_last":
        return base.contiguous(memory_format=torch.channels_last)
    assert layout == "contiguous", layout
    return base


def f64(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float64 on CPU: the oracles are evaluated there, whatever the test device."""
    return t.detach().cpu().double()


def _positions(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t`` as float64 ``[N, C, positions]``: what the statistics reduce over."""
    x = f64(t)
    return (x if layout == "nchw" else x.permute(0, 2, 1)).flatten(2)


def expected_stats(a: torch.Tensor, layout: str = "nchw", g: torch.Tensor | None = None) -> torch.Tensor:
    """The channel statistics (mean, std, min, max, frac_pos) of ``a``, in float64; given ``g``,
    then relevance Σ a·g."""
    x = _positions(a, layout)
    mean = x.mean(-1)
    std = (x - mean[..., None]).square().mean(-1).sqrt()
    frac = (x > 0).sum(-1).double() / x.shape[-1]
    columns = [mean, std, x.amin(-1), x.amax(-1), frac]
    if g is not None:
        columns.append((x * _positions(g, layout)).sum(-1))
    return torch.stack(columns, -1)


# Relevance against float64: the products of fp32 (or upcast fp16/bf16, whose products are exact in
# fp32) values are summed in fp32 over at most a few hundred partial sums (tree within a block, then
# block by block), so the error is below ~1e-6 of Σ|a·g|: bounded by 1e-5 of it, whatever the dtype.
RELEVANCE_RTOL = 1e-5


def assert_stats_match(got: torch.Tensor, a: torch.Tensor, dtype: torch.dtype, layout: str = "nchw",
                       g: torch.Tensor | None = None) -> None:
    """``got`` from an op on ``a`` (and ``g``) of ``dtype``, against :func:`expected_stats`."""
    want = expected_stats(a, layout, g)
    got = got.cpu()
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got[..., :2], want[..., :2].float(), **TOLERANCE[dtype], equal_nan=True)
    # min and max are input values and frac_pos a ratio of counts: exact.
    torch.testing.assert_close(got[..., 2:5], want[..., 2:5].float(), rtol=0, atol=0, equal_nan=True)
    if g is not None:
        bound = RELEVANCE_RTOL * (_positions(a, layout) * _positions(g, layout)).abs().sum(-1) + 1e-30
        err = (got[..., 5].double() - want[..., 5]).abs()
        both_nan = got[..., 5].isnan() & want[..., 5].isnan()
        assert bool(((err <= bound) | both_nan).all()), f"relevance error {(err / bound).nan_to_num(0).max():.2f}x the bound"


def assert_grad_mean_matches(gmean: torch.Tensor, g: torch.Tensor, dtype: torch.dtype) -> None:
    """The per-(n, c) spatial mean of ``g`` (the Grad-CAM weights) against float64."""
    assert gmean.dtype == torch.float32
    torch.testing.assert_close(gmean.cpu(), f64(g).mean((2, 3)).float(), **TOLERANCE[dtype])
