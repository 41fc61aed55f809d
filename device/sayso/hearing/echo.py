"""The appliance's own voice in its mic: the delay, the canceller, the guard.

The speaker publishes every block it plays, at the mic's 16 kHz, at the time it
becomes audible (`EchoReference`, echo_reference.py). The listener takes each mic frame through
`EchoCanceller` before the VAD: it finds the delay between reference and mic by
cross-correlation (`DelayEstimator`), lines the reference up by it and lets
libspeexdsp subtract the echo. What the canceller leaves is judged by
`EchoGuard`, which only believes speech clearly louder than the echo expected.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

from sayso.audio import FRAME_SAMPLES, RATE_HZ, rms
from sayso.config import BargeInSettings
from sayso.hearing.aec import SpeexAEC
from sayso.hearing.doubletalk import ReferenceFit
from sayso.hearing.drift import DriftTracker, read_at
from sayso.pipeline.echo_reference import LEVEL_CHUNK, EchoReference

log = logging.getLogger(__name__)


class DelayEstimator:
    """The delay from the reference to its echo in the mic, by GCC-PHAT over the last second.

    PHAT whitening makes the peak sharp on speech, so one clear peak names the
    lag; an estimate is only taken when the peak stands well out of the rest and
    two in a row agree, so the person talking over the answer cannot move it.
    It correlates at 8 kHz, half the work: 0.13 ms steps are still well inside
    the 4 ms the canceller leaves before the echo.

    Args:
        max_ms: the longest delay looked for (device buffers plus the room).
        lead_ms: lag allowed the other way (the reference stamped late).
    """

    WINDOW = RATE_HZ
    SEARCHING_FRAMES = 16
    """An estimate every half second of mic audio until the delay is found..."""
    LOCKED_FRAMES = 32
    """...then every second (2 ms of work, under one frame in 20), to follow a device whose latency
    changes and to give the clocks' drift a few points within even a short answer."""
    MIN_PEAK_RATIO = 3.0
    """How far the peak must stand over the highest lag outside its own 4 ms."""

    def __init__(self, max_ms: float = 400.0, lead_ms: float = 80.0):
        self.max_lag = int(max_ms * RATE_HZ / 1000) // 2 * 2
        self.lead = int(lead_ms * RATE_HZ / 1000) // 2 * 2
        self._mic: deque[np.ndarray] = deque(maxlen=self.WINDOW // FRAME_SAMPLES)
        self._mic_start = 0
        self._frames = 0
        self._last: int | None = None
        self.delay: int | None = None
        """Samples from the reference's stamp to its echo in the mic; None until found."""
        self.measured: tuple[int, float] | None = None
        """The last estimate, to a fraction of a sample: (the clock sample at its window's middle, the delay)."""

    def observe(self, samples: np.ndarray, start: int, reference: EchoReference) -> bool:
        """One mic frame starting at clock sample `start`; True when the delay estimate changed."""
        if self._mic and abs(start - (self._mic_start + len(self._mic) * FRAME_SAMPLES)) > 32:
            self._mic.clear()  # a gap in the mic stream: start the window again
        if not self._mic:
            self._mic_start = start
        elif len(self._mic) == self._mic.maxlen:
            self._mic_start += FRAME_SAMPLES
        self._mic.append(samples)
        self._frames += 1
        every = self.SEARCHING_FRAMES if self.delay is None else self.LOCKED_FRAMES
        if len(self._mic) < self.WINDOW // FRAME_SAMPLES or self._frames % every:
            return False
        found = self._estimate(reference)
        if found is None:
            return False
        lag, fine = found
        self.measured = (self._mic_start + self.WINDOW // 2, fine)
        agreed = self._last is not None and abs(lag - self._last) <= 16
        self._last = lag
        if not agreed or (self.delay is not None and abs(lag - self.delay) <= 16):
            return False
        self.delay = lag
        return True

    def _estimate(self, reference: EchoReference) -> tuple[int, float] | None:
        """(the lag, in whole samples and to a fraction of one by the peak's parabola), or None if no clear peak."""
        mic = np.concatenate(self._mic)
        ref = reference.samples(self._mic_start - self.max_lag, len(mic) + self.max_lag + self.lead)
        if (np.abs(ref) > 100).mean() < 0.3 or rms(mic) < 1e-4:
            return None  # too little played (or heard) to correlate
        mic8, ref8 = _halve(mic), _halve(ref)
        n = 1 << int(np.ceil(np.log2(len(mic8) + len(ref8))))
        cross = np.fft.rfft(mic8, n) * np.conj(np.fft.rfft(ref8, n))
        cross /= np.abs(cross) + 1e-9
        corr = np.fft.irfft(cross, n)
        # mic[t] ~ ref[t + max_lag - lag]: the peak sits at circular index (lag - max_lag), at 8 kHz
        lags = np.arange(-self.lead, self.max_lag + 1, 2)
        values = np.abs(corr[((lags - self.max_lag) // 2) % n])
        best = int(np.argmax(values))
        rest = np.concatenate([values[:max(0, best - 32)], values[best + 33:]])
        if not len(rest) or values[best] < self.MIN_PEAK_RATIO * rest.max():
            return None
        frac = 0.0
        if 0 < best < len(values) - 1:
            before, peak, after = values[best - 1], values[best], values[best + 1]
            curve = before - 2 * peak + after
            frac = 0.5 * (before - after) / curve if curve < 0 else 0.0
        return int(lags[best]), float(lags[best] + 2 * frac)


def _halve(x: np.ndarray) -> np.ndarray:
    """16 kHz int16 to 8 kHz float by averaging pairs: enough of a low-pass for a correlation peak."""
    x = x[:len(x) // 2 * 2].astype(np.float32)
    return x[0::2] + x[1::2]


class EchoCanceller:
    """The mic frame with the appliance's own voice taken out, before anything listens to it.

    The reference is read 16 ms ahead of the delay in use, and moved by the
    clocks' drift since its run began (`DriftTracker`), so the echo lands
    inside the filter's tail, which models where in the tail it sits. A measured
    delay is applied only when the filter cannot cover it (a Bluetooth or HDMI
    speaker), and only between answers, with the filter restarted: moving the
    reference under a converged filter leaves it subtracting the wrong echo.
    `resets` counts those restarts, so the guard can forget what it learnt.
    With no reference in the last tail, frames pass through untouched.

    Args:
        reference: what the speaker played.
        tail_ms: how long an echo the filter models after the delay.
    """

    def __init__(self, reference: EchoReference, tail_ms: float = 200.0, estimator: DelayEstimator | None = None):
        self.reference = reference
        self.estimator = estimator or DelayEstimator()
        self.aec = SpeexAEC(RATE_HZ, FRAME_SAMPLES, tail_ms)
        self.tail = int(tail_ms * RATE_HZ / 1000)
        self.margin = RATE_HZ * 16 // 1000
        """The reference is taken 16 ms ahead of the delay, so the echo's onset is inside the filter, not before it."""
        self.delay = self.margin
        """The delay in use, in samples: at first the margin, so the reference read is the mic frame's own
        time (never ahead of what the speaker has stamped) and the filter covers echoes from 4 to 100 ms."""
        self.resets = 0
        self._silent_frames = 0
        self.drift = DriftTracker()
        """The speaker's clock against the mic's: the reference is read where the drift has moved its echo."""
        self._measured: tuple[int, float] | None = None
        self._logged_ppm = 0.0

    def process(self, samples: np.ndarray, start: int) -> np.ndarray:
        """One mic frame whose first sample is clock sample `start` (from a MicClock), the echo taken out."""
        if self.estimator.observe(samples, start, self.reference):
            log.info("echo delay measured: %.1f ms from the speaker's stamp to the mic",
                     (self.estimator.delay or 0) * 1000 / RATE_HZ)
        measured = self.estimator.measured
        if measured is not None and measured is not self._measured:
            self._measured = measured
            at, lag = measured
            run = self.reference.run_start(int(at - lag))
            if run is not None:
                self.drift.observe(run, at, lag)
                if abs(self.drift.ppm - self._logged_ppm) >= 10:
                    self._logged_ppm = self.drift.ppm
                    log.info("clock drift: the speaker's clock runs %.0f ppm %s the mic's", abs(self.drift.ppm),
                             "behind" if self.drift.ppm > 0 else "ahead of")
        position = start - self.delay + self.margin
        ref = read_at(self.reference, position + self.drift.shift(self.reference, start - self.delay), FRAME_SAMPLES)
        if ref.any():
            self._silent_frames = 0
        else:
            self._silent_frames += 1
            if self._silent_frames * FRAME_SAMPLES > self.tail + 2 * FRAME_SAMPLES:
                found = self.estimator.delay
                if found is not None and not self.covers(found):
                    self.delay, self.resets = found, self.resets + 1
                    self.aec.reset()
                return samples
        out = self.aec.process(samples, ref)
        # a filter that adds energy is misadjusted (a changed room): the mic as it is is better
        return samples if rms(out) > rms(samples) else out

    def covers(self, delay: int) -> bool:
        """Whether an echo `delay` samples after the reference's stamp falls where the filter models it:
        at least a quarter of the margin after the reference it is given, and in the first half of the
        tail (the rest is for the room's own reverberation)."""
        at = delay - self.delay + self.margin
        return self.margin // 4 <= at <= self.tail // 2

    def close(self) -> None:
        self.aec.close()


class EchoGuard:
    """Decides whether mic energy (after the canceller) is more than the appliance's own voice.

    The echo expected per unit of reference is learnt from frames that are echo
    (a high percentile, so the loudest echo sets the bar); -6 dB is assumed
    until then. Once the canceller has converged, a frame it took almost nothing
    from holds a voice it does not know, the person's, and teaches nothing;
    before that, neither does a frame the delayed reference does not explain
    (`ReferenceFit`), or a quiet reader would raise the bar over their own words.
    A frame it took nothing at all from means it lost the echo, and is judged
    against the echo before the canceller. A frame it took little from, which
    the reference explains little of, in a room where the reference explains
    the echo well, holds a voice as loud as the echo: it needs a smaller margin.

    In a room where the reference never explains the echo well (a reverberant
    one), the echo expected follows the reference's envelope as the room would
    let it decay, and what is learnt is kept to echo by level: frames near the
    loudest reference, not let through, and not far louder than its echo.
    """

    MEASURED_WINDOW = RATE_HZ * 64 // 1000
    """Once the delay is measured, echo is expected from the reference up to 64 ms before it (the room's tail)."""
    CONVERGED = 0.5
    """The canceller has converged when its median output/input over recent echo frames is below this (6 dB)."""
    UNTOUCHED = 0.7
    """A frame a converged canceller left above this (took under 3 dB from) is not its echo."""
    ABOVE_FLOOR = 2.0
    """While the appliance talks, a frame must be 6 dB over the room's noise floor: Silero's memory of
    the echo keeps its probability up for a frame or two into a quiet gap, and a gap is not a person."""

    EXPLAINED = 10 ** (-15.0 / 10)
    """A frame the reference explains all but this much of (under -15 dB) is echo, however little the converged
    canceller took from it: echo through a dry room leaves -15 to -36 dB, a person 10 dB under the echo
    about -10, and one talking over it nearly all of their own (-0.1 to -1.5)."""
    LOST = 10 ** (-4.0 / 10)
    """...and a frame the canceller took under 3 dB from, when the reference leaves under -4 dB of it
    unexplained (echo let through left -4.5 to -6.3): a person as loud as the echo leaves -3 dB."""
    UNEXPLAINED = 10 ** (-1.0 / 10)
    """Before convergence, a frame whose last 64 ms the reference leaves this much of (over -1 dB) unexplained
    holds a voice of its own and teaches nothing: echo through a dry room leaves -5 to -25 dB."""
    OWN_VOICE = 10 ** (-3.0 / 10)
    """A frame whose last 64 ms the reference leaves more than this of (over -3 dB) unexplained holds a voice at
    least as loud as the echo under it: a quiet reader's onset leaves -0.5 to -3 dB, the echo -6 dB and under."""
    VOICE_MARGIN = 10 ** (3.0 / 20)
    """Such a frame needs only to be 3 dB over the echo expected, not `echo_margin_db`: a reader at -33 dBFS is
    2-10 dB over the echo a canceller leaves early in an answer, and waited 300-400 ms for a louder syllable."""
    ROOM_FITS = 10 ** (-17.0 / 10)
    """...but only in a room where, within the last 3 s, some frame was explained this well (-17 dB): through
    a reverberant room the appliance's own echo is poorly explained too (-3 dB typical, -8 to -15 at best),
    and leaving it unlearnt would lower the bar under its own voice."""

    REVERB_DECAY = 10 ** (-3.0 * FRAME_SAMPLES / RATE_HZ / 0.6)
    """Per frame, how fast the echo expected in a reverberant room falls after the reference does: as a room
    with an RT60 of 0.6 s decays (a kitchen's is 0.3-0.6 s), so a word's tail is not taken for a person."""
    LOUD = 10 ** (-10.0 / 20)
    """In a reverberant room only frames whose envelope is within 10 dB of the loudest reference of the last
    3 s teach the coupling, and set the raw echo typical of the envelope (the median): further into a gap
    the mic holds the room's other sounds, and a television under a fading reference read as an echo
    15-20 dB louder than the one under the words."""
    DOUBLE_TALK = 10 ** (6.0 / 20)
    """A frame whose raw level is this far over the typical raw echo is not learnt in a reverberant room: echo
    frames came up to 6.4 dB over the median (p99 5.5), a person as loud as the answer 7-12 dB in their first.
    Such a frame, which the converged canceller also took little from and which is 3 dB over the echo
    expected, is passed as the person's. Before convergence the canceller takes little from its echo too,
    and the echo alone met all three, one or two frames at a time: there it takes `UNCONVERGED_RUN`."""
    UNCONVERGED_RUN = 2
    """Before the canceller converges, frames in a row that must meet the raw-level rule before it passes one:
    with the two passed in a row that start a barge-in, three, where the hard room's echo made two at most."""

    def __init__(self, settings: BargeInSettings, window_ms: float = 250.0, initial_coupling: float = 0.5):
        self.margin = 10 ** (settings.echo_margin_db / 20)
        self.window = int(window_ms * RATE_HZ / 1000)
        self.initial = initial_coupling
        self._ratios: deque[float] = deque(maxlen=94)  # about 3 s of frames
        self._raw_ratios: deque[float] = deque(maxlen=94)  # the same frames before the canceller
        self._removed: deque[float] = deque(maxlen=32)  # the canceller's output/input over the last echo frames
        self._levels: deque[float] = deque(maxlen=160)  # every frame's level, about 5 s: the noise floor
        self._fit = ReferenceFit()
        self._unexplained: deque[float] = deque(maxlen=94)  # what the reference left of the same frames
        self._fit_at: tuple[int, float] | None = None  # (clock sample, what the reference left up to it)
        self._envelope = 0.0  # the reference level as a reverberant room lets it decay
        self._peaks: deque[float] = deque(maxlen=94)  # the reference level of the last 3 s of frames
        self._raw_typical: deque[float] = deque(maxlen=94)  # raw level / envelope near the loudest reference
        self._over_run = 0  # frames in a row that met the raw-level rule
        self.above_echo = True
        """Whether the last frame was louder than the expected echo at all (no margin)."""
        self.expecting_echo = False
        """Whether the appliance's voice may be in the last frame (it was playing, within the delays allowed)."""

    @property
    def coupling(self) -> float:
        """The echo expected after the canceller, per unit of reference level."""
        return _p90(self._ratios, self.initial)

    @property
    def raw_coupling(self) -> float:
        """The echo expected in the mic before the canceller, per unit of reference level."""
        return _p90(self._raw_ratios, self.initial)

    def allows(self, samples: np.ndarray, start: int, ref: EchoReference, delay: int | None = None,
               raw: np.ndarray | None = None) -> bool:
        """Observe one frame at clock sample `start` (every frame, so the coupling keeps learning).

        False if it may be echo. The reference is looked at over the delays a room
        and a device may add, or only around `delay` once the canceller has measured
        it, so the guard stops expecting echo soon after the speaker stops (a pause).
        `raw` is the frame before the canceller, None without one.
        """
        at, window = (start, self.window) if delay is None else (start - delay, self.MEASURED_WINDOW)
        ref_level = ref.level(at - window, at + FRAME_SAMPLES + LEVEL_CHUNK)
        mic = rms(samples)
        self._levels.append(mic)
        self._envelope = max(ref_level, self._envelope * self.REVERB_DECAY)
        self._peaks.append(ref_level)
        self.above_echo = True
        self.expecting_echo = not (ref_level < 1e-4 and ref.level(start - self.window, start + FRAME_SAMPLES) < 1e-4)
        if raw is not None:
            self._fit.push(raw)
        if not self.expecting_echo:
            self._over_run = 0
            return True  # nothing playing: nothing to mistake
        raw_level = None if raw is None else rms(raw)
        left = None if raw_level is None else mic / max(raw_level, 1e-6)
        converged = len(self._removed) >= 16 and float(np.median(self._removed)) < self.CONVERGED
        reverberant = len(self._unexplained) >= 16 and min(self._unexplained) >= self.ROOM_FITS
        loud = False  # in a reverberant room: near the loudest reference, where the echo can be learnt
        if reverberant:
            ref_level = self._envelope
            loud = ref_level >= self.LOUD * max(self._peaks)
        echo = self.coupling * ref_level
        if left is not None and (left >= 1.0 or (converged and mic > echo * self.margin
                                                 and self._own_echo(left, start + len(samples), ref, delay))):
            # the canceller took nothing (it added energy and the raw mic went on), or less than it
            # learnt to from what is plainly its echo: it has lost the echo for now, and what it passed
            # is judged as if there were no canceller. A person's voice over a filter that still knows
            # the echo always comes out quieter than it went in, and the reference explains little of it.
            echo = max(echo, self.raw_coupling * ref_level)
        self.above_echo = mic > echo
        floor = float(np.percentile(self._levels, 10)) if len(self._levels) >= 16 else 0.0
        sounding = mic > floor * self.ABOVE_FLOOR
        allowed = mic > echo * self.margin and sounding
        # under the margin, a frame the canceller took little from and the reference explains little of
        # is a voice of its own: a quiet person is a few dB over the echo, not ten
        # (through a reverberant room the reference explains no voice well: there a raw level far over the
        # echo typical of the reference's envelope tells instead, in a run until the canceller has converged)
        under = (not allowed and sounding and left is not None and left > self.UNTOUCHED
                 and mic > echo * self.VOICE_MARGIN)
        if reverberant:
            over = under and self._over_typical(raw_level or 0.0, ref_level)
            self._over_run = self._over_run + 1 if over else 0
            voice = over and (converged or self._over_run >= self.UNCONVERGED_RUN)
        else:
            voice = under and self._own_voice(start + len(samples), ref, delay)
        allowed = allowed or voice
        # learn only from frames that are echo: the person's own words would otherwise lift
        # the coupling within 300 ms and the guard would shut them out
        if left is None:
            is_echo = not allowed
        else:
            is_echo = not voice and not (converged and left > self.UNTOUCHED)
            if not converged and not voice:
                is_echo = not self._double_talk(start + len(samples), ref, delay)
            if reverberant:
                # the reference cannot tell a person from the room's echo of its voice: their level can
                is_echo = is_echo and not allowed
                if is_echo and loud:  # near the loudest reference: the raw echo typical of an envelope
                    self._raw_typical.append((raw_level or 0.0) / ref_level)
                is_echo = is_echo and not self._over_typical(raw_level or 0.0, ref_level)
            if is_echo:
                self._removed.append(left)
        if is_echo and ref_level >= 1e-4 and (loud or not reverberant):
            self._ratios.append(mic / ref_level)
            if raw_level is not None:
                self._raw_ratios.append(raw_level / ref_level)
        return allowed

    def _over_typical(self, raw_level: float, envelope: float) -> bool:
        """Whether a frame is far louder, before the canceller, than the echo typical of the reference envelope
        `envelope` (the median, so a person talking over a few frames cannot move it, a louder speaker can)."""
        if len(self._raw_typical) < 8:
            return False
        return raw_level > float(np.median(self._raw_typical)) * envelope * self.DOUBLE_TALK

    def _unexplained_at(self, end: int, ref: EchoReference, delay: int | None) -> float:
        """What the reference, delayed as the room may delay it, leaves unexplained of the raw mic up to clock
        sample `end`; an FFT, so worked out once per frame and only for frames that need it."""
        if self._fit_at is None or self._fit_at[0] != end:
            lo, hi = (0, self.window) if delay is None else (delay - LEVEL_CHUNK, delay + self.MEASURED_WINDOW)
            self._fit_at = (end, self._fit.unexplained(end, ref, lo, hi))
        return self._fit_at[1]

    def _own_echo(self, left: float, end: int, ref: EchoReference, delay: int | None) -> bool:
        """Whether the raw mic up to clock sample `end` is so nearly a delayed copy of the reference that what
        the canceller let through of it is its own echo (its filter or the reference slipped for a moment),
        not a person. Asked only of frames the guard would otherwise pass."""
        return self._unexplained_at(end, ref, delay) < (self.LOST if left > self.UNTOUCHED else self.EXPLAINED)

    def _own_voice(self, end: int, ref: EchoReference, delay: int | None) -> bool:
        """Whether the raw mic up to clock sample `end` holds a voice at least as loud as the echo under it, in
        a room where the reference has been seen to explain the echo well (not a reverberant one, where it
        explains the appliance's own voice poorly too)."""
        fits = len(self._unexplained) >= 16 and min(self._unexplained) < self.ROOM_FITS
        return fits and self._unexplained_at(end, ref, delay) > self.OWN_VOICE

    def _double_talk(self, end: int, ref: EchoReference, delay: int | None) -> bool:
        """Whether the raw mic up to clock sample `end` holds more than a delayed copy of the reference.

        Until 16 frames are known the room is assumed to fit, so a person already
        reading when the answer starts is not learnt as its echo.
        """
        left = self._unexplained_at(end, ref, delay)
        self._unexplained.append(left)
        fits = len(self._unexplained) < 16 or min(self._unexplained) < self.ROOM_FITS
        return fits and left > self.UNEXPLAINED


def _p90(ratios: deque[float], initial: float) -> float:
    """A high percentile of echo/reference ratios (the loudest echo sets the bar); `initial` until 8 are known."""
    return initial if len(ratios) < 8 else float(np.percentile(ratios, 90))
