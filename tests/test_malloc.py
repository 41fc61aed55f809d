"""glibc's arena limit and fixed mmap threshold, seen from its own reports in a fresh interpreter."""

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import ctypes, ctypes.util, sys, tempfile, threading
    from sayso.service.malloc import limit_arenas

    if sys.argv[1] == "limit":
        assert limit_arenas(2)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
    together = threading.Barrier(8)

    def allocate():
        together.wait()
        for p in [libc.malloc(1000) for _ in range(20000)]:
            libc.free(p)

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        f = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, f)
        libc.fclose(f)
        print(open(out.name).read().count("<heap nr="))
""")


def child(code: str, mode: str) -> int:
    """The number a fresh interpreter prints after running `code` in `mode` (glibc's settings are per process)."""
    done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_info")
def test_two_arenas_however_many_threads_allocate():
    assert child(CHILD, "free") > 2, "without the limit glibc should make more arenas"
    assert child(CHILD, "limit") <= 2


MAPPED_CHILD = textwrap.dedent("""
    import ctypes, ctypes.util, sys
    from sayso.service.malloc import map_large_blocks

    if sys.argv[1] == "fixed":
        assert map_large_blocks()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = Info
    libc.free(libc.malloc(16 << 20))  # a freed mapped block: glibc raises its threshold to its size
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    print(libc.mallinfo2().hblks - before)
    libc.free(block)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2")
def test_a_large_block_is_mapped_even_after_a_larger_one_was_freed():
    assert child(MAPPED_CHILD, "dynamic") == 0, "glibc should have put it in the heap"
    assert child(MAPPED_CHILD, "fixed") == 1
