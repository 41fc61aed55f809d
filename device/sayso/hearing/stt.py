"""Streaming speech-to-text: Vosk and pocketsphinx behind one small interface.

Audio is fed while the person speaks (never batched at the end), so the final
transcript is ready moments after the end of the utterance.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sayso.audio import RATE_HZ
from sayso.errors import ModelCorrupt, ModelMissing, UnknownModel
from sayso.models.manifest import ModelStore

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Transcript:
    text: str
    final: bool
    words: tuple[str, ...] = ()
    confidence: tuple[float, ...] = ()
    """A final's posterior for each of `words`, 0..1 (barge-in commits only on sure words)."""


class Recognizer(Protocol):
    """One utterance at a time: feed 16 kHz mono int16 audio, read partials, end for the final."""

    name: str

    def accept(self, pcm: bytes) -> Transcript | None:
        """Feed audio; return a partial transcript when it changed, else None."""

    def end(self) -> Transcript:
        """Finish the utterance and return its final transcript; ready for the next one."""


class PocketsphinxRecognizer:
    """CMU pocketsphinx with the en-us model bundled in its wheel."""

    name = "pocketsphinx"

    def __init__(self, model_dir: Path | None = None):
        from pocketsphinx import Config, Decoder

        config = Config(samprate=RATE_HZ, loglevel="FATAL")
        if model_dir is not None:
            config["hmm"] = str(model_dir / "en-us")
            config["dict"] = str(model_dir / "cmudict-en-us.dict")
            config["lm"] = str(model_dir / "en-us.lm.bin")
        self._decoder = Decoder(config)
        self._started = False
        self._last = ""

    def accept(self, pcm: bytes) -> Transcript | None:
        if not self._started:
            self._decoder.start_utt()
            self._started = True
        self._decoder.process_raw(pcm, False, False)
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp else ""
        if text != self._last:
            self._last = text
            return Transcript(text, final=False)
        return None

    MIN_WORD_PROB = 0.1
    """Words the decoder itself doubts are dropped from the final. Measured on Piper voices: real words
    0.45-1.0; what it writes for a cough or a mumble ("edit" for "hmm", "dr" for a clipped "stop") 0.01-0.03."""

    def end(self) -> Transcript:
        if not self._started:
            return Transcript("", final=True)
        self._decoder.end_utt()
        self._started, self._last = False, ""
        if self._decoder.hyp() is None:
            return Transcript("", final=True)
        kept = [(seg.word.split("(")[0], seg.prob) for seg in self._decoder.seg()
                if not seg.word.startswith(("<", "[", "+")) and seg.prob >= self.MIN_WORD_PROB]
        words = tuple(w for w, _ in kept)
        return Transcript(" ".join(words), final=True, words=words, confidence=tuple(round(p, 3) for _, p in kept))


class VoskRecognizer:
    """Vosk (Kaldi) with words on; the preferred recogniser on a Pi."""

    name = "vosk"

    def __init__(self, model_dir: Path):
        import vosk

        vosk.SetLogLevel(-1)
        if not model_dir.is_dir():
            raise ModelMissing(f"Vosk model folder {model_dir} is missing; run `sayso models fetch`.")
        try:
            model = vosk.Model(str(model_dir))
        except Exception as e:  # vosk raises a bare Exception for any folder it cannot load
            raise ModelCorrupt(f"Vosk could not load {model_dir} ({e}); run `sayso models fetch` "
                               "to fetch it again.") from e
        self._rec = vosk.KaldiRecognizer(model, RATE_HZ)
        self._rec.SetWords(True)
        self._last = ""
        self._done: list[str] = []
        self._sure: list[tuple[str, float]] = []

    def accept(self, pcm: bytes) -> Transcript | None:
        if self._rec.AcceptWaveform(pcm):
            # Vosk found an internal endpoint; keep its text, the utterance goes on.
            part = json.loads(self._rec.Result())
            if part.get("text"):
                self._done.append(part["text"])
                self._sure += [(w["word"], w["conf"]) for w in part.get("result", ())]
            text = " ".join(self._done)
        else:
            text = " ".join([*self._done, json.loads(self._rec.PartialResult()).get("partial", "")]).strip()
        if text != self._last:
            self._last = text
            return Transcript(text, final=False)
        return None

    def end(self) -> Transcript:
        tail = json.loads(self._rec.FinalResult())
        words = tuple(" ".join([*self._done, tail.get("text", "")]).split())
        sure = self._sure + [(w["word"], w["conf"]) for w in tail.get("result", ())]
        self._rec.Reset()
        self._done, self._sure, self._last = [], [], ""
        # one posterior per word, or none at all if Vosk's word list does not match its text
        confidence = tuple(round(c, 3) for _, c in sure) if tuple(w for w, _ in sure) == words else ()
        return Transcript(" ".join(words), final=True, words=words, confidence=confidence)


def open_recognizer(store: ModelStore, engine: str, vosk_model: str) -> Recognizer:
    """Pick the recogniser the config asks for; auto takes Vosk when its model is installed."""
    if engine in ("auto", "vosk"):
        try:
            return VoskRecognizer(store.path(vosk_model, role="stt"))
        except (ModelMissing, ModelCorrupt, UnknownModel) as e:
            if engine == "vosk":
                raise
            log.info("Vosk model not installed (%s); using pocketsphinx's bundled en-us model", e)
    return PocketsphinxRecognizer()
