"""Where a sound's speech starts, relative to the recording's own noise floor: the room's ground truth.

An energy rule of its own (no VAD, so it never agrees with the one under test by
construction), which a real recording's room tone does not fool: 5 ms frames; the
floor is the room's tone, or silence in a clean recording; speech starts at the
first 15 ms (40 ms over a room's tone) that stay 15 dB over the floor (and within
45 dB of the loudest frame, and at least 6 dB under it); the onset is the first
sample of that stretch as loud as that threshold. The tone is a steady hiss (the
quietest 20 ms, where 100 ms stay near it) or, ahead of the words and 30 dB under
their peak, a real room's wavering tone (the quietest 100 ms, by its mean).
docs/simulator.md has why a peak-relative rule was not enough.
"""

from __future__ import annotations

import numpy as np

from sayso.audio import RATE_HZ

FRAME = RATE_HZ // 200
"""5 ms frames."""
SUSTAIN_FRAMES = 3
"""Speech lasts: a click or a tick of room tone is not its start."""
SUSTAIN_IN_TONE_FRAMES = 8
"""40 ms, over a room's tone: a real room also has lip smacks and taps, and a clean voice has none."""
OVER_FLOOR_DB = 15.0
UNDER_PEAK_DB = 45.0
MAX_UNDER_PEAK_DB = 6.0
"""The threshold is never closer to the peak than this, so a recording that is all speech keeps its first word."""
SILENCE_DB = -100.0
FLOOR_FRAMES = 4
TONE_FRAMES = 20
"""100 ms: room tone is steady for this long; speech is not."""
TONE_SPREAD_DB = 6.0
TONE_UNDER_PEAK_DB = 30.0
SPEECH_UNDER_PEAK_DB = 20.0
"""A frame this close to the loudest is surely speech: a wavering tone is looked for only ahead of the first."""
TONE_STRAYS = 2
"""Real tone wavers: 2 of its 20 frames may stray more than 6 dB from its level; a voice's hum or hiss strays
with each pitch period or syllable."""


def _frame_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME
    frames = x[:n * FRAME].reshape(n, FRAME)
    power = np.mean(frames * frames, axis=1) / 32768.0**2
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), SILENCE_DB)


def _floor_db(db: np.ndarray) -> float:
    """The room's tone, or silence when the recording has none (a clean synthetic voice).

    A lead of zeros is no room's tone, and neither is the quietest moment of a
    clean synthetic voice (a breathy "h"): without a steady stretch at the floor
    the recording has no tone, and its floor is silence.
    """
    sounding = db > SILENCE_DB + 10
    if len(db) < TONE_FRAMES or not sounding.any():
        return SILENCE_DB
    floor = _steady_tone_db(db, sounding)
    return floor if floor > SILENCE_DB else _wavering_tone_db(db, sounding)


def _steady_tone_db(db: np.ndarray, sounding: np.ndarray) -> float:
    """The quietest 20 ms that is not digital silence, if 100 ms of the sound stay near it: a steady hiss."""
    power = np.convolve(10 ** (db / 10), np.ones(FLOOR_FRAMES) / FLOOR_FRAMES, mode="valid")
    whole = np.convolve(sounding.astype(int), np.ones(FLOOR_FRAMES, int), mode="valid") == FLOOR_FRAMES
    if not whole.any():
        return SILENCE_DB
    floor = float(10 * np.log10(power[whole].min()))
    near = (db > floor - 6) & (db < floor + 4)
    steady = np.convolve(near.astype(int), np.ones(TONE_FRAMES, int), mode="valid") == TONE_FRAMES
    return floor if steady.any() else SILENCE_DB


def _wavering_tone_db(db: np.ndarray, sounding: np.ndarray) -> float:
    """A real room's tone, which wavers by a few dB from one 5 ms to the next: the quietest 100 ms, by its mean.

    Looked for only before the first frame that is surely speech, and taken only
    far under the loudest: a voice's own hum or hiss ("hmm", a final "s") keeps
    near its level too, but comes with the words, not ahead of them.
    """
    peak = float(db.max())
    ahead = int(np.argmax(db >= peak - SPEECH_UNDER_PEAK_DB))
    if ahead < TONE_FRAMES:
        return SILENCE_DB
    db, sounding = db[:ahead], sounding[:ahead]
    whole = np.convolve(sounding.astype(int), np.ones(TONE_FRAMES, int), mode="valid") == TONE_FRAMES
    if not whole.any():
        return SILENCE_DB
    tone = np.convolve(10 ** (db / 10), np.ones(TONE_FRAMES) / TONE_FRAMES, mode="valid")
    start = int(np.flatnonzero(whole)[np.argmin(tone[whole])])
    floor = float(10 * np.log10(tone[start]))
    strays = np.abs(db[start:start + TONE_FRAMES] - floor) > TONE_SPREAD_DB
    return floor if strays.sum() <= TONE_STRAYS and peak - floor >= TONE_UNDER_PEAK_DB else SILENCE_DB


def onset_of(audio: np.ndarray) -> int:
    """Index of the first sample of speech in int16 `audio` at 16 kHz: not its leading silence, nor room tone."""
    x = np.asarray(audio, dtype=np.float64)
    if len(x) < FRAME * SUSTAIN_FRAMES or not np.any(x):
        return 0 if not np.any(x) else int(np.argmax(np.abs(x) > 0))
    db = _frame_db(x)
    floor, peak = _floor_db(db), float(db.max())
    threshold = min(max(floor + OVER_FLOOR_DB, peak - UNDER_PEAK_DB), peak - MAX_UNDER_PEAK_DB)
    loud = db >= threshold
    sustain = SUSTAIN_FRAMES if floor == SILENCE_DB else SUSTAIN_IN_TONE_FRAMES
    run = np.convolve(loud.astype(int), np.ones(sustain, int), mode="valid") == sustain
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
