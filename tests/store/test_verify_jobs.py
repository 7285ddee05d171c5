"""``attrstream verify`` checks the later jobs' groups too (``features/<layer>``, ``metrics/``), and each
job's ``--repair`` recomputes what it names: a store damaged on disk, the real CLI in a subprocess."""

from __future__ import annotations

import shutil
import warnings

import pytest

from attrstream.engine import sweep
from attrstream.engine.data import FakeImages
from attrstream.engine.errors import StoreError
from attrstream.engine.faithfulness.run import evaluate
from attrstream.engine.features.run import visualize_features
from attrstream.engine.render.reading import metric_curves
from attrstream.engine.store import open_run, verify_store
from attrstream.engine.store.features import read_features
from attrstream.engine.store.location import locate
from tests.engine.models import tiny_cnn
from tests.store._faults import assert_same_arrays, attrstream, damage

DATA = dict(n=8, image_size=16, num_classes=5)
FEATURES = dict(channels=list(range(8)), unit=4, steps=4, size=16, mean=(0.5,), std=(0.25,), progress=False)


@pytest.fixture(scope="module")
def store_with_jobs(tmp_path_factory):
    """A sweep's store with both later jobs done (units of 4: two units each), never damaged."""
    path = tmp_path_factory.mktemp("jobs") / "run.zarr"
    sweep(tiny_cnn(), FakeImages(**DATA), path, layers=["stage2"], methods=["saliency"], batch_size=4, unit=4,
          progress=False)
    evaluate(path, tiny_cnn(), FakeImages(**DATA), steps=2, progress=False)
    visualize_features(tiny_cnn(), path, "stage2", **FEATURES)
    return path


def test_intact_jobs_get_a_line_each(store_with_jobs):
    proc = attrstream("verify", str(store_with_jobs), "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"{store_with_jobs}/features/stage2: 2 of 2 units done, 5 arrays each: intact",
        f"{store_with_jobs}/metrics: 2 of 2 units done, 8 arrays each: intact",
        f"{store_with_jobs}: 2 of 2 units done, 10 arrays each: intact",
    ]


def test_damaged_job_shards_are_named_with_their_job_and_each_repair_restores_them(store_with_jobs, tmp_path):
    store = tmp_path / "run.zarr"
    shutil.copytree(store_with_jobs, store)
    damage(store, "features/stage2/input/c/1/0/0/0", "delete")
    damage(store, "metrics/attributions/saliency/deletion/c/0/0", "corrupt")

    proc = attrstream("verify", str(store), "--no-progress")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == [
        "damaged features/stage2/input unit 1 (examples 4..7): object features/stage2/input/c/1/0/0/0 missing",
        "damaged metrics/attributions/saliency/deletion unit 0 (examples 0..3): checksum mismatch (crc32c)",
    ]
    assert lines[2] == (f"{store}/features/stage2: 2 of 2 units done, 5 arrays each: 1 damaged object(s) in 1 unit(s) "
                        "[1]; rerun the same attrstream features command with --repair to recompute them")
    assert lines[3].startswith(f"{store}/metrics: 2 of 2 units done, 8 arrays each: 1 damaged object(s) in 1 unit(s) "
                               "[0]; rerun the same `attrstream evaluate`") and "--repair" in lines[3]
    assert lines[4] == f"{store}: 2 of 2 units done, 10 arrays each: intact"  # the sweep's own arrays
    report = verify_store(store)
    assert report.damaged_units == [] and [d.unit for d in report.job_damage("metrics")] == [0]

    with warnings.catch_warnings(record=True) as caught:  # the sweep's repair: its own arrays are intact
        warnings.simplefilter("always")
        sweep(tiny_cnn(), FakeImages(**DATA), store, layers=["stage2"], methods=["saliency"], batch_size=4, unit=4,
              progress=False, repair=True)
    assert not [w for w in caught if "recomputing" in str(w.message)], [str(w.message) for w in caught]
    with pytest.warns(UserWarning, match=r"recomputing 1 unit.*units \[1\] \(features/stage2/input"):
        visualize_features(tiny_cnn(), store, "stage2", **FEATURES, repair=True)
    with pytest.warns(UserWarning, match=r"recomputing 1 unit.*units \[0\] \(metrics/attributions/saliency/deletion"):
        evaluate(store, tiny_cnn(), FakeImages(**DATA), steps=2, progress=False, repair=True)
    assert verify_store(store).intact
    assert_same_arrays(store, store_with_jobs)  # recomputed bit for bit


def test_reading_a_damaged_job_array_names_that_jobs_repair(store_with_jobs, tmp_path):
    store = tmp_path / "run.zarr"
    shutil.copytree(store_with_jobs, store)
    damage(store, "features/stage2/image/c/1/0/0/0", "delete")
    damage(store, "metrics/attributions/saliency/deletion/c/0/0", "corrupt")

    with pytest.raises(StoreError, match=r"features/stage2/image of .* damaged unit 1 \(examples 4\.\.7\).*"
                                         r"rerun the same attrstream features command with --repair"):
        read_features(locate(store), "stage2")
    with pytest.raises(StoreError, match=r"deletion of .* damaged unit 0 .*checksum mismatch.*"
                                         r"rerun the same `attrstream evaluate` .* with --repair") as caught:
        metric_curves(open_run(store), "attributions/saliency", "deletion")
    assert "the sweep" not in str(caught.value)
