"""Running per-channel top-k over blocks of examples: bounded memory for stores of any length.

A store of 100k examples × 2048 channels does not fit a figure's memory budget as one array, but
the most activating examples of every channel do: ``k × C`` values kept while the blocks (one
unit each) stream past.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class ChannelTopK:
    """Top-``k`` examples of every channel, plus each channel's running sum and count for its mean.

    ``update`` takes a block of scores ``[b, C]`` and the example ids of its rows; NaN scores
    never enter the top-k. Ties are broken arbitrarily.
    """

    k: int
    values: np.ndarray | None = None  # [m ≤ k, C] best scores so far, unordered
    index: np.ndarray | None = None  # [m, C] their example ids
    total: np.ndarray | None = None  # [C] sum of finite scores
    count: np.ndarray | None = None  # [C] number of finite scores

    def update(self, example_ids: np.ndarray, scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        finite = np.isfinite(scores)
        block_total = np.where(finite, scores, 0).sum(axis=0)
        block_count = finite.sum(axis=0)
        ids = np.broadcast_to(np.asarray(example_ids, dtype=np.int64)[:, None], scores.shape)
        keyed = np.where(np.isnan(scores), -np.inf, scores)
        if self.values is None:
            values, index = keyed, ids
            self.total, self.count = block_total, block_count
        else:
            values = np.concatenate([self.values, keyed])
            index = np.concatenate([self.index, ids])
            self.total = self.total + block_total
            self.count = self.count + block_count
        if len(values) > self.k:
            keep = np.argpartition(values, len(values) - self.k, axis=0)[-self.k :]
            values, index = np.take_along_axis(values, keep, 0), np.take_along_axis(index, keep, 0)
        self.values, self.index = np.array(values), np.array(index)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values [C, k'], example ids [C, k'])``, best first; ``k' = min(k, examples seen)``."""
        if self.values is None:
            raise ValueError("ChannelTopK.result() called before any update()")
        order = np.argsort(-self.values, axis=0, kind="stable")
        values = np.take_along_axis(self.values, order, 0).T
        index = np.take_along_axis(self.index, order, 0).T
        return values, index

    def mean(self) -> np.ndarray:
        """Mean score of each channel over all finite scores seen ``[C]`` (NaN where none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.total / self.count


def channel_topk(blocks: Iterable[tuple[np.ndarray, np.ndarray]], k: int) -> ChannelTopK:
    """Consume ``(example_ids [b], scores [b, C])`` blocks into a :class:`ChannelTopK`."""
    top = ChannelTopK(k)
    for example_ids, scores in blocks:
        if len(example_ids):
            top.update(example_ids, scores)
    return top
