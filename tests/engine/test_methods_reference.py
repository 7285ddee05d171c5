"""The multi-sample methods read back from a real store against float64 references computed here.

SmoothGrad's reference draws the same noise as the sweep (the documented rule: sample ``s`` of
example ``i`` is ``randn((C, H, W))`` from a generator seeded ``(i << 16) | s``, times ``0.15 ×`` the
example's max - min), so the comparison is exact up to float32 arithmetic, not a statistical one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from attrstream.engine import sweep
from tests.engine.models import tiny_cnn

N, SIZE = 6, 16
SAMPLES, STEPS = 4, 5  # not the defaults (8, 16): the options reach the computation
NOISE = 0.15
# float32 forward/backward against float64: a few ulps of float32 through two small convolutions.
REL_TOL = 1e-5


def rel_err(ours: np.ndarray, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs|, worst example."""
    theirs = theirs.detach().numpy()
    denom = np.abs(theirs).reshape(len(theirs), -1).max(1)
    return float((np.abs(ours - theirs).reshape(len(theirs), -1).max(1) / denom).max())


def input_grads64(model: torch.nn.Module, points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d logit[target] / d points for points ``[S, N, C, H, W]``, float64."""
    points = points.detach().requires_grad_(True)
    logits = model(points.flatten(0, 1)).unflatten(0, points.shape[:2])
    (grad,) = torch.autograd.grad(logits.gather(2, target.expand(len(points), -1)[..., None]).sum(), points)
    return grad


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4)) * 2 - 1


@pytest.fixture(scope="module")
def run(tmp_path_factory, images):
    """One batch holding every example."""
    out = tmp_path_factory.mktemp("ref") / "run.zarr"
    return sweep(tiny_cnn().eval(), TensorDataset(images), out, methods=["smoothgrad", "integrated_gradients"],
                 layers=[], dtype="float32", batch_size=N, unit=N, smoothgrad_samples=SAMPLES, ig_steps=STEPS,
                 progress=False)


@pytest.fixture(scope="module")
def model64_and_target(images):
    model = tiny_cnn().eval().double()
    with torch.no_grad():
        return model, model(images.double()).argmax(1)


def test_smoothgrad_matches_a_float64_reference_with_the_same_noise(run, images, model64_and_target):
    model, target = model64_and_target
    assert np.array_equal(run.outputs()["target"], target.numpy())
    x = images.double()
    noise = torch.stack([torch.stack([torch.randn(images.shape[1:], generator=torch.Generator().manual_seed((i << 16) | s),
                                                  dtype=images.dtype) for i in range(N)]) for s in range(SAMPLES)])
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(1, N, 1, 1, 1)
    grads = input_grads64(model, x + noise.double() * NOISE * span, target)
    reference = grads.abs().mean(0).amax(1)  # mean over samples of |grad|, then max over channels
    assert rel_err(run.attribution("smoothgrad"), reference) <= REL_TOL
    # the noise matters at this tolerance: the noiseless saliency map is far from the stored one
    assert rel_err(run.attribution("smoothgrad"), input_grads64(model, x[None], target)[0].abs().amax(1)) > 1e-2


@pytest.mark.parametrize(("batch_size", "internal_batch_size"), [(4, None), (N, 1), (N, 7), (5, 2 * N * STEPS)])
def test_multi_sample_maps_do_not_depend_on_batching_or_chunking(run, images, tmp_path, batch_size,
                                                                 internal_batch_size):
    """A resumed sweep may use another batch size, and the expanded batch is forwarded in chunks:
    every point depends on its (example, sample) alone, so the maps agree to float32 rounding."""
    other = sweep(tiny_cnn().eval(), TensorDataset(images), tmp_path / "other.zarr",
                  methods=["smoothgrad", "integrated_gradients"], layers=[], dtype="float32", batch_size=batch_size,
                  internal_batch_size=internal_batch_size, unit=N, smoothgrad_samples=SAMPLES, ig_steps=STEPS,
                  progress=False)
    for method in ("smoothgrad", "integrated_gradients"):
        np.testing.assert_allclose(other.attribution(method), run.attribution(method), rtol=2e-6, atol=1e-7,
                                   err_msg=method)


def test_integrated_gradients_matches_a_float64_riemann_midpoint_reference(run, images, model64_and_target):
    model, target = model64_and_target
    x = images.double()
    alphas = (torch.arange(STEPS, dtype=torch.float64) + 0.5) / STEPS
    grads = input_grads64(model, alphas.view(-1, 1, 1, 1, 1) * x, target)
    reference = (x * grads.mean(0)).sum(1)  # zero baseline: (x - 0) × mean path gradient, summed over channels
    assert rel_err(run.attribution("integrated_gradients"), reference) <= REL_TOL


def test_integrated_gradients_equals_captum_within_captums_own_float32_error(run, images, model64_and_target):
    """Captum's ``riemann_middle`` with a zero baseline is the same sum; the two float32 results may
    differ by no more than Captum's float32 result differs from the float64 one (twice, for both sides)."""
    from captum.attr import IntegratedGradients

    model64, target = model64_and_target
    model32 = tiny_cnn().eval()
    captum32 = IntegratedGradients(model32).attribute(images, target=target, n_steps=STEPS, method="riemann_middle",
                                                      internal_batch_size=4).sum(1)
    alphas = (torch.arange(STEPS, dtype=torch.float64) + 0.5) / STEPS
    reference = (images.double() * input_grads64(model64, alphas.view(-1, 1, 1, 1, 1) * images.double(), target).mean(0)).sum(1)
    captum_error = rel_err(captum32.detach().double().numpy(), reference)
    ours = run.attribution("integrated_gradients")
    assert rel_err(ours, captum32.detach()) <= 2 * captum_error + 1e-7
    assert captum_error > 0  # the bound is Captum's real float32 error, not zero by construction
