"""Train the demo's :class:`ShapesNet` on first use and cache its weights.

Training is deterministic on CPU: fixed seeds (under ``torch.random.fork_rng``, so the caller's
global RNG is untouched), ``torch.use_deterministic_algorithms`` and one intra-op thread for the
duration (both restored after), and a fresh, never repeated stream of shapes items
(``TrainConfig.n_train`` of them, seen once), so there is no shuffling and no epoch to tune.

One thread, because the weights then do not depend on the machine's core count (bit-identical for
a given torch build), and because on cores shared with other processes a multi-threaded loop of
small convolutions stalls at every barrier: measured on 2 busy cores, 2 threads ran the same
recipe several times slower than 1. On 2 idle cores 1 thread costs about a third more time.

The cache file name carries a hash of the recipe (the :class:`TrainConfig`, the model's structure
and :data:`RECIPE_VERSION`), so a changed recipe retrains instead of loading stale weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from attrstream.engine.demo.model import ShapesNet
from attrstream.engine.demo.shapes import ShapesDataset
from attrstream.engine.errors import ConfigError

# Bump when the training code changes in a way TrainConfig does not capture.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe. The default trains in about 45 s of one idle CPU core to ≥ 97% accuracy."""

    n_train: int = 12_000  # fresh training items, each seen once
    n_test: int = 1_000  # held-out items (test split) for the reported accuracy
    batch_size: int = 32
    lr: float = 5e-3  # peak of a one-cycle schedule (AdamW)
    weight_decay: float = 1e-4
    image_size: int = 64
    widths: tuple[int, int, int] = (8, 16, 32)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Expected TrainConfig.{name} as an integer >= 1, got {value!r}.")
        if not self.lr > 0:
            raise ConfigError(f"Expected TrainConfig.lr > 0, got {self.lr!r}.")

    def fingerprint(self) -> str:
        """Hash of everything that decides the weights: this recipe and the model's structure."""
        model = _build(self)
        text = json.dumps({"recipe": RECIPE_VERSION, "config": dataclasses.asdict(self), "model": repr(model)},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainInfo:
    """What :func:`load_or_train` reports: held-out accuracy, training time, where the weights are."""

    accuracy: float  # on TrainConfig.n_test items of the test split
    train_seconds: float  # time the training took when it ran (also when loaded from cache)
    cache_path: Path
    trained_now: bool  # False when the weights came from the cache


def default_cache_dir() -> Path:
    """``$ATTRSTREAM_CACHE`` if set, else ``~/.cache/attrstream``."""
    env = os.environ.get("ATTRSTREAM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "attrstream"


def load_or_train(cache_dir: Path | None = None, *, config: TrainConfig | None = None,
                  verbose: bool = True) -> tuple[ShapesNet, TrainInfo]:
    """The trained demo model (``eval()``, CPU) and its :class:`TrainInfo`.

    Loads the cached weights of this recipe if present and valid; otherwise trains (a corrupt
    cache file is reported with a warning and replaced) and caches them atomically.
    """
    config = config or TrainConfig()
    path = Path(cache_dir or default_cache_dir()) / f"shapesnet-{config.fingerprint()}.pt"
    if path.exists():
        loaded = _load(path, config)
        if loaded is not None:
            model, accuracy, seconds = loaded
            return model, TrainInfo(accuracy, seconds, path, trained_now=False)
    if verbose:
        print(f"Training the demo model on {config.n_train} shapes images (first use; cached at {path})...",
              file=sys.stderr, flush=True)
    model, seconds = train(config)
    accuracy = evaluate(model, config)
    _save_atomic(path, {"fingerprint": config.fingerprint(), "state_dict": model.state_dict(),
                        "accuracy": accuracy, "train_seconds": seconds})
    if verbose:
        print(f"Trained in {seconds:.1f} s, held-out accuracy {accuracy:.1%}.", file=sys.stderr, flush=True)
    return model, TrainInfo(accuracy, seconds, path, trained_now=True)


def train(config: TrainConfig) -> tuple[ShapesNet, float]:
    """Train a fresh model by ``config``; returns it in ``eval()`` mode and the seconds it took."""
    data = ShapesDataset(config.n_train, config.image_size, seed=config.seed, split="train")
    steps = -(-config.n_train // config.batch_size)
    start = time.perf_counter()
    with _deterministic(config.seed):
        model = _build(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps)
        model.train()
        for step in range(steps):
            x, labels, _ = data.batch(range(step * config.batch_size,
                                            min((step + 1) * config.batch_size, config.n_train)))
            loss = nn.functional.cross_entropy(model(x), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval(), time.perf_counter() - start


@torch.no_grad()
def evaluate(model: nn.Module, config: TrainConfig) -> float:
    """Accuracy on the first ``config.n_test`` items of the test split."""
    data = ShapesDataset(config.n_test, config.image_size, seed=config.seed, split="test")
    correct = 0
    for start in range(0, config.n_test, 256):
        x, labels, _ = data.batch(range(start, min(start + 256, config.n_test)))
        correct += int((model(x).argmax(1) == labels).sum())
    return correct / config.n_test


def _build(config: TrainConfig) -> ShapesNet:
    """A freshly initialized model, seeded by the recipe; the caller's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return ShapesNet(len(ShapesDataset.classes), config.widths)


@contextlib.contextmanager
def _deterministic(seed: int):
    previous = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous[0])
            torch.set_num_threads(previous[1])


def _load(path: Path, config: TrainConfig) -> tuple[ShapesNet, float, float] | None:
    """The cached model, or ``None`` (with a warning) when the file cannot be trusted."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob["fingerprint"] != config.fingerprint():
            raise ValueError(f"fingerprint {blob['fingerprint']!r} does not match {config.fingerprint()!r}")
        model = _build(config)
        model.load_state_dict(blob["state_dict"])
        return model.eval(), float(blob["accuracy"]), float(blob["train_seconds"])
    except Exception as err:  # any unreadable or inconsistent file means: retrain
        warnings.warn(f"Ignoring the corrupt demo model cache {path} ({type(err).__name__}: {err}); retraining.",
                      RuntimeWarning, stacklevel=3)
        return None


def _save_atomic(path: Path, blob: dict) -> None:
    """Write whole or not at all: a temp file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
