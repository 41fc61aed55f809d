"""The speaker's device: PortAudio output opened by name, written in blocks, aborted at once."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from sayso.audio import find_device

log = logging.getLogger(__name__)


class PyAudioSink:
    """A PortAudio output stream in blocking mode (the speaker thread is the only writer).

    `abort` closes the stream, which discards what PortAudio still holds (as
    Pa_AbortStream does; pyaudio only offers a draining stop); the next write reopens it.
    """

    def __init__(self, name: str = "", rate_hz: int = 22050, block_ms: float = 20.0):
        import pyaudio

        self._pyaudio = pyaudio
        self._pa = pyaudio.PyAudio()
        self.index, info = find_device(self._pa, name, "output")
        self.device_name = info["name"]
        try:
            self._pa.is_format_supported(rate_hz, output_device=self.index, output_channels=1,
                                         output_format=pyaudio.paInt16)
            self.rate_hz = rate_hz
        except ValueError:
            self.rate_hz = int(info["defaultSampleRate"])  # the speaker resamples to this with soxr
        self.block = int(self.rate_hz * block_ms / 1000)
        self._stream: Any = None  # pyaudio's Stream: pyaudio has no types
        self._lock = threading.Lock()
        self._last_write_ns = 0

    def _open(self) -> Any:
        if self._stream is None:
            self._stream = self._pa.open(format=self._pyaudio.paInt16, channels=1, rate=self.rate_hz, output=True,
                                         output_device_index=self.index, frames_per_buffer=self.block)
            log.info("speaker %r open at %d Hz, output latency %.0f ms", self.device_name, self.rate_hz,
                     self._stream.get_output_latency() * 1000)
        return self._stream

    def write(self, block: np.ndarray) -> None:
        with self._lock:
            stream = self._open()
        stream.write(np.asarray(block, dtype=np.int16).tobytes(), exception_on_underflow=False)
        with self._lock:
            self._last_write_ns = time.monotonic_ns()

    def pending_samples(self) -> int:
        """Written but not yet heard: the reported output latency, running out once writes stop."""
        with self._lock:
            if self._stream is None:
                return 0
            latency_ns = int(self._stream.get_output_latency() * 1e9)
            left_ns = latency_ns - (time.monotonic_ns() - self._last_write_ns)
            return max(0, int(left_ns * self.rate_hz / 1e9))

    def abort(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def close(self) -> None:
        self.abort()
        self._pa.terminate()
