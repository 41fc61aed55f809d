"""The wake word: microWakeWord models (pymicro-wakeword, Home Assistant's voice team) on the mic's frames.

The models and the TFLite runtime ship inside the pymicro-wakeword wheel,
pinned by its version like any dependency; nothing is downloaded at run time.
A detector is one stream's state (features and the model's own memory), so
every listener gets a fresh one from the shared `WakeModel`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sayso.audio import RATE_HZ
from sayso.errors import SaysoError

log = logging.getLogger(__name__)

REFRACTORY_S = 2.0
"""After a detection the model's probability stays high for a while: one phrase is one detection."""

LENIENT, STRICT = 0.5, 0.99
"""The probability thresholds at sensitivity 1 and 0; 0.5 is the model's own."""


class WakeWordUnavailable(SaysoError):
    """The wake-word runtime or model cannot be loaded here."""


@dataclass(frozen=True)
class WakeHit:
    """The wake word was heard."""

    word: str
    probability: float
    sample: int
    """The audio-clock sample at which it was decided: just after the phrase ended."""


def threshold(model_cutoff: float, sensitivity: float) -> float:
    """The probability a detection needs: the model's own at sensitivity 0.5, STRICT at 0, LENIENT at 1."""
    if sensitivity <= 0.5:
        return STRICT - (STRICT - model_cutoff) * sensitivity / 0.5
    return model_cutoff - (model_cutoff - LENIENT) * (sensitivity - 0.5) / 0.5


class WakeModel:
    """One of the wheel's wake words, with the threshold the sensitivity setting gives it."""

    def __init__(self, word: str, sensitivity: float = 0.5):
        try:
            import pymicro_wakeword
            from pymicro_wakeword import MicroWakeWord
        except (ImportError, OSError) as e:
            raise WakeWordUnavailable(f"the wake word needs pymicro-wakeword, which did not load ({e}); install it "
                                      "(`pip install pymicro-wakeword`) or set [wake] word = \"off\"") from None
        config = Path(pymicro_wakeword.__file__).parent / "models" / f"{word}.json"
        if not config.exists():
            raise WakeWordUnavailable(f"no wake-word model {word!r} in pymicro-wakeword {config.parent}; choose "
                                      "one of okay_nabu, hey_jarvis, alexa, hey_mycroft, or off")
        self.word, self.sensitivity, self.config = word, sensitivity, config
        meta = json.loads(config.read_text())
        self.phrase: str = meta["wake_word"]
        self.threshold = threshold(float(meta["micro"]["probability_cutoff"]), sensitivity)
        self._load = MicroWakeWord.from_config
        self.detector()  # a model or runtime that does not load says so at start, not at the first frame

    def detector(self) -> WakeDetector:
        """A fresh detector: one per audio stream."""
        from pymicro_wakeword import MicroWakeWordFeatures

        try:
            model = self._load(self.config)
        except (OSError, RuntimeError, ValueError) as e:
            raise WakeWordUnavailable(f"the wake-word model {self.word} did not load ({e}); reinstall "
                                      "pymicro-wakeword or set [wake] word = \"off\"") from None
        return WakeDetector(self.word, self.threshold, model, MicroWakeWordFeatures())


class WakeDetector:
    """Feeds frames to the model; a hit when the smoothed probability passes the threshold."""

    def __init__(self, word: str, threshold: float, model, features):
        self.word, self.threshold = word, threshold
        self._model, self._features = model, features
        self.probability = 0.0
        """The newest smoothed probability (for the mic meter)."""
        self._quiet_until = -1

    def process(self, samples: np.ndarray, index: int) -> WakeHit | None:
        """One frame of 16 kHz int16 starting at audio-clock sample `index`; the hit, if this frame ends the phrase."""
        best = 0.0
        for features in self._features.process_streaming(samples.astype(np.int16).tobytes()):
            p = self._model.process_streaming_prob(features)
            best = max(best, p or 0.0)
        self.probability = best
        end = index + len(samples)
        if best < self.threshold or end < self._quiet_until:
            return None
        self._quiet_until = end + int(REFRACTORY_S * RATE_HZ)
        log.info("wake word %s heard (p=%.2f)", self.word, best)
        return WakeHit(self.word, round(best, 3), end)
