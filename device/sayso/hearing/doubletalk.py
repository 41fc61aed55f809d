"""Double talk: how much of the mic the appliance's own voice cannot account for."""

from __future__ import annotations

import numpy as np

from sayso.audio import RATE_HZ
from sayso.pipeline.echo_reference import EchoReference


class ReferenceFit:
    """How much of the mic's last 64 ms a delayed copy of the reference leaves unexplained: a double-talk test.

    For each lag in a window, the least-squares gain of the reference at that lag
    is fitted to the raw mic; the best lag's residual, as a fraction of the mic's
    energy, is what the reference cannot explain. Echo alone leaves little
    (-5 to -25 dB through a dry room), a person talking over it leaves nearly all
    of their own energy (-0.1 to -1.5 dB), whatever the canceller has learnt: so it
    can tell the person from the echo before the canceller has converged. One FFT
    correlation over the lags, a fraction of a millisecond per frame.
    """

    SAMPLES = RATE_HZ * 64 // 1000

    def __init__(self):
        self._mic = np.zeros(self.SAMPLES, np.float32)

    def push(self, raw: np.ndarray) -> None:
        """The next raw mic frame (every frame, so the window stays continuous)."""
        n = min(len(raw), self.SAMPLES)
        self._mic = np.concatenate([self._mic[n:], np.asarray(raw[-n:], np.float32)])

    def unexplained(self, end: int, ref: EchoReference, lo: int, hi: int) -> float:
        """Fraction (0-1) of the mic's energy up to clock sample `end` that the reference delayed by
        `lo`..`hi` samples cannot explain; 1.0 with no reference there or a silent mic."""
        x, n = self._mic.astype(np.float64), self.SAMPLES
        r = ref.samples(end - n - hi, n + hi - lo).astype(np.float64)
        energy = float(x @ x)
        if energy <= 0 or not r.any():
            return 1.0
        size = 1 << int(np.ceil(np.log2(len(r) + n)))
        # c[k] = sum_t x[t] r[t + k]: the reference delayed by hi - k samples
        c = np.fft.irfft(np.fft.rfft(r, size) * np.conj(np.fft.rfft(x, size)), size)[:hi - lo + 1]
        power = np.concatenate([[0.0], np.cumsum(r * r)])
        rr = power[n:n + hi - lo + 1] - power[:hi - lo + 1]
        explained = c * c / np.maximum(rr * energy, 1e-9)
        return float(1.0 - min(1.0, explained.max()))
