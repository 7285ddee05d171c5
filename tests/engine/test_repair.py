"""Rerunning ``attrstream sweep`` (a real subprocess) on a damaged store: resume recomputes missing
objects, a corrupted one stops finalize in one line, and ``--repair`` restores the undamaged store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from attrstream.engine.store import open_run
from tests.store._faults import SWEEP, assert_same_arrays, attrstream, damage, sweep_cli


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "run.zarr"
    sweep_cli(path)
    return path


@pytest.fixture
def copy(reference, tmp_path) -> Path:
    path = tmp_path / "run.zarr"
    shutil.copytree(reference, path)
    return path


def test_rerun_recomputes_the_units_whose_objects_are_missing_saying_which(copy, reference):
    damage(copy, "attributions/saliency/c/1/0/0", "delete")
    damage(copy, "layers/stage1/grad_cam_scale/c/2", "delete")
    proc = attrstream("sweep", *SWEEP, "--out", str(copy))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert warnings == [
        f"attrstream: warning: {copy}: recomputing 2 unit(s) whose objects are missing or damaged: units [1, 2] "
        "(attributions/saliency unit 1: object attributions/saliency/c/1/0/0 missing; "
        "layers/stage1/grad_cam_scale unit 2: object layers/stage1/grad_cam_scale/c/2 missing)"
    ]
    assert f"resuming {copy}: 1 of 3 units already done; 8 examples left" in proc.stderr
    assert_same_arrays(copy, reference)


def test_a_corrupted_shard_stops_finalize_in_one_line_and_repair_recomputes_it(copy, reference):
    damage(copy, "layers/stage2/stats/c/2/0/0", "corrupt")
    rerun = attrstream("sweep", *SWEEP, "--out", str(copy))
    assert rerun.returncode == 2 and "Traceback" not in rerun.stderr
    assert rerun.stderr.splitlines()[-1] == (
        f"attrstream sweep: error: Expected intact data in layers/stage2/stats of {copy}, got a damaged unit 2 "
        f"(examples 8..11): checksum mismatch (crc32c); run `attrstream verify {copy}` to list the damage, "
        "and rerun the sweep with --repair to recompute it."
    )
    repair = attrstream("sweep", *SWEEP, "--out", str(copy), "--repair")
    assert repair.returncode == 0, repair.stderr
    assert "attrstream: damaged layers/stage2/stats unit 2 (examples 8..11): checksum mismatch (crc32c)" in repair.stderr
    assert "recomputing 1 unit(s) whose objects are missing or damaged: units [2]" in repair.stderr
    assert attrstream("verify", str(copy), "--no-progress").returncode == 0
    assert_same_arrays(copy, reference)
    assert "repair" not in open_run(copy).meta["config"]  # how a store is written is not fingerprinted
