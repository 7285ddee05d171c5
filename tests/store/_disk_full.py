"""The real CLI with a full disk at one phase of a sweep: for tests/store/test_disk_full.py.

Usage: python -m tests.store._disk_full PHASE SWEEP_ARGS...
PHASE: ``lock`` (the lock's temp file fills the disk half-written), ``layout`` (array metadata
after the first layer's), ``units`` (a shard of unit 1, after unit 0 is done) or ``finalize``
(the pooled ``dataset_stats``). Exits with the CLI's status.
"""

from __future__ import annotations

import errno
import pathlib
import sys

from zarr.storage import LocalStore

from attrstream.engine.cli import main
from attrstream.engine.store.location import LocalLocation

FULL = OSError(errno.ENOSPC, "No space left on device")
FAILS_AT = {
    "layout": lambda key: key.startswith("layers/stage2/") and key.endswith("zarr.json"),
    "units": lambda key: key.startswith("attributions/") and "/c/1/" in key,
    "finalize": lambda key: "dataset_stats" in key,
}


def full_disk(phase: str) -> None:
    if phase == "lock":
        write_text = pathlib.Path.write_text

        def half_written(self, data, *args, **kwargs):
            if self.name.endswith(".tmp") and ".lock." in self.name:
                write_text(self, data[: len(data) // 2])
                raise FULL
            return write_text(self, data, *args, **kwargs)

        pathlib.Path.write_text = half_written
        return
    set_ = LocalStore.set
    fails = FAILS_AT[phase]

    async def set_until_full(self, key, value):
        if fails(key):
            raise FULL
        return await set_(self, key, value)

    LocalStore.set = set_until_full
    write = LocalLocation.write  # whole shards bypass zarr's store (engine/store/shards.py)

    def write_until_full(self, key, parts):
        if fails(key):
            raise FULL
        return write(self, key, parts)

    LocalLocation.write = write_until_full


if __name__ == "__main__":
    full_disk(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
