"""The earcon: a short rising two-note tone that tells the person the appliance is listening for a request."""

from __future__ import annotations

import numpy as np

NOTES_HZ = (1318.5, 1760.0)
"""E6 then A6: high enough to stand apart from speech, short enough not to talk over it."""
NOTE_S = 0.07
LEVEL_DBFS = -18.0


def earcon(rate_hz: int) -> np.ndarray:
    """The tone as int16 at `rate_hz`, faded in and out so it does not click."""
    n = int(NOTE_S * rate_hz)
    t = np.arange(n) / rate_hz
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * rate_hz))
    amp = 32767 * 10 ** (LEVEL_DBFS / 20)
    notes = [np.sin(2 * np.pi * f * t) * fade * amp for f in NOTES_HZ]
    return np.concatenate(notes).astype(np.int16)
