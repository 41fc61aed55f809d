"""Observers (LED, metrics, logs) get events on their own thread, off the hot path.

`emit` only appends to a queue, so a slow or failing observer can never delay
an interrupt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sayso.pipeline.channel import Channel
from sayso.pipeline.messages import Event
from sayso.pipeline.stage import Stage

log = logging.getLogger(__name__)

Observer = Callable[[Event], None]


class EventBus(Stage):
    name = "observers"

    def __init__(self) -> None:
        super().__init__()
        self._queue: Channel[Event] = Channel("events", capacity=1 << 30)
        self._observers: list[Observer] = []
        self._idle = threading.Event()
        self._idle.set()

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def emit(self, event: Event) -> None:
        if not self._queue.closed:
            self._idle.clear()
            self._queue.put(event)

    def step(self) -> None:
        event = self._queue.get(timeout=0.1)
        if event is None:
            return
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:  # an observer's bug must not reach the pipeline
                log.exception("observer %r failed on %s", observer, event.type)
        if not len(self._queue):
            self._idle.set()

    def drain(self, timeout_s: float = 2.0) -> bool:
        """Wait until every emitted event has been delivered."""
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        self._queue.close()
