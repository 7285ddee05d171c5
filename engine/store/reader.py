"""Reading a store back: run metadata and row-selective readers that undo the map scaling.

Only the requested rows are read (zarr fetches just the inner chunks they touch), so rendering a
handful of examples from a 100k-example store stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from attrstream.engine.errors import StoreError, close_matches
from attrstream.engine.store.features import feature_layers, read_features
from attrstream.engine.store.layout import example_arrays
from attrstream.engine.store.location import StoreLocation, locate, open_group
from attrstream.engine.store.meta import decode_failure, read_done, read_ready_meta, repair_hint
from attrstream.engine.store.spec import RunSpec
from attrstream.engine.store.verify import VerifyReport, read_checked, verify_store

if TYPE_CHECKING:
    import xarray

Examples = slice | Sequence[int] | np.ndarray | int


class Run:
    """An attrstream store opened for reading (see :func:`open_run`)."""

    def __init__(self, path: str | os.PathLike | StoreLocation) -> None:
        self.path = locate(path)  # str() and .name as for a Path; a local one is also os.PathLike
        self.meta: dict[str, Any] = read_ready_meta(self.path)
        self.spec = RunSpec.from_dict(self.meta["spec"])
        self.group = open_group(self.path, "r")
        self.n = self.spec.n
        self.methods = self.spec.methods
        self.layers = tuple(layer.name for layer in self.spec.layers)
        self._done: np.ndarray | None = None  # units done when first read: whose objects must exist

    def __repr__(self) -> str:
        done = self.units_done
        return f"Run({str(self.path)!r}, n={self.n}, units {int(done.sum())}/{len(done)} done)"

    @property
    def units_done(self) -> np.ndarray:
        return read_done(self.group, self.path)

    @property
    def complete(self) -> bool:
        return bool(self.units_done.all())

    def verify(self, *, progress: bool | None = None) -> VerifyReport:
        """Read every object of every done unit and check its checksums (see :func:`verify_store`)."""
        return verify_store(self.path, progress=progress)

    # -- selection ---------------------------------------------------------------------------

    def _array(self, path: str, what: str, choices: Sequence[str]) -> zarr.Array:
        try:
            return self.group[path]
        except KeyError:
            given = path.rsplit("/", 1)[-1] if what != "layer" else path.split("/")[1]
            raise StoreError(
                f"Expected a {what} of this store ({', '.join(choices) or 'none'}), got {given!r}."
                f"{close_matches(given, choices)}"
            ) from None

    def _rows(self, array: zarr.Array, examples: Examples) -> np.ndarray:
        if self._done is None:
            self._done = self.units_done
        if isinstance(examples, slice):
            return read_checked(self.path, array, self.spec, examples, self._done)
        idx = np.atleast_1d(np.asarray(examples))
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise StoreError(f"Expected examples as a slice or 1-d integers, got {np.asarray(examples)!r}.")
        if idx.size and (idx.min() < -self.n or idx.max() >= self.n):
            raise StoreError(f"Expected example indices in [-{self.n}, {self.n}), got {idx.min()}..{idx.max()}.")
        return read_checked(self.path, array, self.spec, np.where(idx < 0, idx + self.n, idx), self._done)

    def _whole(self, path: str) -> np.ndarray:
        """A small array without an example axis (coordinates, dataset_stats), read whole."""
        try:
            return np.asarray(self.group[path][:])
        except ValueError as err:
            raise StoreError(
                f"Expected intact data in {path} of {self.path}, got {decode_failure(err)}; "
                f"{repair_hint(self.path)}."
            ) from None

    def _map(self, path: str, what: str, choices: Sequence[str], examples: Examples) -> np.ndarray:
        stored = self._rows(self._array(path, what, choices), examples)
        scale = self._rows(self.group[f"{path}_scale"], examples).astype(np.float32)
        return stored.astype(np.float32) * scale.reshape(-1, *([1] * (stored.ndim - 1)))

    def _layer_path(self, layer: str, name: str) -> str:
        if layer not in self.layers:
            raise StoreError(
                f"Expected a layer of this store ({', '.join(self.layers) or 'none'}), got {layer!r}."
                f"{close_matches(layer, self.layers)}"
            )
        return f"layers/{layer}/{name}"

    def _layer_map(self, layer: str, method: str, examples: Examples) -> np.ndarray:
        path = self._layer_path(layer, method)
        choices = [m for m in self.spec.layer_methods if m in self.group[f"layers/{layer}"]]
        return self._map(path, "layer method", choices, examples)

    # -- readers -----------------------------------------------------------------------------

    def attribution(self, method: str, examples: Examples = slice(None)) -> np.ndarray:
        """float32 ``[n, H, W]`` map = stored × per-example scale."""
        if method not in self.methods:
            raise StoreError(
                f"Expected an attribution method of this store ({', '.join(self.methods) or 'none'}), "
                f"got {method!r}.{close_matches(method, self.methods)}"
            )
        return self._map(f"attributions/{method}", "method", self.methods, examples)

    def layer_stats(self, layer: str, examples: Examples = slice(None)) -> np.ndarray:
        """float32 ``[n, C, S]`` per-example channel statistics, columns named by :meth:`stat_names`."""
        path = self._layer_path(layer, "stats")
        return self._rows(self._array(path, "layer method", self.spec.layer_methods), examples)

    def stat_names(self, layer: str) -> tuple[str, ...]:
        """The ``stat`` coordinate of a layer: the names of the statistics' columns, as stored."""
        path = self._layer_path(layer, "stat")
        self._array(path, "layer method", self.spec.layer_methods)
        return tuple(str(v) for v in self._whole(path))

    def grad_x_act(self, layer: str, examples: Examples = slice(None)) -> np.ndarray:
        """float32 ``[n, h, w]`` layer gradient × activation map."""
        return self._layer_map(layer, "grad_x_act", examples)

    def cam(self, layer: str, examples: Examples = slice(None)) -> np.ndarray:
        """float32 ``[n, h, w]`` Grad-CAM map."""
        return self._layer_map(layer, "grad_cam", examples)

    def dataset_stats(self, layer: str) -> np.ndarray:
        """float64 ``[C, S]`` pooled statistics, columns named by :meth:`stat_names`, available once the
        store is finalized."""
        path = self._layer_path(layer, "dataset_stats")
        if path not in self.group:
            raise StoreError(f"Expected a finalized store with {path}, got a store that is not finalized.")
        return self._whole(path)

    def _subgroup(self, name: str, examples: Examples) -> dict[str, np.ndarray]:
        group = self.group[name]
        return {key: self._rows(array, examples) for key, array in sorted(group.arrays())}

    def read(self, path: str, examples: Examples = slice(None)) -> np.ndarray:
        """Rows of any per-example array by its store path (``"outputs/pred"``), as stored."""
        paths = [a.path for a in example_arrays(self.spec)]
        if path not in paths:
            raise StoreError(
                f"Expected a per-example array of this store ({', '.join(paths)}), got {path!r}.{close_matches(path, paths)}"
            )
        return self._rows(self.group[path], examples)

    def outputs(self, examples: Examples = slice(None)) -> dict[str, np.ndarray]:
        """``outputs/*`` rows: logits (float32, also from older float16 stores) or topk_index/topk_prob,
        pred, target, score."""
        rows = self._subgroup("outputs", examples)
        if "logits" in rows:
            rows["logits"] = rows["logits"].astype(np.float32, copy=False)
        return rows

    def inputs(self, examples: Examples = slice(None)) -> dict[str, np.ndarray]:
        """``inputs/*`` rows: index, label, thumbnail, skipped and mask when present."""
        return self._subgroup("inputs", examples)

    @property
    def feature_layers(self) -> list[str]:
        """Layers with feature visualizations (``attrstream features``) in this store."""
        return feature_layers(self.path)

    def features(self, layer: str) -> dict[str, Any]:
        """The optimized inputs of ``layer``'s channels done so far: ``channel``, ``input``, ``image``,
        ``activation``, ``curve`` and the job's ``settings`` (see :mod:`~attrstream.engine.store.features`)."""
        return read_features(self.path, layer)

    def to_xarray(self, group: str, *, lazy: bool | None = None) -> xarray.Dataset:
        """``group`` as an ``xarray.Dataset`` with maps decoded (stored × scale) and per-example coordinates.

        ``example`` (data set index), ``label``, ``pred``, ``done``; ``stat`` names; positions on the
        spatial axes. Lazy (dask) when dask is installed, else numpy; see :mod:`~attrstream.engine.store.xarray_view`.
        """
        from attrstream.engine.store.xarray_view import to_xarray

        return to_xarray(self, group, lazy=lazy)


def open_run(path: str | os.PathLike | StoreLocation) -> Run:
    """Open an attrstream store for reading: a local path, a ``file://`` URL or any fsspec URL."""
    return Run(path)
