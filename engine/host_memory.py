"""Keep freed host memory in the process, so that a CPU sweep stops faulting in fresh pages.

On CPU, torch frees and allocates the same tens of megabytes of activations and gradients every
batch. glibc gives large freed blocks back to the kernel: blocks above its mmap threshold (dynamic,
at most 32 MiB) are unmapped, and a heap with more than its trim threshold free at the top is
trimmed. Each batch then touches freshly zeroed pages: ~72,000 minor page faults a batch for
ResNet-18 at 224², batch 16, against ~12,500 (the 51 MB first-layer output alone) with both
thresholds raised, and 3-10% of the sweep's time on a 2-core VM. The settings are process-wide and
cannot be undone, so the CLI applies them (its process ends with the job) and a library call never
does; a user's own ``MALLOC_*`` environment or ``GLIBC_TUNABLES`` wins.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling on 64-bit: larger blocks are always mapped
TRIM_THRESHOLD = 2**31 - 1  # an int: in effect, never trim
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when the allocator took them
    (False on another C library, or when the user set the allocator's options already)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
