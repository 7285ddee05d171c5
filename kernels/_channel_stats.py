"""Per-example, per-channel statistics of an activation in one read: mean, std, min, max, frac_pos,
and, given the layer's gradient ``g``, relevance = Σ over space of a·g.

The sweep stores these for every hooked layer (``layers/<layer>/stats``), so this op runs once per
layer per batch over the largest tensors of the pass; it must read the activation (and ``g``)
exactly once.

Semantics (the torch reference below is the specification):

- statistics over H×W of ``[N,C,H,W]`` (``layout="nchw"``, any memory layout) or over T of
  ``[N,T,C]`` (``layout="tokens"``); fp16/bf16 are upcast on load and everything accumulates in
  fp32; ``std`` is the population standard deviation, computed from deviations (per-block two-pass
  then Chan's merge), never as ``E[x²] − mean²``, which cancels catastrophically on ``1e4 + noise``.
- a NaN makes mean, std, min and max of its (example, channel) NaN and nothing else; ``frac_pos``
  stays the exact fraction of elements ``> 0`` (a NaN is not positive), so it remains a count.
- an Inf gives the mathematically expected mean (±Inf, NaN when both signs occur), min and max,
  and a NaN std (the deviations from an infinite mean are undefined).
- an empty batch returns ``[0, C, S]`` without a launch; an empty spatial extent is an error,
  since its statistics do not exist.
- with ``g`` (same shape and layout as ``a``, as autograd gives), a sixth column ``relevance``:
  Σ a·g over the same positions, products and sum in fp32 (a NaN or Inf in either propagates).
  Without ``g`` the last axis is :data:`ACTIVATION_STAT_NAMES`, with it :data:`STAT_NAMES`.

``stats_and_grad_mean_*`` also give the spatial mean of ``g`` per (example, channel) in the same
pass: the per-(n, c) half of ``layer_maps`` (relevance and the Grad-CAM weights), reading ``a`` and
``g`` once.
"""

from __future__ import annotations

import torch

from attrstream.kernels._aot import CompileTarget, aligned
from attrstream.kernels._backend import Backend, dispatch, triton_import_error
from attrstream.kernels.errors import KernelInputError
from attrstream.kernels.names import ACTIVATION_STAT_NAMES, LAYOUTS, STAT_NAMES

if triton_import_error() is None:
    import triton
    import triton.language as tl
else:  # the torch reference still works; the launchers raise through the dispatcher first
    triton = tl = None

# Every (BLOCK_C, BLOCK_S) the launcher can choose; each tile holds 2048 elements (16 per thread at
# four warps). Space-fast tiles serve layouts whose spatial stride is the smaller (NCHW): a
# program reads BLOCK_C rows of up to BLOCK_S contiguous elements. Channel-fast tiles serve
# channels_last and tokens (channel stride 1): a program reads BLOCK_C adjacent channels of
# BLOCK_S positions, so the vectorised axis is the one with stride 1 in memory.
SPACE_FAST_BLOCKS = ((32, 64), (8, 256), (2, 1024))
CHANNEL_FAST_BLOCKS = ((4, 512), (16, 128), (64, 32))
NUM_WARPS = 4
# Below this many programs a wide channel-fast tile leaves most SMs idle; narrower tiles then win.
_MIN_PROGRAMS = 1024


def _check_input(a: torch.Tensor, layout: str, what: str = "a") -> None:
    if layout not in LAYOUTS:
        raise KernelInputError(f"Expected layout in {LAYOUTS}, got {layout!r}.")
    want = 4 if layout == "nchw" else 3
    if a.ndim != want:
        shape = "[N,C,H,W]" if layout == "nchw" else "[N,T,C]"
        raise KernelInputError(
            f"Expected {what} of shape {shape} for layout {layout!r} ({want} dims), "
            f"got {a.ndim} dims {tuple(a.shape)}."
        )
    if not a.is_floating_point():
        raise KernelInputError(f"Expected a floating-point {what}, got dtype {a.dtype}.")
    if _spatial_size(a, layout) == 0:
        raise KernelInputError(
            f"Expected a non-empty spatial extent ({'H×W' if layout == 'nchw' else 'T'}) in {what}, "
            f"got shape {tuple(a.shape)}: statistics over zero elements do not exist."
        )


def _spatial_size(a: torch.Tensor, layout: str) -> int:
    return a.shape[2] * a.shape[3] if layout == "nchw" else a.shape[1]


def _as_nchw(a: torch.Tensor, layout: str) -> torch.Tensor:
    """``[N,C,H,W]`` view of ``a`` (tokens ``[N,T,C]`` become ``[N,C,T,1]``), never a copy."""
    return a if layout == "nchw" else a.permute(0, 2, 1).unsqueeze(-1)


# --------------------------------------------------------------------------------------------------
# Triton kernel
# --------------------------------------------------------------------------------------------------

if tl is not None:

    @triton.jit
    def _channel_stats_kernel(
        a_ptr,  # (N, C, H, W) input, any strides
        g_ptr,  # (N, C, H, W) gradient, any strides; unused unless HAS_G
        stats_ptr,  # (N, C, 5) float32 out, contiguous; (N, C, 6) with relevance when HAS_G
        gmean_ptr,  # (N, C) float32 out, contiguous; unused unless HAS_G
        C,  # channels
        H,  # outer spatial extent (1 when H and W collapse into one strided axis)
        W,  # inner spatial extent, the one tiled by BLOCK_S
        stride_an, stride_ac, stride_ah, stride_aw,  # a's (N, C, H, W) strides, in elements
        stride_gn, stride_gc, stride_gh, stride_gw,  # g's (N, C, H, W) strides, in elements
        BLOCK_C: tl.constexpr,  # channels per program
        BLOCK_S: tl.constexpr,  # positions per loop step
        HAS_G: tl.constexpr,  # also sum g and a·g per (n, c)
    ):
        n_cblocks = tl.cdiv(C, BLOCK_C)
        pid = tl.program_id(0)
        n = pid // n_cblocks
        offs_c = (pid % n_cblocks) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask_c = offs_c < C
        offs_s = tl.arange(0, BLOCK_S)
        # int64 from here on: N*C*H*W, and even one example's extent times a stride, can pass 2^31.
        row_a = n.to(tl.int64) * stride_an + offs_c.to(tl.int64) * stride_ac
        row_g = n.to(tl.int64) * stride_gn + offs_c.to(tl.int64) * stride_gc

        mean = tl.zeros([BLOCK_C], dtype=tl.float32)
        m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
        gsum = tl.zeros([BLOCK_C], dtype=tl.float32)
        rsum = tl.zeros([BLOCK_C], dtype=tl.float32)  # Σ a·g: relevance
        count = 0.0  # elements merged so far; identical for every channel of the program
        vmin = tl.full([BLOCK_C, BLOCK_S], float("inf"), tl.float32)
        vmax = tl.full([BLOCK_C, BLOCK_S], float("-inf"), tl.float32)
        npos = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.int32)
        for h in range(0, H):
            a_h = row_a + tl.cast(h, tl.int64) * stride_ah  # (BLOCK_C,) offsets of row h
            g_h = row_g + tl.cast(h, tl.int64) * stride_gh
            for w0 in range(0, W, BLOCK_S):
                s = w0 + offs_s
                mask = mask_c[:, None] & (s < W)[None, :]
                s64 = s.to(tl.int64)
                x = tl.load(a_ptr + a_h[:, None] + (s64 * stride_aw)[None, :], mask=mask, other=0.0).to(tl.float32)
                # Two-pass statistics of the block, from registers, then Chan's merge into the running
                # ones. The mean merges as a convex combination so that an Inf stays Inf.
                nb = tl.minimum(W - w0, BLOCK_S).to(tl.float32)
                bmean = tl.sum(x, axis=1) / nb
                dev = tl.where(mask, x - bmean[:, None], 0.0)
                bm2 = tl.sum(dev * dev, axis=1)
                total = count + nb
                delta = bmean - mean
                mean = mean * (count / total) + bmean * (nb / total)
                m2 = m2 + bm2 + delta * delta * (count * nb / total)
                count = total
                # min/max/positives stay elementwise until the end: no cross-thread work per step.
                vmin = tl.minimum(vmin, tl.where(mask, x, float("inf")), propagate_nan=tl.PropagateNan.ALL)
                vmax = tl.maximum(vmax, tl.where(mask, x, float("-inf")), propagate_nan=tl.PropagateNan.ALL)
                npos += (x > 0).to(tl.int32)  # masked lanes hold 0: not positive
                if HAS_G:  # masked lanes hold 0 in both: they add nothing
                    gx = tl.load(g_ptr + g_h[:, None] + (s64 * stride_gw)[None, :], mask=mask, other=0.0).to(tl.float32)
                    gsum += tl.sum(gx, axis=1)
                    rsum += tl.sum(x * gx, axis=1)

        row = n.to(tl.int64) * C + offs_c
        out = stats_ptr + row * (6 if HAS_G else 5)  # relevance is the sixth column
        tl.store(out + 0, mean, mask=mask_c)
        tl.store(out + 1, tl.sqrt(m2 / count), mask=mask_c)
        # The lanes carry NaN (propagate_nan=ALL above); the built-in reductions may skip it, so a
        # NaN seen in any lane is put back explicitly.
        has_nan = tl.max((vmin != vmin).to(tl.int32), axis=1) > 0
        tl.store(out + 2, tl.where(has_nan, float("nan"), tl.min(vmin, axis=1)), mask=mask_c)
        tl.store(out + 3, tl.where(has_nan, float("nan"), tl.max(vmax, axis=1)), mask=mask_c)
        tl.store(out + 4, tl.sum(npos, axis=1).to(tl.float32) / count, mask=mask_c)
        if HAS_G:
            tl.store(out + 5, rsum, mask=mask_c)
            tl.store(gmean_ptr + row, gsum / count, mask=mask_c)


# --------------------------------------------------------------------------------------------------
# Launcher
# --------------------------------------------------------------------------------------------------


def _collapse(t: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(H', W', stride_h', stride_w') with H×W merged into one strided axis when memory allows."""
    _, _, h, w = t.shape
    sh, sw = t.stride(2), t.stride(3)
    if w == 1:
        return 1, h, 0, sh
    if h == 1 or sh == w * sw:
        return 1, h * w, 0, sw
    return None


def _spatial(a: torch.Tensor, g: torch.Tensor | None) -> tuple[int, int, tuple[int, int], tuple[int, int]]:
    """Loop extents (H, W) and the (h, w) strides of a and g; a single loop when both collapse."""
    ca = _collapse(a)
    cg = _collapse(g) if g is not None else ca
    if ca is not None and cg is not None:
        return ca[0], ca[1], ca[2:], cg[2:]
    ref = g if g is not None else a
    return a.shape[2], a.shape[3], (a.stride(2), a.stride(3)), (ref.stride(2), ref.stride(3))


def _choose_blocks(n: int, c: int, inner: int, channel_fast: bool) -> tuple[int, int]:
    if channel_fast:
        bc = next((b for b, _ in CHANNEL_FAST_BLOCKS if b >= c), CHANNEL_FAST_BLOCKS[-1][0])
        if bc == CHANNEL_FAST_BLOCKS[-1][0] and n * triton.cdiv(c, bc) < _MIN_PROGRAMS:
            bc = CHANNEL_FAST_BLOCKS[-2][0]
        return next(blocks for blocks in CHANNEL_FAST_BLOCKS if blocks[0] == bc)
    return next((blocks for blocks in SPACE_FAST_BLOCKS if blocks[1] >= inner), SPACE_FAST_BLOCKS[-1])


def _launch(a: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    n, c = a.shape[:2]
    stats = torch.empty(n, c, _n_stats(g), device=a.device, dtype=torch.float32)
    gmean = torch.empty(n, c, device=a.device, dtype=torch.float32) if g is not None else None
    if n * c == 0:
        return stats, gmean
    h, w, (sah, saw), (sgh, sgw) = _spatial(a, g)
    block_c, block_s = _choose_blocks(n, c, w, channel_fast=abs(a.stride(1)) < abs(saw))
    gt = g if g is not None else a
    grid = (n * triton.cdiv(c, block_c),)
    _channel_stats_kernel[grid](
        a, gt, stats, gmean if gmean is not None else stats,
        c, h, w,
        a.stride(0), a.stride(1), sah, saw,
        gt.stride(0), gt.stride(1), sgh, sgw,
        BLOCK_C=block_c, BLOCK_S=block_s, HAS_G=g is not None, num_warps=NUM_WARPS,
    )  # fmt: skip
    return stats, gmean


def channel_stats_triton(a: torch.Tensor, layout: str = "nchw", g: torch.Tensor | None = None) -> torch.Tensor:
    """Triton implementation of :func:`channel_stats_torch`."""
    _check_args(a, layout, g)
    return _launch(_as_nchw(a, layout), None if g is None else _as_nchw(g, layout))[0]


def stats_and_grad_mean_triton(a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Statistics of ``a`` with the relevance of ``g``, and the spatial mean of ``g``, both
    ``[N,C,H,W]``, in one kernel."""
    _check_args(a, "nchw", g)
    return _launch(a, g)


# --------------------------------------------------------------------------------------------------
# Torch reference: the specification and the CPU path
# --------------------------------------------------------------------------------------------------


def channel_stats_torch(a: torch.Tensor, layout: str = "nchw", g: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, C, 5]`` float32: mean, population std, min, max and fraction ``> 0`` per (n, c); with
    ``g``, ``[N, C, 6]``: then Σ a·g (relevance)."""
    _check_args(a, layout, g)
    x = _as_nchw(a, layout).flatten(2).float()  # [N, C, S]; copies only for non-collapsible views
    if x.shape[0] * x.shape[1] == 0:
        return x.new_empty(x.shape[0], x.shape[1], _n_stats(g))
    # Memory-bound on CPU, so as few passes and temporaries as the same numbers allow: the deviations
    # squared in place, the positives compared straight into float32 and summed there (exact below
    # 2^24 positions; a bool sum casts the whole tensor to int64 first: 2.5-4x slower), the
    # relevance as one vecdot.
    s = x.shape[-1]
    mean = x.mean(-1)
    std = (x - mean[..., None]).square_().mean(-1).sqrt_()  # two-pass: no E[x²] − mean²
    if s < 2**24:
        frac_pos = torch.gt(x, 0, out=torch.empty_like(x)).sum(-1) / s
    else:
        frac_pos = (x > 0).sum(-1, dtype=torch.int64).float() / s
    stats = [mean, std, x.amin(-1), x.amax(-1), frac_pos]
    if g is not None:
        stats.append(torch.linalg.vecdot(x, _as_nchw(g, layout).flatten(2).float()))
    return torch.stack(stats, dim=-1)


def stats_and_grad_mean_torch(a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`stats_and_grad_mean_triton`."""
    _check_args(a, "nchw", g)
    return channel_stats_torch(a, g=g), g.float().mean((2, 3))


def _n_stats(g: torch.Tensor | None) -> int:
    return len(ACTIVATION_STAT_NAMES if g is None else STAT_NAMES)


def _check_args(a: torch.Tensor, layout: str, g: torch.Tensor | None) -> None:
    _check_input(a, layout, "a")
    if g is None:
        return
    _check_input(g, layout, "g")
    if a.shape != g.shape:
        raise KernelInputError(f"Expected a and g of one shape, got {tuple(a.shape)} and {tuple(g.shape)}.")
    if a.dtype != g.dtype or a.device != g.device:
        raise KernelInputError(
            f"Expected a and g of one dtype and device (as autograd gives), got {a.dtype} on {a.device} "
            f"and {g.dtype} on {g.device}."
        )


# --------------------------------------------------------------------------------------------------
# Public op
# --------------------------------------------------------------------------------------------------


def channel_stats(
    a: torch.Tensor, layout: str = "nchw", g: torch.Tensor | None = None, backend: Backend | str | None = None
) -> torch.Tensor:
    """Per-example, per-channel float32 statistics of ``a``: ``[N, C, 5]`` (:data:`ACTIVATION_STAT_NAMES`),
    or, given the gradient ``g`` of the target score with respect to ``a`` (same shape), ``[N, C, 6]``
    (:data:`STAT_NAMES`: relevance = Σ over space of a·g, read in the same pass).

    ``a`` is ``[N,C,H,W]`` (``layout="nchw"``) or ``[N,T,C]`` (``layout="tokens"``). Triton runs for
    CUDA tensors, the torch reference otherwise; ``backend`` or ``ATTRSTREAM_BACKEND`` overrides.
    """
    _check_args(a, layout, g)
    tensors = (a,) if g is None else (a, g)
    return dispatch(channel_stats_torch, channel_stats_triton, tensors, backend, a, layout, g)


def compile_targets() -> list[CompileTarget]:
    """Every specialization the launcher can choose, for the ahead-of-time compile test.

    Per dtype, tile and with/without ``g``: the variant the JIT builds for typical layers, where
    H×W collapse into one row (H = 1) whose stride along the tile's fast axis is 1 (the JIT turns
    an int argument equal to 1 into a constant) and every pointer and integer is divisible by 16
    (``aligned``: vectorised loads). In fp32, per tile, the same unit stride without divisibility
    and with the row loop (odd extents, spatial crops: scalar loads). Per dtype, tile and
    with/without ``g``, the general-stride variant (sliced views, tokens with a strided C, odd
    extents), of which every launch with int32 integers is a special case (the JIT only adds
    constants and divisibility; ``tests/kernels/conftest.py`` checks each launch of the kernel
    tests against this list). And ``i64`` integers, which the JIT picks when a stride or extent
    passes 2^31.
    """
    targets = []
    for blocks in SPACE_FAST_BLOCKS + CHANNEL_FAST_BLOCKS:
        unit = ("stride_aw", "stride_gw") if blocks in SPACE_FAST_BLOCKS else ("stride_ac", "stride_gc")
        for has_g in (False, True):
            targets += [_target(dtype, blocks, has_g, "i32", ("H", *unit), vector=True)
                        for dtype in ("fp32", "fp16", "bf16")]
            targets.append(_target("fp32", blocks, has_g, "i32", unit))
        targets += [_target(dtype, blocks, has_g, "i32") for dtype in ("fp32", "fp16", "bf16") for has_g in (False, True)]
    targets += [_target("fp32", SPACE_FAST_BLOCKS[-1], has_g, "i64") for has_g in (False, True)]
    return targets


def _target(
    dtype: str, blocks: tuple[int, int], has_g: bool, int_type: str, unit: tuple[str, ...] = (),
    vector: bool = False,
) -> CompileTarget:
    ints = ("C", "H", "W", *(f"stride_{t}{d}" for t in "ag" for d in "nchw"))
    signature = {"a_ptr": f"*{dtype}", "g_ptr": f"*{dtype}", "stats_ptr": "*fp32", "gmean_ptr": "*fp32"}
    signature |= {name: "constexpr" if name in unit else int_type for name in ints}
    signature |= dict.fromkeys(("BLOCK_C", "BLOCK_S", "HAS_G"), "constexpr")
    block_c, block_s = blocks
    layout = ("aligned " if vector else "") + ("unit-stride" if unit else "strided")
    return CompileTarget(
        kernel=_channel_stats_kernel,
        signature=signature,
        constexprs={"BLOCK_C": block_c, "BLOCK_S": block_s, "HAS_G": has_g, **dict.fromkeys(unit, 1)},
        attrs=aligned(_channel_stats_kernel, signature) if vector else {},
        label=f"channel_stats {dtype} {block_c}x{block_s}{' +g' if has_g else ''} {layout} {int_type}",
    )
