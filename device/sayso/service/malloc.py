"""glibc's allocator held to two arenas, so a many-threaded appliance does not creep in memory.

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


def limit_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process; False where the C library is not glibc.

    Call it before the pipeline starts its threads: arenas already made stay.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas limited to %d: %s", arenas, ok)
    return ok
