"""Logits as stored: float32 whatever the map dtype (random-init logits overflow float16), a warning
when a batch's logits are all zero, and older float16 stores still read as float32."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
import zarr

from attrstream.engine import open_run, sweep
from attrstream.engine.data import FakeImages
from tests.engine.models import tiny_cnn


def run_of(tmp_path, model, **options):
    return sweep(model, FakeImages(n=4, image_size=16, num_classes=5), tmp_path / "run.zarr", batch_size=2,
                 progress=False, methods=("saliency", "stats"), layers=["stage2"], **options)


def test_large_logits_are_stored_exactly_in_float32(tmp_path):
    model = tiny_cnn()
    with torch.no_grad():
        model.head.weight.mul_(1e11)  # inception_v3's random-init logits reach ~1e12; float16 ends at 65504
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NaN/Inf warning
        run = run_of(tmp_path, model, dtype="float16")
    x = torch.stack([FakeImages(4, 16, 5)[i][0] for i in range(4)])
    stored = run.outputs()["logits"]
    assert stored.dtype == np.float32 and np.abs(stored).max() > 1e9
    np.testing.assert_allclose(stored, model(x).detach().numpy(), rtol=1e-5)


def test_all_zero_logits_are_said_once(tmp_path):
    model = tiny_cnn()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    with pytest.warns(RuntimeWarning, match="Every logit of a batch is zero") as caught:
        run_of(tmp_path, model)
    assert sum("Every logit" in str(w.message) for w in caught) == 1  # two batches, one warning


def test_float16_logits_of_older_stores_read_as_float32(tmp_path):
    run = run_of(tmp_path, tiny_cnn())
    logits = run.outputs()["logits"]
    shutil.rmtree(tmp_path / "run.zarr" / "outputs" / "logits")  # rewritten as a store before float32 logits held it
    group = zarr.open_group(tmp_path / "run.zarr", mode="r+", use_consolidated=False)
    group.create_array("outputs/logits", data=logits.astype(np.float16), dimension_names=("example", "class"))
    zarr.consolidate_metadata(tmp_path / "run.zarr")
    old = open_run(tmp_path / "run.zarr").outputs()["logits"]
    assert old.dtype == np.float32
    np.testing.assert_allclose(old, logits, rtol=1e-3)
