"""Piper text-to-speech with phoneme alignments (samples per phoneme)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from sayso.answering.voice import Rendered
from sayso.models.onnx import session_options
from sayso.pipeline.messages import WordSpan

log = logging.getLogger(__name__)

_PAUSES = frozenset(",.;:!?…—–-\"'()")
MAX_CALL_CHARS = 100
"""The longest sentence Piper speaks in one call; a longer one is spoken in pieces.

Piper's working memory grows with the audio one call makes, about 20 MB a second past
the first three: one long sentence of an answer took 140 MB more while it was spoken.
100 characters is about five seconds of speech; a piece ends at a clause boundary
where there is one."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_END = re.compile(r"[,;:](?=\s)|\s[-\u2013\u2014](?=\s)")


def pieces(text: str, limit: int = MAX_CALL_CHARS) -> list[str]:
    """`text` with every sentence longer than `limit` cut at its last clause boundary (else word) before it."""
    if len(text) <= limit:
        return [text]  # left to Piper whole: its own sentence split knows "Dr." and "3.5"
    out = []
    for sentence in _SENTENCE_END.split(text.strip()):
        while len(sentence) > limit:
            head = sentence[:limit + 1]
            cut = max((m.end() for m in _CLAUSE_END.finditer(head)), default=None) or head.rfind(" ")
            if cut <= 0:
                break  # one word past the limit: Piper takes it whole
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        out.append(sentence)
    return [p for p in out if p]


@dataclass(frozen=True)
class Speech:
    """Audio for one piece of text, with the samples each phoneme took when known."""

    text: str
    audio: np.ndarray
    """Mono int16 samples."""
    rate_hz: int
    phonemes: tuple[tuple[str, int], ...] = ()
    """(phoneme, samples) in order; empty when the voice gave no alignments."""


def _load_voice(model_path: Path):
    """A PiperVoice whose onnxruntime session reports phoneme alignments.

    Built here rather than by `PiperVoice.load`, which parses the whole model
    with onnx even when it is already patched, and keeps onnxruntime's memory
    patterns: per-shape buffers that grow with every new sentence length
    (about 45 MB more peak memory over a conversation, for no speed gained).
    A voice not patched for alignments is patched in memory.
    """
    import json

    import onnxruntime as ort
    from piper import PiperVoice
    from piper.config import PiperConfig

    opts = session_options()
    opts.enable_mem_pattern = False
    providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
    if len(session.get_outputs()) < 2:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output

        model = onnx.load(str(model_path))
        add_alignment_output(model)
        session = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=providers)
    config = json.loads(Path(f"{model_path}.json").read_text(encoding="utf-8"))
    return PiperVoice(session=cast(ort.InferenceSession, _Shrinking(session)), config=PiperConfig.from_dict(config))


class _Shrinking:
    """A Piper session whose runs give their working memory back to the system when they end.

    One call's working memory grows with its audio, and onnxruntime's arena would keep
    its largest peak for the life of the process (100 MB after a sentence of five
    seconds). Shrinking it after each run costs no measurable time: the memory comes
    back in a few large regions, while the models' small per-frame runs keep theirs.
    """

    def __init__(self, session):
        import onnxruntime as ort

        self._session = session
        self._options = ort.RunOptions()
        self._options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, outputs, feeds, run_options=None):
        return self._session.run(outputs, feeds, run_options or self._options)

    def __getattr__(self, name: str):
        return getattr(self._session, name)


class PiperTTS:
    """A Piper voice; alignments come from the patched model (or an in-memory patch)."""

    def __init__(self, model_path: Path, length_scale: float = 1.0, repeatable: bool = False):
        """`repeatable` turns off Piper's sampling noise so the same text gives the same audio (tests)."""
        from piper import SynthesisConfig

        self._voice = _load_voice(Path(model_path))
        noise = 0.0 if repeatable else None  # None: the voice's own
        self._config = SynthesisConfig(length_scale=length_scale, noise_scale=noise, noise_w_scale=noise)
        self.rate_hz = self._voice.config.sample_rate

    def paced(self, length_scale: float) -> PiperTTS:
        """The same loaded voice at another pace (no second copy of the model in memory)."""
        other = copy.copy(self)
        other._config = dataclasses.replace(self._config, length_scale=length_scale)
        return other

    def speak(self, text: str) -> list[Speech]:
        """One Speech per sentence Piper finds in `text`, or per piece of a long one (`pieces`)."""
        out = []
        for piece in pieces(text):
            for chunk in self._voice.synthesize(piece, syn_config=self._config, include_alignments=True):
                phonemes = tuple((a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments or ())
                out.append(Speech(text, chunk.audio_int16_array.copy(), chunk.sample_rate, phonemes))
        return out

    def audio(self, text: str) -> np.ndarray:
        """`text` spoken, as one int16 array at `rate_hz` (every sentence, in order)."""
        return _joined(self.speak(text))

    def render(self, text: str) -> Rendered:
        """Audio for `text` with the sample span of every word, from the phoneme alignments.

        Piper's phoneme words are split at spaces and matched to the text's words.
        Where the counts differ (espeak joins "on the", reads "3.5" as three words)
        each word gets a share of the aligned phonemes proportional to its own
        phoneme count, and its span is marked estimated.
        """
        parts = self.speak(text)
        audio = _joined(parts)
        words = text.split()
        found: list[tuple[int, int]] = []
        phones: list[tuple[int, int]] = []
        base = 0
        for part in parts:
            pos, start, end = base, None, 0
            for phoneme, n in part.phonemes:
                if phoneme in (" ", "^", "$"):
                    if start is not None:
                        found.append((start, end))
                    start = None
                elif phoneme not in _PAUSES:
                    start = pos if start is None else start
                    end = pos + n
                    phones.append((pos, end))
                pos += n
            if start is not None:
                found.append((start, end))
            base += len(part.audio)
        if not words:
            return Rendered(audio, self.rate_hz, ())
        if all(p.phonemes for p in parts) and len(found) == len(words):
            spans = tuple(WordSpan(w, s, e) for w, (s, e) in zip(words, found, strict=True))
        elif phones:
            spans = _share(words, [self._phoneme_count(w) for w in words], phones)
        else:
            spans = _share(words, [max(1, len(w)) for w in words], [(0, len(audio))] * max(1, len(words)))
        return Rendered(audio, self.rate_hz, spans)

    def _phoneme_count(self, word: str) -> int:
        return max(1, sum(1 for sentence in self._voice.phonemize(word) for ph in sentence
                          if ph not in _PAUSES and ph != " "))


def _joined(parts: list[Speech]) -> np.ndarray:
    return np.concatenate([p.audio for p in parts]) if parts else np.zeros(0, np.int16)


def _share(words: list[str], counts: list[int], phones: list[tuple[int, int]]) -> tuple[WordSpan, ...]:
    """Give word i the aligned phonemes in proportion to `counts[i]`; spans marked estimated."""
    total, n, cum, out = sum(counts), len(phones), 0, []
    for w, k in zip(words, counts, strict=True):
        first = min(n - 1, round(cum * n / total))
        cum += k
        last = max(first, min(n - 1, round(cum * n / total) - 1))
        out.append(WordSpan(w, phones[first][0], phones[last][1], estimated=True))
    return tuple(out)
