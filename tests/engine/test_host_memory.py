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

# Four 20 MB blocks and one of 48 MB a round, freed together (bytearrays: numpy would ask for huge
# pages, which fault once per 2 MB). By default glibc maps each round's pages afresh (~32,700 faults):
# the 48 MB block is past its largest mmap threshold (32 MiB), so it is mapped and unmapped every
# time, and the heap's free top (80 MB) is past its dynamic trim threshold. Raising the thresholds
# alone still faulted the 48 MB block in every round (12,289 faults).
ROUNDS = """
import json, resource, sys
from attrstream.engine.host_memory import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [bytearray(20 * 2**20) for _ in range(4)] + [bytearray(48 * 2**20)]
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
    assert kept["faults"][0] > 10_000  # the first round maps its 128 MB
    assert max(kept["faults"][1:]) < 50  # the later ones reuse them, the 48 MB block too


def test_by_default_every_round_faults_its_pages_in():
    """The premise: without the settings, the same rounds fault (so the test above can fail)."""
    assert min(_rounds("default")["faults"][1:]) > 10_000


def test_a_users_own_allocator_setting_wins():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072"}
    assert _rounds("keep", env)["took"] is False
