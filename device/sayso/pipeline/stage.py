"""A stage is one worker thread with a stop event; it fails loudly if it will not stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from sayso.errors import ChannelClosed, StageError

log = logging.getLogger(__name__)

ErrorHandler = Callable[[str, "int | None", BaseException], None]


class Stage:
    """Base for pipeline stages: subclasses implement `step()`, one unit of work.

    An exception in `step()` is logged with the stage name and handed to
    `on_error` (the conductor ends the turn as interrupted/error); the loop then
    goes on, so one bad item never hangs the appliance. A closed input channel
    ends the loop.
    """

    name = "stage"

    def __init__(self, on_error: ErrorHandler | None = None):
        self.stopping = threading.Event()
        self.on_error = on_error or (lambda stage, turn, exc: None)
        self.current_turn: int | None = None
        self.heartbeat = time.monotonic()
        """Last time the loop went round (for the service watchdog)."""
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)

    def step(self) -> None:
        raise NotImplementedError

    def beat(self) -> None:
        """Tell the watchdog this stage is alive, from inside a long step (a token, a block played)."""
        self.heartbeat = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                self.step()
            except ChannelClosed:
                break
            except Exception as exc:  # a stage must survive one bad item; the turn ends as error
                log.exception("stage %s failed on turn %s", self.name, self.current_turn)
                turn, self.current_turn = self.current_turn, None
                self.on_error(self.name, turn, exc)
        log.debug("stage %s stopped", self.name)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StageError(f"stage {self.name!r} did not stop within {timeout:.1f}s")


def stop_all(stages: Iterable[Stage], timeout_s: float = 5.0) -> None:
    """Set every stage's stop event first, then join each; raise naming those still running."""
    stages = list(stages)
    for s in stages:
        s.stopping.set()
    stuck = []
    deadline = time.monotonic() + timeout_s
    for s in stages:
        try:
            s.join(max(0.0, deadline - time.monotonic()))
        except StageError:
            stuck.append(s.name)
    if stuck:
        raise StageError(f"stage(s) {', '.join(stuck)} did not stop within {timeout_s:.1f}s")
