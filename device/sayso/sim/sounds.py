"""Sounds the simulator plays into the room: a cough and a burst of noise.

Synthetic, so a scenario needs no recordings, and int16 at 16 kHz like the mic.
"""

from __future__ import annotations

import numpy as np

from sayso.audio import RATE_HZ


def dbfs_gain(db: float) -> float:
    return float(10 ** (db / 20))


def noise_burst(seconds: float, level_dbfs: float = -20.0, seed: int = 0) -> np.ndarray:
    """A cough or a door: low-passed noise with a 5 ms attack and an exponential decay, int16 at 16 kHz."""
    n = max(1, int(seconds * RATE_HZ))
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.standard_normal(n + 7), np.ones(8) / 8, mode="valid")[:n]
    t = np.arange(n) / RATE_HZ
    envelope = np.minimum(1.0, t / 0.005) * np.exp(-3.0 * t / max(seconds, 1e-3))
    x = x * envelope
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    return np.clip(x / rms * dbfs_gain(level_dbfs) * 32768, -32768, 32767).astype(np.int16)


def cough(count: int = 1, level_dbfs: float = -20.0, seed: int = 0) -> np.ndarray:
    """A synthetic cough (or a run of them), int16 at 16 kHz: enough like a voice to fool a VAD for a moment.

    Each is a 250 ms burst with a sharp attack and a fast decay: breath noise
    and a 170 Hz glottal buzz through three vowel-like resonances. Silero takes
    a moment of it for speech, which pauses an answer, and a recogniser gets no
    utterance from it: a real cough's problem for barge-in (docs/simulator.md).
    """
    rng = np.random.default_rng(seed)
    n = int(0.25 * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    f = np.fft.rfftfreq(n, 1 / RATE_HZ)
    shape = sum(g * np.exp(-0.5 * ((f - fc) / bw) ** 2) for fc, bw, g in ((550, 150, 1.0), (1100, 200, 0.7),
                                                                        (2500, 300, 0.4)))
    parts = []
    for _ in range(count):
        buzz = np.zeros(n)
        buzz[np.arange(0, n, RATE_HZ / 170).astype(int)] = 8.0
        source = 0.6 * buzz + 0.4 * rng.standard_normal(n)
        burst = np.fft.irfft(np.fft.rfft(source) * shape, n) * np.minimum(1, t / 0.008) * np.exp(-t / 0.083)
        parts += [burst, np.zeros(int(0.12 * RATE_HZ))]
    x = np.concatenate(parts)
    x = x / np.sqrt(np.mean(x[x != 0] ** 2)) * dbfs_gain(level_dbfs) * 32768
    return np.clip(x, -32768, 32767).astype(np.int16)
