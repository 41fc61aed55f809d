"""The speaker stage: the one source of truth for what the person heard.

It writes audio in blocks of at most 20 ms and reads the cancel flag between
blocks, so an interrupt is silent within one block. It counts the samples that
actually left (written minus what the device still holds) and a word counts as
heard only once its last sample has played.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from sayso.cancel import Scopes
from sayso.channel import Channel
from sayso.messages import Cancel, EndOfAnswer, FirstAudio, Heard, PlaybackEnded, Segment, WordSpan
from sayso.stage import ErrorHandler, Stage

log = logging.getLogger(__name__)


class AudioSink(Protocol):
    """An output device that plays mono int16 at `rate_hz`."""

    rate_hz: int

    def write(self, block: np.ndarray) -> None:
        """Queue a block; blocks while the device buffer is full."""

    def abort(self) -> None:
        """Drop whatever is queued and go silent now."""

    def pending_samples(self) -> int:
        """Samples written but not yet audible (buffer plus output latency)."""


class Speaker(Stage):
    name = "speaker"

    def __init__(self, sink: AudioSink, segments: Channel, report: Callable[[object], None], scopes: Scopes,
                 clock: Callable[[], int], block_ms: float = 20.0, on_error: ErrorHandler | None = None,
                 echo=None):
        super().__init__(on_error)
        self.echo = echo
        """Where what is played is published for the listener's echo guard (an EchoReference)."""
        self.sink, self.segments, self.report, self.scopes, self.clock = sink, segments, report, scopes, clock
        self.block = max(1, int(sink.rate_hz * min(block_ms, 20.0) / 1000))
        self._written = 0
        """Samples written to the sink since start: the speaker's own position."""
        self._placed: list[tuple[int, WordSpan]] = []
        """This turn's words with their absolute end position."""
        self._ended: set[int] = set()

    def _cancelled(self, turn: int) -> bool:
        return self.scopes.speech_cancelled(turn) or self.stopping.is_set()

    def step(self) -> None:
        item = self.segments.get(timeout=0.1)
        if item is None:
            return
        if isinstance(item, Cancel):
            self._end(item.turn, completed=False)
        elif self._cancelled(item.turn) or item.turn in self._ended:
            return  # a cancelled turn's audio is thrown away, never played
        elif isinstance(item, EndOfAnswer):
            self._drain(item.turn)
        else:
            self._play(item)

    def _play(self, seg: Segment) -> None:
        self.current_turn = seg.turn
        audio, words = _at_rate(seg, self.sink.rate_hz)
        start = self._written
        if not self._placed:
            pending_ns = int(self.sink.pending_samples() * 1e9 / self.sink.rate_hz)
            self.report(FirstAudio(seg.turn, self.clock() + pending_ns))
        self._placed.extend((start + w.end, w) for w in words)
        for i in range(0, len(audio), self.block):
            if self._cancelled(seg.turn):
                self._end(seg.turn, completed=False)
                return
            block = audio[i:i + self.block]
            if self.echo is not None:
                pending_ns = int(self.sink.pending_samples() * 1e9 / self.sink.rate_hz)
                self.echo.played(block, self.sink.rate_hz, self.clock() + pending_ns)
            self.sink.write(block)
            self._written += len(block)
            self.beat()
        self.report(Heard(seg.turn, self._heard()))

    def _drain(self, turn: int) -> None:
        """Wait, one block at a time, for the last audio to be heard; a cancel still cuts it."""
        block_s = self.block / self.sink.rate_hz
        while self.sink.pending_samples() > 0:
            if self._cancelled(turn):
                self._end(turn, completed=False)
                return
            self.stopping.wait(block_s)
            self.beat()
        self._end(turn, completed=True)

    def _heard(self) -> tuple[str, ...]:
        audible = self._written - self.sink.pending_samples()
        return tuple(w.text for end, w in self._placed if end <= audible)

    def _end(self, turn: int, completed: bool) -> None:
        if turn in self._ended:
            return
        if not completed:
            heard = self._heard()  # before the abort: what left the speaker by now
            self.sink.abort()
        else:
            heard = tuple(w.text for _, w in self._placed)
        silence_ns = self.clock()
        self._placed = []
        self._ended = {t for t in self._ended if t > turn - 16} | {turn}
        self.current_turn = None
        self.report(PlaybackEnded(turn, heard, completed, silence_ns))


def _at_rate(seg: Segment, rate_hz: int) -> tuple[np.ndarray, tuple[WordSpan, ...]]:
    """The segment's audio at the device rate, word spans scaled to match (soxr)."""
    audio = np.asarray(seg.audio, dtype=np.int16)
    if seg.rate_hz == rate_hz:
        return audio, seg.words
    import soxr

    out = soxr.resample(audio.astype(np.float32) / 32768.0, seg.rate_hz, rate_hz)
    out = (np.clip(out, -1.0, 1.0) * 32767).astype(np.int16)
    k = rate_hz / seg.rate_hz
    words = tuple(WordSpan(w.text, int(w.start * k), min(len(out), int(round(w.end * k))), w.estimated)
                  for w in seg.words)
    return out, words
