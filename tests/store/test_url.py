"""Stores addressed by URL: ``memory://`` goes through zarr's fsspec store, ``file://`` stays local.

fsspec's memory filesystem is one dict per process, so a store written and read back in the same
process is a real round trip through FsspecStore (the path an ``s3://`` store takes).
"""

from __future__ import annotations

import uuid
import warnings

import fsspec
import numpy as np
import pytest
import zarr

from attrstream.engine.store import describe_store, finalize_store, open_run, open_writer
from attrstream.engine.store.location import LocalLocation, UrlLocation, locate
from attrstream.kernels.names import STAT_NAMES
from tests.store._helpers import assert_stores_equal, feed, rows, small_spec, write_run

NO_LOCK = "no writer lock on memory:// stores: run only one writer per rank; leftover partial objects are not cleaned"


@pytest.fixture
def url():
    """A fresh memory:// store URL, removed afterwards (the memory filesystem lives as long as the process)."""
    bucket = f"attrstream-test-{uuid.uuid4().hex}"
    yield f"memory://{bucket}/run.zarr"
    memory = fsspec.filesystem("memory")
    if memory.exists(bucket):
        memory.rm(bucket, recursive=True)


def no_lock_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if NO_LOCK in str(w.message)]


def test_targets_parse_into_local_or_url_locations(tmp_path):
    assert locate(tmp_path / "a.zarr") == LocalLocation(tmp_path / "a.zarr")
    assert locate(str(tmp_path / "a.zarr")) == LocalLocation(tmp_path / "a.zarr")
    assert locate(f"file://{tmp_path}/a.zarr") == LocalLocation(tmp_path / "a.zarr")
    remote = locate("memory://bucket/run.zarr/")
    assert isinstance(remote, UrlLocation) and str(remote) == "memory://bucket/run.zarr" and remote.name == "run.zarr"


def test_memory_round_trip_writes_finalizes_and_reads_back_equal(url, tmp_path):
    spec = small_spec()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with open_writer(url, spec) as writer:
            feed(writer, spec)
        finalize_store(writer.path)
        run = open_run(url)
    assert no_lock_warnings(record) == [f"{url}: {NO_LOCK}."]  # once for the store, not per open
    assert run.complete and str(run.path) == url and run.path.name == "run.zarr"
    expected = rows(spec, 0, spec.n)
    np.testing.assert_array_equal(run.inputs()["label"], expected["inputs/label"])
    np.testing.assert_array_equal(run.layer_stats("layer4.1.conv2"), expected["layers/layer4.1.conv2/stats"])
    scaled = expected["attributions/saliency"].astype(np.float32) * expected["attributions/saliency_scale"][:, None, None]
    np.testing.assert_allclose(run.attribution("saliency"), scaled, rtol=1e-6)
    assert run.dataset_stats("fc").shape == (3, len(STAT_NAMES))
    assert "finalized" in run.meta
    assert "consolidated_metadata" in zarr.open_group(locate(url).store(read_only=True), mode="r").metadata.to_dict()
    write_run(tmp_path / "ref.zarr", spec)
    finalize_store(tmp_path / "ref.zarr")
    assert_stores_equal(locate(url).store(read_only=True), tmp_path / "ref.zarr", spec)


def test_memory_store_resumes_with_the_units_not_done(url):
    spec = small_spec()
    with pytest.warns(UserWarning, match="no writer lock"):
        first = write_run(url, spec, units=[1])
    assert first.todo == [1]
    with open_writer(url, spec) as writer:
        assert writer.todo == [0, 2]
        feed(writer, spec)
    np.testing.assert_array_equal(open_run(url).units_done, [True, True, True])


def test_memory_store_refuses_a_different_configuration_and_overwrites_on_request(url):
    from attrstream.engine.errors import FingerprintMismatchError

    with pytest.warns(UserWarning, match="no writer lock"):
        write_run(url, small_spec(), units=[0])
    other = small_spec(unit=5)
    with pytest.raises(FingerprintMismatchError, match="unit: 4 -> 5"):
        open_writer(url, other)
    write_run(url, other, overwrite=True)
    assert open_run(url).spec.unit == 5 and open_run(url).complete


def test_file_url_behaves_like_the_local_path_with_its_lock(tmp_path):
    spec = small_spec()
    path = tmp_path / "run.zarr"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with open_writer(f"file://{path}", spec) as writer:
            assert (path / "writer.lock").is_file()
            feed(writer, spec)
        assert not (path / "writer.lock").exists()
        finalize_store(f"file://{path}")
    assert not [w for w in record if "no writer lock" in str(w.message)]
    assert open_run(path).complete and "finalized" in open_run(f"file://{path}").meta


def test_describe_store_reads_a_memory_store(url):
    spec = small_spec()
    with pytest.warns(UserWarning, match="no writer lock"):
        finalize_store(write_run(url, spec).path)
    text = describe_store(url)
    assert text.splitlines()[0] == f"store     {url}"
    assert "progress  3/3 units done  finalized" in text and "attributions/saliency " in text


def test_an_unknown_scheme_is_a_store_error():
    from attrstream.engine.errors import StoreError

    with pytest.raises(StoreError, match="filesystem is installed"):
        open_run("nosuchscheme://bucket/run.zarr")


def test_sweep_into_a_memory_store_is_readable(url):
    from attrstream.engine.data import FakeImages
    from attrstream.engine.pipeline import sweep
    from tests.engine.models import tiny_cnn

    with pytest.warns(UserWarning, match="no writer lock"):
        run = sweep(tiny_cnn(), FakeImages(n=8, image_size=16, num_classes=5), url, batch_size=4, unit=4,
                    methods=("saliency", "stats"), progress=False)
    again = open_run(url)
    assert again.complete and again.n == 8 and "finalized" in again.meta
    np.testing.assert_array_equal(again.inputs()["index"], np.arange(8))
    np.testing.assert_array_equal(again.attribution("saliency"), run.attribution("saliency"))
    assert np.isfinite(again.attribution("saliency")).all()


def test_a_url_holding_other_objects_is_refused_untouched(url):
    from attrstream.engine.errors import StoreError

    memory = fsspec.filesystem("memory")
    memory.pipe_file(f"{url.removeprefix('memory://')}/notes.txt", b"mine")
    with pytest.raises(StoreError, match=r"containing notes\.txt; nothing was written"):
        open_writer(url, small_spec())
    assert memory.cat_file(f"{url.removeprefix('memory://')}/notes.txt") == b"mine"
