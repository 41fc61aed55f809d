"""The turn log's writes: into the file at once while it takes them, kept in memory while it does not.

A write never raises out to the conductor: when the file refuses one (a full
disk, a lock held by another program, an I/O error) the turns wait in memory,
turn ids are handed out anyway so the appliance keeps answering, and they are
written in order once the log takes writes again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sayso.pipeline.turnfile import COLUMNS, OPEN, recover_open, rollback

log = logging.getLogger(__name__)

OUTAGE_BUSY_TIMEOUT_S = 0.05
"""The wait while the log is already known unwritable: the conductor must not stall on each retry."""


@dataclass
class _Image:
    """A row as this process last wrote it; `saved` is the version the file has."""

    row: dict
    version: int = 1
    saved: int = 0

    @property
    def dirty(self) -> bool:
        return self.version != self.saved


class TurnWrites:
    """The rows this process wrote, as it last wrote them, on their way into the log's file.

    Args:
        db: the log's writable connection, used only under `lock`.
        path: the log, for messages.
        lock: the log's lock, shared with its reads.
        next_id: the first turn id to hand out.
        busy_timeout_s, retry_s, max_pending: as the TurnLog's.

    `writable` is False from the first failed write until the waiting turns are
    written. Each `watch`er's `unwritable(reason)` is called once per outage
    with a one-line reason, its `writable()` once when it ends; both on the
    thread that noticed (the conductor's voice, STATUS=, a test).
    """

    def __init__(self, db: sqlite3.Connection, path: Path, lock: threading.RLock, next_id: int,
                 busy_timeout_s: float, retry_s: float, max_pending: int):
        self._db, self.path, self._lock, self._next_id = db, path, lock, next_id
        self.busy_timeout_s, self.retry_s, self.max_pending = busy_timeout_s, retry_s, max_pending
        self.writable = True
        self._watchers: list[tuple[Callable[[str], None], Callable[[], None]]] = []
        self.lost = 0
        """Turns dropped because the log stayed unwritable past `max_pending`."""
        self._images: dict[int, _Image] = {}
        self._recover_due = False
        self._closing = threading.Event()
        self._retrier: threading.Thread | None = None

    def close(self) -> None:
        """Stop retrying and write what waits if the log takes it; what it does not is lost, and said so."""
        self._closing.set()
        if self._retrier is not None:
            self._retrier.join(self.busy_timeout_s + 1)
        with self._lock:
            why = self._flush()
            waiting = sum(im.dirty for im in self._images.values())
            if why is not None and waiting:
                log.error("%d turn(s) could not be written to %s (%s) and are lost", waiting, self.path, why)

    def recover(self) -> list[int]:
        """At start-up: every turn a crash left `pending`/`streaming` becomes interrupted/crash."""
        with self._lock:
            try:
                rows = [r[0] for r in self._db.execute(
                    "SELECT id FROM turns WHERE status IN ('pending', 'streaming') ORDER BY id")]
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    recover_open(self._db, keep=list(self._images))
                    self._db.execute("COMMIT")
                except BaseException:
                    rollback(self._db)
                    raise
            except sqlite3.Error as e:
                self._recover_due = True  # done before the first turn that gets written
                notice = self._outage(_why(self.path, e))
                rows = []
            else:
                notice = None
        self._announce(notice)
        if rows:
            log.warning("recovered %d turn(s) cut by a crash: %s", len(rows), rows)
        return rows

    def insert(self, **values) -> int:
        """A new row; its turn id, handed out whether or not the file takes it now."""
        with self._lock:
            turn = self._next_id
            self._next_id += 1
            self._images[turn] = _Image({"id": turn, "interrupt_reason": None, "interrupt_kind": None,
                                         "metrics": "{}", **values}, saved=0)
            notice = self._changed()
        self._announce(notice)
        return turn

    def change(self, turn: int, change: Callable[[dict], bool]) -> bool:
        """Apply `change` to the row as this process last wrote it (or as the file has it); False if it refuses."""
        with self._lock:
            image = self._images.get(turn) or self._load(turn)
            if image is None or not change(image.row):
                return False
            image.version += 1
            notice = self._changed()
        self._announce(notice)
        return True

    def _load(self, turn: int) -> _Image | None:
        try:
            found = self._db.execute("SELECT * FROM turns WHERE id = ?", (turn,)).fetchone()
        except sqlite3.Error as e:
            log.error("turn log: cannot read turn %s: %s", turn, e)
            return None
        if found is None:
            return None
        image = self._images[turn] = _Image({k: found[k] for k in COLUMNS}, version=1, saved=1)
        return image

    def _changed(self) -> str | None:
        """After an image changed (under the lock): write it now, or leave it to the retrier in an outage."""
        if not self.writable:
            self._bound()
            return None
        why = self._flush()
        return None if why is None else self._outage(why)

    # ---- the outage

    def _outage(self, why: str) -> str | None:
        """Under the lock: the log just failed; returns the line to announce when this starts an outage."""
        if not self.writable:
            return None
        self.writable = False
        self._busy(OUTAGE_BUSY_TIMEOUT_S)
        log.error("cannot write the turn log: %s; turns are kept in memory and written when it can be", why)
        self._retrier = threading.Thread(target=self._retry, name="turnlog-retry", daemon=True)
        self._retrier.start()
        return why

    def watch(self, unwritable: Callable[[str], None], writable: Callable[[], None]) -> None:
        """Be told when an outage starts (with its reason) and when it ends."""
        self._watchers.append((unwritable, writable))

    def _announce(self, notice: str | None) -> None:
        if notice is not None:
            for unwritable, _ in list(self._watchers):
                _call(unwritable, notice)

    def _retry(self) -> None:
        """The retrier's loop: the waiting turns, oldest first, every `retry_s` until they are written."""
        while not self._closing.wait(self.retry_s):
            with self._lock:
                waiting = sum(im.dirty for im in self._images.values())
                if self._flush() is not None:
                    continue
                self.writable = True
                self._busy(self.busy_timeout_s)
            log.warning("the turn log takes writes again: wrote the %d turn change(s) kept in memory", waiting)
            for _, writable in list(self._watchers):
                _call(writable)
            return

    def _busy(self, seconds: float) -> None:
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        except sqlite3.Error as e:
            log.debug("busy_timeout not set: %s", e)

    def _bound(self) -> None:
        waiting = sorted(t for t, im in self._images.items() if im.dirty and im.row["status"] not in OPEN)
        drop = waiting[:max(0, len(waiting) - self.max_pending)]
        for t in drop:
            del self._images[t]
        if drop:
            self.lost += len(drop)
            log.error("the turn log has been unwritable too long: dropped the %d oldest turn(s) kept in memory "
                      "(%d in all)", len(drop), self.lost)

    def _flush(self) -> str | None:
        """Under the lock: write every changed row, oldest first, in one transaction; None or why not."""
        dirty = sorted((t, im.version) for t, im in self._images.items() if im.dirty)
        if not dirty and not self._recover_due:
            return None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._recover_due:
                    recover_open(self._db, keep=list(self._images))
                for turn, _ in dirty:
                    self._save(self._images[turn])
                self._db.execute("COMMIT")
            except BaseException:
                rollback(self._db)
                raise
        except sqlite3.Error as e:
            return _why(self.path, e)
        self._recover_due = False
        for turn, version in dirty:
            image = self._images[turn]
            image.saved = version
        self._forget()
        return None

    def _save(self, image: _Image) -> None:
        """One row, in its own savepoint: a row the schema refuses (a bug) is logged and dropped, not retried."""
        row = image.row
        self._db.execute("SAVEPOINT row")
        try:
            self._db.execute(
                f"INSERT INTO turns ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, text = excluded.text, "
                "heard_text = excluded.heard_text, interrupt_reason = excluded.interrupt_reason, "
                "interrupt_kind = excluded.interrupt_kind, ended_at = excluded.ended_at, metrics = excluded.metrics",
                tuple(row[c] for c in COLUMNS))
        except sqlite3.IntegrityError as e:
            self._db.execute("ROLLBACK TO row")
            log.error("turn log refused turn %s (%s); it is dropped: %s", row["id"], e, row)
            image.version = image.saved = -1  # clean, so it is not retried
        self._db.execute("RELEASE row")

    def _forget(self) -> None:
        """Keep only rows still open, still waiting, or among the last few (amend_user, history)."""
        recent = sorted(self._images)[-4:]
        for t in [t for t, im in self._images.items()
                  if not im.dirty and im.row["status"] not in OPEN and t not in recent]:
            del self._images[t]

    def overlay(self, found, keep: Callable[[dict], bool] = lambda r: True) -> list[dict]:
        """Rows read from the file, newer ones of this process put over them, by id."""
        rows = {r["id"]: {k: r[k] for k in COLUMNS} for r in found}
        with self._lock:
            for t, im in self._images.items():
                if im.dirty or t in rows:
                    rows[t] = dict(im.row)
        return [rows[t] for t in sorted(rows) if keep(rows[t])]


def _why(path: Path, e: sqlite3.Error) -> str:
    text = str(e)
    if "full" in text:
        return f"the disk is full ({path}); free some space"
    if "locked" in text or "busy" in text:
        return f"another program holds a lock on {path}"
    return f"{path}: {text}"


def _call(hook: Callable, *args) -> None:
    try:
        hook(*args)
    except Exception:  # a hook (the voice, STATUS=) must not break the log
        log.exception("turn log hook %r failed", hook)
