"""Keep freed CPU memory for reuse instead of handing it back to the OS after every step.

A training step allocates and frees the same few GB of activations each time. glibc's malloc
serves blocks above a few MB with ``mmap`` and unmaps them on free, so every step page-faults
that memory in again and the kernel zeroes it: ~15% of a bf16 training step on a 2-core CPU
(`docs/performance.md`). Allocators tuned for this (jemalloc, tcmalloc) need ``LD_PRELOAD``;
two ``mallopt`` settings give glibc the same steady state from inside the process.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # <malloc.h> parameter numbers
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve every block from the heap and keep up to 2 GiB of free heap. True if applied.

    Peak memory is unchanged (the same blocks are reused); the process just does not shrink
    between steps. A no-op where libc is not glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
