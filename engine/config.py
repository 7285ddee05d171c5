"""What the user asks for, as frozen dataclasses validated on construction: the sweep
(:class:`SweepConfig`), its evaluation (:class:`EvaluateConfig`), the model (:class:`ModelSpec`)
and the data (:class:`DataSpec`).

The command line's options are derived from these fields (:mod:`attrstream.engine.options`), so
defaults and help live here once. Torch-free, so that ``attrstream --help`` stays fast.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from attrstream.engine.errors import ConfigError
from attrstream.engine.methods import Target, parse_target, split_methods
from attrstream.engine.options import assignments, csv, floats, int_list, int_pair, option
from attrstream.engine.vocabulary import (
    COMPRESSORS,
    DEFAULT_METHODS,
    DTYPES,
    FAITHFULNESS_METRICS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYER_LAYOUTS,
)
from attrstream.kernels.names import REDUCTIONS


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _flag(name: str) -> str:
    return name.replace("_", "-")


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; anything else (a string, a bool, a float) is a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"Expected {_flag(name)} to be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ConfigError(f"Expected {_flag(name)} >= {minimum}, got {value}.")
    return value


def _check_optional_int(name: str, value: Any, minimum: int) -> None:
    if value is not None:
        check_int(name, value, minimum)


def _check_name(expected: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"Expected {expected}, got {value!r}.")


def _names(name: str, value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    """A list or ``"a,b"`` string of names as a tuple (the config is hashable data)."""
    items = csv(value) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"Expected {_flag(name)} as a list of names or a comma-separated string, got {value!r}.")
    if not items and not allow_empty:
        raise ConfigError(f"Expected at least one name in {_flag(name)}, got none.")
    return tuple(items)


def _layouts(value: Any) -> dict[str, str]:
    """``{layer: layout}`` (a mapping, or ``"a=nhwc,b=tokens"``) with every layout among LAYER_LAYOUTS."""
    try:
        given = {} if value is None else assignments(value) if isinstance(value, str) else value
    except argparse.ArgumentTypeError as err:
        raise ConfigError(f"Expected layer-layout as 'layer=layout,...': {err}.") from None
    if not isinstance(given, dict) or not all(isinstance(k, str) and k for k in given):
        raise ConfigError(f"Expected layer-layout as {{layer: layout}} or 'layer=layout,...', got {value!r}.")
    for layer, layout in given.items():
        if layout not in LAYER_LAYOUTS:
            raise ConfigError(f"Expected the layout of {layer!r} among {', '.join(LAYER_LAYOUTS)}, got {layout!r}.")
    return dict(given)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"Expected {_flag(name)} in ({', '.join(choices)}), got {value!r}.")


def check_device(device: Any) -> None:
    """``cpu``, ``cuda`` or ``cuda:i``, the latter only where CUDA is available."""
    if not isinstance(device, str) or (device != "cpu" and not device.startswith("cuda")):
        raise ConfigError(f"Expected device cpu or cuda[:i], got {device!r}.")
    if device.startswith("cuda") and not _cuda_available():
        raise ConfigError(f"Device {device!r} was requested but CUDA is not available here; use --device cpu.")


def _check_flags(cfg: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"Expected {_flag(name)} to be True or False, got {getattr(cfg, name)!r}.")


# --layer-layout: the same option for every command that reads a layer's channels
LAYER_LAYOUTS_OPTION = dict(help=f"per-layer layout override, LAYER=LAYOUT,... with LAYOUT one of "
                                 f"{', '.join(LAYER_LAYOUTS)} (default: decided from the model)",
                            parse=assignments, flag="--layer-layout", metavar="L=LAYOUT")


@dataclass(frozen=True)
class SweepConfig:
    """Everything that decides what a sweep computes and how; validated on construction."""

    layers: tuple[str, ...] | None = option(None, "comma-separated layer names (default: the model's stages)",
                                            parse=csv, metavar="A,B")
    methods: tuple[str, ...] = option(DEFAULT_METHODS, "comma-separated methods", parse=csv, metavar="M,N")
    target: Target = option("pred", "class to explain: pred, label, or a class index")
    reduce: str = option("sum", f"channel reduction of grad×input and grad×act: {', '.join(REDUCTIONS)}")
    batch_size: int = option(32, "images per forward/backward pass")
    unit: int = option(256, "examples per stored shard (the resume granularity)")
    device: str = option("cpu", "cpu, cuda or cuda:I")
    dtype: str = option("float16", f"map storage: {', '.join(DTYPES)}")
    compressor: str = option("lz4", f"Blosc codec: {', '.join(COMPRESSORS)}")
    autocast: bool = option(False, "bf16 autocast for the forward pass")
    num_workers: int = option(0, "data loader worker processes")
    limit: int | None = option(None, "sweep only the first N examples", parse=int, metavar="N")
    layer_layouts: dict[str, str] | None = option(None, **LAYER_LAYOUTS_OPTION)
    token_grid: tuple[int, int] | None = option(None, "HxW patch grid of token layers (default: square)",
                                                parse=int_pair, metavar="HxW")
    smoothgrad_samples: int = option(8, "noisy samples per image for smoothgrad")
    ig_steps: int = option(16, "Riemann steps per image for integrated_gradients")
    internal_batch_size: int | None = option(None, "points per forward/backward of smoothgrad and "
                                             "integrated_gradients, which bounds their memory (default: --batch-size)",
                                             parse=int, metavar="B")
    skip_bad_images: bool = option(False, "record unreadable images in inputs/skipped and go on")
    overwrite: bool = option(False, "replace a store written with another configuration")
    repair: bool = option(False, "verify every done unit of the store first (checksums, missing objects) and "
                          "recompute the damaged ones")
    break_lock: bool = option(False, "take over a writer lock left by a job that is gone (e.g. a requeued job's "
                              "first run on another host)")
    progress: bool = option(True, "hide the progress bar", flag="--no-progress")
    finalize: bool = True
    model_name: str | None = None
    dataset_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the store config (e.g. class names)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "methods", _names("methods", self.methods))
        _, layer_methods = split_methods(self.methods)
        if self.layers is not None:  # no layers is fine only when no layer method asks for one
            set_(self, "layers", _names("layers", self.layers, allow_empty=not layer_methods))
        set_(self, "target", parse_target(self.target))
        for name in ("batch_size", "unit", "smoothgrad_samples", "ig_steps"):
            check_int(name, getattr(self, name), 1)
        check_int("num_workers", self.num_workers, 0)
        _check_optional_int("limit", self.limit, 0)
        _check_optional_int("internal_batch_size", self.internal_batch_size, 1)
        _choice("dtype", self.dtype, DTYPES)
        _choice("reduce", self.reduce, REDUCTIONS)
        _choice("compressor", self.compressor, COMPRESSORS)
        set_(self, "layer_layouts", _layouts(self.layer_layouts))
        if self.token_grid is not None:
            grid = tuple(self.token_grid) if isinstance(self.token_grid, (list, tuple)) else ()
            if len(grid) != 2:
                raise ConfigError(f"Expected token-grid as (h, w), got {self.token_grid!r}.")
            set_(self, "token_grid", (check_int("token_grid", grid[0], 1), check_int("token_grid", grid[1], 1)))
        _check_flags(self, ("autocast", "skip_bad_images", "overwrite", "repair", "break_lock", "progress", "finalize"))
        check_device(self.device)
        if not isinstance(self.extra, dict):
            raise ConfigError(f"Expected extra to be a dict, got {type(self.extra).__name__}.")


@dataclass(frozen=True)
class EvaluateConfig:
    """Deletion/insertion curves of a finished store's maps (``attrstream evaluate``); validated on construction.

    Only ``maps``, ``metrics``, ``steps`` and ``seed`` decide the stored numbers (the evaluation's
    fingerprint); the batch size and the device are how they are computed, and may change on a rerun.
    """

    maps: tuple[str, ...] | None = option(None, "maps to evaluate: input methods (grad_x_input) and layer maps "
                                          "(layer4/grad_cam) (default: every map in the store)", parse=csv,
                                          metavar="M,L/M")
    metrics: tuple[str, ...] = option(FAITHFULNESS_METRICS, f"comma-separated, among {', '.join(FAITHFULNESS_METRICS)}",
                                      parse=csv, metavar="M,N")
    steps: int = option(16, "perturbation steps S: step k perturbs the first floor(k·P/S) of the P ranked pixels")
    batch_size: int = option(64, "perturbed images per forward pass (bounds the memory)")
    device: str | None = option(None, "cpu, cuda or cuda:I (default: where the model's parameters are)",
                                metavar="DEVICE")
    seed: int = option(0, "seed of the random-ranking baseline (metrics/random)")
    channels_last: bool = option(True, "feed the model contiguous (NCHW) perturbed images instead of channels_last "
                                 "ones (faster convolutions; needed by models that .view() their input)",
                                 flag="--contiguous-inputs")
    overwrite: bool = option(False, "recompute metrics/ when the store holds an evaluation of another configuration")
    repair: bool = option(False, "verify every done unit of metrics/ first (checksums, missing objects) and "
                          "recompute the damaged ones")
    break_lock: bool = option(False, "take over an evaluation lock left by a job that is gone")
    progress: bool = option(True, "hide the progress bar", flag="--no-progress")
    dataset_name: str | None = None  # checked against the sweep's data set name when given (the CLI gives it)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.maps is not None:
            set_(self, "maps", _names("maps", self.maps))
        set_(self, "metrics", _names("metrics", self.metrics))
        for metric in self.metrics:
            _choice("metrics", metric, FAITHFULNESS_METRICS)
        if len(set(self.metrics)) != len(self.metrics) or (self.maps and len(set(self.maps)) != len(self.maps)):
            raise ConfigError(f"Expected distinct names in maps and metrics, got {self.maps!r} and {self.metrics!r}.")
        check_int("steps", self.steps, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("seed", self.seed, 0)
        if self.device is not None:
            check_device(self.device)
        _check_flags(self, ("channels_last", "overwrite", "repair", "break_lock", "progress"))
        if self.dataset_name is not None:
            _check_name("a data set name", self.dataset_name)


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for: ``name`` (torchvision, builtin or ``module:factory``) and weights."""

    name: str = option(help="a torchvision name (resnet18), a registered name (shapesnet), or package.module:factory",
                       flag="--model", required=True)
    weights: str | None = option(None, "state dict PATH, or DEFAULT for torchvision's (needs internet); "
                                 "none: seeded random init", metavar="PATH")
    num_classes: int | None = option(None, "number of classes of the model's head (default: the model's own)",
                                     parse=int, metavar="K")
    seed: int = 0

    def __post_init__(self) -> None:
        _check_name("a model name (e.g. resnet18)", self.name)
        _check_optional_int("num_classes", self.num_classes, 1)


@dataclass(frozen=True)
class DataSpec:
    """What the CLI asked for: a registered name (``fake``, ``shapes``) or an ImageFolder directory."""

    name: str = option(help="a registered data set (fake, shapes) or an ImageFolder directory", flag="--data",
                       required=True)
    image_size: int | None = option(None, "input size in pixels (default: the source's own: fake 224, shapes 64, "
                                    "ImageFolder 224)", parse=int, metavar="PX")
    num_classes: int = 1000  # labels of `fake`; the CLI passes the model's
    seed: int = 0

    def __post_init__(self) -> None:
        _check_name("a data set name or directory", self.name)
        _check_optional_int("image_size", self.image_size, 1)


MIN_FEATURE_SIZE = 16  # pixels: below this the random jitter, scale and rotation have no room


def _normalization(name: str, value: Any) -> tuple[float, float, float]:
    """One value or three (per RGB channel) as a 3-tuple of floats; ``std`` must be positive."""
    values = tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"Expected {name} as one number or three (R, G, B), got {value!r}.")
    if name == "std" and min(values) <= 0:
        raise ConfigError(f"Expected std > 0 for every channel, got {value!r}.")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


@dataclass(frozen=True)
class FeaturesConfig:
    """Activation maximization of a layer's channels (``attrstream features``); validated on construction.

    A channel's optimized input depends only on the seed, the channel and the settings recorded in
    ``features/<layer>`` (model, steps, size, mean, std, unit), never on the channels that share its
    batch: the batch size and the device may change on a rerun, which resumes.
    """

    layer: str = option(help="the layer whose channels are visualized (a name of model.named_modules())",
                        required=True)
    channels: tuple[int, ...] | None = option(None, "channels to visualize, START:STOP or I,J,K (default: every "
                                              "channel of the layer)", parse=int_list, metavar="0:64|3,5,7")
    steps: int = option(256, "optimization steps, one forward (to the layer) and one backward each")
    size: int = option(128, "side of the optimized image in pixels")
    layer_layouts: dict[str, str] | None = option(None, **LAYER_LAYOUTS_OPTION)
    batch_size: int = option(32, "channels optimized together, one batch element each")
    seed: int = option(0, "random seed: a channel's image depends only on (seed, channel, settings)")
    device: str | None = option(None, "cpu, cuda or cuda:I (default: cuda when available, else cpu)",
                                metavar="DEVICE")
    mean: tuple[float, float, float] = option(IMAGENET_MEAN, "the model's input normalization: mean per RGB "
                                              "channel, or one value for all", parse=floats, metavar="M[,M,M]")
    std: tuple[float, float, float] = option(IMAGENET_STD, "the model's input normalization: std per RGB channel, "
                                             "or one value for all", parse=floats, metavar="S[,S,S]")
    unit: int = option(32, "channels per stored shard (the resume granularity)")
    overwrite: bool = option(False, "recompute features/<layer> when it holds another configuration")
    repair: bool = option(False, "verify every done unit of features/<layer> first (checksums, missing objects) "
                          "and recompute the damaged ones")
    break_lock: bool = option(False, "take over a features lock left by a job that is gone")
    progress: bool = option(True, "hide the progress bar", flag="--no-progress")
    model_name: str | None = None  # recorded in a new store (the CLI gives the --model name)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _check_name("a layer name", self.layer)
        if self.channels is not None:
            channels = tuple(self.channels) if isinstance(self.channels, (list, tuple, range)) else None
            if not channels or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in channels):
                raise ConfigError(f"Expected channels as a non-empty list of indices >= 0, got {self.channels!r}.")
            if len(set(channels)) != len(channels):
                raise ConfigError(f"Expected distinct channels, got {list(channels)}.")
            set_(self, "channels", channels)
        for name in ("steps", "batch_size", "unit"):
            check_int(name, getattr(self, name), 1)
        check_int("size", self.size, MIN_FEATURE_SIZE)
        check_int("seed", self.seed, 0)
        set_(self, "layer_layouts", _layouts(self.layer_layouts))
        if set(self.layer_layouts) - {self.layer}:
            raise ConfigError(f"Expected --layer-layout for the layer {self.layer!r} only, got "
                              f"{', '.join(sorted(set(self.layer_layouts) - {self.layer}))}.")
        if self.device is not None:
            check_device(self.device)
        set_(self, "mean", _normalization("mean", self.mean))
        set_(self, "std", _normalization("std", self.std))
        _check_flags(self, ("overwrite", "repair", "break_lock", "progress"))
        if self.model_name is not None:
            _check_name("a model name", self.model_name)
