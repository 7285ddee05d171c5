"""The batch loop of a sweep: load, extract, copy to the host, append to the store writer.

Per batch: one forward with hooks, one ``autograd.grad`` over (input, *layer outputs), the fused
kernels, one host copy, and an append to the writer, whose background thread compresses and
writes whole units while the next batch computes.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from attrstream.engine.capture import inference_mode_for_attribution
from attrstream.engine.data import IndexedItems, make_loader, rgb_converter, unreadable
from attrstream.engine.errors import OutOfMemoryError
from attrstream.engine.extract import extract_batch
from attrstream.engine.host_copy import HostCopier
from attrstream.engine.plan import SweepPlan
from attrstream.engine.store import StoreWriter


def thumbnails(x: torch.Tensor, to_rgb: Callable[[torch.Tensor], torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """``[N, h, w, 3]`` uint8 thumbnails of a batch, through the data set's own RGB conversion."""
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    rgb = to_rgb(x)
    if rgb.shape[-1] == 1:
        rgb = rgb.expand(*rgb.shape[:-1], 3)
    return rgb[..., :3]


class NonFiniteWarner:
    """Warns once, naming example indices, when a model produces NaN/Inf; values are kept as they are."""

    def __init__(self) -> None:
        self.warned = False

    def check(self, arrays: dict[str, np.ndarray], index: np.ndarray) -> None:
        if self.warned:
            return
        bad = np.zeros(len(index), dtype=bool)
        for key, arr in arrays.items():
            if arr.dtype.kind == "f" and (key.endswith(("_scale", "/stats", "/score")) or key == "outputs/logits"):
                bad |= ~np.isfinite(arr.reshape(len(index), -1)).all(1)
        if bad.any():
            self.warned = True
            shown = index[bad][:10].tolist()
            warnings.warn(
                f"NaN or Inf in the model's outputs or gradients at example(s) {shown}"
                f"{' ...' if bad.sum() > 10 else ''}; they are stored as they are.",
                RuntimeWarning,
                stacklevel=3,
            )


class ZeroLogitsWarner:
    """Warns once when every logit of a batch is zero (torchvision zero-initializes the ViT head, so a
    random-init ViT explains nothing: every gradient is zero too)."""

    def __init__(self) -> None:
        self.warned = False

    def check(self, arrays: dict[str, np.ndarray]) -> None:
        logits = arrays.get("outputs/logits")
        if self.warned or logits is None or logits.size == 0 or np.any(logits != 0):
            return
        self.warned = True
        warnings.warn("Every logit of a batch is zero (an untrained head? torchvision zero-initializes ViT's): "
                      "every gradient, and so every map, is zero too. Load weights (--weights) for maps that mean something.",
                      RuntimeWarning, stacklevel=3)


def skipped_examples(errors: list[str], index: torch.Tensor, skip: bool) -> np.ndarray:
    """``inputs/skipped`` rows of a batch; an unreadable example without ``skip`` is a DataError."""
    skipped = np.array([bool(e) for e in errors], dtype=np.uint8)
    if skipped.any() and not skip:
        raise unreadable(next(e for e in errors if e))
    if skipped.any():
        bad = [int(i) for i, e in zip(index, errors, strict=False) if e]
        warnings.warn(f"Skipped unreadable example(s) {bad[:10]}: {next(e for e in errors if e)}", RuntimeWarning, stacklevel=2)
    return skipped


def is_out_of_memory(err: BaseException) -> bool:
    """torch's (CUDA, MPS) out-of-memory errors, older ones spelled as RuntimeError, and host MemoryError."""
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


@contextmanager
def out_of_memory_as_error(batch_size: int, device: torch.device) -> Iterator[None]:
    """A batch that does not fit becomes an :class:`OutOfMemoryError` naming the batch size to lower."""
    try:
        yield
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        advice = (f"pass a smaller --batch-size (e.g. {batch_size // 2})" if batch_size > 1 else
                  "the batch size is already 1: use a smaller --image-size, fewer --layers or --methods, or more memory")
        raise OutOfMemoryError(
            f"Out of memory on {device} with --batch-size {batch_size} ({type(err).__name__}): {advice}; "
            "a rerun resumes after the units already written."
        ) from None


def run_units(model: nn.Module, dataset: Dataset, writer: StoreWriter, plan: SweepPlan, *, batch_size: int,
              num_workers: int, skip_bad_images: bool, show_bar: bool) -> None:
    """Compute and append every example of the writer's units, in contiguous batches."""
    from tqdm.auto import tqdm

    spec = plan.spec
    ranges = [writer.unit_range(u) for u in writer.todo]
    if not ranges:
        return
    items = IndexedItems(dataset, plan.has_mask, tuple(spec.input_shape))
    loader = make_loader(items, ranges, batch_size, num_workers, pin_memory=plan.device.type == "cuda")
    to_rgb = rgb_converter(dataset)
    copier = HostCopier(plan.device)
    warner, zero_logits = NonFiniteWarner(), ZeroLogitsWarner()
    bar = tqdm(total=sum(b - a for a, b in ranges), unit="img", disable=not show_bar, dynamic_ncols=True, file=sys.stderr)

    def flush(ready) -> None:
        if ready is None:
            return
        start, arrays = ready
        warner.check(arrays, arrays["inputs/index"])
        zero_logits.check(arrays)
        writer.append(start, arrays)
        bar.update(len(arrays["inputs/index"]))
        show_units(refresh=False)

    def show_units(refresh: bool) -> None:
        bar.set_postfix(units=f"{writer.units_done_before + writer.units_written}/{spec.n_units()}", refresh=refresh)

    try:
        with inference_mode_for_attribution(model), out_of_memory_as_error(batch_size, plan.device):
            for x, labels, index, masks, errors in loader:
                host = {
                    "inputs/index": index.numpy().astype(np.int64),
                    "inputs/label": labels.numpy().astype(np.int64),
                    "inputs/thumbnail": thumbnails(x, to_rgb, spec.thumb_size).numpy(),
                    "inputs/skipped": skipped_examples(errors, index, skip_bad_images),
                }
                if plan.has_mask:
                    host["inputs/mask"] = masks.numpy()
                results = extract_batch(model, x.to(plan.device, non_blocking=True), labels.to(plan.device), index,
                                        plan.extract)
                flush(copier.submit(int(index[0]), results, host))
            flush(copier.drain())
        writer.close()  # the last units reach the disk: the bar ends showing every unit written
        show_units(refresh=True)
    finally:
        bar.close()
