"""The arena limit, seen from glibc's own report of its heaps after eight threads allocate at once."""

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


def heaps_after_eight_threads(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_info")
def test_two_arenas_however_many_threads_allocate():
    assert heaps_after_eight_threads("free") > 2, "without the limit glibc should make more arenas"
    assert heaps_after_eight_threads("limit") <= 2
