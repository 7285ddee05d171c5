"""The configuration is the single source of the sweep's options: types checked on construction,
and the command line's defaults and help derived from the dataclass fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from attrstream.engine.cli import build_parser
from attrstream.engine.config import DataSpec, ModelSpec, SweepConfig
from attrstream.engine.errors import ConfigError
from attrstream.engine.options import cli_fields, from_args
from tests.engine.test_cli_errors import TINY, assert_one_line_error, attrstream


@pytest.mark.parametrize(("options", "match"), [
    ({"batch_size": "16"}, r"batch-size to be an integer >= 1, got '16' \(str\)"),
    ({"limit": "4"}, r"limit to be an integer >= 0, got '4'"),
    ({"unit": 2.0}, r"unit to be an integer >= 1, got 2.0"),
    ({"batch_size": True}, r"batch-size to be an integer"),
    ({"num_workers": -1}, r"num-workers >= 0, got -1"),
    ({"compressor": "gzip"}, r"compressor in \(lz4, zstd\), got 'gzip'"),
    ({"dtype": "bfloat16"}, r"dtype in \(float16, float32\)"),
    ({"reduce": "mean"}, r"reduce in \(sum, abs_sum, l2, max_abs\)"),
    ({"layers": ""}, r"at least one name in layers"),
    ({"layers": [], "methods": "saliency,stats"}, r"at least one name in layers"),
    ({"methods": "saliency,nope"}, r"Unknown method 'nope'"),
    ({"token_grid": (14,)}, r"token-grid as \(h, w\)"),
    ({"token_grid": (0, 4)}, r"token-grid >= 1, got 0"),
    ({"progress": "no"}, r"progress to be True or False"),
    ({"device": "tpu"}, r"device cpu or cuda"),
])
def test_sweep_config_rejects_bad_values_on_construction(options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        SweepConfig(**options)


def test_sweep_config_normalizes_name_lists() -> None:
    cfg = SweepConfig(layers="layer3, layer4", methods=["saliency", "stats"])
    assert cfg.layers == ("layer3", "layer4") and cfg.methods == ("saliency", "stats")
    assert SweepConfig(layers=[], methods=["saliency"]).layers == ()  # input maps only: no layer needed
    assert SweepConfig(target="3").target == 3


@pytest.mark.parametrize(("spec", "options", "match"), [
    (DataSpec, {"name": "fake", "image_size": 0}, r"image-size >= 1, got 0"),
    (DataSpec, {"name": "fake", "image_size": "64"}, r"image-size to be an integer >= 1, got '64'"),
    (DataSpec, {"name": ""}, r"data set name or directory"),
    (ModelSpec, {"name": "resnet18", "num_classes": 0}, r"num-classes >= 1, got 0"),
    (ModelSpec, {"name": ""}, r"model name"),
])
def test_model_and_data_specs_reject_bad_values(spec, options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        spec(**options)


def test_cli_defaults_are_the_dataclass_defaults() -> None:
    args = build_parser().parse_args(["sweep", "--model", "resnet18", "--data", "fake", "--out", "x.zarr"])
    assert from_args(SweepConfig, args) == SweepConfig()
    assert from_args(ModelSpec, args) == ModelSpec("resnet18")
    assert from_args(DataSpec, args) == DataSpec("fake")


def test_every_config_field_with_help_is_a_cli_option_with_its_default_in_the_help() -> None:
    sweep_parser = build_parser()._subparsers._group_actions[0].choices["sweep"]
    text = sweep_parser.format_help()
    for cls in (SweepConfig, ModelSpec, DataSpec):
        for f in cli_fields(cls):
            flag = f.metadata["flag"] or f"--{f.name.replace('_', '-')}"
            assert flag in text, flag
    assert f"(default: {SweepConfig().batch_size})" in text
    not_options = {f.name for f in dataclasses.fields(SweepConfig)} - {f.name for f in cli_fields(SweepConfig)}
    assert not_options == {"finalize", "model_name", "dataset_name", "extra"}


@pytest.mark.parametrize(("flags", "needle"), [
    (["--image-size", "0"], "image-size >= 1, got 0"),
    (["--layers", ""], "at least one name in layers"),
    (["--compressor", "gzip"], "compressor in (lz4, zstd)"),
])
def test_cli_rejects_bad_values_in_one_line(tmp_path: Path, flags, needle) -> None:
    args = [a for a in TINY if a not in ("--image-size", "16")]
    proc = attrstream("sweep", *args, "--out", str(tmp_path / "run.zarr"), *flags)
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "run.zarr").exists()


def test_limit_is_applied_once_by_the_sweep(tmp_path: Path) -> None:
    proc = attrstream("sweep", *TINY, "--methods", "saliency", "--out", str(tmp_path / "run.zarr"))
    assert proc.returncode == 0, proc.stderr
    from attrstream.engine import open_run

    run = open_run(tmp_path / "run.zarr")
    assert run.n == 8 and run.spec.config["dataset"]["n"] == 8
