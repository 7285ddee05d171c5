"""Rerunning ``attrstream sweep`` (a real subprocess) on a damaged store: resume recomputes missing
objects, a corrupted one stops finalize in one line, and ``--repair`` restores the undamaged store."""

from __future__ import annotations

from attrstream.engine.store import open_run
from tests.store._faults import SWEEP, assert_same_arrays, attrstream, damage


def test_rerun_recomputes_the_units_whose_objects_are_missing_saying_which(store_copy, swept_store):
    damage(store_copy, "attributions/saliency/c/1/0/0", "delete")
    damage(store_copy, "layers/stage1/grad_cam_scale/c/2", "delete")
    proc = attrstream("sweep", *SWEEP, "--out", str(store_copy))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert warnings == [
        f"attrstream: warning: {store_copy}: recomputing 2 unit(s) whose objects are missing or damaged: units [1, 2] "
        "(attributions/saliency unit 1: object attributions/saliency/c/1/0/0 missing; "
        "layers/stage1/grad_cam_scale unit 2: object layers/stage1/grad_cam_scale/c/2 missing)"
    ]
    assert f"resuming {store_copy}: 1 of 3 units already done; 8 examples left" in proc.stderr
    assert_same_arrays(store_copy, swept_store)


def test_a_corrupted_shard_stops_finalize_in_one_line_and_repair_recomputes_it(store_copy, swept_store):
    damage(store_copy, "layers/stage2/stats/c/2/0/0", "corrupt")
    rerun = attrstream("sweep", *SWEEP, "--out", str(store_copy))
    assert rerun.returncode == 2 and "Traceback" not in rerun.stderr
    assert rerun.stderr.splitlines()[-1] == (
        f"attrstream sweep: error: Expected intact data in layers/stage2/stats of {store_copy}, got a damaged unit 2 "
        f"(examples 8..11): checksum mismatch (crc32c); run `attrstream verify {store_copy}` to list the damage, "
        "and rerun the sweep with --repair to recompute it."
    )
    repair = attrstream("sweep", *SWEEP, "--out", str(store_copy), "--repair")
    assert repair.returncode == 0, repair.stderr
    assert "attrstream: damaged layers/stage2/stats unit 2 (examples 8..11): checksum mismatch (crc32c)" in repair.stderr
    assert "recomputing 1 unit(s) whose objects are missing or damaged: units [2]" in repair.stderr
    assert attrstream("verify", str(store_copy), "--no-progress").returncode == 0
    assert_same_arrays(store_copy, swept_store)
    assert "repair" not in open_run(store_copy).meta["config"]  # how a store is written is not fingerprinted
