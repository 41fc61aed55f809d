"""How tests wait: on a condition with a timeout, or for a stretch of time the scenario itself lasts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

POLL_S = 0.005


def wait_until(condition: Callable[[], object], timeout_s: float = 10.0) -> bool:
    """True once `condition()` holds, False after `timeout_s`: for state that no event announces.

    Prefer a real event (an observer's, a Condition's) where the code under test gives one.
    """
    deadline = time.monotonic() + timeout_s
    tick = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        tick.wait(POLL_S)
    return True


def lasts(seconds: float) -> None:
    """Let `seconds` pass because the scenario takes that long: a window running out, a stage hung for a while.

    Never a stand-in for "until something happened": wait on that instead.
    """
    time.sleep(seconds)
