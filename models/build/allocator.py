"""Keep memory the job frees inside the process for its next arrays, instead of handing it back to the kernel.

The job allocates and frees arrays of tens to hundreds of MB: a normalised copy per index, score blocks and
rescaled factors per gauge transform, one set per model. glibc's malloc serves every block above its mmap
threshold (at most 32 MB by default) with fresh pages and unmaps them on free, so each such array page-faults
in anew; on the 2-core VMs this project is measured on that costs about 1 ms per MB, more than the arithmetic
on it. Raising the mmap and trim thresholds lets freed blocks be reused (100,000 x 20,000 CSV, k = 64, CLI
defaults: 20.6 s -> 16.1 s, minor page faults 363k -> 89k, peak RSS 1.19 -> 1.26 GB; docs/offline-job.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GB come from the heap, where freed ones are reused
TRIM_THRESHOLD = (1 << 31) - 1  # free heap memory is returned to the kernel only above 2 GB (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Set glibc malloc's mmap and trim thresholds for this process; False (and nothing changed) elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, TypeError, AttributeError):  # not glibc (musl, macOS): keep the allocator's defaults
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
