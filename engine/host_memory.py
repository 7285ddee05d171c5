"""Keep freed host memory in the process, so that a CPU sweep stops faulting in fresh pages.

On CPU, torch frees and allocates the same tens of megabytes of activations and gradients every
batch. glibc gives large freed blocks back to the kernel: blocks above its mmap threshold (dynamic,
at most 32 MiB) are mapped for each allocation and unmapped when freed, and a heap with more than
its trim threshold free at the top is trimmed. Each batch then touches freshly zeroed pages:
~72,000 minor page faults a batch for ResNet-18 at 224², batch 16. Raising both thresholds left
~12,500 a batch: blocks past 32 MiB (the 51 MB first-stage tensors and their gradients) are always
mapped. So large blocks come from the heap too (no mmap) and the heap is never trimmed: after the
first batches, ~0 faults a batch, and the system time of a sweep falls from ~13% to ~1% of its
user time. The settings are process-wide and cannot be undone, so the CLI applies them (its
process ends with the job) and a library call never does; a user's own ``MALLOC_*`` environment
or ``GLIBC_TUNABLES`` wins.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # an int: in effect, never trim
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Serve every block of this process from glibc's heap and never trim it; True when the
    allocator took both settings (False on another C library, or when the user set the allocator's
    options already). Threads' own arenas still map what their heaps cannot hold."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
