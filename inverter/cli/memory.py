"""Process-wide CPU settings that change the speed of the inversion loop (measured by `benchmarks.speed`).

`keep_freed_memory()`: glibc's malloc hands large blocks back to the kernel when they are freed
(anything over its mmap threshold, always above 32 MB), so the next iteration maps them again and
takes one page fault per 4 KB page on first touch. VGG16-BN cut at conv3_1, 224 px, batch 8: about
3 million page faults and ~20% of the run in the kernel. With mmap off and a high trim threshold
freed memory stays in the heap and is reused; the resident set then stays at its peak until exit.
It is opt-in: a long-running process that shares the machine may prefer to give memory back.

Threads: torch's OpenMP threads spin while waiting. On an idle 2-core machine 2 threads are ~1.7x
faster than 1; when other processes keep the cores busy, spinning threads steal time from working
ones and many-op graphs (ResNet-50) can run 10-20x slower, unless OMP_WAIT_POLICY=PASSIVE is set
before torch is imported (which in turn costs ~45% on an idle machine) or one thread is used.
`describe()` records what was in force, with the load average.
"""
from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_state = {"keep_freed_memory": False}


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Keep freed heap memory for reuse (glibc only); True if the allocator took the settings."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.info("keep_freed_memory: not a glibc process; allocator left as it is")
    _state["keep_freed_memory"] = _state["keep_freed_memory"] or ok
    return ok


def describe() -> dict:
    """The settings in force: torch threads, OpenMP wait policy, allocator, load average."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "keep_freed_memory": _state["keep_freed_memory"],
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
