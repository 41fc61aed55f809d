"""Piper text-to-speech with phoneme alignments (samples per phoneme)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Speech:
    """Audio for one piece of text, with the samples each phoneme took when known."""

    text: str
    audio: np.ndarray
    """Mono int16 samples."""
    rate_hz: int
    phonemes: tuple[tuple[str, int], ...] = ()
    """(phoneme, samples) in order; empty when the voice gave no alignments."""


class PiperTTS:
    """A Piper voice; alignments come from the patched model (or an in-memory patch)."""

    def __init__(self, model_path: Path, length_scale: float = 1.0):
        from piper import PiperVoice, SynthesisConfig

        # include_alignments patches an unpatched model in memory and is a no-op
        # (debug log) for the pre-patched default voice.
        self._voice = PiperVoice.load(str(model_path), include_alignments=True)
        self._config = SynthesisConfig(length_scale=length_scale)
        self.rate_hz = self._voice.config.sample_rate

    def speak(self, text: str) -> list[Speech]:
        """One Speech per sentence Piper finds in `text`."""
        out = []
        for chunk in self._voice.synthesize(text, syn_config=self._config, include_alignments=True):
            phonemes = tuple((a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments or ())
            out.append(Speech(text, chunk.audio_int16_array.copy(), chunk.sample_rate, phonemes))
        return out
