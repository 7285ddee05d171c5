"""The sweep's stored results against Captum, the field's reference implementation (test oracle).

Every map is read back from a real store on disk, so these tests cover capture, extraction, the
kernels' CPU path, the writer and the reader together.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import (
    InputXGradient,
    LayerActivation,
    LayerGradCam,
    LayerGradientXActivation,
    Saliency,
)
from torch.utils.data import TensorDataset

from attrstream.engine import sweep
from attrstream.kernels.names import ACTIVATION_STAT_NAMES, RELEVANCE, STAT_NAMES

# Relative error of a map against Captum's, per example: max |ours - theirs| / max |theirs|.
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

REL_TOL = {"float32": 1e-4, "float16": 2e-3}
ACT = len(ACTIVATION_STAT_NAMES)  # the activation's statistics come first, relevance after them
REL = STAT_NAMES.index(RELEVANCE)
# Unit roundoff of the stored map values (map / scale, in [-1, 1]).
ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11}


def rel_err(ours: np.ndarray, theirs: np.ndarray) -> float:
    theirs = np.asarray(theirs, dtype=np.float64)
    denom = np.abs(theirs).reshape(len(theirs), -1).max(1).clip(min=1e-30)
    diff = np.abs(np.asarray(ours, np.float64) - theirs).reshape(len(theirs), -1).max(1)
    return float((diff / denom).max())


def stats64(a: torch.Tensor) -> np.ndarray:
    """[N,C,5] mean, population std, min, max, frac_pos over everything after the channel axis (the
    activation's statistics; relevance needs the gradient: Captum's, below)."""
    a = a.double().flatten(2)
    return torch.stack(
        [a.mean(2), a.std(2, unbiased=False), a.amin(2), a.amax(2), (a > 0).double().mean(2)], dim=2
    ).numpy()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 64, 64, generator=gen), torch.randint(10, (6,), generator=gen)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_resnet_maps_and_stats_match_captum(tmp_path, resnet, images, dtype):
    x, y = images
    layers = ["layer2", "layer4"]
    run = sweep(resnet, TensorDataset(x, y), tmp_path / "run.zarr", layers=layers, batch_size=4, unit=4,
                dtype=dtype, progress=False,
                methods=["grad_x_input", "saliency", "grad_x_act", "grad_cam", "stats"])
    target = resnet(x).argmax(1)
    assert np.array_equal(run.outputs()["pred"], target.numpy())
    tol = REL_TOL[dtype]
    assert rel_err(run.attribution("grad_x_input"), InputXGradient(resnet).attribute(x, target=target).sum(1).detach()) <= tol
    assert rel_err(run.attribution("saliency"), Saliency(resnet).attribute(x, target=target, abs=True).amax(1).detach()) <= tol
    for name in layers:
        layer = dict(resnet.named_modules())[name]
        gxa = LayerGradientXActivation(resnet, layer).attribute(x, target=target).sum(1).detach()
        cam = LayerGradCam(resnet, layer).attribute(x, target=target, relu_attributions=True).squeeze(1).detach()
        act = LayerActivation(resnet, layer).attribute(x)
        relevance = LayerGradientXActivation(resnet, layer).attribute(x, target=target).sum((2, 3)).detach()
        assert rel_err(run.grad_x_act(name), gxa) <= tol
        assert rel_err(run.cam(name), cam) <= tol
        stats = run.layer_stats(name)
        assert run.stat_names(name) == STAT_NAMES and stats.shape == (*relevance.shape, len(STAT_NAMES))
        np.testing.assert_allclose(stats[..., :ACT], stats64(act), rtol=1e-4, atol=1e-5)
        # relevance is not stored as a map: float32 whatever the map dtype
        assert rel_err(stats[..., REL], relevance) <= REL_TOL["float32"]
        assert_relevance_sums_to_the_map(stats[..., REL], run.grad_x_act(name), dtype)
    # the sweep leaves the model as it found it
    assert not resnet.training and all(p.requires_grad for p in resnet.parameters())


def assert_relevance_sums_to_the_map(relevance: np.ndarray, stored_map: np.ndarray, dtype: str) -> None:
    """Σ_c relevance = Σ_c Σ_hw a·g = Σ_hw of the grad×act map (reduce=sum), as read back (× _scale).

    Each stored value is off by at most the unit roundoff of its dtype times its magnitude, so the
    spatial sum is off by at most that times Σ_hw |map|; twice that, plus 1e-5 of it for the fp32
    sums of the same products in two orders (pass 1 over space, pass 2 over channels), bounds it.
    """
    from_stats = relevance.astype(np.float64).sum(1)
    from_map = stored_map.astype(np.float64).sum((1, 2))
    bound = (2 * ROUNDOFF[dtype] + 1e-5) * np.abs(stored_map.astype(np.float64)).sum((1, 2))
    assert (np.abs(from_stats - from_map) <= bound).all(), (from_stats, from_map, bound)


def test_vision_transformer_token_layers(tmp_path):
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=7
    ).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    name = "encoder.layers.encoder_layer_0"
    run = sweep(vit, TensorDataset(x), tmp_path / "vit.zarr", layers=[name], dtype="float32", progress=False,
                methods=["grad_x_act", "grad_cam", "stats"], batch_size=2)
    target = vit(x).argmax(1)
    layer = dict(vit.named_modules())[name]
    act = LayerActivation(vit, layer).attribute(x).detach().double()  # [N, T, C], class token first
    grad = LayerGradientXActivation(vit, layer, multiply_by_inputs=False).attribute(x, target=target).detach().double()
    grid_a = act[:, 1:].reshape(3, 4, 4, 32).permute(0, 3, 1, 2)
    grid_g = grad[:, 1:].reshape(3, 4, 4, 32).permute(0, 3, 1, 2)
    stats = run.layer_stats(name)
    np.testing.assert_allclose(stats[..., :ACT], stats64(act.transpose(1, 2)), rtol=1e-4, atol=1e-5)
    assert rel_err(run.grad_x_act(name), (grid_a * grid_g).sum(1)) <= 1e-4
    cam = torch.relu((grid_g.mean((2, 3), keepdim=True) * grid_a).sum(1))
    assert rel_err(run.cam(name), cam) <= 1e-4
    assert stats.shape == (3, 32, len(STAT_NAMES))


def test_token_layer_relevance_sums_every_token(tmp_path):
    """Relevance of a ``[N, T, C]`` layer: Captum's LayerGradientXActivation summed over T, the class
    token too (as the statistics), through the stats-only path (no patch grid needed)."""
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=7
    ).eval()
    torch.nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision zero-initializes it: zero gradients
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    name = "encoder.layers.encoder_layer_0"
    run = sweep(vit, TensorDataset(x), tmp_path / "vit.zarr", layers=[name], methods=["stats"], progress=False,
                batch_size=2)
    target = vit(x).argmax(1)
    layer = dict(vit.named_modules())[name]
    relevance = LayerGradientXActivation(vit, layer).attribute(x, target=target).detach()  # [N, T, C]
    stored = run.layer_stats(name)[..., REL]
    assert np.abs(stored).max() > 0
    assert rel_err(stored, relevance.sum(1)) <= REL_TOL["float32"]
    # the class token carries most of it: relevance over the patch tokens alone is another number
    assert rel_err(stored, relevance[:, 1:].sum(1)) > 1e-2


def test_one_forward_per_batch_whatever_the_methods_and_layers(tmp_path, resnet, images):
    x, y = images
    calls = []
    handle = resnet.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        sweep(resnet, TensorDataset(x, y), tmp_path / "run.zarr", layers=["layer1", "layer2", "layer3", "layer4"],
              batch_size=4, progress=False, methods=["grad_x_input", "saliency", "grad_x_act", "grad_cam", "stats"])
    finally:
        handle.remove()
    assert len(calls) == 1 + 2  # one shape probe, then one forward for each of the two batches


def test_label_and_fixed_class_targets(tmp_path, resnet, images):
    x, y = images
    by_label = sweep(resnet, TensorDataset(x, y), tmp_path / "a.zarr", target="label", layers=["layer4"], progress=False)
    assert np.array_equal(by_label.outputs()["target"], y.numpy())
    fixed = sweep(resnet, TensorDataset(x, y), tmp_path / "b.zarr", target=3, layers=["layer4"], progress=False)
    assert (fixed.outputs()["target"] == 3).all()
    np.testing.assert_allclose(fixed.outputs()["score"], resnet(x)[:, 3].detach().numpy(), rtol=1e-5, atol=1e-5)
    ref = InputXGradient(resnet).attribute(x, target=3).sum(1).detach()
    assert rel_err(fixed.attribution("grad_x_input"), ref) <= REL_TOL["float16"]


def test_unknown_sweep_option_lists_the_valid_ones(tmp_path, resnet, images):
    from attrstream.engine.errors import ConfigError

    with pytest.raises(ConfigError, match=r"Unknown sweep option\(s\) batchsize\. Valid options: layers, methods"):
        sweep(resnet, TensorDataset(*images), tmp_path / "r.zarr", batchsize=4)


class _ValueDependent(torch.nn.Module):
    """A forward that reads a value (``.item()``): cannot run on the meta device."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        scale = 2.0 if h.mean().item() > 0 else 1.0
        return self.fc(h.mean((2, 3)) * scale)


def test_callable_target_and_a_model_that_needs_a_real_shape_probe(tmp_path):
    torch.manual_seed(0)
    model = _ValueDependent().eval()
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    run = sweep(model, TensorDataset(x), tmp_path / "r.zarr", layers=["conv"], progress=False, dtype="float32",
                target=lambda logits, labels: logits.argmin(1))
    target = model(x).argmin(1)
    assert np.array_equal(run.outputs()["target"], target.numpy())
    ref = InputXGradient(model).attribute(x, target=target).sum(1).detach()
    assert rel_err(run.attribution("grad_x_input"), ref) <= REL_TOL["float32"]
