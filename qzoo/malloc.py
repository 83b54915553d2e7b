"""glibc malloc settings for training: keep freed memory in the process instead of handing it back to the kernel.

Every update allocates and frees the same few megabytes (the batch as bfloat16, the fully connected layer's
bfloat16 weights and gradient, activations). With glibc's defaults, blocks of that size are mapped fresh from the
kernel (``mmap``) or returned at once (heap trimming above 128 kB), so every update pays page faults to touch them
again: a bfloat16 Nature-CNN update on one Sapphire Rapids core took 21-24 ms with the defaults and 15-17 ms with
the settings below (BENCHMARKS.md, Speed). The cost is memory the process keeps after a free (at most the trim
threshold at the top of the heap); it is what jemalloc and tcmalloc, which Intel recommends for PyTorch on CPUs,
do by design.

Set once per process, on Linux with glibc only; settings the user gave (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES`` with glibc.malloc) win.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # blocks from 32 MB up (a replay buffer) are still mapped and unmapped on their own
TRIM_THRESHOLD = 128 << 20  # free memory at the heap's top is handed back once it exceeds 128 MB

_done: bool | None = None


def user_set() -> bool:
    return ("MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ
            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""))


def keep_freed_memory() -> bool:
    """Apply the settings (once); True if they are in effect."""
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux") and not user_set():
            try:
                libc = ctypes.CDLL("libc.so.6")
                _done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
                _done = False
    return _done
