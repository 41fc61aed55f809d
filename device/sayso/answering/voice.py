"""The voice stage: clause in, audio segment with word spans out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sayso.pipeline.cancel import Scopes
from sayso.pipeline.channel import Channel
from sayso.pipeline.messages import Clause, EndOfAnswer, Segment, WordSpan
from sayso.pipeline.stage import ErrorHandler, Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    audio: np.ndarray
    """Mono int16."""
    rate_hz: int
    words: tuple[WordSpan, ...]


class TTS(Protocol):
    rate_hz: int
    """The rate every rendering comes at."""

    def render(self, text: str) -> Rendered:
        """Synthesize `text`, with the sample span of every word."""


class Voice(Stage):
    """Synthesizes clauses for the speaker.

    The speaker's channel holds two segments, so the voice stays at most two
    chunks ahead of playback and a cancel throws away little work.
    """

    name = "voice"

    def __init__(self, tts: TTS, clauses: Channel, segments: Channel, scopes: Scopes,
                 on_error: ErrorHandler | None = None):
        super().__init__(on_error)
        self.tts, self.clauses, self.segments, self.scopes = tts, clauses, segments, scopes

    def step(self) -> None:
        item = self.clauses.get(timeout=0.1)
        if item is None or self.scopes.speech_cancelled(item.turn):
            return  # late items of a cancelled turn are dropped here
        if isinstance(item, EndOfAnswer):
            self.segments.put(item)
            return
        assert isinstance(item, Clause), item
        self.current_turn = item.turn
        r = self.tts.render(item.text)
        scope = self.scopes.get(item.turn)
        if scope is not None:
            scope.first_voiced.set()
        if not self.scopes.speech_cancelled(item.turn):
            self.segments.put(Segment(item.turn, item.seq, item.text, r.audio, r.rate_hz, r.words))
        self.current_turn = None
