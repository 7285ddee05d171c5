"""``attrstream tensorboard``: event files and projector files read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from attrstream.engine.export.histograms import ChannelHistograms, ChannelRange
from attrstream.engine.render.gradients import overlay_image
from attrstream.engine.store import finalize_store, open_run
from tests.engine.test_cli_errors import assert_one_line_error, attrstream
from tests.render.conftest import write_store

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

AUCS = {"attributions/saliency": {"deletion": 0.25, "insertion": 0.5}, "random": {"deletion": 0.4, "insertion": 0.4}}
LOCALIZATION = [{"method": "saliency", "pointing": 0.75, "energy": 0.5, "chance": 0.1, "n": 40}]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A finished render-test store, evaluated: mean AUCs and a localization table in ``metrics``' attributes."""
    path = write_store(tmp_path_factory.mktemp("tb") / "run.zarr", seed=2)
    group = zarr.open_group(path, mode="r+")
    group.create_group("metrics", attributes={"attrstream_metrics": {"mean_auc": AUCS}, "localization": LOCALIZATION})
    finalize_store(path)  # consolidates the metadata again, as the evaluation does after recording them
    return path


@pytest.fixture(scope="module")
def logdir(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tb") / "logs"
    proc = attrstream("tensorboard", str(store), "--logdir", str(out), "--examples", "5", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"tensorboard --logdir {out}" in proc.stdout
    return out


@pytest.fixture(scope="module")
def events(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "histograms": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_one_image_tag_per_map(events, store):
    run = open_run(store)
    expected = {"inputs/thumbnail", *(f"attributions/{m}" for m in run.methods),
                *(f"layers/{layer}/{m}" for layer in run.layers for m in ("grad_cam", "grad_x_act"))}
    assert set(events.Tags()["images"]) == expected
    for tag in expected:
        (image,) = events.Images(tag)
        assert image.width > 0 and image.encoded_image_string.startswith(b"\x89PNG")


def test_histograms_are_channel_mean_distributions_with_step_channel(events, store):
    run = open_run(store)
    for layer, spec in zip(run.layers, run.spec.layers, strict=True):
        means = run.layer_stats(layer)[..., 0].astype(np.float64)
        hists = events.Histograms(f"activations/{layer}/channel_mean")
        assert [h.step for h in hists] == list(range(spec.channels))
        for h in hists:
            value = h.histogram_value
            values = means[:, h.step]
            assert value.num == run.n and sum(value.bucket) == run.n
            assert value.min == pytest.approx(values.min()) and value.max == pytest.approx(values.max())
            edges = np.linspace(values.min(), values.max(), len(value.bucket) + 1)
            np.testing.assert_array_equal(value.bucket, np.histogram(values, edges)[0])
        (pooled,) = events.Histograms(f"activations/{layer}/all_channel_means")
        assert pooled.step == 0 and pooled.histogram_value.num == means.size


def test_scalars_dataset_stats_accuracy_aucs_and_localization(events, store):
    run = open_run(store)
    layer = run.layers[0]
    mean = events.Scalars(f"dataset_stats/{layer}/mean")
    assert [s.step for s in mean] == list(range(run.spec.layers[0].channels))
    np.testing.assert_allclose([s.value for s in mean], run.dataset_stats(layer)[:, 0], rtol=1e-6)
    labels, pred = run.inputs()["label"], run.outputs()["pred"]
    assert events.Scalars("outputs/accuracy")[0].value == pytest.approx(np.mean(labels == pred))
    for path, by_metric in AUCS.items():
        for metric, value in by_metric.items():
            assert events.Scalars(f"metrics/{path}/{metric}_auc")[0].value == pytest.approx(value)
    assert events.Scalars("localization/saliency/pointing")[0].value == pytest.approx(0.75)
    assert any(tag.startswith("run/config") for tag in events.Tags()["tensors"])


def test_projector_rows_are_examples_with_their_metadata(logdir, store):
    run = open_run(store)
    config = (logdir / "projector_config.pbtxt").read_text()
    layer = run.layers[-1]
    folder = logdir / "00000" / layer
    assert f'metadata_path: "00000/{layer}/metadata.tsv"' in config and "sprite.png" in config
    tensors = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    np.testing.assert_allclose(tensors, run.layer_stats(layer)[..., 0], rtol=1e-6)
    header, *rows = (folder / "metadata.tsv").read_text().splitlines()
    assert header.split("\t") == ["index", "label", "prediction", "correct"]
    assert len(rows) == run.n == len(tensors)
    assert rows[0].split("\t")[0] == str(run.inputs([0])["index"][0])
    assert (folder / "sprite.png").stat().st_size > 0


def test_embedding_examples_bounds_the_projector(store, tmp_path):
    proc = attrstream("tensorboard", str(store), "--logdir", str(tmp_path), "--embedding-examples", "7",
                      "--layers", "layer1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert len(np.loadtxt(tmp_path / "00000" / "layer1" / "tensors.tsv", delimiter="\t")) == 7


def test_without_tensorboard_one_line_says_how_to_install(store, tmp_path):
    code = ("import sys; sys.modules['tensorboard'] = None; from attrstream.engine.cli import main; "
            f"raise SystemExit(main(['tensorboard', {str(store)!r}, '--logdir', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "attrstream tensorboard: error:", "pip install 'attrstream[tensorboard]'")


def test_streamed_histograms_count_exactly_what_one_histogram_would():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(b, 3)) for b in (5, 1, 9)]
    blocks[1][0, 2] = np.nan  # left out
    span, hist = ChannelRange(), None
    for block in blocks:
        span.update(block)
    hist = ChannelHistograms.over(span, bins=7)
    for block in blocks:
        hist.update(block)
    values = np.concatenate(blocks)
    for c in range(3):
        finite = values[np.isfinite(values[:, c]), c]
        raw = hist.raw(c, span)
        np.testing.assert_array_equal(raw["bucket_counts"], np.histogram(finite, np.linspace(finite.min(), finite.max(), 8))[0])
        assert raw["num"] == finite.size and raw["sum"] == pytest.approx(finite.sum())


def test_overlay_image_is_the_grey_thumbnail_where_the_map_is_zero():
    thumb = np.random.default_rng(1).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    normed = np.zeros((4, 4))
    normed[0, 0] = 1.0  # one coarse cell at full strength: coloured top-left only
    pixels = overlay_image(thumb, normed, signed=False)
    grey = np.round(thumb.mean(-1)).astype(int)
    assert pixels.shape == (8, 8, 3)
    np.testing.assert_allclose(pixels[-1, -1], [grey[-1, -1]] * 3, atol=1)
    assert np.ptp(pixels[0, 0].astype(int)) > 20  # a colour, not a grey


def test_text_tab_holds_the_run_configuration(events):
    (text,) = [t for t in events.Tags()["tensors"] if t.startswith("run/config")]
    content = events.Tensors(text)[0].tensor_proto.string_val[0].decode()
    assert "toy-cnn" in content and json.dumps("blobs") in content
