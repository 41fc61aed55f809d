"""Bounded queues that can be closed and flushed, with a lane for control messages.

Python 3.11 has no `Queue.shutdown()`, so a Condition guards two deques: control
items are always taken before data (interrupts overtake data) and never block on
capacity; `close()` wakes every blocked put and get.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from sayso.errors import ChannelClosed

T = TypeVar("T")


class Channel(Generic[T]):
    """A bounded, closable, flushable queue between two stages.

    Args:
        name: for logs and errors.
        capacity: most data items held; a put beyond it blocks (back-pressure).
    """

    def __init__(self, name: str, capacity: int = 64):
        self.name = name
        self.capacity = capacity
        self._data: deque[T] = deque()
        self._control: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T, timeout: float | None = None) -> None:
        """Add a data item, waiting while the channel is full; raises ChannelClosed or TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or len(self._data) < self.capacity, timeout):
                raise TimeoutError(f"channel {self.name} stayed full for {timeout}s")
            if self._closed:
                raise ChannelClosed(f"channel {self.name} is closed")
            self._data.append(item)
            self._cond.notify_all()

    def put_control(self, item: T) -> None:
        """Add a control item ahead of all data; never blocks."""
        with self._cond:
            if self._closed:
                raise ChannelClosed(f"channel {self.name} is closed")
            self._control.append(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """Take the next item (control first); None on timeout; raises ChannelClosed once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._control or self._data, timeout)
            if self._closed:
                raise ChannelClosed(f"channel {self.name} is closed")
            if self._control:
                item = self._control.popleft()
            elif self._data:
                item = self._data.popleft()
            else:
                return None
            self._cond.notify_all()
            return item

    def take(self, match: Callable[[T], bool], timeout: float | None = None) -> T | None:
        """Take the first data item for which `match` is true, waiting up to `timeout`; None if none came.
        Items before it stay where they are."""
        with self._cond:
            def found() -> T | None:
                return next((x for x in self._data if match(x)), None)
            self._cond.wait_for(lambda: self._closed or found() is not None, timeout)
            if self._closed:
                raise ChannelClosed(f"channel {self.name} is closed")
            item = found()
            if item is not None:
                self._data.remove(item)
                self._cond.notify_all()
            return item

    def flush(self, match: Callable[[T], bool]) -> int:
        """Drop queued data items for which `match` is true; return how many."""
        with self._cond:
            kept = deque(x for x in self._data if not match(x))
            dropped = len(self._data) - len(kept)
            self._data = kept
            self._cond.notify_all()
            return dropped

    def holds(self, match: Callable[[T], bool]) -> bool:
        """Whether a queued item (control or data) matches: a long job checks it to give way."""
        with self._cond:
            return any(match(x) for x in self._control) or any(match(x) for x in self._data)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._data) + len(self._control)


def of_turn(turn: int) -> Callable[[object], bool]:
    """A flush predicate: items that belong to `turn`."""
    return lambda item: getattr(item, "turn", None) == turn
