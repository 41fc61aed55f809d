"""Which conversation a turn belongs to: the one going on, or a new one after a quiet spell.

A conversation ends after `idle_timeout_s` without a turn, and the LLM's history
is that conversation's turns. The quiet is measured on the pipeline's clock. At
start-up the turn log says when its last turn ended (unix seconds), so an
appliance restarted mid-conversation carries on with it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from sayso.pipeline.turnlog import TurnLog


class Conversations:
    """Hands out conversation ids; the conductor asks for one at each turn it writes.

    Args:
        turnlog: where the last conversation is looked up, once, at start-up.
        idle_timeout_s: quiet after which the next turn starts a new conversation.
        clock: the pipeline's clock, ns.
        wall: unix seconds, only to compare with the turn log's timestamps at start-up.
    """

    def __init__(self, turnlog: TurnLog, idle_timeout_s: float, clock: Callable[[], int] = time.monotonic_ns,
                 wall: Callable[[], float] = time.time):
        self.turnlog, self.clock, self.wall = turnlog, clock, wall
        self.idle_timeout_ns = int(idle_timeout_s * 1e9)
        self._id: str | None = None
        self._last_ns = 0
        """When the last turn was written or the last answer ended, on `clock`."""

    def current(self) -> str:
        """The conversation of a turn written now; a new one after `idle_timeout_s` of quiet."""
        now = self.clock()
        if self._id is None:
            last = self.turnlog.last_conversation()
            if last:
                quiet_ns = int((self.wall() - last[1]) * 1e9)
                if quiet_ns < self.idle_timeout_ns:
                    self._id, self._last_ns = last[0], now - quiet_ns
        if self._id is None or now - self._last_ns > self.idle_timeout_ns:
            self._id = uuid.uuid4().hex[:12]
        self._last_ns = now
        return self._id

    def touch(self) -> None:
        """An answer just ended: the quiet starts now, not at the question."""
        self._last_ns = self.clock()
