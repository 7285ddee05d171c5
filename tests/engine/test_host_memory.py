"""The CLI's allocator settings: freed blocks stay in the process, so reallocating them faults
nothing in (checked in a fresh interpreter each: the settings are process-wide)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

# Four 20 MB blocks a round, freed together: the heap's free top (80 MB) is past glibc's dynamic
# trim threshold (2 x 32 MB), so by default each round maps its pages afresh (~2,000 faults here).
ROUNDS = """
import json, resource, sys
import numpy as np
from attrstream.engine.host_memory import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(5 * 2**20, np.float32) for _ in range(4)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"took": took, "faults": faults}))
"""


def _rounds(mode: str, env: dict[str, str] | None = None) -> dict:
    run = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(run.stdout)


def test_freed_blocks_are_reused_without_page_faults():
    kept = _rounds("keep")
    assert kept["took"] is True
    assert kept["faults"][0] > 1000  # the first round maps its pages (~2,000 faults with huge pages, ~20,000 without)
    assert max(kept["faults"][1:]) < 50  # the later ones reuse them


def test_a_users_own_allocator_setting_wins():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072"}
    assert _rounds("keep", env)["took"] is False
