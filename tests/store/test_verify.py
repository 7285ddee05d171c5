"""``attrstream verify`` on real stores damaged on disk: each kind of object, deleted, truncated or corrupted.

A reference store is written once by a real sweep; each case damages a copy of it, runs the real
CLI in a subprocess, then repairs the copy with ``sweep --repair`` and compares it with the
reference array by array.
"""

from __future__ import annotations

import contextlib

import pytest

from attrstream.engine.errors import StoreError
from attrstream.engine.store import Damage, finalize_store, open_run, verify_store
from tests.store._faults import OBJECTS, assert_same_arrays, attrstream, damage, sweep_cli

FAULTS = ("delete", "truncate", "corrupt")
EXPECTED_REASON = {  # what verify says, by (kind, fault); the rest: a checksum mismatch
    ("map shard", "delete"): "missing",
    ("stats shard", "delete"): "missing",
    ("scale array", "delete"): "missing",
    ("done marker", "delete"): "not marked done in a finalized store",
    ("root metadata", "delete"): "root metadata missing",
    ("root metadata", "truncate"): "root metadata unreadable",
    ("root metadata", "corrupt"): "root metadata unreadable",
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", list(OBJECTS))
def test_verify_names_the_damaged_object_and_repair_restores_the_store(store_copy, swept_store, kind, fault):
    key, array, unit, examples = OBJECTS[kind]
    damage(store_copy, key, fault)

    proc = attrstream("verify", str(store_copy), "--no-progress")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    *found, summary = proc.stdout.splitlines()
    assert len(found) == 1, proc.stdout
    where = f" unit {unit} (examples {examples}):" if unit is not None else ":"
    assert found[0].startswith(f"damaged {array}{where}"), found[0]
    assert EXPECTED_REASON.get((kind, fault), "checksum mismatch (crc32c)") in found[0]
    assert str(store_copy) in summary and "--repair" in summary

    recomputes = pytest.warns(UserWarning, match=rf"recomputing 1 unit.*units \[{unit}\]")
    with recomputes if unit is not None else contextlib.nullcontext():  # lost root metadata: rewritten, no unit redone
        sweep_cli(store_copy, "--repair")
    assert verify_store(store_copy).intact
    assert_same_arrays(store_copy, swept_store)


def test_intact_store_exits_0_and_a_directory_that_is_no_store_exits_2(swept_store, tmp_path):
    proc = attrstream("verify", str(swept_store), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{swept_store}: 3 of 3 units done, 18 arrays each: intact"]
    (tmp_path / "notes.txt").write_text("x")
    proc = attrstream("verify", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"attrstream verify: error: Expected an attrstream store at {tmp_path}, found none."


def test_run_verify_reports_every_damaged_unit(store_copy):
    damage(store_copy, "attributions/saliency/c/1/0/0", "delete")
    damage(store_copy, "layers/stage2/stats/c/2/0/0", "corrupt")
    report = open_run(store_copy).verify(progress=False)
    assert not report.intact and report.damaged_units == [1, 2]
    assert report.damaged == (
        Damage("attributions/saliency", 1, (4, 8), "object attributions/saliency/c/1/0/0 missing"),
        Damage("layers/stage2/stats", 2, (8, 12), "checksum mismatch (crc32c)"),
    )
    assert report.lines()[-1].endswith("2 damaged object(s) in 2 unit(s) [1, 2]; rerun the same sweep with --repair "
                                       "to recompute them")


def test_a_rerun_recomputes_units_whose_objects_are_missing(store_copy, swept_store):
    damage(store_copy, "attributions/saliency/c/1/0/0", "delete")
    damage(store_copy, "layers/stage2/grad_cam/c/2/0/0", "truncate")  # not found by a listing: left for --repair
    (store_copy / "attributions/grad_x_input_scale/c/0").write_bytes(b"")  # empty: zarr would read fill values
    with pytest.warns(UserWarning, match=r"recomputing 2 unit\(s\) whose objects are missing or damaged: units \[0, 1\]"):
        sweep_cli(store_copy)
    assert verify_store(store_copy).damaged_units == [2]


def test_damaged_reads_raise_store_error_naming_array_unit_and_examples(store_copy):
    damage(store_copy, "attributions/saliency/c/1/0/0", "delete")
    damage(store_copy, "layers/stage2/stats/c/2/0/0", "corrupt")
    run = open_run(store_copy)
    with pytest.raises(StoreError, match=r"attributions/saliency .* unit 1 \(examples 4\.\.7\): object .* missing; "
                                         r"run `attrstream verify .*` .* --repair"):
        run.attribution("saliency")
    with pytest.raises(StoreError, match=r"layers/stage2/stats .* unit 2 \(examples 8\.\.11\): checksum mismatch"):
        run.layer_stats("stage2", [9])
    assert run.layer_stats("stage2", [0, 5]).shape[0] == 2  # the intact units still read


def test_finalize_refuses_to_pool_over_missing_objects(store_copy):
    damage(store_copy, "layers/stage2/stats/c/2/0/0", "delete")
    with pytest.raises(StoreError, match=r"units \[2\] \(layers/stage2/stats unit 2: .*missing\); "
                                         r"dataset_stats are never pooled over missing examples: rerun the same sweep"):
        finalize_store(store_copy)


def test_info_shows_missing_objects_and_render_fails_in_one_line(store_copy, tmp_path):
    damage(store_copy, "attributions/saliency/c/1/0/0", "delete")
    info = attrstream("info", str(store_copy))
    assert info.returncode == 0, info.stderr
    assert "damaged   objects missing in units [1] (attributions/saliency unit 1:" in info.stdout
    render = attrstream("render", str(store_copy), "--out", str(tmp_path / "report"))
    assert render.returncode == 2 and "Traceback" not in render.stderr
    assert render.stderr.strip().splitlines()[-1].startswith(
        "attrstream render: error: Expected intact data in attributions/saliency")
