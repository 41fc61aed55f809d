"""glibc's allocator held to two arenas, and large blocks always mapped, so the appliance does not creep in memory.

glibc gives each new thread that allocates under contention an arena of its own (up to eight
per core) and seldom returns their freed pages. The pipeline's stages, onnxruntime and
llama.cpp each allocate from their own threads, so the resident set grew with every new
thread and never came back. Two arenas keep it flat at no measurable cost: most Python-side
allocation is serialised by the GIL anyway, and the models allocate their buffers once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (glibc malloc.h)."""
M_MMAP_THRESHOLD = -3
"""mallopt's parameter number for the size from which a block gets a mapping of its own."""


def _mallopt(param: int, value: int) -> bool:
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(param, value))


def limit_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process; False where the C library is not glibc.

    Call it before the pipeline starts its threads: arenas already made stay.
    """
    ok = _mallopt(M_ARENA_MAX, arenas)
    log.debug("malloc arenas limited to %d: %s", arenas, ok)
    return ok


def map_large_blocks(threshold_bytes: int = 128 * 1024) -> bool:
    """Give every block from `threshold_bytes` up a mapping of its own, returned to the system when freed.

    glibc starts at this threshold but raises it to the size of each mapped block
    freed, up to 32 MB: after the models load, audio and feature buffers of
    hundreds of kB to megabytes came from the heaps instead, and the holes they
    left kept 40-60 MB resident that nothing used (docs/bench.md). A fixed
    threshold turns that raising off. Call it before the models load.
    """
    ok = _mallopt(M_MMAP_THRESHOLD, threshold_bytes)
    log.debug("malloc maps blocks from %d bytes: %s", threshold_bytes, ok)
    return ok
