"""Whole shards encoded in one piece, bypassing zarr's per-chunk pipeline.

A unit fills one shard of every per-example array, and zarr-python spends more time in its
per-chunk pipeline (async tasks, buffer prototypes, index round trips) than Blosc spends
compressing: it wrote at 0.39 of raw sequential writes of the same bytes (benchmarks/bench_store.py).
A shard of our layout is simple to build directly — its inner chunks in order, each
``bytes → Blosc → crc32c``, then the index of ``(offset, nbytes)`` uint64 pairs and its crc32c —
so the writer builds the bytes itself with the codecs zarr itself would use and stores them as one
object, atomically (:meth:`StoreLocation.write`). The result is byte-for-byte what zarr writes
(tests/store/test_shards.py) and is read by plain zarr-python.

Arrays whose codecs are not exactly that layout go through zarr's own write.
"""

from __future__ import annotations

from dataclasses import dataclass

import google_crc32c
import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation

ABSENT = 2**64 - 1  # the index entry (offset and length) of a chunk the shard does not hold
_SHUFFLE = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}


def _with_crc(data: bytes) -> list[bytes]:
    return [data, np.uint32(google_crc32c.value(data)).astype("<u4").tobytes()]


@dataclass(frozen=True)
class ShardEncoder:
    """Encodes one array's complete shards exactly as its zarr metadata describes them."""

    array: zarr.Array
    chunk_rows: int  # rows of one inner chunk (inner chunks split the example axis only)
    shard_rows: int
    blosc: Blosc

    @classmethod
    def for_array(cls, array: zarr.Array) -> ShardEncoder | None:
        """The encoder of ``array``, or None when its codecs are not the layout this module builds."""
        codecs = array.metadata.codecs
        if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
            return None
        sharding = codecs[0]
        inner, index = sharding.codecs, sharding.index_codecs
        if not (
            len(inner) == 3
            and isinstance(inner[0], BytesCodec)
            and isinstance(inner[1], BloscCodec)
            and isinstance(inner[2], Crc32cCodec)
            and len(index) == 2
            and isinstance(index[0], BytesCodec)
            and isinstance(index[1], Crc32cCodec)
            and sharding.index_location == ShardingCodecIndexLocation.end
            and tuple(sharding.chunk_shape[1:]) == tuple(array.shape[1:])
            and tuple(array.shards[1:]) == tuple(array.shape[1:])
            and array.dtype.byteorder in "=<|"
            and array.order == "C"
            and array.shards[0] % sharding.chunk_shape[0] == 0
        ):
            return None
        blosc = inner[1]
        config = {"cname": blosc.cname.value, "clevel": blosc.clevel, "shuffle": _SHUFFLE[blosc.shuffle.value],
                  "blocksize": blosc.blocksize, "typesize": blosc.typesize}
        if not array.config.write_empty_chunks:  # zarr would leave out chunks of fill values
            return None
        return cls(array, sharding.chunk_shape[0], array.shards[0], Blosc.from_config(config))

    def inner_chunks(self, rows: np.ndarray) -> list[np.ndarray]:
        """The inner chunks of one shard holding ``rows``, in stored order; each is encoded by
        ``blosc.encode`` (on any thread: it releases the GIL).

        A short last shard (the array's end) has only the chunks that hold rows, the last one padded
        with the fill value: zarr writes no chunk wholly past an array's end, and pads the others."""
        if not 0 < len(rows) <= self.shard_rows:
            raise ValueError(f"Expected 1 to {self.shard_rows} rows for a shard, got {len(rows)}.")
        rows = np.ascontiguousarray(rows, dtype=self.array.dtype)
        held = -(-len(rows) // self.chunk_rows) * self.chunk_rows
        if len(rows) < held:
            padded = np.full((held, *rows.shape[1:]), self.array.fill_value, rows.dtype)
            padded[: len(rows)] = rows
            rows = padded
        return [rows[i : i + self.chunk_rows] for i in range(0, held, self.chunk_rows)]

    def assemble(self, encoded: list[bytes]) -> list[bytes]:
        """The shard's bytes, in parts, from the Blosc-encoded chunks :meth:`inner_chunks` gave: each
        with its crc32c, then the index (chunks never written marked as absent), then its crc32c."""
        parts: list[bytes] = []
        index = np.full((self.shard_rows // self.chunk_rows, 2), ABSENT, "<u8")
        offset = 0
        for i, chunk in enumerate(encoded):
            parts += _with_crc(chunk)
            index[i] = offset, len(chunk) + 4
            offset += len(chunk) + 4
        parts += _with_crc(index.tobytes())
        return parts

    def encode(self, rows: np.ndarray) -> bytes:
        """The bytes of one complete shard holding ``rows``, encoded on this thread."""
        return b"".join(self.assemble([self.blosc.encode(chunk) for chunk in self.inner_chunks(rows)]))
