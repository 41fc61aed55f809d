"""The simulated room's loudspeaker and microphone: what the Engine is given instead of a sound card.

The speaker is an AudioSink whose queue the room's clock plays; the mic opens
like PyAudioMic and gets the room's 10 ms blocks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from sayso.audio import RATE_HZ


class SimSpeaker:
    """The room's loudspeaker, an AudioSink: `write` queues, the room's clock plays.

    `write` blocks while more than `buffer_ms` is queued, like a device buffer.

    Args:
        clock: the room's audio clock, ns.
        stopped: set once the room stops; a `write` waiting for room gives up then.
        aborted: told, under the speaker's lock, of each abort: the room sample it came at, the room sample
            just after the last one played, and how many aborts there have been.
    """

    def __init__(self, clock: Callable[[], int], stopped: threading.Event, aborted: Callable[[int, int, int], None],
                 rate_hz: int, buffer_ms: float = 40.0):
        self.clock, self.stopped, self.aborted, self.rate_hz = clock, stopped, aborted, rate_hz
        self.buffer = int(rate_hz * buffer_ms / 1000)
        self._queue: deque[np.ndarray] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._inflight_until_ns = 0
        self.last_played_sample = 0
        """Room sample just after the last speaker sample that played."""
        self.aborts = 0
        """How many times the speaker was aborted (so the room knows which of its audio an abort cut)."""

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.int16)
        with self._cond:
            while self._queued > self.buffer and not self.stopped.is_set():
                self._cond.wait(0.05)
            self._queue.append(block)
            self._queued += len(block)

    def pending_samples(self) -> int:
        with self._cond:
            inflight = max(0, self._inflight_until_ns - self.clock()) * self.rate_hz // 1_000_000_000
            return self._queued + int(inflight)

    def abort(self) -> None:
        now = self.clock() * RATE_HZ // 1_000_000_000
        with self._cond:
            self._queue.clear()
            self._queued = 0
            # what is in the device's hands right now stops now, not at the end of its 10 ms
            self.last_played_sample = min(self.last_played_sample, now)
            self._inflight_until_ns = 0
            self.aborts += 1
            self._cond.notify_all()
            self.aborted(now, self.last_played_sample, self.aborts)

    def take(self, n: int, tick_sample: int) -> tuple[np.ndarray, int]:
        """The next `n` samples the room plays (zeros where nothing is queued), and how many aborts came first."""
        out = np.zeros(n, np.int16)
        got = 0
        with self._cond:
            aborts = self.aborts
            while got < n and self._queue:
                head = self._queue[0]
                k = min(n - got, len(head))
                out[got:got + k] = head[:k]
                got += k
                if k == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[k:]
            self._queued -= got
            if got:
                played_ns = got * 1_000_000_000 // self.rate_hz
                self._inflight_until_ns = tick_sample * 1_000_000_000 // RATE_HZ + played_ns
                self.last_played_sample = tick_sample + got * RATE_HZ // self.rate_hz
            self._cond.notify_all()
        return out, aborts


class SimMic:
    """The room's microphone, opened like PyAudioMic: `open(deliver)` and 10 ms blocks at 16 kHz."""

    rate_hz = RATE_HZ

    def __init__(self) -> None:
        self.deliver: Callable[[bytes, int], None] | None = None

    def open(self, deliver: Callable[[bytes, int], None]) -> None:
        self.deliver = deliver

    def close(self) -> None:
        self.deliver = None
