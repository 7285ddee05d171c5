"""Where evaluation results live in a store, and which maps a store holds (torch-free: render reads it).

```
metrics/<map path>/<metric>       float32 [N, S+1]  target-class probability after step k = 0..S
metrics/<map path>/<metric>_auc   float32 [N]       trapezoid area under the curve on [0, 1]
metrics/random/<metric>[_auc]                       the same for a seeded random ranking (chance)
metrics/progress/unit_done        uint8 [units]     the evaluation's own done markers
```

``<map path>`` is the map's own path in the store (``attributions/grad_x_input``,
``layers/layer4/grad_cam``). The ``metrics`` group's attributes hold ``attrstream_metrics``
(the evaluation's description, fingerprint and, once every unit is done, ``mean_auc =
{map path: {metric: mean AUC}}``) and, for the demo, ``localization`` (its table of rows).
Curves of examples the sweep skipped (unreadable images) are NaN and left out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrstream.engine.errors import ConfigError, close_matches
from attrstream.engine.store.layout import ArraySpec
from attrstream.engine.store.spec import RunSpec
from attrstream.engine.vocabulary import LAYER_MAP_METHODS

METRICS_GROUP = "metrics"
METRICS_KEY = "attrstream_metrics"
LOCALIZATION_KEY = "localization"
PROGRESS = f"{METRICS_GROUP}/progress/unit_done"
RANDOM = "random"  # the map path of the chance baseline
MEAN_AUC = "mean_auc"


def stored_maps(spec: RunSpec) -> dict[str, str]:
    """``{name: store path}`` of every map of a store: input methods by name (``grad_x_input``), layer
    maps as ``layer/method`` (``layer4/grad_cam``), in the store's order."""
    maps = {m: f"attributions/{m}" for m in spec.methods}
    for layer in spec.layers:
        if layer.map_shape is not None:
            maps.update({f"{layer.name}/{m}": f"layers/{layer.name}/{m}" for m in LAYER_MAP_METHODS
                         if m in spec.layer_methods})
    return maps


def map_name(path: str) -> str:
    """The name a user gives for a map path (``layers/layer4/grad_cam`` → ``layer4/grad_cam``)."""
    return path.split("/", 1)[1] if path.startswith(("attributions/", "layers/")) else path


def resolve_maps(spec: RunSpec, names: Sequence[str] | None) -> list[str]:
    """The store paths of the named maps (names or paths; all of them when ``None``)."""
    available = stored_maps(spec)
    if names is None:
        return list(available.values())
    paths = []
    for name in names:
        path = available.get(name, name if name in available.values() else None)
        if path is None:
            raise ConfigError(f"Expected maps of this store ({', '.join(available) or 'none'}), got {name!r}."
                              f"{close_matches(name, available)}")
        paths.append(path)
    return list(dict.fromkeys(paths))


def curve_path(map_path: str, metric: str) -> str:
    return f"{METRICS_GROUP}/{map_path}/{metric}"


def auc_path(map_path: str, metric: str) -> str:
    return f"{curve_path(map_path, metric)}_auc"


def metric_arrays(n: int, map_paths: Sequence[str], metrics: Sequence[str], steps: int) -> tuple[ArraySpec, ...]:
    """The per-example arrays of an evaluation: a curve and its AUC per (map, metric), random last."""
    arrays = []
    for map_path in (*map_paths, RANDOM):
        for metric in metrics:
            arrays += [ArraySpec(curve_path(map_path, metric), "float32", (n, steps + 1), ("example", "step")),
                       ArraySpec(auc_path(map_path, metric), "float32", (n,), ("example",))]
    return tuple(arrays)
