"""channel_stats (with and without the gradient's relevance) and stats_and_grad_mean: both
backends against a float64 evaluation.

Tensors live on ``ATTRSTREAM_TEST_DEVICE`` (see ``_cases``): cpu with Triton under the
interpreter, or cuda with the compiled kernels (``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attrstream.kernels import KernelInputError, channel_stats
from attrstream.kernels import _channel_stats as cs
from attrstream.kernels._channel_stats import (
    channel_stats_triton,
    stats_and_grad_mean_torch,
    stats_and_grad_mean_triton,
)
from tests.kernels._cases import (
    ALL_LAYOUTS,
    BACKENDS,
    DEVICE,
    DTYPES,
    LAYOUTS,
    SMALL_SHAPES,
    assert_grad_mean_matches,
    assert_stats_match,
    expected_stats,
    f64,
    make_nchw,
)
from tests.kernels._launches import forced_blocks

MEAN, STD, MIN, MAX, FRAC_POS, RELEVANCE = range(6)


def run(backend: str, a: torch.Tensor, layout: str = "nchw") -> torch.Tensor:
    return channel_stats(a, layout=layout, backend=backend)


SHAPES = [
    (0, 3, 7, 5),  # empty batch: [0, C, 5] without a launch
    (1, 1, 1, 1),  # one element: std 0; W == 1 collapse branch
    (3, 3, 7, 5),  # H×W < BLOCK_S: one masked step; channels_last C=3 in a 4-wide tile
    (1, 257, 13, 11),  # C not a multiple of BLOCK_C: channel tail; odd H×W
    (3, 64, 1, 1),  # 1×1 spatial (a pooled layer): every tile row holds one element
]
# 56×56 = 3136 = 3·1024 + 64: several loop steps and a Chan merge of a short tail block. One
# dtype per layout keeps the interpreter time down.
LARGE = [((1, 64, 56, 56), layout, dtype) for layout, dtype in zip(LAYOUTS, DTYPES, strict=True)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "shape,layout,dtype",
    [(s, lay, dt) for s in SHAPES for lay in LAYOUTS for dt in DTYPES] + LARGE,
)
def test_matches_float64(backend, shape, layout, dtype):
    a = make_nchw(shape, dtype, layout)
    assert_stats_match(run(backend, a), a, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("transposed", [False, True], ids=["channel_stride_1", "token_stride_1"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tokens_layout(backend, transposed, dtype):
    gen = torch.Generator().manual_seed(1)
    if transposed:  # [N,C,T] memory seen as [N,T,C]: the space-fast tiles
        a = torch.randn(3, 40, 37, generator=gen).to(dtype).to(DEVICE).transpose(1, 2)
    else:  # [N,T,C] contiguous: the channel-fast tiles
        a = torch.randn(3, 37, 40, generator=gen).to(dtype).to(DEVICE)
    assert_stats_match(run(backend, a, "tokens"), a, dtype, "tokens")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("a_layout,g_layout", [
    ("contiguous", "contiguous"),  # space-fast tiles, one loop
    ("channels_last", "channels_last"),  # channel-fast tiles
    ("channels_last", "crop"),  # g cannot collapse: the two-level loop for both
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_relevance_with_the_gradient(backend, a_layout, g_layout, dtype):
    """channel_stats(a, g=g): the five statistics unchanged, then Σ a·g, from the same pass."""
    a = make_nchw((2, 19, 9, 7), dtype, a_layout, seed=6)  # C=19: channel tail; 63 positions: space tail
    g = make_nchw((2, 19, 9, 7), dtype, g_layout, seed=7)
    got = channel_stats(a, g=g, backend=backend)
    assert_stats_match(got, a, dtype, g=g)
    if g_layout == a_layout:  # the same loops over a: the same numbers (a crop in g makes a take the row loop too)
        assert torch.equal(got[..., :RELEVANCE], channel_stats(a, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("transposed", [False, True], ids=["channel_stride_1", "token_stride_1"])
def test_relevance_of_tokens_sums_every_token(backend, transposed):
    gen = torch.Generator().manual_seed(8)
    a, g = (torch.randn(2, 17, 24, generator=gen).to(DEVICE) for _ in range(2))  # [N, T, C]: T = 4² + 1
    if transposed:  # [N,C,T] memory seen as [N,T,C]
        a, g = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (a, g))
    got = channel_stats(a, "tokens", g=g, backend=backend)
    assert_stats_match(got, a, torch.float32, "tokens", g=g)
    torch.testing.assert_close(got[..., RELEVANCE].cpu(), (f64(a) * f64(g)).sum(1).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cropped_view_without_collapse(backend):
    a = make_nchw((2, 5, 9, 7), layout="crop")
    assert not a.is_contiguous() and a.stride(2) != a.shape[3] * a.stride(3)
    assert_stats_match(run(backend, a), a, torch.float32)


@settings(max_examples=25, deadline=None)
@given(
    shape=SMALL_SHAPES,
    layout=st.sampled_from(ALL_LAYOUTS),
    dtype=st.sampled_from(DTYPES),
    block_c=st.sampled_from((1, 2, 4)),
    block_s=st.sampled_from((2, 4, 8)),
    seed=st.integers(0, 2**16),
)
def test_fuzz_small_blocks(shape, layout, dtype, block_c, block_s, seed):
    """Tiny forced tiles make every loop run several steps with channel and position tails."""
    a = make_nchw(shape, dtype, layout, seed=seed)
    g = make_nchw(shape, dtype, "contiguous", seed=seed + 1)
    with forced_blocks((block_c, block_s)):
        assert_stats_match(channel_stats_triton(a), a, dtype)
        assert_stats_match(channel_stats_triton(a, g=g), a, dtype, g=g)
        stats, gmean = stats_and_grad_mean_triton(a, g)
    assert_stats_match(stats, a, dtype, g=g)
    assert_grad_mean_matches(gmean, g, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("blocks", [None, (2, 64)], ids=["launcher_blocks", "forced_small_blocks"])
def test_std_without_cancellation(backend, blocks):
    """1e4 + N(0, 1): E[x²] − mean² would lose every digit of the variance in fp32."""
    a = make_nchw((2, 4, 56, 56), offset=1e4)
    with forced_blocks(blocks) if blocks else contextlib.nullcontext():
        got = run(backend, a)
    want = expected_stats(a)
    rel = ((f64(got[..., STD]) - want[..., STD]) / want[..., STD]).abs().max().item()
    assert rel <= 1e-4, f"std relative error {rel:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_stay_in_their_channel(backend):
    nan, inf = float("nan"), float("inf")
    clean = make_nchw((3, 4, 7, 5))
    a = clean.clone()
    a[1, 2, 3, 1] = nan
    a[2, 0, 0, 4] = inf
    a[2, 1, 6, 0], a[2, 1, 2, 2] = inf, -inf
    a[0, 3, 1, 1] = -inf
    got, base, x = run(backend, a).cpu(), run(backend, clean).cpu(), a.cpu()
    for n in range(3):
        for c in range(4):
            if (n, c) not in {(1, 2), (2, 0), (2, 1), (0, 3)}:
                assert torch.equal(got[n, c], base[n, c]), (n, c)
    assert got[1, 2, :FRAC_POS].isnan().all()  # NaN: mean, std, min, max
    assert got[2, 0, MEAN] == inf and got[2, 0, STD].isnan()  # +Inf: infinite mean, undefined spread
    assert got[2, 0, MIN] == x[2, 0].amin() and got[2, 0, MAX] == inf
    assert got[2, 1, MEAN].isnan() and got[2, 1, STD].isnan()  # both signs: the mean is undefined too
    assert got[2, 1, MIN] == -inf and got[2, 1, MAX] == inf
    assert got[0, 3, MEAN] == -inf and got[0, 3, STD].isnan() and got[0, 3, MIN] == -inf
    assert got[0, 3, MAX] == x[0, 3].amax()
    # frac_pos stays a count of positives (a NaN is not positive), whatever else the channel holds.
    assert torch.equal(got[..., FRAC_POS], (x > 0).sum((2, 3)).float() / 35)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_input(backend):
    a = torch.zeros(2, 3, 5, 7, device=DEVICE)
    assert torch.equal(run(backend, a).cpu(), torch.zeros(2, 3, 5))



def test_empty_batch_launches_nothing(monkeypatch):
    class NoLaunch:
        def __getitem__(self, grid):
            raise AssertionError(f"kernel launched with grid {grid}")

    monkeypatch.setattr(cs, "_channel_stats_kernel", NoLaunch())
    out = channel_stats_triton(make_nchw((0, 6, 4, 4)))
    assert out.shape == (0, 6, 5) and out.dtype == torch.float32
    stats, gmean = stats_and_grad_mean_triton(make_nchw((0, 6, 4, 4)), make_nchw((0, 6, 4, 4)))
    assert stats.shape == (0, 6, 6) and gmean.shape == (0, 6)
    assert channel_stats_triton(make_nchw((0, 6, 4, 4)), g=make_nchw((0, 6, 4, 4))).shape == (0, 6, 6)


@pytest.mark.parametrize(
    "a,layout,match",
    [
        (torch.zeros(2, 3, 4), "nchw", r"\[N,C,H,W\].*got 3 dims"),
        (torch.zeros(2, 3, 4, 4), "tokens", r"\[N,T,C\].*got 4 dims"),
        (torch.zeros(2, 3, 4, 4), "nhwc", r"Expected layout in \('nchw', 'tokens'\), got 'nhwc'"),
        (torch.zeros(2, 3, 0, 4), "nchw", r"non-empty spatial extent"),
        (torch.zeros(2, 0, 3), "tokens", r"non-empty spatial extent"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.int64), "nchw", r"floating-point.*torch.int64"),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_input_is_a_config_error(backend, a, layout, match):
    with pytest.raises(KernelInputError, match=match):
        run(backend, a.to(DEVICE), layout)


# --------------------------------------------------------------------------------------------------
# stats_and_grad_mean: the per-(n, c) half of layer_maps
# --------------------------------------------------------------------------------------------------

PAIRS = [
    ("contiguous", "contiguous"),
    ("channels_last", "channels_last"),
    ("contiguous", "channels_last"),  # g's layout differs from a's: one loop, two stride sets
    ("crop", "contiguous"),  # a cannot collapse: both take the two-level loop
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("a_layout,g_layout", PAIRS)
@pytest.mark.parametrize("shape", [(3, 5, 7, 5), (1, 257, 13, 11)], ids=["small", "channel_tail"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_stats_and_grad_mean(backend, a_layout, g_layout, shape, dtype):
    a = make_nchw(shape, dtype, a_layout, seed=2)
    g = make_nchw(shape, dtype, g_layout, seed=3)
    fn = stats_and_grad_mean_triton if backend == "triton" else stats_and_grad_mean_torch
    stats, gmean = fn(a, g)
    assert_stats_match(stats, a, dtype, g=g)
    assert_grad_mean_matches(gmean, g, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_grad_stays_in_its_channel(backend):
    a, g = make_nchw((2, 3, 4, 6), seed=4), make_nchw((2, 3, 4, 6), seed=5)
    g[1, 0, 2, 3] = float("nan")
    fn = stats_and_grad_mean_triton if backend == "triton" else stats_and_grad_mean_torch
    stats, gmean = (t.cpu() for t in fn(a, g))
    assert gmean[1, 0].isnan() and gmean.isnan().sum() == 1
    assert not stats[..., :RELEVANCE].isnan().any()  # the activation's statistics do not read g
    assert stats[1, 0, RELEVANCE].isnan() and stats[..., RELEVANCE].isnan().sum() == 1


def test_pair_must_agree():
    a = make_nchw((2, 3, 4, 4))
    with pytest.raises(KernelInputError, match=r"one shape.*\(2, 3, 4, 4\) and \(2, 3, 4, 5\)"):
        stats_and_grad_mean_torch(a, make_nchw((2, 3, 4, 5)))
    with pytest.raises(KernelInputError, match=r"one dtype.*torch.float16"):
        stats_and_grad_mean_triton(a, make_nchw((2, 3, 4, 4), torch.float16))
    tokens = torch.zeros(2, 5, 4, device=DEVICE)
    with pytest.raises(KernelInputError, match=r"one shape.*\(2, 5, 4\) and \(2, 5, 3\)"):
        channel_stats(tokens, "tokens", g=tokens[..., :3])
    with pytest.raises(KernelInputError, match=r"Expected g of shape \[N,T,C\]"):
        channel_stats(tokens, "tokens", g=tokens[None])


@pytest.mark.skipif(DEVICE.type != "cuda", reason="needs > 2^31 elements on a CUDA device")
def test_int64_offsets():
    """N*C*H*W > 2^31: the offsets of the last examples wrap in int32."""
    a = torch.zeros(33000, 64, 32, 32, dtype=torch.float16, device=DEVICE)
    assert a.numel() > 2**31
    a[-1].normal_()
    got = channel_stats(a, backend="triton")
    assert_stats_match(got[-1:], a[-1:], torch.float16)
    assert not got[:-1].any()


def test_fraction_positive_counts_exactly_past_float32_integers():
    """The torch path counts positives in float32 below 2^24 positions (exact there) and in int64
    above: one channel of 2^24 + 3 positions, all but 5 positive, gets the exact count; a float32
    count would stop at 2^24."""
    s = 2**24 + 3
    a = torch.ones(1, 1, 1, s)
    a[..., :5] = -1.0
    got = channel_stats(a, backend="torch")[0, 0, FRAC_POS]
    assert got == torch.tensor(s - 5, dtype=torch.float64).float() / s
    assert got != torch.tensor(2**24, dtype=torch.float32) / s
    small = channel_stats(a[..., : 2**12], backend="torch")[0, 0, FRAC_POS]
    assert small.item() == (2**12 - 5) / 2**12
