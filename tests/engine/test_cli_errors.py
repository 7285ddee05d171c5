"""Bad input through the real CLI (subprocesses): non-zero exit, one clear line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def attrstream(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, "-m", "attrstream.engine", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


TINY = ["--model", "tests.engine.models:tiny_cnn", "--data", "fake", "--image-size", "16", "--limit", "8",
        "--num-classes", "5", "--no-progress"]


@pytest.fixture
def image_folder(tmp_path) -> Path:
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    return root


def test_unknown_layer_lists_close_matches_and_top_level_names(tmp_path):
    proc = attrstream("sweep", *TINY, "--out", str(tmp_path / "r.zarr"), "--layers", "stage3")
    assert_one_line_error(proc, "'stage3'", "stage1", "Top-level layers: stage1, stage2, head")


def test_unknown_model_lists_close_matches(tmp_path):
    proc = attrstream("sweep", "--model", "resnet19", "--data", "fake", "--out", str(tmp_path / "r.zarr"))
    assert_one_line_error(proc, "'resnet19'", "resnet18")


def test_missing_data_path(tmp_path):
    proc = attrstream("sweep", "--model", "resnet18", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r.zarr"))
    assert_one_line_error(proc, "nope", "ImageFolder")


def test_batch_size_zero(tmp_path):
    proc = attrstream("sweep", *TINY, "--out", str(tmp_path / "r.zarr"), "--batch-size", "0")
    assert_one_line_error(proc, "batch-size >= 1", "got 0")


def test_unknown_method_lists_valid_ones(tmp_path):
    proc = attrstream("sweep", *TINY, "--out", str(tmp_path / "r.zarr"), "--methods", "grad_x_input,gradcam")
    assert_one_line_error(proc, "'gradcam'", "grad_cam", "saliency")


def test_target_outside_the_outputs(tmp_path):
    proc = attrstream("sweep", *TINY, "--out", str(tmp_path / "r.zarr"), "--target", "7")
    assert_one_line_error(proc, "Target class 7", "0..4")


def test_corrupt_image_names_the_file_and_skip_records_it(tmp_path, image_folder):
    args = ["sweep", "--model", "tests.engine.models:tiny_cnn", "--num-classes", "2", "--data", str(image_folder),
            "--image-size", "32", "--no-progress", "--batch-size", "4"]
    proc = attrstream(*args, "--out", str(tmp_path / "a.zarr"))
    assert_one_line_error(proc, "broken.png", "--skip-bad-images")
    proc = attrstream(*args, "--out", str(tmp_path / "b.zarr"), "--skip-bad-images")
    assert proc.returncode == 0, proc.stderr
    from attrstream.engine import open_run

    inputs = open_run(tmp_path / "b.zarr").inputs()
    assert inputs["skipped"].tolist() == [0, 0, 0, 0, 0, 0, 1]  # sorted: cat/0-2, dog/0-2, dog/broken.png


def test_store_of_another_configuration_is_refused_then_overwritten(tmp_path):
    out = str(tmp_path / "r.zarr")
    assert attrstream("sweep", *TINY, "--out", out, "--layers", "stage1").returncode == 0
    proc = attrstream("sweep", *TINY, "--out", out, "--layers", "stage2")
    assert_one_line_error(proc, "--overwrite")
    assert attrstream("sweep", *TINY, "--out", out, "--layers", "stage2", "--overwrite").returncode == 0


def test_model_that_rejects_the_image_size(tmp_path):
    proc = attrstream("sweep", "--model", "vit_b_16", "--data", "fake", "--image-size", "64", "--limit", "2",
                      "--no-progress", "--out", str(tmp_path / "r.zarr"))
    assert_one_line_error(proc, "failed on one input of shape (1, 3, 64, 64)", "Expected 224", "--image-size")
