"""Per-position channel reductions and per-example max-abs scaling, shared by every map op.

grad×input, grad×activation, saliency and Grad-CAM are all the same memory-bound pattern: read
``[N,C,H,W]`` tensors once, reduce over channels at each position, then divide each example's map
by its max |value| so that a float16 copy keeps its precision. One Triton kernel does the channel
reduction for all of them (constexpr flags pick the inputs and the maps), one tiny kernel does
the scaling; the ops differ only in what they pass. The torch halves (``reduce_channels_torch``,
``normalize_torch``) are the specification of both.
"""

from __future__ import annotations

import torch

from attrstream.kernels._aot import CompileTarget, aligned
from attrstream.kernels._backend import triton_import_error
from attrstream.kernels.errors import KernelInputError
from attrstream.kernels.names import REDUCTIONS

if triton_import_error() is None:
    import triton
    import triton.language as tl
else:  # the torch halves still work; the dispatcher refuses Triton before a launcher runs
    triton = tl = None

# The kernel's REDUCE constexpr of each reduction.
REDUCE_CODES = {name: code for code, name in enumerate(REDUCTIONS)}

# (BLOCK_C, BLOCK_P), 2048-element tiles: long rows of positions of few channels (NCHW maps, or
# channels_last with C <= 4), or many channels of few positions (channels_last, small NCHW maps).
BLOCK_CONFIGS = ((4, 512), (64, 32))
NORMALIZE_BLOCK = 1024
NUM_WARPS = 4

TRITON_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


if tl is not None:
    NAN_BITS = tl.constexpr(0x7FC00000)  # a positive quiet NaN: as int32 it orders above +inf

    @triton.jit
    def _max_nan(a, b):
        # Elementwise max that keeps NaN: tl.maximum's default (maxnum) drops it, and a map must show it.
        return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)

    @triton.jit
    def _max_abs(v, axis: tl.constexpr):
        # max |v| along axis, NaN if any is NaN: tl.max drops NaN (maxnum), the NaN-only sum restores it.
        a = tl.abs(v)
        return tl.max(a, axis=axis) + tl.sum(tl.where(a == a, 0.0, a), axis=axis)

    @triton.jit
    def _channel_maps_kernel(
        x_ptr,  # (N, C, H, W) input or activation, any strides; unused unless LOAD_X
        g_ptr,  # (N, C, H, W) its gradient, any strides; unused unless LOAD_G
        w_ptr,  # (N, C) fp32 Grad-CAM channel weights, contiguous; unused unless CAM
        map_ptr,  # (M, H*W) fp32 maps, contiguous: rows [0, N) product map, then N rows of CAM
        amax_ptr,  # (M,) int32 bit patterns of max |map| per row (non-negative floats order as ints)
        N, C, H, W,  # H, W after the launcher collapsed collapsible spatial axes (then H == 1)
        sxn, sxc, sxh, sxw,  # x strides, elements
        sgn, sgc, sgh, sgw,  # g strides, elements
        REDUCE: tl.constexpr,  # of x·g (g alone without LOAD_X): 0 sum, 1 abs_sum, 2 l2, 3 max_abs
        LOAD_X: tl.constexpr,
        LOAD_G: tl.constexpr,  # compute the product map
        CAM: tl.constexpr,  # compute ReLU(Σ_c w[c]·x[c])
        BLOCK_C: tl.constexpr,
        BLOCK_P: tl.constexpr,
    ):
        # One program: BLOCK_P positions of one row h of one example, looping over all channels.
        pid = tl.program_id(0)
        w_blocks = tl.cdiv(W, BLOCK_P)
        n = pid // (H * w_blocks)
        rest = pid - n * (H * w_blocks)
        h = rest // w_blocks
        w = (rest - h * w_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
        p_mask = w < W
        n64 = n.to(tl.int64)
        # Scalar 64-bit base pointers advance by whole channel blocks; in-tile offsets are int32
        # (a tile of 64-bit pointers would hold two registers per element across the loop).
        c_range = tl.arange(0, BLOCK_C)
        x_base = x_ptr + n64 * sxn + h.to(tl.int64) * sxh
        g_base = g_ptr + n64 * sgn + h.to(tl.int64) * sgh
        x_off = c_range[:, None] * sxc + (w * sxw)[None, :]
        g_off = c_range[:, None] * sgc + (w * sgw)[None, :]

        acc = tl.zeros([BLOCK_P], dtype=tl.float32)
        cam = tl.zeros([BLOCK_P], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + c_range
            c_mask = c < C
            mask = c_mask[:, None] & p_mask[None, :]
            if LOAD_X:
                xv = tl.load(x_base + x_off, mask=mask, other=0.0).to(tl.float32)
                x_base += BLOCK_C * sxc
            if LOAD_G:
                gv = tl.load(g_base + g_off, mask=mask, other=0.0).to(tl.float32)
                g_base += BLOCK_C * sgc
                prod = xv * gv if LOAD_X else gv
                if REDUCE == 0:
                    acc += tl.sum(prod, axis=0)
                elif REDUCE == 1:
                    acc += tl.sum(tl.abs(prod), axis=0)
                elif REDUCE == 2:
                    acc += tl.sum(prod * prod, axis=0)
                else:
                    acc = _max_nan(acc, _max_abs(prod, 0))
            if CAM:
                wv = tl.load(w_ptr + n64 * C + c, mask=c_mask, other=0.0)
                cam += tl.sum(wv[:, None] * xv, axis=0)

        out = n64 * (H * W) + h * W + w
        if LOAD_G:
            if REDUCE == 2:
                acc = tl.sqrt_rn(acc)
            tl.store(map_ptr + out, acc, mask=p_mask)
            top = _max_abs(acc, 0)
            tl.atomic_max(amax_ptr + n, tl.where(top != top, NAN_BITS, top.to(tl.int32, bitcast=True)))
        if CAM:
            cam = tl.where(cam < 0.0, 0.0, cam)  # ReLU that keeps NaN (cam < 0 is false for NaN)
            row = n + N if LOAD_G else n
            tl.store(map_ptr + row.to(tl.int64) * (H * W) + h * W + w, cam, mask=p_mask)
            top = _max_abs(cam, 0)
            tl.atomic_max(amax_ptr + row, tl.where(top != top, NAN_BITS, top.to(tl.int32, bitcast=True)))

    @triton.jit
    def _normalize_kernel(
        map_ptr,  # (M, P) fp32 maps, contiguous
        amax_ptr,  # (M,) int32 bit patterns of max |map| per row
        values_ptr,  # (M, P) out dtype, contiguous: map / scale (may alias map_ptr for fp32)
        scale_ptr,  # (M,) fp32 scale: max |map|, 1 where the map is all zero
        P,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        blocks = tl.cdiv(P, BLOCK)
        row = pid // blocks
        amax = tl.load(amax_ptr + row).to(tl.float32, bitcast=True)
        scale = tl.where(amax == 0.0, 1.0, amax)
        offs = (pid - row * blocks) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < P
        ptrs = row.to(tl.int64) * P + offs
        m = tl.load(map_ptr + ptrs, mask=mask, other=0.0)
        tl.store(values_ptr + ptrs, tl.div_rn(m, scale).to(values_ptr.dtype.element_ty), mask=mask)
        if pid == row * blocks:
            tl.store(scale_ptr + row, scale)


def _collapsed(t: torch.Tensor) -> tuple[int, int] | None:
    """(stride_h, stride_w) of ``t`` seen as one row of H*W positions, or None if it is not one."""
    _, _, h, w = t.shape
    sh, sw = t.stride(2), t.stride(3)
    if w == 1:
        return 0, sh
    if h == 1 or sh == w * sw:
        return 0, sw
    return None


def _pick_blocks(c: int, row: int, channels_contiguous: bool) -> tuple[int, int]:
    """The tile whose long side is the stride-1 axis: channels for channels_last, else space."""
    long, wide = BLOCK_CONFIGS
    return long if (c <= 4 if channels_contiguous else row > 256) else wide


def _check_triton_dtype(dtype: torch.dtype, what: str) -> None:
    if dtype not in TRITON_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in TRITON_DTYPES)
        raise KernelInputError(f"Expected {what} of dtype {names} for the Triton kernels, got {dtype}; "
                          "use backend='torch' for other dtypes.")


def channel_maps_triton(
    x: torch.Tensor | None,
    g: torch.Tensor | None,
    weights: torch.Tensor | None,
    reduce: str,
    out_dtype: torch.dtype,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(values, scale)]: the product map when ``g`` is given (reduce of x·g, or of g alone when
    ``x`` is None), then the CAM when ``weights`` [N,C] fp32 is given (ReLU(Σ_c weights·x)).

    Inputs are validated by the caller; x and g share shape and dtype.
    """
    like = g if g is not None else x
    n, c, h, w = like.shape
    _check_triton_dtype(like.dtype, "map inputs")
    _check_triton_dtype(out_dtype, "out_dtype")
    maps = int(g is not None) + int(weights is not None)
    device = like.device
    if n == 0:
        return [(torch.empty(0, h, w, dtype=out_dtype, device=device),
                 torch.empty(0, dtype=torch.float32, device=device)) for _ in range(maps)]

    loaded = [t for t in (x, g) if t is not None]
    rows = [_collapsed(t) for t in loaded]
    if all(r is not None for r in rows):
        grid_h, row_w = 1, h * w
    else:  # a spatial crop: one program row per image row
        grid_h, row_w = h, w
        rows = [(t.stride(2), t.stride(3)) for t in loaded]
    block_c, block_p = _pick_blocks(c, row_w, all(t.stride(1) == 1 for t in loaded))
    for t, (_, sw) in zip(loaded, rows, strict=True):
        span = (block_c - 1) * t.stride(1) + (row_w - 1) * sw  # in-tile offsets are int32
        if span >= 2**31:
            raise KernelInputError(f"Expected a channel tile of shape {tuple(t.shape)} with strides "
                              f"{t.stride()} to span < 2**31 elements, got {span}.")
    # x or g alone (saliency, Grad-CAM) stands in for the absent one; the kernel does not read it.
    args = [(t, t.stride(0), t.stride(1), *row) for t, row in zip(loaded, rows, strict=True)]

    flat = torch.empty(maps * n, h * w, dtype=torch.float32, device=device)
    amax = torch.zeros(maps * n, dtype=torch.int32, device=device)
    grid = (n * grid_h * triton.cdiv(row_w, block_p),)
    _channel_maps_kernel[grid](
        args[0][0], args[-1][0], weights if weights is not None else flat, flat, amax,
        n, c, grid_h, row_w, *args[0][1:], *args[-1][1:],
        REDUCE=REDUCE_CODES[reduce], LOAD_X=x is not None, LOAD_G=g is not None, CAM=weights is not None,
        BLOCK_C=block_c, BLOCK_P=block_p, num_warps=NUM_WARPS,
    )
    values = flat if out_dtype == torch.float32 else torch.empty_like(flat, dtype=out_dtype)
    scale = torch.empty(maps * n, dtype=torch.float32, device=device)
    grid = (maps * n * triton.cdiv(h * w, NORMALIZE_BLOCK),)
    _normalize_kernel[grid](flat, amax, values, scale, h * w, BLOCK=NORMALIZE_BLOCK, num_warps=NUM_WARPS)
    return list(zip(values.view(maps * n, h, w).split(n), scale.split(n), strict=True))


def channel_maps_targets(
    *, load_x: bool, load_g: bool, cam: bool, reduces: tuple[str, ...]
) -> list[CompileTarget]:
    """Every specialization ``channel_maps_triton`` can launch for one op's flags, and the scaling
    kernel for every out dtype.

    Per dtype, reduce and tile: the variants the JIT builds for typical layers, where both
    tensors collapse to one spatial row (H = 1) with a unit stride along space (NCHW) or along
    channels (channels_last) (the JIT turns an int argument equal to 1 into a constant), and every
    pointer and integer is divisible by 16 (``aligned``: vectorised loads). In fp32 for the first
    reduce, the same without divisibility (odd extents: scalar loads). Per dtype, reduce and tile,
    the general-stride variant without divisibility (spatial crops, mixed layouts, odd extents),
    of which every launch with int32 integers is a special case (the JIT only adds constants and
    divisibility to it; ``tests/kernels/conftest.py`` checks each launch of the kernel tests against
    this list). And ``i64`` ints, which the JIT picks past 2^31.
    """
    flags, first = (load_x, load_g, cam), reduces[0]
    targets = []
    for blocks in BLOCK_CONFIGS:
        for unit in (("H", "sxw", "sgw"), ("H", "sxc", "sgc")):
            targets += [_target(dtype, reduce, blocks, flags, unit, "i32", vector=True)
                        for dtype in TRITON_DTYPES.values() for reduce in reduces]
            targets.append(_target("fp32", first, blocks, flags, unit, "i32"))
        targets += [_target(dtype, reduce, blocks, flags, (), "i32")
                    for dtype in TRITON_DTYPES.values() for reduce in reduces]
    targets.append(_target("fp32", first, BLOCK_CONFIGS[0], flags, (), "i64"))
    for out in TRITON_DTYPES.values():
        signature = {"map_ptr": "*fp32", "amax_ptr": "*i32", "values_ptr": f"*{out}",
                     "scale_ptr": "*fp32", "P": "i32", "BLOCK": "constexpr"}
        for attrs, layout in (({}, ""), (aligned(_normalize_kernel, signature), " aligned")):
            targets.append(CompileTarget(_normalize_kernel, signature, {"BLOCK": NORMALIZE_BLOCK}, attrs=attrs,
                                         label=f"_normalize_kernel {out}{layout}"))
    return targets


def _target(dtype: str, reduce: str, blocks: tuple[int, int], flags: tuple[bool, bool, bool],
            unit: tuple[str, ...], int_type: str, vector: bool = False) -> CompileTarget:
    ints = ("N", "C", "H", "W", *(f"s{t}{d}" for t in "xg" for d in "nchw"))
    signature = {"x_ptr": f"*{dtype}", "g_ptr": f"*{dtype}", "w_ptr": "*fp32", "map_ptr": "*fp32",
                 "amax_ptr": "*i32"}
    signature |= {name: "constexpr" if name in unit else int_type for name in ints}
    signature |= dict.fromkeys(("REDUCE", "LOAD_X", "LOAD_G", "CAM", "BLOCK_C", "BLOCK_P"), "constexpr")
    load_x, load_g, cam = flags
    block_c, block_p = blocks
    constexprs = {"REDUCE": REDUCE_CODES[reduce], "LOAD_X": load_x, "LOAD_G": load_g, "CAM": cam,
                  "BLOCK_C": block_c, "BLOCK_P": block_p, **dict.fromkeys(unit, 1)}
    layout = ("aligned " if vector else "") + (f"unit-stride {unit[-1][-1]}" if unit else "strided")
    label = (f"_channel_maps_kernel {dtype} {reduce} x={load_x} g={load_g} cam={cam} "
             f"{block_c}x{block_p} {layout} {int_type}")
    attrs = aligned(_channel_maps_kernel, signature) if vector else {}
    return CompileTarget(_channel_maps_kernel, signature, constexprs, attrs=attrs, label=label)


# ---- torch: the specification and the CPU path ----

def check_inputs(op: str, **tensors: torch.Tensor) -> None:
    """KernelInputError unless every tensor is a floating [N,C,H,W] of one shape, dtype and device."""
    first_name, first = None, None
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise KernelInputError(f"{op}: expected {name} to be a torch.Tensor, got {type(t).__name__}.")
        if t.dim() != 4:
            raise KernelInputError(f"{op}: expected {name} of shape [N, C, H, W], got shape {tuple(t.shape)}.")
        if not t.is_floating_point():
            raise KernelInputError(f"{op}: expected {name} of a floating dtype, got {t.dtype}.")
        if min(t.shape[1:]) == 0:
            raise KernelInputError(f"{op}: expected {name} with C, H, W >= 1, got shape {tuple(t.shape)}.")
        if first is None:
            first_name, first = name, t
            continue
        for what, given, expected in (("shape", tuple(t.shape), tuple(first.shape)),
                                      ("dtype", t.dtype, first.dtype), ("device", t.device, first.device)):
            if given != expected:
                raise KernelInputError(f"{op}: expected {name} of the same {what} as {first_name} "
                                       f"({expected}), got {given}.")


def check_map_args(op: str, out_dtype: torch.dtype, reduce: str | None = None,
                   reductions: tuple[str, ...] = (), **tensors: torch.Tensor) -> None:
    """KernelInputError unless the tensors pass :func:`check_inputs`, ``reduce`` (when the op takes
    one) is in ``reductions`` and ``out_dtype`` is a floating torch dtype."""
    check_inputs(op, **tensors)
    if reduce is not None and reduce not in reductions:
        raise KernelInputError(f"{op}: expected reduce in ({', '.join(reductions)}), got {reduce!r}.")
    if not (isinstance(out_dtype, torch.dtype) and out_dtype.is_floating_point):
        raise KernelInputError(f"{op}: expected out_dtype float16, bfloat16 or float32, got {out_dtype!r}.")


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for fp32 and narrower inputs (upcast on load); float64 stays float64 (test oracle)."""
    return torch.promote_types(dtype, torch.float32)


def reduce_channels_torch(p: torch.Tensor, reduce: str) -> torch.Tensor:
    """``[N,C,H,W]`` → ``[N,H,W]``: the channel reductions of the map ops (NaN propagates)."""
    if reduce == "sum":
        return p.sum(1)
    if reduce == "abs_sum":
        return p.abs().sum(1)
    if reduce == "l2":
        return p.square().sum(1).sqrt()
    return p.abs().amax(1)


def normalize_torch(m: torch.Tensor, out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(map / scale in out_dtype, scale): scale[n] = max |m[n]|, 1 where m[n] is all zero, so that
    a float16 copy keeps full relative precision whatever the map's magnitude."""
    amax = m.abs().amax(dim=(1, 2))
    scale = torch.where(amax == 0, torch.ones_like(amax), amax)
    return (m / scale[:, None, None]).to(out_dtype), scale.to(accumulation_dtype(m.dtype))
