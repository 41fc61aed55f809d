"""Stopping llama.cpp inside a decode, without Python between its graph nodes.

llama.cpp asks an abort callback between graph nodes, hundreds of times per
token. A Python callback there takes the GIL each time: with other stages
running Python the LLM lost a third of its speed, and they lost time to it.
So the callback is C that reads a one-byte flag (libc's strlen over it: 0
while the flag is clear, 1 once raised), and a watcher thread asks the
caller's `should_stop` every few milliseconds while a call runs, raising the
flag when it turns true.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Callable, Iterator

POLL_S = 0.005
"""How often the watcher asks `should_stop`: the most this adds to stopping a decode."""


class AbortWatch:
    """Owns one llama.cpp context's abort callback; `watching(should_stop)` arms it for one call."""

    def __init__(self, llama_cpp_module, ctx) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self._flag = ctypes.create_string_buffer(2)
        # the ctypes objects must outlive the context: llama.cpp keeps the raw pointers
        self._callback = llama_cpp_module.ggml_abort_callback(ctypes.cast(libc.strlen, ctypes.c_void_p).value)
        llama_cpp_module.llama_set_abort_callback(ctx, self._callback, ctypes.cast(self._flag, ctypes.c_void_p))
        self._should_stop: Callable[[], bool] | None = None
        self.stopped = False
        """Whether the last call watched was stopped by its `should_stop` (which may have turned false since)."""
        self._armed = threading.Condition()
        self._thread = threading.Thread(target=self._watch, name="llm-abort", daemon=True)
        self._thread.start()

    @property
    def raised(self) -> bool:
        return self._flag.raw[0] != 0

    @contextlib.contextmanager
    def watching(self, should_stop: Callable[[], bool]) -> Iterator[None]:
        """Stop llama.cpp's work within POLL_S of `should_stop` turning true, until the block ends."""
        with self._armed:
            self._flag[0] = b"\0"
            self._should_stop = should_stop
            self._armed.notify()
        try:
            yield
        finally:
            with self._armed:
                self._should_stop = None
                self.stopped = self.raised
                self._flag[0] = b"\0"

    def _watch(self) -> None:
        with self._armed:
            while True:
                should_stop = self._should_stop
                if should_stop is None or self.raised:
                    self._armed.wait()
                    continue
                if should_stop():
                    self._flag[0] = b"x"
                else:
                    self._armed.wait(POLL_S)
