"""Where a sound's speech starts, relative to the recording's own noise floor: the room's ground truth.

An energy rule of its own (no VAD, so it never agrees with the one under test by
construction), which a real recording's room tone does not fool: 5 ms frames; the
floor is the room's tone (the quietest 20 ms that is not digital silence, where
100 ms stay near it), or silence in a clean recording; speech starts at the first
15 ms that stay 15 dB over the floor (and within 45 dB of the loudest frame, and at
least 6 dB under it); the onset is the first sample of that stretch as loud as that
threshold. docs/simulator.md has why a peak-relative rule was not enough.
"""

from __future__ import annotations

import numpy as np

from sayso.audio import RATE_HZ

FRAME = RATE_HZ // 200
"""5 ms frames."""
SUSTAIN_FRAMES = 3
"""Speech lasts: a click or a tick of room tone is not its start."""
OVER_FLOOR_DB = 15.0
UNDER_PEAK_DB = 45.0
MAX_UNDER_PEAK_DB = 6.0
"""The threshold is never closer to the peak than this, so a recording that is all speech keeps its first word."""
SILENCE_DB = -100.0
FLOOR_FRAMES = 4
TONE_FRAMES = 20
"""100 ms: room tone is steady for this long; speech is not."""


def _frame_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME
    frames = x[:n * FRAME].reshape(n, FRAME)
    power = np.mean(frames * frames, axis=1) / 32768.0**2
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), SILENCE_DB)


def _floor_db(db: np.ndarray) -> float:
    """The room's tone: the quietest 20 ms that is not digital silence, if 100 ms of the sound stay near it.

    A lead of zeros is no room's tone, and neither is the quietest moment of a
    clean synthetic voice (a breathy "h"): without a steady stretch at the floor
    the recording has no tone, and its floor is silence.
    """
    sounding = db > SILENCE_DB + 10
    if len(db) < TONE_FRAMES or not sounding.any():
        return SILENCE_DB
    power = np.convolve(10 ** (db / 10), np.ones(FLOOR_FRAMES) / FLOOR_FRAMES, mode="valid")
    whole = np.convolve(sounding.astype(int), np.ones(FLOOR_FRAMES, int), mode="valid") == FLOOR_FRAMES
    if not whole.any():
        return SILENCE_DB
    floor = float(10 * np.log10(power[whole].min()))
    near = (db > floor - 6) & (db < floor + 4)
    steady = np.convolve(near.astype(int), np.ones(TONE_FRAMES, int), mode="valid") == TONE_FRAMES
    return floor if steady.any() else SILENCE_DB


def onset_of(audio: np.ndarray) -> int:
    """Index of the first sample of speech in int16 `audio` at 16 kHz: not its leading silence, nor room tone."""
    x = np.asarray(audio, dtype=np.float64)
    if len(x) < FRAME * SUSTAIN_FRAMES or not np.any(x):
        return 0 if not np.any(x) else int(np.argmax(np.abs(x) > 0))
    db = _frame_db(x)
    floor, peak = _floor_db(db), float(db.max())
    threshold = min(max(floor + OVER_FLOOR_DB, peak - UNDER_PEAK_DB), peak - MAX_UNDER_PEAK_DB)
    loud = db >= threshold
    run = np.convolve(loud.astype(int), np.ones(SUSTAIN_FRAMES, int), mode="valid") == SUSTAIN_FRAMES
    first = int(np.argmax(run)) if run.any() else int(np.argmax(loud))
    # to the sample: the first one in that frame (or the one before) as loud as the threshold's RMS, and
    # 15 dB over the floor's, which a sample of room tone reaches about once in ten million
    lo = max(0, first - 1) * FRAME
    window = np.abs(x[lo:(first + 1) * FRAME])
    over = np.flatnonzero(window >= 32768.0 * 10 ** (max(threshold, floor + OVER_FLOOR_DB) / 20))
    return lo + int(over[0]) if len(over) else first * FRAME


def sound_end_of(audio: np.ndarray) -> int:
    """Index just after the last sample of speech: the same rule, from the end."""
    return len(audio) - onset_of(np.asarray(audio)[::-1])
