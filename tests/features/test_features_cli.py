"""Bad input to ``attrstream features`` through the real CLI: non-zero exit, one clear line, no traceback."""

from __future__ import annotations

import pytest

from attrstream.engine.store.features import read_features
from attrstream.engine.store.location import locate
from tests.engine.test_cli_errors import assert_one_line_error, attrstream

MODEL = ["features", "--model", "tests.engine.models:tiny_cnn", "--num-classes", "5", "--size", "16", "--steps", "2",
         "--no-progress"]


@pytest.mark.parametrize(("args", "needles"), [
    (["--layer", "stage3"], ["'stage3'", "Close matches: stage2", "Top-level layers"]),  # not a layer of the model
    (["--layer", "stage2", "--channels", "12:20"], ["in 0..15", "16, 17, 18, 19"]),  # stage2 has 16 channels
    (["--layer", "stage2", "--channels", "three"], ["expected START:STOP or I,J,K"]),
    (["--layer", "stage2", "--steps", "0"], ["steps >= 1"]),
    (["--layer", "stage2", "--size", "8"], ["size >= 16"]),
    (["--layer", "stage2", "--std", "0"], ["std > 0"]),
])
def test_bad_settings_are_one_line(tmp_path, args, needles):
    proc = attrstream(*MODEL, *args, "--out", str(tmp_path / "f.zarr"))
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "f.zarr").exists()  # refused before anything was written


def test_a_size_the_model_cannot_take_is_one_line(tmp_path):
    proc = attrstream("features", "--model", "tests.engine.models:fixed_input_cnn", "--layer", "stage2", "--size", "16",
                      "--steps", "2", "--no-progress", "--out", str(tmp_path / "f.zarr"))
    assert_one_line_error(proc, "(1, 3, 16, 16)", "Pass a larger --size")


def test_a_foreign_directory_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"")
    proc = attrstream(*MODEL, "--layer", "stage2", "--out", str(tmp_path / "photos"))
    assert_one_line_error(proc, "cat.jpg", "nothing was written")


def test_a_layer_whose_layout_cannot_be_told_takes_the_sweeps_layer_layout(tmp_path):
    args = ["features", "--model", "tests.engine.models:rescaled_cnn", "--num-classes", "5", "--layer", "0", "--size",
            "16", "--steps", "2", "--no-progress", "--out", str(tmp_path / "f.zarr")]
    assert_one_line_error(attrstream(*args), "--layer-layout 0=nchw|nhwc")
    assert_one_line_error(attrstream(*args, "--layer-layout", "1=nchw"), "for the layer '0' only, got 1")
    done = attrstream(*args, "--layer-layout", "0=nchw")
    assert done.returncode == 0, done.stderr
    assert read_features(locate(tmp_path / "f.zarr"), "0")["channel"].tolist() == [0, 1, 2]
