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
    ends: tuple[float, ...] = ()
    """A final's end of each of `words`, in seconds from the first audio fed; () when not known."""
    unfinished: bool = False
    """A final whose last word was said as no sentence ends: a reduced "that" (/ðət/), which is "the" with
    a consonant after it or a "that" with more to come. A request ending in "that" stresses it."""

    def after(self, t_s: float) -> Transcript:
        """The words that end after `t_s` (what followed a wake phrase); unchanged when word ends are not known."""
        if len(self.ends) != len(self.words):
            return self
        keep = [i for i, end in enumerate(self.ends) if end > t_s]
        words = tuple(self.words[i] for i in keep)
        confidence = tuple(self.confidence[i] for i in keep) if len(self.confidence) == len(self.words) else ()
        return Transcript(" ".join(words), self.final, words, confidence, tuple(self.ends[i] for i in keep),
                          self.unfinished and bool(keep))

    def then(self, later: Transcript, offset_s: float) -> Transcript:
        """This final followed by `later`, a final of audio fed from `offset_s` on (word ends count from ours)."""
        mine, theirs = self.words or tuple(self.text.split()), later.words or tuple(later.text.split())
        words = mine + theirs
        aligned = [len(t.confidence) == len(w) for t, w in ((self, mine), (later, theirs))]
        confidence = self.confidence + later.confidence if all(aligned) else ()
        timed = [len(t.ends) == len(w) for t, w in ((self, mine), (later, theirs))]
        ends = self.ends + tuple(offset_s + end for end in later.ends) if all(timed) else ()
        unfinished = later.unfinished if theirs else self.unfinished
        return Transcript(" ".join(words), self.final and later.final, words, confidence, ends, unfinished)


class Recognizer(Protocol):
    """One utterance at a time: feed 16 kHz mono int16 audio, read partials, end for the final."""

    name: str

    def accept(self, pcm: bytes) -> Transcript | None:
        """Feed audio; return a partial transcript when it changed, else None."""

    def end(self) -> Transcript:
        """Finish the utterance and return its final transcript; ready for the next one."""


class PocketsphinxRecognizer:
    """CMU pocketsphinx with the en-us model bundled in its wheel.

    Its second, flat-lexicon pass is off unless `second_pass`: it decodes the
    whole utterance again inside `end()`, and `end()` at a pause is what an
    answer started there waits for. Without it `end()` costs a fifth to a tenth
    as much, and the final more often repeats the partial the LLM prefilled.
    Over Piper's and espeak-ng's voices and the real recordings neither
    setting heard consistently better (docs/bench.md).
    """

    name = "pocketsphinx"

    def __init__(self, model_dir: Path | None = None, second_pass: bool = False):
        from pocketsphinx import Config, Decoder

        config = Config(samprate=RATE_HZ, loglevel="FATAL", fwdflat=second_pass)
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

    FRAMES_PER_S = 100
    """pocketsphinx's feature frames (its default frate): word segments are counted in them."""
    MIN_WORD_PROB = 0.1
    """Words the decoder itself doubts are dropped from the final: what it writes for a cough or a mumble
    scores far below real words (docs/echo-cancelling.md)."""
    UNFINISHED = frozenset({"that(2)"})
    """Pronunciations (the dictionary's variants) that a sentence does not end on: see `Transcript.unfinished`."""

    def end(self) -> Transcript:
        if not self._started:
            return Transcript("", final=True)
        self._decoder.end_utt()
        self._started, self._last = False, ""
        if self._decoder.hyp() is None:
            return Transcript("", final=True)
        kept = [(seg.word, seg.prob, (seg.end_frame + 1) / self.FRAMES_PER_S)
                for seg in self._decoder.seg()
                if not seg.word.startswith(("<", "[", "+")) and seg.prob >= self.MIN_WORD_PROB]
        words = tuple(w.split("(")[0] for w, _, _ in kept)
        unfinished = bool(kept) and kept[-1][0] in self.UNFINISHED
        return Transcript(" ".join(words), final=True, words=words, confidence=tuple(round(p, 3) for _, p, _ in kept),
                          ends=tuple(end for _, _, end in kept), unfinished=unfinished)


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
        self._sure: list[tuple[str, float, float]] = []
        self._fed_s = self._start_s = 0.0
        """Audio fed so far, and where this utterance began: Vosk may count word times across a Reset."""

    def accept(self, pcm: bytes) -> Transcript | None:
        self._fed_s += len(pcm) / 2 / RATE_HZ
        if self._rec.AcceptWaveform(pcm):
            # Vosk found an internal endpoint; keep its text, the utterance goes on.
            part = json.loads(self._rec.Result())
            if part.get("text"):
                self._done.append(part["text"])
                self._sure += [(w["word"], w["conf"], w["end"]) for w in part.get("result", ())]
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
        sure = self._sure + [(w["word"], w["conf"], w["end"]) for w in tail.get("result", ())]
        self._rec.Reset()
        self._done, self._sure, self._last = [], [], ""
        # one posterior and end per word, or none at all if Vosk's word list does not match its text
        aligned = tuple(w for w, _, _ in sure) == words
        confidence = tuple(round(c, 3) for _, c, _ in sure) if aligned else ()
        ends = tuple(float(e) - self._start_s for _, _, e in sure) if aligned else ()
        if ends and min(ends) < 0:  # this Vosk counts word times from the Reset
            ends = tuple(float(e) for _, _, e in sure)
        self._start_s = self._fed_s
        return Transcript(" ".join(words), final=True, words=words, confidence=confidence, ends=ends)


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
