"""Data sources and the loader the sweep iterates.

A source is any map-style dataset yielding ``(image, label)`` or an image tensor. The sweep wraps
it so that each item also carries its index, its mask (when the data set has ground-truth masks)
and a load error instead of an exception: a corrupt file becomes a clear one-line error naming the
file, or, with ``skip_bad_images``, a recorded skip — never a worker traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from attrstream.engine.config import DataSpec
from attrstream.engine.errors import ConfigError, DataError
from attrstream.engine.vocabulary import IMAGENET_MEAN, IMAGENET_STD


class FakeImages(Dataset):
    """Deterministic random images and labels (item i depends only on seed and i): for benchmarks."""

    def __init__(self, n: int = 1024, image_size: int = 224, num_classes: int = 1000, seed: int = 0):
        if n < 0 or image_size < 1 or num_classes < 1:
            raise ConfigError(f"FakeImages needs n >= 0, image_size >= 1, num_classes >= 1; got {n}, {image_size}, {num_classes}.")
        self.n, self.image_size, self.num_classes, self.seed = n, image_size, num_classes, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        x = torch.randn(3, self.image_size, self.image_size, generator=gen)
        return x, int(torch.randint(self.num_classes, (1,), generator=gen))


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL's modes of 16-bit greyscale files


def load_rgb(path: str):
    """An image file as 8-bit RGB: 16-bit data is scaled by its range (0..65535 → 0..255).

    PIL's ``convert("RGB")`` clips 16-bit values instead, turning every such image white.
    """
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in SIXTEEN_BIT_MODES:
            values = np.asarray(img).astype(np.int64)
            if values.size and (values.min() < 0 or values.max() > 65535):
                raise DataError(f"Expected 16-bit values 0..65535 in mode {img.mode}, got {values.min()}..{values.max()}.")
            return Image.fromarray(np.round(values / 257).astype(np.uint8), "L").convert("RGB")
        if img.mode == "F":
            raise DataError("Expected 8- or 16-bit pixels, got 32-bit floats (mode F), whose range is unknown.")
        return img.convert("RGB")


class ImageFolderSource(Dataset):
    """An ImageFolder directory with ImageNet preprocessing; ``path_of(i)`` names each file."""

    def __init__(self, root: str | Path, image_size: int = 224):
        import torchvision
        from torchvision import transforms

        root = Path(root)
        if not root.is_dir():
            raise DataError(f"Data directory {str(root)!r} does not exist (expected an ImageFolder root: one sub-folder per class).")
        transform = transforms.Compose([
            transforms.Resize(round(image_size * 256 / 224)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])
        try:
            self.folder = torchvision.datasets.ImageFolder(str(root), transform=transform, loader=load_rgb)
        except (FileNotFoundError, OSError) as err:
            raise DataError(f"Data directory {str(root)!r} is not an ImageFolder: {err}") from None
        self.classes = self.folder.classes

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.folder[i]

    def path_of(self, i: int) -> str:
        return self.folder.samples[i][0]

    @staticmethod
    def to_rgb(x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(3, 1, 1)
        return ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1)


FAKE_SIZE = 50_000  # items of `fake` (ImageNet's validation size); --limit takes fewer


DataBuilder = Callable[[DataSpec], Dataset]
_REGISTRY: dict[str, DataBuilder] = {}


def register_dataset(name: str, builder: DataBuilder) -> None:
    """Make ``name`` buildable by :func:`build_dataset` (and ``attrstream sweep --data name``)."""
    _REGISTRY[name] = builder


def _fake(spec: DataSpec) -> Dataset:
    return FakeImages(n=FAKE_SIZE, image_size=spec.image_size or 224, num_classes=spec.num_classes, seed=spec.seed)


register_dataset("fake", _fake)


def build_dataset(spec: DataSpec) -> Dataset:
    """A registered data set by name, else the ImageFolder directory at ``spec.name``."""
    if spec.name in _REGISTRY:
        return _REGISTRY[spec.name](spec)
    path = Path(spec.name)
    if not path.exists():
        names = ", ".join(repr(n) for n in sorted(_REGISTRY))
        raise DataError(f"Unknown data {spec.name!r}: expected {names} or an existing ImageFolder directory.")
    return ImageFolderSource(path, image_size=spec.image_size or 224)


def split_item(item: object) -> tuple[torch.Tensor, int]:
    """``(image, label)`` from a dataset item: a tensor, or a tuple whose second entry is the label."""
    image = item[0] if isinstance(item, (tuple, list)) and item else item
    if type(image).__module__.startswith("PIL."):
        raise DataError(
            "Expected dataset items to be a tensor or (tensor, label), got a PIL image: give the dataset a "
            "transform that ends in torchvision.transforms.ToTensor() (e.g. transform=ToTensor())."
        )
    if isinstance(item, torch.Tensor):
        return item, -1
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        label = item[1] if len(item) > 1 else -1
        return item[0], int(label) if not isinstance(label, torch.Tensor) else int(label.item())
    raise DataError(f"Expected dataset items to be a tensor or (tensor, label), got {type(item).__name__}.")


class IndexedItems(Dataset):
    """Wraps a source so items carry (image, label, index, mask, error) for the sweep."""

    def __init__(self, source: Dataset, has_mask: bool, example_shape: tuple[int, ...]):
        self.source, self.has_mask, self.example_shape = source, has_mask, example_shape

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, torch.Tensor, str]:
        # Without masks an empty placeholder: a [H, W] zero mask per item cost a collate copy per batch.
        mask = torch.zeros(self.example_shape[-2:] if self.has_mask else (0,), dtype=torch.uint8)
        try:
            x, label = split_item(self.source[i])
            if self.has_mask:
                mask = torch.as_tensor(self.source.mask(i)).to(torch.uint8)  # type: ignore[attr-defined]
            if tuple(x.shape) != self.example_shape:
                raise DataError(f"expected an image of shape {self.example_shape}, got {tuple(x.shape)}")
            return x.float(), label, i, mask, ""
        except Exception as err:
            return torch.zeros(self.example_shape), -1, i, mask, load_error(self.source, i, err)


def load_error(source: Dataset, i: int, err: Exception) -> str:
    """``"<file or item i>: <error>"``: how an unreadable example is named in errors and warnings."""
    where = source.path_of(i) if hasattr(source, "path_of") else f"item {i}"  # type: ignore[attr-defined]
    return f"{where}: {type(err).__name__}: {err}"


def unreadable(message: str) -> DataError:
    """The error of an unreadable example when bad images are not skipped."""
    return DataError(f"Could not read {message}. Pass --skip-bad-images to record such examples as skipped and go on.")


def first_readable(source: Dataset, n: int, skip_bad_images: bool) -> torch.Tensor:
    """The image of the first of ``n`` examples that loads: the shape probe's input.

    An unreadable example is :func:`unreadable` unless ``skip_bad_images`` (the batch loop records it
    as skipped when it gets there). A dataset whose items are no images is an error either way.
    """
    first_error = ""
    for i in range(n):
        try:
            item = source[i]
        except Exception as err:
            if not skip_bad_images:
                raise unreadable(load_error(source, i, err)) from None
            first_error = first_error or load_error(source, i, err)
            continue
        return split_item(item)[0]
    raise DataError(f"Expected at least one readable example, got none of {n} (first: {first_error}).")


def contiguous_batches(ranges: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Batches of at most ``batch_size`` indices that never cross a gap between ``ranges``.

    The store appends contiguous rows, and a resumed run's units need not be adjacent.
    """
    merged: list[list[int]] = []
    for start, stop in sorted(ranges):
        if merged and merged[-1][1] == start:
            merged[-1][1] = stop
        else:
            merged.append([start, stop])
    return [list(range(b, min(b + batch_size, stop))) for start, stop in merged for b in range(start, stop, batch_size)]


def make_loader(
    items: IndexedItems, ranges: Sequence[tuple[int, int]], batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    return DataLoader(
        items,
        batch_sampler=contiguous_batches(ranges, batch_size),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def rgb_converter(source: Dataset) -> Callable[[torch.Tensor], torch.Tensor]:
    """``[N,3,H,W]`` float → ``[N,H,W,3]`` uint8 for thumbnails: the source's own inverse when it has one."""
    to_rgb = getattr(source, "to_rgb", None)
    if callable(to_rgb):
        return to_rgb

    def minmax(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        lo, hi = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
        return ((x - lo) / (hi - lo).clamp_min(1e-12) * 255).round().to(torch.uint8).movedim(1, -1)

    return minmax
