"""The thinker stage: streams the LLM's answer, cut into clauses, under the turn's cancel scope."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Protocol

from sayso.cancel import Scopes
from sayso.channel import Channel
from sayso.chunker import ClauseChunker
from sayso.messages import (
    Clause,
    EndOfAnswer,
    FirstToken,
    GenerateRequest,
    GenerationEnded,
    Kind,
    Reason,
    TextCheckpoint,
)
from sayso.sanitize import speakable
from sayso.stage import ErrorHandler, Stage

log = logging.getLogger(__name__)


class LLM(Protocol):
    def stream(self, messages: list[dict[str, str]], should_stop: Callable[[], bool]) -> Iterator[str]:
        """Yield pieces of the answer; stop soon after `should_stop()` turns true."""


class Thinker(Stage):
    """Owns the LLM (llama.cpp is not thread-safe, so only this thread touches it).

    The cancel flag is read after every token, so a cancel stops generation
    within one token; a token the backend still yields after that is dropped.
    """

    name = "thinker"

    def __init__(self, llm: LLM, requests: Channel, clauses: Channel, report: Callable[[object], None],
                 scopes: Scopes, clock: Callable[[], int],
                 interrupt: Callable[[Kind, Reason], bool], max_seconds: float = 20.0,
                 on_error: ErrorHandler | None = None):
        super().__init__(on_error)
        self.llm, self.requests, self.clauses, self.report = llm, requests, clauses, report
        self.scopes, self.clock, self.interrupt, self.max_seconds = scopes, clock, interrupt, max_seconds

    def step(self) -> None:
        req: GenerateRequest | None = self.requests.get(timeout=0.1)
        if req is None:
            return
        turn = self.current_turn = req.turn
        cancelled = lambda: self.scopes.generation_cancelled(turn) or self.stopping.is_set()  # noqa: E731
        if cancelled():
            self.report(GenerationEnded(turn, "", "cancelled", self.clock()))
            return
        chunker, raw, spoken = ClauseChunker(), "", []
        deadline = self.clock() + int(self.max_seconds * 1e9)
        messages = [{"role": role, "content": content} for role, content in req.messages]
        for piece in self.llm.stream(messages, cancelled):
            self.beat()
            if cancelled():
                break  # the "one more token" after a cancel belongs to no one
            if not raw:
                self.report(FirstToken(turn, self.clock()))
            raw += piece
            for chunk in chunker.feed(piece):
                self._send(turn, spoken, chunk)
            if self.clock() > deadline:
                log.warning("turn %s: answer took longer than %.0fs; cutting it", turn, self.max_seconds)
                self.interrupt(Kind.FULL, Reason.TIMEOUT)
        rest = chunker.flush()
        if cancelled():
            outcome = "cancelled"
            spoken.append(speakable(rest or ""))  # generated, never sent: logged, not spoken
        else:
            if rest:
                self._send(turn, spoken, rest)
            if not self.scopes.speech_cancelled(turn):
                self.clauses.put(EndOfAnswer(turn))
            outcome = "done"
        self.report(GenerationEnded(turn, " ".join(filter(None, spoken)), outcome, self.clock()))
        self.current_turn = None

    def _send(self, turn: int, spoken: list[str], chunk: str) -> None:
        """Speak a chunk (markup, code and URLs removed) and checkpoint the answer so far."""
        chunk = speakable(chunk)
        if not chunk:
            return
        if not self.scopes.speech_cancelled(turn):
            self.clauses.put(Clause(turn, len(spoken), chunk))
        spoken.append(chunk)
        self.report(TextCheckpoint(turn, " ".join(spoken)))
