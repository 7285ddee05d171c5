"""The run description: what a store holds, validated on construction and fingerprinted.

A store is a (path, fingerprint) pair: reopening with the same fingerprint resumes, a different one
is refused. The fingerprint therefore covers everything that changes stored *values*; the
compressor is left out on purpose (it changes bytes on disk, not what a reader gets back, and an
existing store keeps the codec it was created with).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from attrstream.engine.errors import ConfigError, close_matches
from attrstream.engine.vocabulary import COMPRESSORS, DTYPES, INPUT_METHODS, LAYER_LAYOUTS, LAYER_METHODS

SCHEMA_VERSION = 1  # the store format version: readers refuse another one
_NOT_FINGERPRINTED = ("compressor",)


def _check_names(kind: str, given: tuple[str, ...], valid: tuple[str, ...]) -> None:
    for name in given:
        if name not in valid:
            raise ConfigError(
                f"Expected {kind} among {', '.join(valid)}, got {name!r}.{close_matches(name, valid)}"
            )
    if len(set(given)) != len(given):
        raise ConfigError(f"Expected distinct {kind}, got {', '.join(given)}.")


def _positive_ints(name: str, values: tuple[int, ...]) -> tuple[int, ...]:
    if not all(isinstance(v, int) and v > 0 for v in values):
        raise ConfigError(f"Expected {name} of positive integers, got {values!r}.")
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class LayerSpec:
    """One hooked layer: its verbatim name, channel count, the (h, w) of its maps and the layout its
    output was read in (stores written before layouts were recorded read as ``nchw``)."""

    name: str
    channels: int
    map_shape: tuple[int, int] | None = None
    layout: str = "nchw"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name or self.name.startswith("__"):
            raise ConfigError(
                f"Expected a layer name without '/' and not starting with '__', got {self.name!r}."
            )
        _positive_ints(f"channels of layer {self.name!r}", (self.channels,))
        if self.map_shape is not None:
            shape = tuple(self.map_shape)
            if len(shape) != 2:
                raise ConfigError(f"Expected map_shape (h, w) for layer {self.name!r}, got {shape!r}.")
            object.__setattr__(self, "map_shape", _positive_ints(f"map_shape of {self.name!r}", shape))
        if self.layout not in LAYER_LAYOUTS:
            raise ConfigError(f"Expected the layout of layer {self.name!r} among {', '.join(LAYER_LAYOUTS)}, "
                              f"got {self.layout!r}.")


@dataclass(frozen=True)
class UnitGrid:
    """``n`` rows cut into units of ``unit`` (the last one may be short): the shards along axis 0 and
    the resume granularity of a sweep (examples) or a later job (features/: optimized channels)."""

    n: int
    unit: int
    compressor: str = "lz4"

    def n_units(self) -> int:
        return math.ceil(self.n / self.unit)

    def unit_range(self, u: int) -> tuple[int, int]:
        start = u * self.unit
        return start, min(start + self.unit, self.n)


@dataclass(frozen=True)
class RunSpec:
    """Everything that fixes the layout and the meaning of a store."""

    n: int
    input_shape: tuple[int, int, int]
    num_classes: int
    methods: tuple[str, ...]
    layer_methods: tuple[str, ...]
    layers: tuple[LayerSpec, ...]
    unit: int = 256
    thumb_size: tuple[int, int] = (64, 64)
    has_mask: bool = False
    topk: int = 0
    dtype: str = "float16"
    compressor: str = "lz4"
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.n, int) or self.n < 0:
            raise ConfigError(f"Expected n >= 0 examples, got {self.n!r}.")
        if not isinstance(self.unit, int) or self.unit <= 0:
            raise ConfigError(f"Expected unit > 0 (examples per shard), got {self.unit!r}.")
        if len(tuple(self.input_shape)) != 3:
            raise ConfigError(f"Expected input_shape (C, H, W), got {self.input_shape!r}.")
        set_(self, "input_shape", _positive_ints("input_shape", tuple(self.input_shape)))
        if len(tuple(self.thumb_size)) != 2:
            raise ConfigError(f"Expected thumb_size (h, w), got {self.thumb_size!r}.")
        set_(self, "thumb_size", _positive_ints("thumb_size", tuple(self.thumb_size)))
        _positive_ints("num_classes", (self.num_classes,))
        if not isinstance(self.topk, int) or not 0 <= self.topk <= self.num_classes:
            raise ConfigError(f"Expected 0 <= topk <= num_classes={self.num_classes}, got {self.topk!r}.")
        set_(self, "methods", tuple(self.methods))
        set_(self, "layer_methods", tuple(self.layer_methods))
        _check_names("methods", self.methods, INPUT_METHODS)
        _check_names("layer methods", self.layer_methods, LAYER_METHODS)
        layers = tuple(LayerSpec(**lay) if isinstance(lay, Mapping) else lay for lay in self.layers)
        set_(self, "layers", layers)
        names = [lay.name for lay in layers]
        if len(set(names)) != len(names):
            raise ConfigError(f"Expected distinct layer names, got {', '.join(names)}.")
        if layers and not self.layer_methods:
            raise ConfigError(f"Expected layer_methods for layers {', '.join(names)}, got none.")
        if self.dtype not in DTYPES:
            raise ConfigError(f"Expected dtype among {', '.join(DTYPES)}, got {self.dtype!r}.")
        if self.compressor not in COMPRESSORS:
            raise ConfigError(f"Expected compressor among {', '.join(COMPRESSORS)}, got {self.compressor!r}.")
        set_(self, "has_mask", bool(self.has_mask))
        try:
            set_(self, "config", json.loads(json.dumps(dict(self.config), sort_keys=True)))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"Expected a JSON-serializable config mapping, got {self.config!r}: {err}") from None

    def n_units(self) -> int:
        """Number of shards along the example axis (the last one may be short)."""
        return UnitGrid(self.n, self.unit).n_units()

    def unit_range(self, u: int) -> tuple[int, int]:
        """``[start, stop)`` example indices of unit ``u`` (the last unit may be short)."""
        return UnitGrid(self.n, self.unit).unit_range(u)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, stored in the store attributes and read back by :meth:`from_dict`."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        fields = dict(data)
        fields["layers"] = tuple(
            LayerSpec(lay["name"], lay["channels"], tuple(lay["map_shape"]) if lay["map_shape"] else None,
                      lay.get("layout", "nchw"))
            for lay in fields.get("layers", ())
        )
        return cls(**fields)

    def fingerprinted(self) -> dict[str, Any]:
        """The fields the fingerprint covers (all but the compressor)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_FINGERPRINTED}

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of :meth:`fingerprinted` (sorted keys, no spaces)."""
        canonical = json.dumps(self.fingerprinted(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            _flatten(sub, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _as_chosen(spec: Mapping[str, Any], compare_layers: bool) -> dict[str, Any]:
    """A spec dict in the user's terms: one ``methods`` list as given, and layer names only where
    layer methods use them (layer shapes and ``config.layers`` follow from the model and the methods)."""
    view = {k: v for k, v in spec.items() if k not in (*_NOT_FINGERPRINTED, "layers", "layer_methods")}
    view["methods"] = [*spec.get("methods", ()), *spec.get("layer_methods", ())]
    view["config"] = {k: v for k, v in dict(spec.get("config") or {}).items() if k != "layers"}
    if compare_layers:
        view["layers"] = [layer["name"] for layer in spec.get("layers", ())]
    return view


def spec_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"key: old -> new"`` lines for what the user changed (config keys dotted).

    A consequence of another change is not listed again: dropping every layer method empties the
    layers, which is the ``methods`` change alone.
    """
    compare_layers = bool(old.get("layer_methods")) and bool(new.get("layer_methods"))
    return dict_differences(_as_chosen(old, compare_layers), _as_chosen(new, compare_layers))


def dict_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"key: old -> new"`` lines for every (dotted) key whose value differs between two JSON-like dicts."""
    flat_old: dict[str, Any] = {}
    flat_new: dict[str, Any] = {}
    _flatten(dict(old), "", flat_old)
    _flatten(dict(new), "", flat_new)
    missing = object()
    lines = []
    for key in sorted(flat_old.keys() | flat_new.keys()):
        a, b = flat_old.get(key, missing), flat_new.get(key, missing)
        if a != b:
            show = ["(absent)" if v is missing else json.dumps(v) for v in (a, b)]
            lines.append(f"{key}: {show[0]} -> {show[1]}")
    return lines
