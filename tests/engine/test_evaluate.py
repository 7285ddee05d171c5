"""``attrstream evaluate`` against a per-image implementation of the definition written here.

The reference below follows issue 15's definition one image and one step at a time (numpy's stable
argsort, a fresh copy of the image per step, one forward each), the way the RISE reference does;
the engine's batched curves must equal it to 1e-5 for input maps, a layer map at the input's
resolution, an upsampled layer map and the random baseline, over a partial last unit.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr
from torchvision.transforms.functional import gaussian_blur

from attrstream.engine import evaluate, open_run
from attrstream.engine.data import FakeImages
from attrstream.engine.faithfulness.curves import random_order
from tests.engine._cli import TINY_SWEEP, run_cli
from tests.engine.models import tiny_cnn
from tests.engine.test_cli_errors import REPO, assert_one_line_error, attrstream

# 20 examples in units of 8: the last unit holds 4. 5 steps do not divide P = 256 (floor matters),
# and batches of 7 perturbed images cut across examples, steps and units.
SWEEP = [a if a != "24" else "20" for a in TINY_SWEEP]
N, STEPS, BATCH = 20, 5, 7
EVALUATE = ["--model", "tests.engine.models:tiny_cnn", "--num-classes", "5", "--data", "fake", "--image-size", "16"]
MAPS = {"attributions/grad_x_input": None, "attributions/saliency": None,
        "layers/stage1/grad_cam": (16, 16),  # the input's resolution: ranked as stored
        "layers/stage2/grad_cam": (8, 8)}  # upsampled to 16×16 first


def reference_curve(model: torch.nn.Module, x: torch.Tensor, target: int, order: np.ndarray, metric: str,
                    steps: int) -> np.ndarray:
    """The definition, one image and one step at a time."""
    channels, height, width = x.shape
    pixels = height * width
    start = gaussian_blur(x[None], [11, 11], [5.0, 5.0])[0] if metric == "insertion" else x
    curve = []
    for k in range(steps + 1):
        image = start.clone().reshape(channels, pixels)
        chosen = torch.from_numpy(order[: k * pixels // steps].copy())
        image[:, chosen] = 0.0 if metric == "deletion" else x.reshape(channels, pixels)[:, chosen]
        with torch.no_grad():
            curve.append(float(torch.softmax(model(image.reshape(1, channels, height, width)), 1)[0, target]))
    return np.array(curve)


def reference_auc(curve: np.ndarray) -> float:
    return (curve.sum() - (curve[0] + curve[-1]) / 2) / (len(curve) - 1)


def stored_order(group: zarr.Group, path: str, i: int, size: tuple[int, int]) -> np.ndarray:
    """The ranking of a stored map: its stored values, upsampled bilinearly in float32 when coarser."""
    values = torch.from_numpy(np.asarray(group[path][i], dtype=np.float32))
    if tuple(values.shape) != size:
        values = F.interpolate(values[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return np.argsort(-values.numpy().ravel(), kind="stable")


def curves_of(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(path, mode="r")  # consolidated metadata: must list the new arrays
    return {name: np.asarray(node[:]) for name, node in group["metrics"].members(max_depth=None)
            if isinstance(node, zarr.Array)}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "run.zarr"
    assert run_cli(*SWEEP, "--layers", "stage1,stage2", "--out", str(path)) == 0
    return path


@pytest.fixture(scope="module")
def evaluated(swept: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("evaluated") / "run.zarr"
    shutil.copytree(swept, path)
    assert run_cli("evaluate", str(path), *EVALUATE, "--steps", str(STEPS), "--batch-size", str(BATCH),
                   "--no-progress") == 0
    return path


def test_curves_and_aucs_equal_the_per_image_definition(evaluated: Path) -> None:
    model, data = tiny_cnn(), FakeImages(n=N, image_size=16, num_classes=5)
    group = zarr.open_group(evaluated, mode="r")
    target = np.asarray(group["outputs/target"][:])
    assert set(MAPS) == set(group["metrics"].attrs["attrstream_metrics"]["description"]["maps"])
    stored = curves_of(evaluated)
    for path in [*MAPS, "random"]:
        for metric in ("deletion", "insertion"):
            curves = stored[f"{path}/{metric}"]
            assert curves.shape == (N, STEPS + 1) and curves.dtype == np.float32
            for i in range(N):
                order = (random_order(i, 256, seed=0).numpy() if path == "random"
                         else stored_order(group, path, i, (16, 16)))
                expected = reference_curve(model, data[i][0], int(target[i]), order, metric, STEPS)
                np.testing.assert_allclose(curves[i], expected, rtol=0, atol=1e-5, err_msg=f"{path} {metric} #{i}")
                assert abs(stored[f"{path}/{metric}_auc"][i] - reference_auc(expected)) < 1e-5, (path, metric, i)
    means = group["metrics"].attrs["attrstream_metrics"]["mean_auc"]
    assert means["layers/stage2/grad_cam"]["insertion"] == pytest.approx(
        float(stored["layers/stage2/grad_cam/insertion_auc"].astype(np.float64).mean()), abs=1e-9)
    assert np.asarray(group["metrics/progress/unit_done"][:]).tolist() == [1, 1, 1]


def test_the_python_api_writes_the_same_store_whatever_the_batch_size(swept: Path, evaluated: Path,
                                                                        tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    shutil.copytree(swept, path)
    means = evaluate(path, tiny_cnn(), FakeImages(n=50, image_size=16, num_classes=5), steps=STEPS, batch_size=64,
                     progress=False)
    assert set(means) == {*MAPS, "random"}
    ours, reference = curves_of(path), curves_of(evaluated)
    assert ours.keys() == reference.keys()
    for name in reference:
        np.testing.assert_allclose(ours[name], reference[name], rtol=0, atol=1e-6, err_msg=name)
    assert open_run(path).group["metrics"].attrs["attrstream_metrics"]["mean_auc"].keys() == means.keys()


@pytest.mark.parametrize(("extra", "needles"), [
    (["--maps", "stage2/grad_x_act"], ["Expected maps of this store", "'stage2/grad_x_act'", "stage2/grad_cam"]),
    (["--steps", "0"], ["Expected steps >= 1, got 0"]),
    (["--weights", "{weights}"], ["Expected the model the sweep of", "weights sha256", "--weights"]),
])
def test_bad_input_is_one_line(swept: Path, tmp_path: Path, extra: list[str], needles: list[str]) -> None:
    model = tiny_cnn()
    with torch.no_grad():
        model.head.bias.add_(1.0)  # the same network with other weights
    torch.save(model.state_dict(), tmp_path / "other.pt")
    extra = [a.format(weights=tmp_path / "other.pt") for a in extra]
    proc = attrstream("evaluate", str(swept), *EVALUATE, *extra, "--no-progress")
    assert proc.returncode == 2
    assert_one_line_error(proc, *needles)
    assert "metrics" not in zarr.open_group(swept, mode="r")


def test_kill_during_evaluate_then_rerun_finishes_equal(swept: Path, tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    shutil.copytree(swept, path)
    reference = tmp_path / "reference.zarr"
    shutil.copytree(swept, reference)
    options = ["--steps", "2", "--batch-size", "8", "--maps", "grad_x_input", "--no-progress"]
    assert run_cli("evaluate", str(reference), *EVALUATE, *options) == 0
    slow = [a if a != "tests.engine.models:tiny_cnn" else "tests.engine.models:slow_cnn" for a in EVALUATE]
    proc = subprocess.Popen([sys.executable, "-m", "attrstream.engine", "evaluate", str(path), *slow, *options],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    markers = path / "metrics" / "progress" / "unit_done" / "c"
    deadline = time.monotonic() + 120
    try:
        while not (markers.is_dir() and any(markers.iterdir())):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no evaluation unit was written"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = np.asarray(zarr.open_group(path / "metrics", mode="r", use_consolidated=False)["progress/unit_done"][:])
    assert 1 <= done.sum() < 3  # killed with units left to do
    with pytest.warns(UserWarning, match="stale writer lock"):
        assert run_cli("evaluate", str(path), *EVALUATE, *options) == 0
    ours, expected = curves_of(path), curves_of(reference)
    assert ours.keys() == expected.keys() and len(ours) == 9  # 2 maps × 2 metrics × (curve, AUC) + progress
    for name in expected:
        np.testing.assert_array_equal(ours[name], expected[name], err_msg=name)
    assert not list(path.rglob("*.partial"))


def test_repair_recomputes_a_corrupted_metrics_shard(evaluated: Path, tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    shutil.copytree(evaluated, path)
    shard = path / "metrics" / "attributions" / "saliency" / "insertion" / "c" / "1" / "0"
    shard.write_bytes(shard.read_bytes()[:-8] + b"\0" * 8)  # a flipped tail: fails its checksum
    with pytest.warns(UserWarning, match="recomputing 1 unit"):
        assert run_cli("evaluate", str(path), *EVALUATE, "--steps", str(STEPS), "--repair", "--no-progress") == 0
    ours, reference = curves_of(path), curves_of(evaluated)
    for name in reference:
        np.testing.assert_allclose(ours[name], reference[name], rtol=0, atol=1e-6, err_msg=name)


def test_render_draws_the_curves_and_the_auc_table_from_the_store(evaluated: Path, tmp_path: Path) -> None:
    from attrstream.engine.render import render_report

    index = render_report(evaluated, tmp_path / "report", examples=2).read_text()
    section = index[index.index('<h2 id="faithfulness">'):]
    means = zarr.open_group(evaluated, mode="r")["metrics"].attrs["attrstream_metrics"]["mean_auc"]
    for name, path in (("stage2/grad_cam", "layers/stage2/grad_cam"), ("random", "random")):
        row = f"<td>{name}</td><td>{means[path]['deletion']:.3f}</td><td>{means[path]['insertion']:.3f}</td>"
        assert row in section, section[:2000]
    for metric in ("deletion", "insertion"):
        assert f'src="faithfulness_{metric}.png"' in section
        assert (tmp_path / "report" / f"faithfulness_{metric}.png").stat().st_size > 10_000


def test_a_model_that_views_its_input_is_told_to_take_contiguous_inputs(tmp_path: Path) -> None:
    from attrstream.engine import sweep
    from attrstream.engine.errors import ModelError
    from tests.engine.models import view_cnn

    data = FakeImages(n=4, image_size=16, num_classes=5)
    sweep(view_cnn(), data, tmp_path / "run.zarr", methods=["saliency"], batch_size=4, progress=False)
    with pytest.raises(ModelError, match=r"cannot take channels_last inputs.*--contiguous-inputs"):
        evaluate(tmp_path / "run.zarr", view_cnn(), data, steps=2, progress=False)
    means = evaluate(tmp_path / "run.zarr", view_cnn(), data, steps=2, channels_last=False, progress=False)
    assert set(means) == {"attributions/saliency", "random"}
