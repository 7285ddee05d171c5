"""Sweep options beyond the defaults, each read back from a real store: bf16 autocast, an explicit
token grid (Python API and ``--token-grid``), the NaN/Inf warning, and the host copier's contract.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from attrstream.engine import open_run, sweep
from attrstream.engine.data import FakeImages
from attrstream.engine.errors import FingerprintMismatchError, ModelError
from attrstream.engine.host_copy import HostCopier
from attrstream.kernels.names import ACTIVATION_STAT_NAMES, RELEVANCE, STAT_NAMES
from tests.engine.models import POISON_ABOVE, nan_model, patch_tokens, tiny_cnn

REPO = Path(__file__).resolve().parents[2]
METHODS = ["grad_x_input", "saliency", "smoothgrad", "integrated_gradients", "grad_x_act", "grad_cam", "stats"]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "attrstream.engine", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def every_map(run, layers: list[str]) -> dict[str, np.ndarray]:
    maps = {m: run.attribution(m) for m in run.methods}
    for layer in layers:
        maps |= {f"{layer}/grad_x_act": run.grad_x_act(layer), f"{layer}/grad_cam": run.cam(layer),
                 f"{layer}/stats": run.layer_stats(layer)}
    return maps


# -- autocast -------------------------------------------------------------------------------------

def test_autocast_maps_are_finite_and_track_the_float32_maps(tmp_path):
    """bf16 keeps 8 significant bits (unit roundoff 2^-8 ≈ 0.4%): values shift by a few percent
    where channel sums cancel, but the map's pattern stays. So every map must correlate with the
    float32 one at ≥ 0.99 per example (measured ≥ 0.998), and differ from it (bf16 really ran)."""
    x, layers = images(6, 16, seed=5), ["stage1", "stage2"]
    runs = {ac: sweep(tiny_cnn().eval(), TensorDataset(x), tmp_path / f"{ac}.zarr", methods=METHODS, layers=layers,
                      dtype="float32", autocast=ac, batch_size=3, progress=False) for ac in (False, True)}
    assert np.array_equal(runs[True].outputs()["target"], runs[False].outputs()["target"])
    fp32, bf16 = every_map(runs[False], layers), every_map(runs[True], layers)
    for key in fp32:
        assert np.isfinite(bf16[key]).all(), key
        worst = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(bf16[key], fp32[key], strict=True))
        assert worst >= 0.99, (key, worst)
    assert not np.array_equal(bf16["grad_x_input"], fp32["grad_x_input"])
    with pytest.raises(FingerprintMismatchError, match="autocast"):  # a bf16 store never resumes as fp32
        sweep(tiny_cnn().eval(), TensorDataset(x), tmp_path / "True.zarr", methods=METHODS, layers=layers,
              dtype="float32", autocast=False, batch_size=3, progress=False)


# -- explicit token grid --------------------------------------------------------------------------

def token_maps64(model: torch.nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """grad×act and Grad-CAM of ``model.block`` in float64 by plain autograd, class token dropped."""
    model = model.double().eval()
    x = x.double()
    acts = []
    handle = model.block.register_forward_hook(lambda _m, _i, out: acts.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (a,) = acts
    (g,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), a)
    h, w = grid
    a, g = (t[:, 1:].reshape(len(x), h, w, -1).permute(0, 3, 1, 2).detach() for t in (a, g))
    return (a * g).sum(1).numpy(), torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1)).numpy()


def test_cli_token_grid_maps_a_non_square_grid_like_autograd(tmp_path):
    out = tmp_path / "tokens.zarr"
    done = cli("sweep", "--model", "tests.engine.models:patch_tokens", "--data", "fake", "--image-size", "24",
               "--limit", "4", "--num-classes", "5", "--layers", "block", "--methods", "grad_x_act,grad_cam,stats",
               "--token-grid", "3x2", "--dtype", "float32", "--no-progress", "--out", str(out))
    assert done.returncode == 0, done.stderr
    run = open_run(out)
    data = FakeImages(n=4, image_size=24, num_classes=5)
    gxa, cam = token_maps64(patch_tokens(), torch.stack([data[i][0] for i in range(4)]), (3, 2))
    assert run.grad_x_act("block").shape == run.cam("block").shape == (4, 3, 2)
    np.testing.assert_allclose(run.grad_x_act("block"), gxa, rtol=1e-4, atol=1e-5 * np.abs(gxa).max())
    np.testing.assert_allclose(run.cam("block"), cam, rtol=1e-4, atol=1e-5 * np.abs(cam).max())
    assert run.layer_stats("block").shape == (4, 16, len(STAT_NAMES))  # statistics cover all 7 tokens, class token too


def test_token_layer_without_a_fitting_grid_is_a_model_error(tmp_path):
    x = TensorDataset(images(2, 24, seed=6))
    with pytest.raises(ModelError, match="7 tokens is neither a square grid"):
        sweep(patch_tokens(), x, tmp_path / "a.zarr", layers=["block"], methods=["grad_cam"], progress=False)
    with pytest.raises(ModelError, match="Token grid 3x3 needs 9 tokens, the layer has 7"):
        sweep(patch_tokens(), x, tmp_path / "b.zarr", layers=["block"], methods=["grad_cam"], token_grid=(3, 3),
              progress=False)


# -- NaN / Inf -------------------------------------------------------------------------------------

def test_nan_examples_warn_once_by_index_and_are_stored_as_they_are(tmp_path):
    x = images(8, 16, seed=7)
    poisoned = [1, 2, 6]  # two in the first batch of 4, one in the second
    x[poisoned, 0, 0, 0] = POISON_ABOVE + 0.5
    options = dict(methods=["grad_x_input", "saliency", "grad_x_act", "grad_cam", "stats"], layers=["stage2"], dtype="float32",
                   batch_size=4, unit=4, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = sweep(nan_model(), TensorDataset(x), tmp_path / "nan.zarr", **options)
    nan_warnings = [w for w in caught if issubclass(w.category, RuntimeWarning) and "NaN or Inf" in str(w.message)]
    assert len(nan_warnings) == 1, [str(w.message) for w in caught]
    assert "[1, 2]" in str(nan_warnings[0].message)

    clean = every_map(sweep(tiny_cnn(), TensorDataset(x), tmp_path / "clean.zarr", **options), ["stage2"])
    ok = np.setdiff1d(np.arange(8), poisoned)
    for key, stored in every_map(run, ["stage2"]).items():
        if key.endswith("/stats"):  # activations come before the poisoned logits: untouched
            act, relevance = len(ACTIVATION_STAT_NAMES), STAT_NAMES.index(RELEVANCE)
            np.testing.assert_array_equal(stored[..., :act], clean[key][..., :act])
            assert np.isnan(stored[poisoned, :, relevance]).all()  # relevance reads the NaN gradient
            np.testing.assert_array_equal(stored[ok], clean[key][ok])
            continue
        assert np.isnan(stored[poisoned]).all(), key  # gradient maps: NaN kept, not zeroed or dropped
        np.testing.assert_array_equal(stored[ok], clean[key][ok], err_msg=key)
    assert np.isnan(run.outputs()["logits"][poisoned]).all() and np.isnan(run.outputs()["score"][poisoned]).all()
    assert np.isfinite(run.outputs()["logits"][ok]).all()


def test_cli_prints_the_nan_warning_as_one_line(tmp_path):
    poisoned = [i for i in range(8) if FakeImages(n=8, image_size=16, num_classes=5)[i][0][0, 0, 0] > POISON_ABOVE]
    assert poisoned, "the fake data set must hold an example the model poisons"
    done = cli("sweep", "--model", "tests.engine.models:nan_model", "--data", "fake", "--image-size", "16",
               "--limit", "8", "--num-classes", "5", "--layers", "stage2", "--no-progress",
               "--out", str(tmp_path / "nan.zarr"))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "NaN or Inf" in line]
    assert len(lines) == 1 and lines[0].startswith("attrstream: warning: "), done.stderr
    assert f"example(s) {poisoned}" in lines[0]
    assert "Traceback" not in done.stderr


# -- host copier ----------------------------------------------------------------------------------

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
def test_host_copier_hands_back_every_batch_in_order_with_its_values(device):
    """What the sweep relies on: each batch comes back once, in order, as host arrays equal to the
    device tensors (dtype and shape kept) plus the host entries given with it, and at most one
    batch is in flight (CUDA returns the previous batch from submit; CPU returns the batch itself)."""
    gen = torch.Generator().manual_seed(8)
    batches = []
    for start in (0, 4, 8):
        results = {
            "attributions/saliency": torch.rand(4, 5, 6, generator=gen).half(),
            "attributions/saliency_scale": torch.rand(4, generator=gen),
            "layers/stage2/stats": torch.rand(4, 16, 5, generator=gen),
            "outputs/pred": torch.randint(10, (4,), generator=gen),
        }
        host = {"inputs/index": np.arange(start, start + 4)}
        batches.append((start, {k: v.to(device) for k, v in results.items()}, host))
    copier = HostCopier(torch.device(device))
    ready = []
    for submitted, (start, results, host) in enumerate(batches, 1):
        got = copier.submit(start, results, dict(host))
        if got is not None:  # the writer consumes a batch before the next submit: copy as it does
            ready.append((got[0], {k: np.array(v) for k, v in got[1].items()}))
        assert len(ready) >= submitted - 1
        if device == "cpu":
            assert len(ready) == submitted
    last = copier.drain()
    if last is not None:
        ready.append(last)
    assert copier.drain() is None
    assert [start for start, _ in ready] == [start for start, _, _ in batches]
    for (_, arrays), (_, results, host) in zip(ready, batches, strict=True):
        assert sorted(arrays) == sorted([*results, *host])
        np.testing.assert_array_equal(arrays["inputs/index"], host["inputs/index"])
        for key, tensor in results.items():
            expected = tensor.cpu().numpy()
            assert arrays[key].dtype == expected.dtype and arrays[key].shape == expected.shape, key
            np.testing.assert_array_equal(arrays[key], expected, err_msg=key)
