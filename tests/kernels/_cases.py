"""Shared cases of the kernel tests: backends, layouts, dtypes and tolerances.

Every op is tested with one body parametrized over backends: the torch reference (the CPU path)
and the Triton kernel run by the interpreter (``TRITON_INTERPRET=1``, set in conftest), both
against a float64 evaluation of the reference.
"""

from __future__ import annotations

import torch

BACKENDS = ("torch", "triton")

DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Tolerances of a result against the float64 reference, by *input* dtype. Inputs are upcast on
# load and accumulate in fp32, so the error is fp32 accumulation error plus, for half outputs,
# the output rounding (checked separately through the stored dtype).
TOLERANCE = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1e-2, atol=1e-2),
}

LAYOUTS = ("contiguous", "channels_last", "strided_view")


def make_nchw(shape: tuple[int, int, int, int], dtype: torch.dtype, layout: str, seed: int = 0,
              offset: float = 0.0) -> torch.Tensor:
    """A random ``[N,C,H,W]`` tensor in the requested memory layout.

    ``strided_view`` slices every other column of a wider tensor and transposes nothing, so that
    no stride is 1 along W: it exercises the general-stride path of the kernels.
    """
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    if layout == "strided_view":
        base = torch.randn(n, c, h, 2 * w, generator=gen, dtype=torch.float64) + offset
        return base.to(dtype)[..., ::2]
    x = (torch.randn(n, c, h, w, generator=gen, dtype=torch.float64) + offset).to(dtype)
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    assert layout == "contiguous", layout
    return x
