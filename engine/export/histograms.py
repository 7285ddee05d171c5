"""Per-channel histograms filled one block of examples at a time: bounded memory for any store.

A store's per-example channel means are ``[N, C]``; a histogram of each channel needs only its
bin edges, fixed before the first count. :class:`ChannelRange` finds them in a first pass over
the blocks, :class:`ChannelHistograms` counts in a second: ``C × bins`` integers are all that stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ChannelRange:
    """Running per-channel minimum and maximum of the finite values of ``[b, C]`` blocks."""

    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def update(self, values: np.ndarray) -> None:
        finite = np.isfinite(values)
        low = np.where(finite, values, np.inf).min(axis=0, initial=np.inf)
        high = np.where(finite, values, -np.inf).max(axis=0, initial=-np.inf)
        self.low = low if self.low is None else np.minimum(self.low, low)
        self.high = high if self.high is None else np.maximum(self.high, high)


@dataclass
class ChannelHistograms:
    """``bins`` equal-width bins per channel between its ``low`` and ``high``; non-finite values are left out.

    A channel whose values are all equal gets one bin of width 1 around them (TensorBoard draws
    it as a spike); one without finite values gets no histogram.
    """

    low: np.ndarray  # [C]
    high: np.ndarray  # [C]
    bins: int = 30
    counts: np.ndarray = field(init=False)  # [C, bins]
    total: np.ndarray = field(init=False)  # [C] sum of values
    squares: np.ndarray = field(init=False)  # [C] sum of squares

    def __post_init__(self) -> None:
        low, high = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
        flat = high <= low
        self.low = np.where(flat, low - 0.5, low)
        self.high = np.where(flat, low + 0.5, high)
        self.counts = np.zeros((len(low), self.bins), np.int64)
        self.total = np.zeros(len(low))
        self.squares = np.zeros(len(low))

    @classmethod
    def over(cls, span: ChannelRange, bins: int = 30) -> ChannelHistograms:
        return cls(span.low, span.high, bins)

    def update(self, values: np.ndarray) -> None:
        """Count a block ``[b, C]``."""
        values = np.asarray(values, np.float64)
        finite = np.isfinite(values)
        width = (self.high - self.low) / self.bins
        with np.errstate(invalid="ignore"):
            slot = np.clip(np.floor((values - self.low) / width), 0, self.bins - 1)
        channel = np.broadcast_to(np.arange(values.shape[1]), values.shape)
        flat = channel[finite] * self.bins + slot[finite].astype(np.int64)
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        clean = np.where(finite, values, 0.0)
        self.total += clean.sum(axis=0)
        self.squares += (clean**2).sum(axis=0)

    def raw(self, channel: int, span: ChannelRange) -> dict | None:
        """The keyword arguments of ``SummaryWriter.add_histogram_raw`` for one channel, or None when empty."""
        counts = self.counts[channel]
        if not counts.sum():
            return None
        edges = np.linspace(self.low[channel], self.high[channel], self.bins + 1)
        return {
            "min": float(span.low[channel]), "max": float(span.high[channel]), "num": int(counts.sum()),
            "sum": float(self.total[channel]), "sum_squares": float(self.squares[channel]),
            "bucket_limits": edges[1:].tolist(), "bucket_counts": counts.tolist(),
        }
