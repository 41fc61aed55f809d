"""Cancel scopes: one per assistant turn, read by every stage between units of work."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sayso.pipeline.messages import Kind, Reason


@dataclass(frozen=True)
class Cancellation:
    kind: Kind
    reason: Reason
    t_ns: int
    onset_ns: int | None = None


class Scope:
    """Whether a turn's generation and speech have been cancelled, and why.

    The first interrupt fixes the reason; a later `full` still escalates a
    `speech` cancel so generation stops too.
    """

    def __init__(self, turn: int):
        self.turn = turn
        self.speech = threading.Event()
        self.generation = threading.Event()
        self.paused = threading.Event()
        """Barge-in's pause: the speaker holds still; generation goes on, or waits for it to resume or
        be cut while the LLM evaluates the person's words (see Conductor.pause)."""
        self.playable = threading.Event()
        """Clear while the answer is preemptive: generated and synthesized, but nothing plays until the
        person's turn is certain."""
        self.playable.set()
        self.first_voiced = threading.Event()
        """Set once the voice has synthesized the answer's first clause (the thinker waits for it)."""
        self._lock = threading.Lock()
        self.first: Cancellation | None = None

    def cancel(self, c: Cancellation) -> bool:
        """Apply a cancellation; True when it changed anything."""
        with self._lock:
            changed = not self.speech.is_set() or (c.kind is Kind.FULL and not self.generation.is_set())
            if self.first is None:
                self.first = c
            elif c.kind is Kind.FULL and self.first.kind is Kind.SPEECH:
                self.first = Cancellation(Kind.FULL, self.first.reason, self.first.t_ns, self.first.onset_ns)
            self.speech.set()
            if c.kind is Kind.FULL:
                self.generation.set()
            return changed


class Scopes:
    """Scopes by turn id, so a late item can be checked against its own turn."""

    def __init__(self) -> None:
        self._scopes: dict[int, Scope] = {}
        self._lock = threading.Lock()

    def open(self, turn: int, playable: bool = True) -> Scope:
        with self._lock:
            self._scopes[turn] = scope = Scope(turn)
            if not playable:
                scope.playable.clear()
            # keep a few finished turns so late items find their (cancelled) scope
            for old in sorted(self._scopes)[:-8]:
                del self._scopes[old]
            return scope

    def get(self, turn: int) -> Scope | None:
        with self._lock:
            return self._scopes.get(turn)

    def speech_cancelled(self, turn: int) -> bool:
        """True for a cancelled turn, and for a turn this process no longer knows."""
        s = self.get(turn)
        return s is None or s.speech.is_set()

    def paused(self, turn: int) -> bool:
        s = self.get(turn)
        return s is not None and s.paused.is_set()

    def generation_cancelled(self, turn: int) -> bool:
        s = self.get(turn)
        return s is None or s.generation.is_set()

    def playable(self, turn: int) -> bool:
        s = self.get(turn)
        return s is None or s.playable.is_set()
