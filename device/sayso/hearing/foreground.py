"""The foreground gate: speech counts as the person's only when it is clearly louder than the room's background.

A television across the room talks all the time, and Silero rightly calls it
speech: an endpointer fed that never hears the silence that ends an utterance.
The person talking to the appliance is near it and much louder. So the gate
keeps the room's background level, the median frame level over the last few
seconds, and passes a speech frame only when it is `margin_db` above that, or
follows one that was within `hangover_ms` (a stop consonant's closure and
Silero's own tail after the last sound stay inside the word). That grace opens
only once a word has begun, with two loud speech frames in a row: a
television's loudest syllable grazes the bar one frame at a time, and with the
grace after it a lone peak would pass as two hundred milliseconds of a person.

The estimate learns from every frame, but from the ones it passes as speech
only one in `SPEECH_SHARE`: a person's request, pauses and all, leaves it near
the room's floor, while a voice that never stops becomes the background within
seconds (its quieter frames come in first and lift the bar over the louder). In
a quiet room the median is the noise floor, far below any voice, and the gate
changes nothing. It does not learn while the appliance plays: the echo is the
guard's to judge, and a long answer must not lift the bar a person cutting in
has to clear. For its first quiet-room frames, before it knows the room, it
holds speech back: a television on at start-up is not a person. Until then,
frames while the appliance plays are not learnt and pass: a barge-in over an
answer that began at start-up is not delayed for the gate to catch up.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from sayso.audio import FRAME_SAMPLES, RATE_HZ, rms

FLOOR_DBFS = -90.0
"""A frame's level never counts below this: digital silence has no decibels."""
SPEECH_SHARE = 10
"""One in this many frames passed as speech is learnt from: the person's words barely move the estimate, a
television's (always "passed" while the estimate is still low) still get in."""
MIN_FRAMES = 12
"""Frames (about 0.4 s) the estimate needs before it lets any speech through."""
WORD_FRAMES = 2
"""Loud speech frames in a row that show a word has begun, and open the hangover after it."""


class ForegroundGate:
    """Judges each frame against the room's background level; one per mic stream.

    Args:
        margin_db: how far above the background a speech frame must be to be the person's.
        window_s: how much of the room's recent past the background is the median of.
        hangover_ms: how long after a loud enough frame quieter speech frames still pass.
    """

    def __init__(self, margin_db: float, window_s: float = 6.0, hangover_ms: float = 160.0):
        self.margin_db = margin_db
        self._levels: deque[float] = deque(maxlen=max(MIN_FRAMES, int(window_s * RATE_HZ / FRAME_SAMPLES)))
        self._hangover = round(hangover_ms * RATE_HZ / 1000 / FRAME_SAMPLES)
        self._since_loud = self._hangover + 1
        self._loud_run = 0
        self._in_word = False
        self._background: float | None = None
        self._passed = 0

    @property
    def background_dbfs(self) -> float | None:
        """The room's background level now, dBFS; None until enough frames were heard."""
        return self._background

    def passes(self, samples: np.ndarray, speech: bool, learn: bool = True) -> bool:
        """Observe one frame; whether it may be the person's speech.

        Args:
            samples: the frame (int16), as the VAD heard it.
            speech: whether the VAD called it speech; other frames pass (there is nothing to gate).
            learn: False while the appliance plays, so its echo does not become the background.
        """
        level = max(FLOOR_DBFS, 20 * math.log10(rms(samples) or 1e-9))
        if self._background is None:
            loud = False
        else:
            loud = level >= self._background + self.margin_db
        self._since_loud = 0 if loud else self._since_loud + 1
        self._loud_run = self._loud_run + 1 if loud and speech else 0
        if self._loud_run >= WORD_FRAMES:
            self._in_word = True
        elif self._since_loud > self._hangover:
            self._in_word = False
        foreground = loud or (self._in_word and self._since_loud <= self._hangover)
        if speech and loud:
            self._passed += 1
        if learn and (self._background is None or not (speech and loud) or self._passed % SPEECH_SHARE == 0):
            self._levels.append(level)
            if len(self._levels) >= MIN_FRAMES:
                self._background = float(np.median(self._levels))
        if self._background is None and not learn:
            return True  # the room unknown, and the appliance playing: the echo guard judges alone
        return foreground or not speech
