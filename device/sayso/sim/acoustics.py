"""A room less kind than a delay and a gain: reverberation, clock drift, a small speaker's clipping, other voices.

Pure numpy (and soxr for drift), all seeded. The impulse response is a noise-tail
model rather than an image-source one: a direct impulse, then Gaussian noise under an
exponential envelope from 3 ms on, which gives exactly the RT60 and the
direct-to-reverberant ratio asked for (what a bench level names), where a room
geometry gives them only roughly and would pull in scipy and pyroomacoustics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from sayso.audio import RATE_HZ

DIRECT_MS = 2.5
"""The direct sound's window: energy within this of the direct impulse counts as direct (ISO 3382 style)."""
TAIL_START_MS = 3.0
"""The first reflection arrives this long after the direct sound (a speaker a metre from walls)."""


def impulse_response(rt60_s: float, drr_db: float, seed: int = 0, rate_hz: int = RATE_HZ) -> np.ndarray:
    """A room's impulse response, float32 with unit energy: a direct impulse, then an exponentially decaying noise tail.

    The tail's energy falls 60 dB in `rt60_s` and runs that long; it holds
    `drr_db` less energy than the direct impulse. Unit energy keeps a sound's
    level where it was: the room spreads it in time, it does not make it louder.
    """
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be positive, not {rt60_s}")
    start = int(TAIL_START_MS * rate_hz / 1000)
    n = start + int(rt60_s * rate_hz)
    t = np.arange(n - start) / rate_hz
    tail = np.random.default_rng(seed).standard_normal(n - start) * np.exp(-3 * np.log(10) * t / rt60_s)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail * tail))
    h = np.zeros(n)
    h[0] = 1.0
    h[start:] = tail
    return (h / np.sqrt(np.sum(h * h))).astype(np.float32)


def schroeder_rt60(ir: np.ndarray, rate_hz: int = RATE_HZ) -> float:
    """RT60 from Schroeder's backward integration of the tail: the −5 to −25 dB slope (T20), times three."""
    start = int(DIRECT_MS * rate_hz / 1000)
    e = np.asarray(ir[start:], dtype=np.float64) ** 2
    edc = np.cumsum(e[::-1])[::-1]
    edc_db = 10 * np.log10(np.maximum(edc / edc[0], 1e-30))
    fit = (edc_db <= -5) & (edc_db >= -25)
    slope, _ = np.polyfit(np.flatnonzero(fit) / rate_hz, edc_db[fit], 1)
    return float(-60 / slope)


def direct_to_reverberant_db(ir: np.ndarray, rate_hz: int = RATE_HZ) -> float:
    """Energy within DIRECT_MS of the strongest sample over the energy after it, in dB."""
    e = np.asarray(ir, dtype=np.float64) ** 2
    peak = int(np.argmax(e))
    cut = peak + int(DIRECT_MS * rate_hz / 1000)
    return float(10 * np.log10(np.sum(e[:cut]) / np.sum(e[cut:])))


def convolve(audio: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """`audio` through the room, float64, as long as `audio` plus the tail (FFT, one call)."""
    n = len(audio) + len(ir) - 1
    size = 1 << max(0, (n - 1).bit_length())
    return np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(ir, size), size)[:n]


def convolve_looped(audio: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """A loop through the room: circular convolution, so the tail of its end rings into its start."""
    n = len(audio)
    h = np.zeros(n)
    h[:min(n, len(ir))] = ir[:n]
    return np.fft.irfft(np.fft.rfft(audio) * np.fft.rfft(h), n)


class Convolver:
    """Streaming convolution by overlap-add: each block out as long as the block in, the tail carried over."""

    def __init__(self, ir: np.ndarray, block: int):
        self.size = 1 << (len(ir) + block - 2).bit_length()
        self._h = np.fft.rfft(np.asarray(ir, dtype=np.float64), self.size)
        self._carry = np.zeros(self.size)

    def process(self, block: np.ndarray) -> np.ndarray:
        n = len(block)
        y = np.fft.irfft(np.fft.rfft(block, self.size) * self._h, self.size)
        y[:len(self._carry)] += self._carry
        out, self._carry = y[:n], y[n:]
        return out.astype(np.float32)


def drifted_rate(rate_hz: float, ppm: float) -> float:
    """The true rate of a clock `ppm` parts per million fast (negative: slow) that calls itself `rate_hz`."""
    return rate_hz * (1 + ppm * 1e-6)


def drift(audio: np.ndarray, ppm: float) -> np.ndarray:
    """Audio played on a clock `ppm` fast as a mic on the nominal clock records it: shorter by that factor."""
    x = np.asarray(audio, dtype=np.float32)
    return soxr.resample(x, drifted_rate(RATE_HZ, ppm), RATE_HZ, quality="HQ")


def soft_clip(x: np.ndarray, ceiling_dbfs: float) -> np.ndarray:
    """A small speaker driven hard: linear up to 6 dB under `ceiling_dbfs`, then tanh toward it, never past it.

    `x` is float with full scale 32768. The knee keeps quiet speech untouched
    (so only loud passages distort, as a real small speaker does) and the slope
    is one on both sides of it, so the distortion sets in without a kink.
    """
    ceiling = 32768 * 10 ** (ceiling_dbfs / 20)
    knee = ceiling / 2
    x = np.asarray(x, dtype=np.float32)
    over = np.abs(x) - knee
    soft = np.sign(x) * (knee + (ceiling - knee) * np.tanh(np.maximum(over, 0) / (ceiling - knee)))
    return np.where(over > 0, soft, x).astype(np.float32)


def level_to(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """`audio` scaled so its RMS is `dbfs` (full scale 32768), float32."""
    x = np.asarray(audio, dtype=np.float64)
    r = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
    return (x * (32768 * 10 ** (dbfs / 20) / r if r else 0.0)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Acoustics:
    """What the room does to sound beyond gain and delay; every field None leaves that effect out.

    Seeds differ per path: the speaker, the person and the babble stand in
    different places, so each gets its own impulse response.
    """

    rt60_s: float | None = None
    drr_db: float = 3.0
    drift_ppm: float | None = None
    speaker_clip_db: float | None = None
    babble: np.ndarray | None = None
    """A continuous background voice, float at its level, 16 kHz, played on a loop."""
    seed: int = 0

    @classmethod
    def make(cls, rt60_s: float | None = None, drr_db: float = 3.0, drift_ppm: float | None = None,
             speaker_clip_db: float | None = None, babble: np.ndarray | None = None,
             babble_dbfs: float | None = None, seed: int = 0) -> Acoustics:
        """The room's acoustics, with `babble` (a voice, int16 16 kHz) put through the room and set to `babble_dbfs`."""
        room = cls(rt60_s, drr_db, drift_ppm, speaker_clip_db, None, seed)
        if babble is None or babble_dbfs is None:
            return room
        ir = room.ir(2)
        wet = babble.astype(np.float64) if ir is None else convolve_looped(babble.astype(np.float64), ir)
        return cls(rt60_s, drr_db, drift_ppm, speaker_clip_db, level_to(wet, babble_dbfs), seed)

    def ir(self, path: int) -> np.ndarray | None:
        """The impulse response from source `path` (0 speaker, 1 person, 2 babble) to the mic."""
        return None if self.rt60_s is None else impulse_response(self.rt60_s, self.drr_db, self.seed * 3 + path)

    def speaker_rate(self, rate_hz: int) -> float:
        """The rate the speaker truly plays at, by the mic's clock."""
        return rate_hz if self.drift_ppm is None else drifted_rate(rate_hz, self.drift_ppm)

    def speaker_out(self, played: np.ndarray) -> np.ndarray:
        """What the speaker's cone does to the samples it is given (float, full scale 32768)."""
        return played if self.speaker_clip_db is None else soft_clip(played, self.speaker_clip_db)

    def through_room(self, audio: np.ndarray, path: int = 1) -> np.ndarray:
        """A sound from `path` as the mic hears it: reverberated, longer by the tail (int16)."""
        ir = self.ir(path)
        if ir is None:
            return audio
        return np.clip(np.round(convolve(audio.astype(np.float64), ir)), -32768, 32767).astype(np.int16)

    def background(self, first_sample: int, n: int) -> np.ndarray | None:
        """The babble's samples [first_sample, first_sample + n) of its endless loop, or None."""
        if self.babble is None or not len(self.babble):
            return None
        return self.babble[np.arange(first_sample, first_sample + n) % len(self.babble)]
