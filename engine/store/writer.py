"""The unit writer: whole units assembled in two reused host buffers, written by one thread.

The compute loop appends per-batch rows; each inner chunk is queued for encoding as soon as its
rows arrived, and a unit (``spec.unit`` examples, one shard of every per-example array) is handed
to the background thread once all its rows arrived. The thread writes
each array's shard in one aligned call (zarr encodes and stores a whole shard once, atomically),
then sets the unit's done marker (``progress/unit_done[u]`` for a sweep). Two buffers bound the memory: when both are taken, ``append``
blocks until the thread frees one (backpressure) instead of allocating more.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import numpy as np
import zarr

from attrstream.engine.errors import DiskFullError, StoreError, WriterError, is_disk_full, no_space_message
from attrstream.engine.store.layout import WRITE_CONFIG, ArraySpec, shard_key
from attrstream.engine.store.location import NoLock, StoreLocation
from attrstream.engine.store.lock import WriterLock
from attrstream.engine.store.meta import DONE_PATH
from attrstream.engine.store.shards import ShardEncoder

N_BUFFERS = 2
ENCODE_THREADS = min(4, os.cpu_count() or 1)  # Blosc releases the GIL: encoding scales with cores


class Units(Protocol):
    """How an example axis is cut into units: a sweep's :class:`RunSpec`, or any other grid
    (evaluation metrics share the sweep's; feature visualization has one example per channel)."""

    n: int
    unit: int

    def unit_range(self, u: int) -> tuple[int, int]: ...


def write_shard(location: StoreLocation, array: zarr.Array, unit: int, start: int, data: np.ndarray,
                encoded: tuple[ShardEncoder, list[Future[bytes]]] | None) -> None:
    """Store unit ``unit``'s shard of ``array``, rows ``[start, start + len(data))``: as one object from
    its ``encoded`` inner chunks when it is in our layout, else through zarr's own write."""
    if encoded is not None:
        encoder, chunks = encoded
        location.write(shard_key(array.path, array.ndim, unit), encoder.assemble([f.result() for f in chunks]))
    else:
        array[start : start + len(data)] = data


@dataclass
class _Unit:
    arrays: dict[str, np.ndarray]  # key -> (unit, *row_shape) host buffer, reused across units
    index: int = -1
    start: int = 0
    stop: int = 0
    filled: int = 0  # rows received so far, in order from `start`
    encoding: dict[str, list[Future[bytes]]] = field(default_factory=dict)  # inner chunks queued so far, in order

    @property
    def complete(self) -> bool:
        return self.start + self.filled == self.stop


class StoreWriter:
    """Owner of a store's writer lock, its open group and the background writer thread.

    Built by :func:`~attrstream.engine.store.prepare.open_writer`; closing it (or leaving its
    ``with`` block) writes the complete units, joins the thread and releases the lock.

    ``arrays`` are the per-example arrays it fills (one shard each per unit) and ``progress`` the
    path of their done markers: a sweep's arrays and ``progress/unit_done``, or a later job's own
    arrays with its own progress array in the same store. ``on_unit_done(u, rows)`` (optional) is
    called from the writer thread after unit ``u`` is marked done, with the unit's rows as stored
    (``{path: rows}``, views of a buffer that is reused once the call returns: read, don't keep).
    """

    def __init__(
        self,
        location: StoreLocation,
        group: zarr.Group,
        spec: Units,
        lock: WriterLock | NoLock,
        todo: Sequence[int],
        *,
        arrays: Sequence[ArraySpec],
        progress: str = DONE_PATH,
        units_done: int = 0,
        on_unit_done: Callable[[int, Mapping[str, np.ndarray]], None] | None = None,
        opened: Mapping[str, zarr.Array] | None = None,
    ) -> None:
        """Take ownership of a held ``lock`` and an open ``group``; :func:`open_writer` builds these.
        ``opened``: handles of arrays just created (by path), not read back from the store."""
        self.path = location
        self.spec = spec
        self.group = group
        self._lock = lock
        self.todo: list[int] = list(todo)
        self.units_done_before = units_done  # units already marked done when this writer opened
        self._expected = {a.path: a for a in arrays}
        try:
            opened = opened or {}
            self._arrays = {key: (opened.get(key) or self.group[key]).with_config(WRITE_CONFIG) for key in self._expected}
            self._unit_done = opened.get(progress) or self.group[progress]
            self._encoders = {key: ShardEncoder.for_array(array) for key, array in self._arrays.items()}
            self._encode_pool = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="attrstream-encode")
        except KeyError as err:
            self._lock.release()
            raise StoreError(f"Expected the array {err} in the store {self.path}, found none: the store is damaged.") from None
        self._pending = set(self.todo)  # todo units not yet fully received
        self._open: dict[int, _Unit] = {}
        self._on_unit_done = on_unit_done
        self._cv = threading.Condition()
        self._free: list[_Unit] = []
        self._ready: deque[_Unit] = deque()
        self._stopping = False
        self._error: StoreError | None = None
        self._closed = False
        self.buffers_allocated = 0
        self.units_written = 0
        self.append_wait_s = 0.0  # time append spent blocked on a full pipeline (backpressure)
        self._idle_s = 0.0
        self._started = time.perf_counter()
        self._stopped: float | None = None
        self._thread = threading.Thread(target=self._run, name="attrstream-writer", daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------

    def unit_range(self, u: int) -> tuple[int, int]:
        """``[start, stop)`` example indices of unit ``u`` (the last unit may be short)."""
        return self.spec.unit_range(u)

    def append(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Add rows ``[start, start + len)`` of every per-example array.

        ``arrays`` maps the path of every array this writer fills (store paths such as
        ``"attributions/saliency"``) to rows in the stored dtype and row shape, maps already divided
        by their ``_scale``. Rows must lie in todo units and continue each unit in order; a batch
        may span two units, and units may come in any order. Blocks while both buffers are taken.
        """
        if self._closed:
            raise StoreError(f"Expected an open writer for {self.path}, got a closed one.")
        self._raise_error()
        rows = self._check_arrays(arrays)
        segments = self._segments(start, rows)
        for u, lo, hi in segments:
            buf = self._buffer_for(u)
            n = hi - lo
            for key, data in arrays.items():
                buf.arrays[key][buf.filled : buf.filled + n] = data[lo - start : hi - start]
            buf.filled += n
            self._encode_filled_chunks(buf)
            if buf.complete:
                del self._open[u]
                self._pending.discard(u)
                with self._cv:
                    self._ready.append(buf)
                    self._cv.notify_all()

    def _check_arrays(self, arrays: Mapping[str, np.ndarray]) -> int:
        missing = sorted(self._expected.keys() - arrays.keys())
        unknown = sorted(arrays.keys() - self._expected.keys())
        if missing or unknown:
            raise StoreError(
                f"Expected exactly the keys {', '.join(self._expected)}; "
                + (f"missing {', '.join(missing)}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown {', '.join(unknown)}" if unknown else "")
                + "."
            )
        lengths = set()
        for key, spec in self._expected.items():
            data = arrays[key]
            if not isinstance(data, np.ndarray) or data.dtype != np.dtype(spec.dtype) or data.shape[1:] != spec.row_shape:
                got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
                raise StoreError(
                    f"Expected {key} as a numpy {spec.dtype} array of shape (rows, {', '.join(map(str, spec.row_shape))}), got {got}."
                )
            lengths.add(len(data))
        if len(lengths) != 1:
            raise StoreError(f"Expected every array of one append to have the same length, got lengths {sorted(lengths)}.")
        return lengths.pop()

    def _segments(self, start: int, rows: int) -> list[tuple[int, int, int]]:
        """(unit, lo, hi) pieces of ``[start, start + rows)``, validated before any copy."""
        stop = start + rows
        if not 0 <= start <= stop <= self.spec.n:
            raise StoreError(f"Expected rows within [0, {self.spec.n}), got [{start}, {stop}).")
        segments, pos = [], start
        while pos < stop:
            u = pos // self.spec.unit
            lo, hi = self.unit_range(u)
            if u not in self._pending:
                state = "already complete" if u in self.todo else "done or not assigned to this writer"
                raise StoreError(f"Expected rows of units still to do {sorted(self._pending)}, got rows of unit {u} ({state}).")
            expected = lo + (self._open[u].filled if u in self._open else 0)
            if pos != expected:
                raise StoreError(f"Expected unit {u} to continue at example {expected} (rows in order), got {pos}.")
            segments.append((u, pos, min(stop, hi)))
            pos = min(stop, hi)
        return segments

    def _buffer_for(self, u: int) -> _Unit:
        if u in self._open:
            return self._open[u]
        t0 = time.perf_counter()
        with self._cv:
            while True:
                self._raise_error()
                if self._free:
                    buf = self._free.pop()
                    break
                if self.buffers_allocated < N_BUFFERS:
                    buf = _Unit({k: np.empty((self.spec.unit, *a.row_shape), a.dtype) for k, a in self._expected.items()})
                    self.buffers_allocated += 1
                    break
                if len(self._open) >= N_BUFFERS:
                    raise StoreError(
                        f"Expected at most {N_BUFFERS} units filled at once, got rows of unit {u} while units "
                        f"{sorted(self._open)} are still incomplete."
                    )
                self._cv.wait()
        self.append_wait_s += time.perf_counter() - t0
        buf.index, (buf.start, buf.stop), buf.filled, buf.encoding = u, self.unit_range(u), 0, {}
        self._open[u] = buf
        return buf

    def _encode_filled_chunks(self, buf: _Unit) -> None:
        """Queue the encoding of every inner chunk the unit's rows now fill, while compute goes on,
        so that a unit's completion (the last unit's above all: its flush is on the critical path)
        leaves only its last chunks to encode. The rows of a filled chunk never change again."""
        for key, encoder in self._encoders.items():
            if encoder is None:
                continue
            queued = buf.encoding.setdefault(key, [])
            rows = encoder.chunk_rows
            while (len(queued) + 1) * rows <= buf.filled:
                lo = len(queued) * rows
                queued.append(self._encode_pool.submit(encoder.blosc.encode, buf.arrays[key][lo : lo + rows]))

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                t0 = time.perf_counter()
                while not self._ready and not self._stopping:
                    self._cv.wait()
                self._idle_s += time.perf_counter() - t0
                if not self._ready:
                    return
                buf = self._ready.popleft()
            try:
                self._write_unit(buf)
            except BaseException as err:
                with self._cv:
                    self._error = self._unit_error(buf, err)
                    self._error.__cause__ = err
                    self._free += [buf, *self._ready]
                    self._ready.clear()
                    self._cv.notify_all()
                return
            with self._cv:
                self._free.append(buf)
                self.units_written += 1
                self._cv.notify_all()

    def _unit_error(self, buf: _Unit, err: BaseException) -> StoreError:
        examples = f"examples {buf.start}..{buf.stop - 1}"
        if is_disk_full(err):
            return DiskFullError(no_space_message(self.path, f"writing unit {buf.index}, {examples}"))
        return WriterError(f"Writing unit {buf.index} ({examples}) of {self.path} failed: {type(err).__name__}: {err}. "
                           "Units marked done before it are intact; rerun to resume.")

    def _write_unit(self, buf: _Unit) -> None:
        rows = buf.stop - buf.start
        # The inner chunks not queued while the unit filled (a short last chunk, padded) are queued
        # now; shards are stored in order as their chunks finish, so storing one overlaps encoding the next.
        encoding = {key: (enc, self._queue_rest(buf, key, enc, rows)) for key, enc in self._encoders.items() if enc is not None}
        try:
            for key, array in self._arrays.items():
                write_shard(self.path, array, buf.index, buf.start, buf.arrays[key][:rows], encoding.get(key))
        finally:  # nothing may still read the buffer once it is handed back
            futures = [f for _, chunks in encoding.values() for f in chunks]
            for f in futures:
                f.cancel()
            wait(futures)
        self._unit_done[buf.index] = 1  # only after every array of the unit is stored
        if self._on_unit_done is not None:
            self._on_unit_done(buf.index, {key: data[:rows] for key, data in buf.arrays.items()})

    def _queue_rest(self, buf: _Unit, key: str, encoder: ShardEncoder, rows: int) -> list[Future[bytes]]:
        queued = buf.encoding.get(key, [])
        rest = encoder.inner_chunks(buf.arrays[key][:rows])[len(queued):]
        return [*queued, *(self._encode_pool.submit(encoder.blosc.encode, chunk) for chunk in rest)]

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def idle_fraction(self) -> float:
        """Share of the writer thread's life spent waiting for work (1.0: never the bottleneck)."""
        wall = (self._stopped or time.perf_counter()) - self._started
        return self._idle_s / wall if wall > 0 else 1.0

    def close(self, *, raise_errors: bool = True) -> None:
        """Write the complete units, join the thread, release the lock; re-raise a writer error."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._open:
                if raise_errors:
                    warnings.warn(
                        f"Closing {self.path} with incomplete units {sorted(self._open)}: not marked done, "
                        "a rerun recomputes them.",
                        stacklevel=2,
                    )
                self._open.clear()
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            self._thread.join()
            self._encode_pool.shutdown()
            self._stopped = time.perf_counter()
        finally:
            self._lock.release()
        if raise_errors:
            self._raise_error()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(raise_errors=exc_type is None)
