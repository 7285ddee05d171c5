"""Opening an existing path: resume, refuse a different config, overwrite, refuse non-stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from attrstream.engine.errors import FingerprintMismatchError, StoreError
from attrstream.engine.store import open_run, open_writer
from tests.store._helpers import assert_stores_equal, feed, rows, small_spec, write_run


def test_resume_continues_with_the_units_not_done(tmp_path):
    spec = small_spec()
    path = tmp_path / "run.zarr"
    first = write_run(path, spec, units=[1])  # only unit 1 (examples 4..7)
    assert first.todo == [1]
    with open_writer(path, spec) as writer:
        assert writer.todo == [0, 2]
        feed(writer, spec)
    np.testing.assert_array_equal(open_run(path).units_done, [True, True, True])
    write_run(tmp_path / "ref.zarr", spec)
    assert_stores_equal(path, tmp_path / "ref.zarr", spec)


def test_units_restrict_the_work_and_create_false_joins_an_existing_store(tmp_path):
    spec = small_spec()
    path = tmp_path / "run.zarr"
    with pytest.raises(StoreError, match="prepare=False"):
        open_writer(path, spec, prepare=False)
    assert not path.exists()
    write_run(path, spec, units=[0])
    rank1 = write_run(path, spec, units=[1, 2], prepare=False, lock_name="writer.rank1")
    assert rank1.todo == [1, 2] and open_run(path).complete
    with pytest.raises(StoreError, match=r"unit indices in \[0, 3\), got \[3\]"):
        open_writer(path, spec, units=[3])


def test_different_config_is_refused_naming_the_differences(tmp_path):
    path = tmp_path / "run.zarr"
    write_run(path, small_spec(), units=[0])
    changed = small_spec(n=12, methods=("saliency",), config={"model": "tiny", "weights_sha256": "cd" * 32})
    with pytest.raises(FingerprintMismatchError) as info:
        open_writer(path, changed)
    message = str(info.value)
    for expected in ("n: 10 -> 12", "methods:", "config.weights_sha256:", "--overwrite"):
        assert expected in message
    assert "config.model" not in message  # unchanged keys are not listed
    assert not (path / "writer.lock").exists()
    # the compressor is not fingerprinted: the store keeps its codec and resumes
    with open_writer(path, small_spec(compressor="zstd")) as writer:
        assert writer.todo == [1, 2]


def test_overwrite_starts_over(tmp_path):
    path = tmp_path / "run.zarr"
    write_run(path, small_spec())
    other = small_spec(n=5, has_mask=True)
    with open_writer(path, other, overwrite=True) as writer:
        assert writer.todo == [0, 1]
        writer.append(0, rows(other, 0, 5))
    run = open_run(path)
    assert run.spec == other and run.complete and "mask" in run.inputs()
    assert "saliency" in run.group["attributions"]


def test_not_writable_path_is_refused_and_nothing_written(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="writable store path"):
        open_writer(blocker / "run.zarr", small_spec())
    with pytest.raises(StoreError, match="got a file"):
        open_writer(blocker, small_spec())
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("overwrite", [False, True])
def test_existing_non_store_directory_is_refused_untouched(tmp_path, overwrite):
    home = tmp_path / "photos"
    home.mkdir()
    (home / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(StoreError, match=r"got a directory containing cat.jpg; nothing was written"):
        open_writer(home, small_spec(), overwrite=overwrite)
    assert sorted(p.name for p in home.iterdir()) == ["cat.jpg"]
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(foreign, mode="w", attributes={"owner": "someone"})
    before = json.loads((foreign / "zarr.json").read_text())
    with pytest.raises(StoreError, match="without attrstream metadata"):
        open_writer(foreign, small_spec(), overwrite=overwrite)
    assert json.loads((foreign / "zarr.json").read_text()) == before


def test_empty_directory_becomes_a_store(tmp_path):
    write_run(tmp_path, small_spec())
    assert open_run(tmp_path).complete
