"""How the sayso process logs: each line names its thread, which is the stage (`listener`, `speaker`, ...).

Under systemd, `sayso run` writes to stdout with each line's syslog priority,
which journald reads off a service's output.
"""

from __future__ import annotations

import logging
import os
import sys


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority (`<3>`), which journald reads off a service's stdout."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def setup_logging(verbose: bool, service: bool) -> None:
    """`service` (`sayso run`): to stdout for journald, with priorities when under systemd; else to stderr."""
    level = logging.DEBUG if verbose else logging.INFO
    if not service:
        logging.basicConfig(level=level, format="%(levelname)s %(threadName)s %(name)s: %(message)s")
        return
    handler = logging.StreamHandler(sys.stdout)
    fmt = "%(threadName)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(JournalFormatter(fmt) if os.environ.get("JOURNAL_STREAM") else logging.Formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])
