"""The service watchdog: pings systemd only while the appliance is really working.

A ping that merely proves the process exists would keep a deaf appliance
running forever. So each round asks a health check (mic frames arriving, every
stage's loop going round); while it reports a problem no WATCHDOG=1 goes out,
and systemd restarts the service once WatchdogSec= passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sayso.pipeline.stage import Stage
from sayso.service.notify import Notifier

log = logging.getLogger(__name__)

Check = Callable[[], list[str]]


class Watchdog(Stage):
    """Every `interval_s`: run `check`; ping when it finds nothing, report changes to `on_change`.

    Args:
        check: returns the problems found now ("stage listener has been stuck for 61 s"), [] when healthy.
        on_change: called with the new problem list whenever it changes (the LED and STATUS= follow it).
        interval_s: systemd asks for a ping within WatchdogSec; half of it leaves room for a slow round.
    """

    name = "watchdog"

    def __init__(self, notifier: Notifier, check: Check, on_change: Callable[[list[str]], None],
                 interval_s: float):
        super().__init__()
        self.notifier, self.check, self.on_change, self.interval_s = notifier, check, on_change, interval_s
        self.problems: list[str] = []
        self.pings = 0

    def step(self) -> None:
        if self.stopping.wait(self.interval_s):
            return
        problems = self.check()
        if problems != self.problems:
            if problems:
                log.error("unhealthy, watchdog pings stop (systemd restarts sayso after WatchdogSec): %s",
                          "; ".join(problems))
            else:
                log.info("healthy again; watchdog pings resume")
            self.problems = problems
            self.on_change(problems)
        if not problems and self.notifier.send("WATCHDOG=1"):
            self.pings += 1

    @staticmethod
    def interval_for(notifier: Notifier, idle_s: float = 5.0) -> float:
        """Half the systemd watchdog interval; `idle_s` (still checking health for the LED) without one."""
        return min(idle_s, notifier.watchdog_s / 2) if notifier.watchdog_s else idle_s
