"""Running per-channel top-k against a brute-force argsort, on arrays and on a real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attrstream.engine.render import reading
from attrstream.engine.render.topk import channel_topk
from attrstream.engine.store import open_run


def _brute(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-keyed, axis=0, kind="stable")[:k]
    return np.take_along_axis(keyed, order, 0).T, ids[order].T


@pytest.mark.parametrize(
    ("rows", "block", "k"),
    [
        (50, 7, 5),  # blocks larger than k, ragged last block
        (50, 2, 5),  # blocks smaller than k: the pool fills over several updates
        (4, 3, 6),  # fewer examples than k: k' = rows
        (64, 64, 1),  # one block, top-1 = max
    ],
)
def test_matches_argsort(rows: int, block: int, k: int) -> None:
    rng = np.random.default_rng(rows * block + k)
    scores = rng.normal(size=(rows, 9))
    scores[rng.random(scores.shape) < 0.1] = np.nan  # NaN never enters the top-k
    ids = rng.permutation(1000)[:rows]  # arbitrary example ids, not positions
    blocks = [(ids[a : a + block], scores[a : a + block]) for a in range(0, rows, block)]
    top = channel_topk(blocks, k)
    values, index = top.result()
    want_values, want_index = _brute(scores, ids, k)
    np.testing.assert_array_equal(values, want_values)
    finite = np.isfinite(want_values)
    np.testing.assert_array_equal(index[finite], want_index[finite])
    np.testing.assert_allclose(top.mean(), np.nanmean(scores, axis=0), rtol=1e-12)


def test_store_stream_matches_full_read(store: Path) -> None:
    run = open_run(store)
    done = reading.done_examples(run)
    for layer in run.layers:
        top = reading.layer_topk(run, layer, done, k=5)
        values, index = top.result()
        means = run.layer_stats(layer)[done, :, 0]
        want_values, want_index = _brute(means, done, 5)
        np.testing.assert_array_equal(values, want_values)
        np.testing.assert_array_equal(index, want_index)
        np.testing.assert_allclose(top.mean(), means.astype(np.float64).mean(0), rtol=1e-12)
