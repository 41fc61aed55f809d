"""systemd's notify protocol, by hand: one datagram to $NOTIFY_SOCKET per message.

The protocol is a few lines of stdlib (sd_notify(3)), so it costs no dependency:
READY=1 once listening, WATCHDOG=1 while healthy, STATUS=... for `systemctl
status`, STOPPING=1 on the way out. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages to the socket systemd named, or nowhere when there is none."""

    def __init__(self, env: Mapping[str, str] = os.environ):
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path  # '@' names an abstract socket
        self.watchdog_s = _watchdog_s(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send `fields` ("READY=1", "STATUS=listening", ...) as one message; True if it went out."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as e:
            if not self._warned:  # systemd gone or the socket unreadable: say it once, keep running
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), e)
                self._warned = True
            return False


def _watchdog_s(env: Mapping[str, str]) -> float | None:
    """The watchdog interval systemd expects pings within, or None when WatchdogSec= is unset (sd_watchdog_enabled)."""
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 or None
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds; no watchdog pings", usec)
        return None
