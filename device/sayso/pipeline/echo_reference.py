"""The echo reference: what the speaker played, laid sample by sample on the audio clock.

The speaker publishes every block it plays, at the mic's 16 kHz, at the time it
becomes audible; the listener reads it back for each mic frame, so the echo
canceller and guard know what the appliance itself put into the room at that
moment. It sits in the pipeline, below both stages: a side channel between the
speaker and the listener, beside the channels rather than through them.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import cast

import numpy as np

from sayso.audio import RATE_HZ

LEVEL_CHUNK = RATE_HZ // 50
"""The reference's level is taken over 20 ms chunks."""


def sample_at(t_ns: int) -> int:
    """The 16 kHz sample of the audio clock at `t_ns`."""
    return t_ns * RATE_HZ // 1_000_000_000


class EchoReference:
    """What the speaker played, at 16 kHz, laid on the audio clock: written by the speaker, read by the listener.

    Blocks whose stamps wobble by a few ms are laid end to end, so the canceller
    sees one continuous signal; a stamp further off (a new or resumed answer)
    starts a new run. A run is placed to the sample by the median stamp of the
    blocks written while the device was playing it, not by its first block's,
    which went into an idle device and is early by up to a period. Positions
    never played read as silence.
    """

    JITTER = RATE_HZ // 100
    """Blocks stamped within 10 ms of where the last one ended continue it (20 ms while a run is placed)."""
    PLACING_BLOCKS = 16
    """A run is placed by the median of where its first 16 blocks (about 300 ms) say it began..."""
    MOVE = 0.75
    """...once two say so, moving when that is more than 3/4 of a sample from where it is (not on rounding)."""

    def __init__(self, keep_s: float = 4.0):
        self._buf = np.zeros(int(keep_s * RATE_HZ), np.int16)
        self._end: int | None = None
        """Clock sample just after the last one written."""
        self._run_start = 0
        self._run_blocks = 0
        """Blocks in the current run so far (counted while it is placed)."""
        self._starts: deque[int] = deque(maxlen=16)
        """Where the last runs began, oldest first: the current run's is last."""
        self._said: list[float] = []
        """Where the current run began, in (fractional) samples, by each stamp taken with the device playing it."""
        self._lock = threading.Lock()

    def played(self, block: np.ndarray, audible_ns: int, queued_ns: int | None = None) -> None:
        """`block` (16 kHz int16) becomes audible at `audible_ns` on the audio clock.

        `queued_ns`: how much audio the device held ahead of the block (None: the
        stamp is exact, as in tests). Under a block's worth, the device ran dry and
        plays this at its next period, so the block starts a new run however near
        its stamp is. Less than the run written so far, the device is playing the
        run, and the stamp helps place it.
        """
        start = sample_at(audible_ns)
        block_ns = len(block) * 1_000_000_000 // RATE_HZ
        after_gap = queued_ns is not None and queued_ns < block_ns
        with self._lock:
            placing = self._run_blocks < self.PLACING_BLOCKS
            near = self._end is not None and abs(start - self._end) <= self.JITTER * (2 if placing else 1)
            if near and not after_gap:
                # near: there is a run, so _end is set (and _place_run keeps it set)
                if placing:
                    self._run_blocks += 1
                    written = cast(int, self._end) - self._run_start
                    if queued_ns is None or queued_ns + 1_000_000 <= written * 1_000_000_000 // RATE_HZ:
                        self._said.append(audible_ns * RATE_HZ / 1e9 - written)
                        self._place_run()
                start = cast(int, self._end)
            else:
                if self._end is not None and start > self._end:
                    self._write(self._end, np.zeros(min(start - self._end, len(self._buf)), np.int16))
                self._run_start, self._run_blocks = start, 1
                self._starts.append(start)
                self._said = [audible_ns * RATE_HZ / 1e9] if queued_ns is None else []
            self._write(start, np.asarray(block, np.int16))
            self._end = start + len(block)

    def _place_run(self) -> None:
        """Move the run (still in its first blocks) to the median of where its stamps say it began.

        The median, so one block stamped late moves nothing; from two stamps on,
        so the run is placed before the canceller reads its first frames.
        """
        if len(self._said) < 2:
            return
        said = float(np.median(self._said))
        if abs(said - self._run_start) <= self.MOVE:
            return
        to = int(round(said))
        run = self._buf[np.arange(self._run_start, self._end) % len(self._buf)].copy()
        self._write(self._run_start, np.zeros(len(run), np.int16))
        self._write(to, run)
        self._run_start, self._end = to, to + len(run)
        self._starts[-1] = to

    def run_start(self, at: int) -> int | None:
        """The clock sample where the run holding clock sample `at` began (the last run to begin by then)."""
        with self._lock:
            return next((s for s in reversed(self._starts) if s <= at), None)

    def cut(self, at_ns: int) -> None:
        """The speaker went quiet at `at_ns`: what it had queued beyond that was never played."""
        at = sample_at(at_ns)
        with self._lock:
            if self._end is not None and at < self._end:
                self._write(at, np.zeros(min(self._end - at, len(self._buf)), np.int16))
                self._end = at

    def _write(self, start: int, data: np.ndarray) -> None:
        n = len(self._buf)
        if len(data) > n:  # only the last n samples can be kept
            start, data = start + len(data) - n, data[-n:]
        self._buf[np.arange(start, start + len(data)) % n] = data

    def samples(self, start: int, count: int) -> np.ndarray:
        """The reference from clock sample `start`; zeros where nothing was (or is yet) played."""
        out = np.zeros(count, np.int16)
        with self._lock:
            if self._end is None:
                return out
            lo, hi = max(start, self._end - len(self._buf)), min(start + count, self._end)
            if lo < hi:
                out[lo - start:hi - start] = self._buf[np.arange(lo, hi) % len(self._buf)]
        return out

    def level(self, start: int, end: int) -> float:
        """Loudest 20 ms level of the reference in clock samples [start, end)."""
        ref = self.samples(start, end - start)
        k = len(ref) // LEVEL_CHUNK
        if not k or not ref.any():
            return 0.0
        x = ref[:k * LEVEL_CHUNK].astype(np.float32).reshape(k, LEVEL_CHUNK) / 32768.0
        return float(np.sqrt((x * x).mean(axis=1)).max())
