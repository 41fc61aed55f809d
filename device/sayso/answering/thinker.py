"""The thinker stage: streams the LLM's answer, cut into clauses, under the turn's cancel scope."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Protocol, cast

from sayso.answering.chunker import ClauseChunker
from sayso.answering.sanitize import speakable
from sayso.errors import LLMUnavailable
from sayso.pipeline.cancel import Scopes
from sayso.pipeline.channel import Channel
from sayso.pipeline.messages import (
    Clause,
    EndOfAnswer,
    FirstToken,
    GenerateRequest,
    GenerationEnded,
    Prefill,
    TextCheckpoint,
)
from sayso.pipeline.stage import ErrorHandler, Stage

log = logging.getLogger(__name__)


NOTHING_TO_SAY = "Sorry, that answer came out as something I can't read aloud."
"""Said when an answer has no speakable words (only code, markup or emoji): the person is not met with silence."""


class LLM(Protocol):
    def stream(self, messages: list[dict[str, str]], should_stop: Callable[[], bool]) -> Iterator[str]:
        """Yield pieces of the answer; stop soon after `should_stop()` turns true."""


class ResumableLLM(LLM, Protocol):
    """An LLM that can stop an answer part-way and go on with it later (a prompt-cached local model)."""

    resumable: bool

    def resume(self, messages: list[dict[str, str]], so_far: str, should_stop: Callable[[], bool]
               ) -> Iterator[str]:
        """Yield the pieces of the answer that follow `so_far`."""


class Thinker(Stage):
    """Owns the LLM (llama.cpp is not thread-safe, so only this thread touches it).

    The cancel flag is read after every token, so a cancel stops generation
    within one token; a token the backend still yields after that is dropped.
    `max_seconds` bounds the LLM's own work, not time spent waiting for the
    voice to take a clause; an answer past it ends at its last whole sentence.

    When the person's words come over an answer their speech paused, an LLM
    that can resume stops generating and evaluates them instead (prefills), so
    that an answer to them can start at once if they are cutting in. If the
    pause resumes, the answer goes on from the words it had.
    """

    name = "thinker"
    FIRST_VOICE_WAIT_S = 1.5
    """Longest the LLM waits for the voice to synthesize the first clause."""

    def __init__(self, llm: LLM, requests: Channel, clauses: Channel, report: Callable[[object], None],
                 scopes: Scopes, clock: Callable[[], int], max_seconds: float = 20.0,
                 on_error: ErrorHandler | None = None):
        super().__init__(on_error)
        self.llm, self.requests, self.clauses, self.report = llm, requests, clauses, report
        self.scopes, self.clock, self.max_seconds = scopes, clock, max_seconds
        self._prefilling: tuple[tuple[str, str], ...] | None = None
        """The messages of the prefill running now."""

    def step(self) -> None:
        req: GenerateRequest | Prefill | None = self.requests.get(timeout=0.1)
        if req is None:
            return
        if isinstance(req, Prefill):
            self._prefill(req)
            return
        turn = self.current_turn = req.turn
        cancelled = lambda: self.scopes.generation_cancelled(turn) or self.stopping.is_set()  # noqa: E731
        if cancelled():
            self.report(GenerationEnded(turn, "", "cancelled", self.clock()))
            return
        chunker, raw = ClauseChunker(), ""
        spoken: list[str] = []
        messages = _chat(req.messages)
        if req.preface:
            self._send(turn, spoken, req.preface)
        held, left = self._held(turn), False

        def stop() -> bool:
            """Cancelled, or leaving the answer for now: once seen, llama.cpp's watcher ends the stream."""
            nonlocal left
            if cancelled():
                return True
            left = left or held()
            return left

        started, waited, timed_out, failed = self.clock(), 0, False, None
        try:
            while req.ask:  # else the preface was the whole answer
                left = False
                for piece in self._generate(messages, raw, stop):
                    self.beat()
                    if cancelled():
                        break  # the "one more token" after a cancel belongs to no one
                    if not raw:
                        self.report(FirstToken(turn, self.clock()))
                    raw += piece
                    for chunk in chunker.feed(piece):
                        t = self.clock()
                        self._send(turn, spoken, chunk)
                        if len(spoken) == 1:
                            self._let_the_voice_start(turn, cancelled)
                        waited += self.clock() - t  # blocked by the voice: not the LLM's time
                    if self.clock() - started - waited > self.max_seconds * 1e9:
                        log.warning("turn %s: the LLM worked on the answer for over %.0fs; ending it at the last "
                                    "whole sentence", turn, self.max_seconds)
                        timed_out = True
                        break
                if timed_out or cancelled() or not left:
                    break
                t = self.clock()
                self._wait_out_pause(turn, cancelled)
                waited += self.clock() - t  # the person's pause: not the LLM's time
                if cancelled():
                    break
        except LLMUnavailable as e:
            failed = e  # no backend can answer: say so, rather than meet the person with silence
            log.error("turn %s: %s", turn, e)
            self._send(turn, spoken, e.apology)
        rest = None if failed else chunker.flush()
        if rest and not cancelled() and not timed_out:
            self._send(turn, spoken, rest)
            rest = None
        if not spoken and not cancelled():
            log.warning("turn %s: the LLM's answer had nothing to say aloud (%d characters of markup or code)",
                        turn, len(raw))
            self._send(turn, spoken, NOTHING_TO_SAY)
        busy_ms = (self.clock() - started - waited) / 1e6
        if cancelled() or timed_out:
            outcome = "cancelled" if cancelled() else "timeout"
            spoken.append(speakable(rest or ""))  # generated, never sent: logged, not spoken
            if timed_out and not self.scopes.speech_cancelled(turn):
                self.clauses.put(EndOfAnswer(turn))
        else:
            if not self.scopes.speech_cancelled(turn):
                self.clauses.put(EndOfAnswer(turn))
            outcome = "error" if failed else "done"
        backend = getattr(self.llm, "last_answer", None)
        self.report(GenerationEnded(turn, " ".join(filter(None, spoken)), outcome, self.clock(), busy_ms,
                                    dict(backend) if backend else None))
        self.current_turn = None

    def _generate(self, messages: list[dict[str, str]], so_far: str, stop: Callable[[], bool]) -> Iterator[str]:
        """The answer's pieces: from its start, or after the words it had when it was held."""
        if so_far:
            return cast(ResumableLLM, self.llm).resume(messages, so_far, stop)
        return self.llm.stream(messages, stop)

    def _held(self, turn: int) -> Callable[[], bool]:
        """Whether the LLM should leave the turn's answer for now: it is paused, the person's words wait to be
        evaluated, and the LLM can resume it. A pause with no words yet (a cough, a clap) lets it go on
        generating, so the answer is as far ahead of the voice when it resumes as it would have been."""
        if not getattr(self.llm, "resumable", False):
            return lambda: False
        return lambda: self.scopes.paused(turn) and self.requests.holds(lambda x: isinstance(x, Prefill))

    def _wait_out_pause(self, turn: int, cancelled: Callable[[], bool]) -> None:
        """Until the pause resumes or the answer is cancelled, evaluate the person's words as they come."""
        log.debug("turn %s: paused; the LLM leaves the answer for the person's words", turn)
        going_on = lambda: self.scopes.paused(turn) and not cancelled()  # noqa: E731
        while going_on():
            self.beat()
            req = self.requests.take(lambda x: isinstance(x, Prefill), timeout=0.02)
            if isinstance(req, Prefill):
                self._prefill(req, lambda: not going_on())  # the answer goes on or ends: it needs the LLM

    def _prefill(self, req: Prefill, also_stop: Callable[[], bool] = lambda: False) -> None:
        """Evaluate the next prompt's beginning now; a backend that keeps no prompt cache skips it."""
        prefill = getattr(self.llm, "prefill", None)
        if prefill is None:
            return
        t, self._prefilling = self.clock(), req.messages
        try:
            prefill(_chat(req.messages), lambda: self._gives_way() or also_stop())
        except LLMUnavailable as e:
            log.debug("prefill skipped: %s", e)
            return
        finally:
            self._prefilling = None
        log.debug("prefilled %d messages in %.0f ms", len(req.messages), (self.clock() - t) / 1e6)

    def _gives_way(self) -> bool:
        """A prefill stops where it is: the thinker is stopping, or an answer to other words waits behind it.
        An answer to the very words being prefilled lets it finish, and then starts on all of it."""
        return self.stopping.is_set() or self.requests.holds(
            lambda x: isinstance(x, GenerateRequest) and x.messages != self._prefilling)

    def _let_the_voice_start(self, turn: int, cancelled: Callable[[], bool]) -> None:
        """Hold generation while the voice synthesizes the first clause.

        On a small board the two fight for the same cores, and the first
        clause's synthesis is what the person is waiting for; the LLM makes
        words many times faster than they are spoken, so it catches up while
        that clause plays.
        """
        scope = self.scopes.get(turn)
        deadline = self.clock() + int(self.FIRST_VOICE_WAIT_S * 1e9)
        while scope is not None and not cancelled() and self.clock() < deadline:
            if scope.first_voiced.wait(0.02):
                return
            self.beat()

    def _send(self, turn: int, spoken: list[str], chunk: str) -> None:
        """Speak a chunk (markup, code and URLs removed) and checkpoint the answer so far."""
        chunk = speakable(chunk)
        if not chunk:
            return
        if not self.scopes.speech_cancelled(turn):
            self.clauses.put(Clause(turn, len(spoken), chunk))
        spoken.append(chunk)
        self.report(TextCheckpoint(turn, " ".join(spoken)))


def _chat(pairs: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    """(role, content) pairs as the chat messages an LLM backend takes."""
    return [{"role": role, "content": content} for role, content in pairs]
