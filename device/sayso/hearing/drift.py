"""Clock drift: the speaker's clock runs apart from the mic's, and the echo slides against its reference.

A USB mic and the board's own audio out keep time on different crystals, 10-100
ppm apart. The reference is laid end to end on the speaker's own count, so
within one answer the echo moves against it by up to 1.6 samples a second. A
linear canceller cannot follow a path that keeps moving: at 100 ppm it took
6-7 dB from an echo it took 22-25 dB from without drift. `DriftTracker` fits the
slope of the measured delay within each run of the reference, and `read_at`
reads the reference at the fractional position that slope says.
"""

from __future__ import annotations

import math

import numpy as np

from sayso.audio import RATE_HZ
from sayso.pipeline.echo_reference import EchoReference

MAX_SLOPE = 500e-6
"""Drift beyond 500 ppm is not a clock's: a delay estimate that says so was thrown by something else."""
TAPS = 16
"""Half the length of the fractional-delay filter: flat to 6 kHz within 0.1 dB with a Blackman window."""


class DriftTracker:
    """How fast the echo's delay moves, in samples per sample, from delay estimates within runs of the reference.

    Each run (an answer, laid end to end from where its stamps placed it) starts
    on time, so only the slope within a run tells drift. Runs are pooled, each
    weighted by how well its estimates pin a slope (their spread in time), so the
    figure sharpens with every answer, and it is used only once it stands twice
    its own uncertainty clear of none: in a room without drift, a slope read from
    the estimates' scatter (14 ppm after one answer) would misalign the reference
    by samples. An estimate further from its run's first than the most drift
    could explain is dropped (the person talking over the answer can throw one).
    """

    MIN_SPAN = RATE_HZ
    """A run's estimates must span a second before they say anything about the slope."""
    STRAY = 4.0
    """Samples an estimate may sit off its run's first beyond what MAX_SLOPE explains (the scatter is under one)."""
    KEEP = 0.9
    """Each finished run's weight in the pool decays by this, so a clock that warms up is followed."""
    SCATTER = 0.5
    """Samples an estimate scatters about its run's line; with the weights, it says how sure the slope is."""

    def __init__(self):
        self._run: int | None = None
        self._points: list[tuple[int, float]] = []
        self._pool_w = 0.0
        self._pool_ws = 0.0
        self.slope = 0.0
        """Samples of delay gained per sample of mic time (negative: the speaker's clock is fast)."""
        self._shifted: tuple[int, int, float] | None = None  # (run start, position, shift) at the last frame

    def observe(self, run_start: int, at: int, lag: float) -> None:
        """A delay estimate `lag` for the mic around clock sample `at`, of the run that began at `run_start`."""
        if run_start != self._run:
            self._pool(*self._fit())
            self._run, self._points = run_start, []
        if self._points:
            t0, lag0 = self._points[0]
            if abs(lag - lag0) > abs(at - t0) * MAX_SLOPE + self.STRAY:
                return
        self._points.append((at, lag))
        w, s = self._fit()
        if w + self._pool_w:
            slope = (self._pool_ws + w * s) / (self._pool_w + w)
            error = self.SCATTER / (RATE_HZ * np.sqrt(self._pool_w + w))
            # no drift but what the scatter could make: a wrong slope costs more than none
            self.slope = slope if abs(slope) > 2 * error else 0.0

    @property
    def ppm(self) -> float:
        """The drift in parts per million (positive: the speaker's clock is slow against the mic's)."""
        return self.slope * 1e6

    def _fit(self) -> tuple[float, float]:
        """(weight, slope) of the current run's least-squares line; weight 0 while it says nothing."""
        if len(self._points) < 2:
            return 0.0, 0.0
        t = np.array([p[0] for p in self._points], np.float64)
        y = np.array([p[1] for p in self._points], np.float64)
        dt = t - t.mean()
        spread = float(dt @ dt)
        if t.max() - t.min() < self.MIN_SPAN or spread <= 0:
            return 0.0, 0.0
        slope = float(dt @ (y - y.mean())) / spread
        if abs(slope) > MAX_SLOPE:
            return 0.0, 0.0
        return spread / RATE_HZ ** 2, slope

    def _pool(self, w: float, slope: float) -> None:
        self._pool_w = self._pool_w * self.KEEP + w
        self._pool_ws = self._pool_ws * self.KEEP + w * slope

    def shift(self, reference: EchoReference, at: int) -> float:
        """Samples to add to reference position `at` so it reads what the mic hears: the drift since its run began.

        Asked frame by frame, in order. The slope is summed over the frames, not
        multiplied by the time since the run began, so a sharper estimate bends
        the path from here on instead of jumping it: a converged filter loses
        10 dB to a jump of half a sample.
        """
        start = reference.run_start(at)
        if start is None:
            self._shifted = None
            return 0.0
        if self._shifted is None or self._shifted[0] != start:
            shift = -self.slope * (at - start)
        else:
            shift = self._shifted[2] - self.slope * (at - self._shifted[1])
        self._shifted = (start, at, shift)
        return shift


def read_at(reference: EchoReference, position: float, count: int) -> np.ndarray:
    """`count` samples of the reference from fractional clock sample `position`, by a windowed-sinc filter."""
    whole = math.floor(position)
    frac = position - whole
    if frac < 1e-3:
        return reference.samples(whole, count)
    k = np.arange(-TAPS + 1, TAPS + 1) - frac
    h = np.sinc(k) * _window(k)
    x = reference.samples(whole - TAPS + 1, count + 2 * TAPS - 1).astype(np.float32)
    y = np.convolve(x, h[::-1].astype(np.float32), mode="valid")
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def _window(k: np.ndarray) -> np.ndarray:
    """A Blackman window over the filter's span, centred on the fractional position."""
    x = np.clip((k + TAPS) / (2 * TAPS), 0.0, 1.0)
    return 0.42 - 0.5 * np.cos(2 * np.pi * x) + 0.08 * np.cos(4 * np.pi * x)
