"""Mic capture: 16 kHz mono int16 frames of 512 samples (32 ms), stamped with the audio clock.

The PortAudio callback only copies and enqueues; a worker cuts frames, resamples
with soxr when the device runs at another rate, and reopens the device when it
fails or goes quiet (an unplugged USB mic can leave ALSA reads hanging).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sayso.audio import FRAME_SAMPLES, RATE_HZ, find_device
from sayso.errors import DeviceNotFound
from sayso.pipeline.channel import Channel
from sayso.pipeline.stage import Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    samples: np.ndarray = field(repr=False)
    """512 int16 samples at 16 kHz."""
    index: int
    """Audio clock: the sample index of samples[0] since capture started."""
    t_ns: int
    """monotonic_ns when samples[0] was captured (approximately)."""
    near: bool = True
    """False where the listener's foreground gate took this frame's speech for a voice across the room (a
    television), not the person's: the transcriber counts no sustained speech of the person's on it."""


class Mic(Protocol):
    """An input device that hands raw mono int16 blocks at `rate_hz` to a callback on its own thread."""

    rate_hz: int

    def open(self, deliver: Callable[[bytes, int], None]) -> None:
        """Start capturing; `deliver(raw_int16_bytes, monotonic_ns)` is called on the device's thread."""

    def close(self) -> None:
        """Stop capturing; harmless when it is not open."""


class PyAudioMic:
    """The microphone through PortAudio, opened by name, at 16 kHz or the device's own rate."""

    def __init__(self, name: str = "", block_ms: float = 32.0, rate_hz: int | None = None):
        """`rate_hz` forces a device rate (some USB mics only run at 44.1 or 48 kHz); None tries 16 kHz first."""
        self.name, self.block_ms, self.forced_rate = name, block_ms, rate_hz
        self.rate_hz = RATE_HZ
        self._pa: Any = None  # pyaudio's PyAudio and Stream: pyaudio has no types
        self._stream: Any = None

    def open(self, deliver: Callable[[bytes, int], None]) -> None:
        """Start capturing; `deliver(raw_int16_bytes, monotonic_ns)` runs on PortAudio's thread."""
        import pyaudio

        self._pa = pyaudio.PyAudio()
        try:
            index, info = find_device(self._pa, self.name, "input")
            try:
                self.rate_hz = self.forced_rate or RATE_HZ
                self._pa.is_format_supported(self.rate_hz, input_device=index, input_channels=1,
                                             input_format=pyaudio.paInt16)
            except ValueError:
                self.rate_hz = int(info["defaultSampleRate"])

            def callback(in_data, frame_count, time_info, status):
                deliver(bytes(in_data), time.monotonic_ns())  # copy and enqueue only
                return None, pyaudio.paContinue

            self._stream = self._pa.open(format=pyaudio.paInt16, channels=1, rate=self.rate_hz, input=True,
                                         input_device_index=index, stream_callback=callback,
                                         frames_per_buffer=int(self.rate_hz * self.block_ms / 1000))
            log.info("mic %r open at %d Hz", info["name"], self.rate_hz)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop_stream()
                self._stream.close()
            except OSError as e:
                log.debug("closing the mic stream: %s", e)
        if self._pa is not None:
            self._pa.terminate()
        self._pa = self._stream = None


class Framer:
    """Mic samples at the device's rate in, 16 kHz frames of FRAME_SAMPLES out (soxr's streaming resampler)."""

    def __init__(self, rate_hz: int):
        self._buf = np.zeros(0, np.int16)
        self._resampler = None
        if rate_hz != RATE_HZ:
            import soxr

            self._resampler = soxr.ResampleStream(rate_hz, RATE_HZ, 1, dtype="int16")

    @property
    def pending(self) -> int:
        """Samples at 16 kHz kept for the next frame."""
        return len(self._buf)

    def frames(self, samples: np.ndarray, silent: bool = False) -> list[np.ndarray]:
        """The whole frames `samples` complete; `silent` makes these samples digital silence (mute)."""
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        if silent:
            samples = np.zeros_like(samples)
        self._buf = np.concatenate([self._buf, samples])
        n = len(self._buf) // FRAME_SAMPLES
        out = [self._buf[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES].copy() for k in range(n)]
        self._buf = self._buf[n * FRAME_SAMPLES:]
        return out


class Capture(Stage):
    """Turns raw mic blocks into stamped frames and keeps the mic open.

    Args:
        mic: PyAudioMic, the simulated room's mic, or a test's wrapper of either.
        frames: where 16 kHz frames go (the listener).
        stall_s: no audio for this long means the device is gone: close, reinitialise, reopen.
        backoff_s: waits between failed opens; the last repeats.
    """

    name = "capture"

    def __init__(self, mic: Mic, frames: Channel, clock: Callable[[], int] = time.monotonic_ns, stall_s: float = 2.0,
                 backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)):
        super().__init__()
        self.backoff_s = backoff_s
        self.mic, self.frames, self.clock, self.stall_ns = mic, frames, clock, int(stall_s * 1e9)
        self.raw: Channel = Channel("mic-raw", capacity=256)
        self.index = 0
        self.reopens = 0
        self.dropped = 0
        """Mic samples thrown away because the worker fell behind."""
        self._reported_drops, self._drops_said = 0, 0.0
        self.muted = threading.Event()
        """Set: frames go on as digital silence, so nothing said reaches the VAD or STT (privacy)."""
        self.last_audio = time.monotonic()
        """When the mic last delivered audio (for the service watchdog)."""
        self._open = False
        self._failures = 0
        self._last_ns = 0
        self._framer = Framer(RATE_HZ)

    def _deliver(self, data: bytes, t_ns: int) -> None:
        try:
            self.raw.put(data, timeout=0)
        except TimeoutError:
            self.dropped += len(data) // 2  # counted here, reported from the stage's own thread

    def _report_drops(self) -> None:
        """One warning per few seconds at most: an overloaded Pi must not also flood its journal."""
        now = time.monotonic()
        if self.dropped > self._reported_drops and now - self._drops_said > 5.0:
            log.warning("capture is behind: %.2f s of mic audio dropped so far (CPU overloaded?)",
                        self.dropped / (self.mic.rate_hz or RATE_HZ))
            self._reported_drops, self._drops_said = self.dropped, now

    def step(self) -> None:
        if not self._open:
            self._try_open()
            return
        data = self.raw.get(timeout=0.1)
        now = self.clock()
        self._report_drops()
        if data is None:
            if now - self._last_ns > self.stall_ns:
                log.warning("no audio from the mic for %.1fs; reopening it", (now - self._last_ns) / 1e9)
                self._close()
            return
        self._last_ns, self.last_audio = now, time.monotonic()
        chunks = self._framer.frames(np.frombuffer(data, dtype=np.int16), silent=self.muted.is_set())
        for k, chunk in enumerate(chunks):
            behind = (len(chunks) - k) * FRAME_SAMPLES + self._framer.pending
            self.frames.put(Frame(chunk, self.index, now - int(behind * 1e9 / RATE_HZ)))
            self.index += FRAME_SAMPLES

    def _try_open(self) -> None:
        try:
            self.mic.open(self._deliver)
        except (OSError, DeviceNotFound) as e:
            delay = self.backoff_s[min(self._failures, len(self.backoff_s) - 1)]
            self._failures += 1
            log.warning("mic not available (%s); trying again in %.1fs", e, delay)
            self.stopping.wait(delay)
            return
        now = self.clock()
        if self._last_ns:
            # keep the audio clock on time across the outage
            self.index += int((now - self._last_ns) * RATE_HZ / 1e9) // FRAME_SAMPLES * FRAME_SAMPLES
        self._failures, self._open, self._last_ns = 0, True, now
        self._framer = Framer(self.mic.rate_hz)

    def _close(self) -> None:
        self.mic.close()
        self.raw.flush(lambda _: True)
        self._open = False
        self.reopens += 1

    def join(self, timeout: float) -> None:
        super().join(timeout)
        self.mic.close()
