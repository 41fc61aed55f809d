"""The speaker stage: the one source of truth for what the person heard.

It writes audio in blocks of at most 20 ms and reads the cancel and pause flags
between blocks, so an interrupt or a pause is silent within one block. It counts the samples that
actually left (written minus what the device still holds) and a word counts as
heard only once its last sample has played.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from sayso.answering.earcon import earcon
from sayso.audio import resample, to_mic_rate
from sayso.pipeline.cancel import Scopes
from sayso.pipeline.channel import Channel
from sayso.pipeline.echo_reference import EchoReference
from sayso.pipeline.messages import (
    Cancel,
    Earcon,
    EndOfAnswer,
    FirstAudio,
    FirstWordHeard,
    Heard,
    Paused,
    PlaybackEnded,
    Segment,
    WordSpan,
)
from sayso.pipeline.stage import ErrorHandler, Stage

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
    """Plays each turn's segments in blocks; silent within one block of a cancel or a pause.

    A turn's audio is kept until the turn ends, on one position counter, so a
    pause can rewind to the first sample the person has not heard (what the
    device still held is dropped) and a resume plays on from exactly there.
    """

    name = "speaker"

    def __init__(self, sink: AudioSink, segments: Channel, report: Callable[[object], None], scopes: Scopes,
                 clock: Callable[[], int], block_ms: float = 20.0, on_error: ErrorHandler | None = None,
                 echo: EchoReference | None = None):
        super().__init__(on_error)
        self.echo = echo
        """Where what is played is published for the listener's canceller and guard."""
        self.sink, self.segments, self.report, self.scopes, self.clock = sink, segments, report, scopes, clock
        self.block = max(1, int(sink.rate_hz * min(block_ms, 20.0) / 1000))
        self._written = 0
        """The position written up to, in samples on the turn's own counter (rewound by a pause)."""
        self._audio: list[tuple[int, np.ndarray, np.ndarray | None]] = []
        """This turn's segments: (start position, audio at the device rate, the same at 16 kHz for the echo)."""
        self._placed: list[tuple[int, WordSpan]] = []
        """This turn's words with their end position."""
        self._first_audio = False
        self._first_word_heard = False
        self._ended: set[int] = set()
        self._underruns = 0
        self._after_pause = False

    def _cancelled(self, turn: int) -> bool:
        return self.scopes.speech_cancelled(turn) or self.stopping.is_set()

    def step(self) -> None:
        turn = self.current_turn
        if turn is not None and self.scopes.paused(turn) and self.sink.pending_samples() > 0:
            # paused between segments: the device's last blocks must not play on, and on resume they
            # play again from the first unheard sample before anything else
            if self._hold(turn) and self._play_until(turn, self._queued_end()):
                self.report(Heard(turn, self._heard(turn)))
            return
        item = self.segments.get(timeout=0.1 if turn is None else self.block / self.sink.rate_hz)
        if item is None:
            return
        if isinstance(item, Cancel):
            self._end(item.turn, completed=False)
        elif isinstance(item, Earcon):
            self._earcon()
        elif self._cancelled(item.turn) or item.turn in self._ended:
            return  # a cancelled turn's audio is thrown away, never played
        elif isinstance(item, EndOfAnswer):
            self._drain(item.turn)
        else:
            self._play(item)

    def _play(self, seg: Segment) -> None:
        self.current_turn = seg.turn
        audio, words = _at_rate(seg, self.sink.rate_hz)
        start = self._queued_end()
        # the echo reference at the mic's rate, once per segment: a stream resampler would add its own delay
        reference = None if self.echo is None else to_mic_rate(seg.audio, seg.rate_hz)
        self._audio.append((start, audio, reference))
        self._placed.extend((start + w.end, w) for w in words)
        if self._play_until(seg.turn, start + len(audio)):
            self.report(Heard(seg.turn, self._heard(seg.turn)))

    def _play_until(self, turn: int, end: int) -> bool:
        """Write the turn's audio up to position `end`, holding through pauses; False once it is cancelled."""
        while self._written < end:
            if self._cancelled(turn):
                self._end(turn, completed=False)
                return False
            if self.scopes.paused(turn):
                if not self._hold(turn):
                    return False
                continue
            if not self.scopes.playable(turn):
                self._wait_playable(turn)  # a preemptive answer: ready to go the moment the turn is certain
                continue
            block, reference = self._slice(self._written, min(self.block, end - self._written))
            pending = self.sink.pending_samples()
            pending_ns = int(pending * 1e9 / self.sink.rate_hz)
            if not self._first_audio:
                self._first_audio = True
                self.report(FirstAudio(turn, self.clock() + pending_ns))
            elif pending == 0 and not self._after_pause:
                self._underruns += 1  # the device ran dry mid-answer: the person heard a gap
            self._after_pause = False
            self._out(block, reference, pending_ns)
            self._written += len(block)
        return True

    def _out(self, block: np.ndarray, reference: np.ndarray | None, pending_ns: int) -> None:
        """One block to the device, and the same span at 16 kHz to the echo reference first."""
        if reference is not None and self.echo is not None:
            # what the device holds ahead of the block tells the reference whether it ran dry (the block
            # plays at its next period) and whether the stamp is one to place the run by (echo_reference.py)
            self.echo.played(reference, self.clock() + pending_ns, queued_ns=pending_ns)
        self.sink.write(block)
        self.beat()

    def _earcon(self) -> None:
        """Play the listening tone, with its echo reference like any answer; never over an answer."""
        if self.current_turn is not None:
            return
        audio = earcon(self.sink.rate_hz)
        reference = to_mic_rate(audio, self.sink.rate_hz) if self.echo is not None else None
        k = 0.0 if reference is None else len(reference) / len(audio)
        for i in range(0, len(audio), self.block):
            block = audio[i:i + self.block]
            pending_ns = int(self.sink.pending_samples() * 1e9 / self.sink.rate_hz)
            self._out(block, None if reference is None else reference[int(i * k):int((i + len(block)) * k)],
                      pending_ns)

    def _queued_end(self) -> int:
        """The position just after the turn's last segment (where the next one goes)."""
        return self._audio[-1][0] + len(self._audio[-1][1]) if self._audio else self._written

    def _slice(self, pos: int, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Up to `n` samples of the turn's audio from `pos` (within one segment), and the same span at 16 kHz."""
        start, audio, reference = next(a for a in reversed(self._audio) if a[0] <= pos)
        i = pos - start
        block = audio[i:i + n]
        if reference is None:
            return block, None
        k = len(reference) / len(audio)
        return block, reference[int(i * k):int((i + len(block)) * k)]

    def _hold(self, turn: int) -> bool:
        """Paused: quiet now, back to the first unheard sample, and wait; False if the turn is cancelled meanwhile."""
        unheard = min(self.sink.pending_samples(), self._written - (self._audio[0][0] if self._audio else 0))
        if unheard > 0:
            self.sink.abort()
            self._written -= unheard
            if self.echo is not None:
                self.echo.cut(self.clock())
        self.report(Paused(turn, self._heard(turn), self.clock()))
        block_s = self.block / self.sink.rate_hz
        while self.scopes.paused(turn) and not self._cancelled(turn):
            self.stopping.wait(block_s)
            self.beat()
        if self._cancelled(turn):
            self._end(turn, completed=False)
            return False
        self._after_pause = True
        return True

    def _wait_playable(self, turn: int) -> None:
        scope = self.scopes.get(turn)
        if scope is not None:
            scope.playable.wait(self.block / self.sink.rate_hz)
        self.beat()

    def _drain(self, turn: int) -> None:
        """Wait, one block at a time, for the last audio to be heard; a cancel still cuts it, a pause holds it."""
        block_s = self.block / self.sink.rate_hz
        end = self._queued_end()
        while self._written < end or self.sink.pending_samples() > 0:
            if self._cancelled(turn):
                self._end(turn, completed=False)
                return
            if self.scopes.paused(turn) and not self._hold(turn):
                return
            if self._written < end:  # rewound by a pause, here or before the end of the answer came
                if not self._play_until(turn, end):
                    return
                continue
            self.stopping.wait(block_s)
            self.beat()
        self._end(turn, completed=True)

    def _heard(self, turn: int) -> tuple[str, ...]:
        """The words whose last sample has played; reports when the first of them did, once a turn."""
        now, audible = self.clock(), self._written - self.sink.pending_samples()
        heard = [(end, w.text) for end, w in self._placed if end <= audible]
        if heard and not self._first_word_heard:
            self._first_word_heard = True
            self.report(FirstWordHeard(turn, now - int((audible - heard[0][0]) * 1e9 / self.sink.rate_hz)))
        return tuple(text for _, text in heard)

    def _end(self, turn: int, completed: bool) -> None:
        if turn in self._ended:
            return
        if not completed:
            heard = self._heard(turn)  # before the abort: what left the speaker by now
            if self._first_audio:  # nothing of a dropped preemptive answer ever played: nothing to cut
                self.sink.abort()
                if self.echo is not None:
                    self.echo.cut(self.clock())
        else:
            heard = tuple(w.text for _, w in self._placed)
        silence_ns = self.clock()
        underruns, self._underruns = self._underruns, 0
        self._audio, self._placed, self._first_audio, self._first_word_heard = [], [], False, False
        self._ended = {t for t in self._ended if t > turn - 16} | {turn}
        self.current_turn = None
        self.report(PlaybackEnded(turn, heard, completed, silence_ns, underruns))


def _at_rate(seg: Segment, rate_hz: int) -> tuple[np.ndarray, tuple[WordSpan, ...]]:
    """The segment's audio at the device rate, word spans scaled to match (soxr)."""
    out = resample(seg.audio, seg.rate_hz, rate_hz)
    if seg.rate_hz == rate_hz:
        return out, seg.words
    k = rate_hz / seg.rate_hz
    words = tuple(WordSpan(w.text, int(w.start * k), min(len(out), int(round(w.end * k))), w.estimated)
                  for w in seg.words)
    return out, words
