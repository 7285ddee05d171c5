"""The CLI in this process, and store comparison: the setup and resume steps of the fault tests.

Subprocesses stay where the test is about the process (its exit status, its one error line, a
signal); a reference run or a resume is the same ``main`` here, without a second torch import.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from attrstream.engine.cli import main
from attrstream.engine.store import open_run
from tests.store._helpers import assert_stores_equal

# A sweep of 3 units of 8 examples, 16 px, through a 2-stage CNN: small enough for CI.
TINY_SWEEP = ["sweep", "--model", "tests.engine.models:tiny_cnn", "--num-classes", "5", "--data", "fake",
              "--image-size", "16", "--limit", "24", "--unit", "8", "--batch-size", "8", "--no-progress"]


def run_cli(*args: str) -> int:
    """``attrstream ARGS`` in this process; the warning settings ``main`` installs are undone after."""
    formatwarning = warnings.formatwarning
    with warnings.catch_warnings():
        try:
            return main(list(args))
        finally:
            warnings.formatwarning = formatwarning


def assert_same_store(path: Path, reference: Path) -> None:
    """Every array, the pooled dataset statistics and the progress of two finished stores are equal."""
    run, ref = open_run(path), open_run(reference)
    assert run.complete and ref.complete
    assert run.meta["fingerprint"] == ref.meta["fingerprint"]
    assert_stores_equal(path, reference, ref.spec)
    if "stats" in ref.spec.layer_methods:
        for layer in ref.layers:
            np.testing.assert_array_equal(run.dataset_stats(layer), ref.dataset_stats(layer), err_msg=layer)
