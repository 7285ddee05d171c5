"""A store group as an ``xarray.Dataset`` with the maps decoded: what ``xarray.open_zarr`` cannot do.

``xarray.open_zarr`` opens every group as is, so a map comes back as the float16 ``map / scale``
it is stored as. Here each map is multiplied back by its ``<name>_scale`` sibling (which is then
left out), and the per-example axis gets the coordinates a reader selects by: ``example`` (the
data set index), ``label``, ``pred`` and ``done`` (finished and not skipped). With dask installed
the arrays stay lazy (one dask chunk per shard); without it they are read into numpy.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from attrstream.engine.errors import DependencyError, StoreError, close_matches

if TYPE_CHECKING:
    import xarray

    from attrstream.engine.store.reader import Run

SCALE_SUFFIX = "_scale"
_EXAMPLE_COORDS = {"label": "inputs/label", "pred": "outputs/pred"}  # coordinate name -> array path
_SPATIAL = ("y", "x", "thumb_y", "thumb_x", "channel")  # axes given integer position coordinates


def _values(array: zarr.Array, lazy: bool) -> Any:
    if not lazy:
        return np.asarray(array[:])
    import dask.array as da

    return da.from_array(array, chunks=array.shards or array.chunks)


def _groups(run: Run) -> list[str]:
    names = ["inputs", "outputs", "attributions", *(f"layers/{layer}" for layer in run.layers)]
    return [name for name in names if name in run.group]


def _open_group(run: Run, group: str) -> zarr.Group:
    node = run.group.get(group)
    if not isinstance(node, zarr.Group) or not any(True for _ in node.arrays()):
        choices = _groups(run)
        raise StoreError(f"Expected a group of arrays of this store ({', '.join(choices)}), got {group!r}."
                         f"{close_matches(group, choices)}")
    return node


def _example_coords(run: Run, n: int, lazy: bool) -> dict[str, tuple[str, Any]]:
    """The per-example coordinates; ``done`` marks rows of finished units that were not skipped."""
    coords: dict[str, tuple[str, Any]] = {"example": ("example", _values(run.group["inputs/index"], lazy))}
    coords.update({name: ("example", _values(run.group[path], lazy)) for name, path in _EXAMPLE_COORDS.items()})
    finished = np.repeat(run.units_done.astype(bool), run.spec.unit)[:n]
    coords["done"] = ("example", finished & (np.asarray(run.group["inputs/skipped"][:]) == 0))
    return coords


def to_xarray(run: Run, group: str, *, lazy: bool | None = None) -> xarray.Dataset:
    """``group`` of ``run`` (``"attributions"``, ``"layers/layer4"``, ``"inputs"``, ``"outputs"``) as a Dataset.

    Maps are float32 ``stored × scale``; ``lazy=None`` means dask when installed, ``False`` numpy.
    """
    try:
        import xarray as xr
    except ImportError:
        raise DependencyError("Run.to_xarray needs xarray: pip install xarray (dask too, for lazy arrays).") from None
    lazy = find_spec("dask") is not None if lazy is None else lazy
    if lazy and find_spec("dask") is None:
        raise DependencyError("Expected dask installed for lazy=True, got none: pip install dask, or pass lazy=False.")
    node = _open_group(run, group)
    arrays = dict(node.arrays())
    coords: dict[str, Any] = {}
    data_vars: dict[str, Any] = {}
    for name, array in sorted(arrays.items()):
        dims = tuple(array.metadata.dimension_names or ())
        if name == "stat":
            coords["stat"] = (dims, [str(v) for v in array[:]])
            continue
        if name.endswith(SCALE_SUFFIX) and name[: -len(SCALE_SUFFIX)] in arrays:
            continue
        values = _values(array, lazy)
        scale = arrays.get(f"{name}{SCALE_SUFFIX}")
        attrs = dict(array.attrs)
        if scale is not None:
            values = values.astype(np.float32) * _values(scale, lazy).reshape(-1, *([1] * (array.ndim - 1)))
            attrs.pop("scale", None)
            attrs["decoded"] = f"stored × {name}{SCALE_SUFFIX}"
        data_vars[name] = (dims, values, attrs)
    all_dims = {d for dims, *_ in data_vars.values() for d in dims}
    if "example" in all_dims:
        coords.update(_example_coords(run, run.n, lazy))
        for name, path in {"index": "inputs/index", **_EXAMPLE_COORDS}.items():
            if path == f"{group}/{name}":  # a coordinate now, not a variable beside it
                data_vars.pop(name, None)
    sizes = {d: size for dims, values, _ in data_vars.values() for d, size in zip(dims, values.shape, strict=True)}
    coords.update({d: np.arange(sizes[d]) for d in _SPATIAL if d in sizes})
    return xr.Dataset(data_vars, coords=coords, attrs={"store": str(run.path), "group": group})
