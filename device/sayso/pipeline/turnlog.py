"""The turn log: every turn, what was said, what was heard, in SQLite.

WAL with synchronous=FULL: a write that returned survives a power cut. One
process writes a log, and holds `NAME.lock` for its life (writelock.py); the
conductor is that process's only writer. Write order, so that a crash at any
moment leaves an honest log: the user turn the moment its transcript is
final; the assistant placeholder `pending` before the first token is asked
for; `streaming` checkpoints at clause boundaries; one final status; and at
start-up, leftovers of a crash become interrupted/crash (docs/turn-log.md).

A write never raises out to the conductor: when the log cannot be written (a
full disk, a lock held by another program, an I/O error) the turns wait in
memory, turn ids are handed out anyway so the appliance keeps answering, and
they are written in order once the log takes writes again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sayso.errors import SaysoError
from sayso.pipeline.turnfile import (
    COLUMNS,
    KINDS,
    OPEN,
    REASONS,
    SCHEMA_VERSION,
    TurnReader,
    open_writable,
    private_folders,
    recover_open,
    rollback,
    row_dict,
)
from sayso.pipeline.writelock import WriterLock, check_folder

__all__ = ["COLUMNS", "REASONS", "SCHEMA_VERSION", "TurnLog", "TurnReader", "cut_in_note"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 2.0
"""How long a write waits for another program's lock before the turns wait in memory instead."""
OUTAGE_BUSY_TIMEOUT_S = 0.05
"""The wait while the log is already known unwritable: the conductor must not stall on each retry."""
RETRY_S = 1.0
MAX_PENDING = 2000
"""Turns kept in memory while the log cannot be written (a few hours of talk); beyond it the oldest go."""
HISTORY_SCAN_ROWS = 5000
"""Turns of one conversation read to place the history window; past these it slides every turn."""


def cut_in_note(heard: str) -> str:
    """The marker after an interrupted answer in the LLM's history: a system note, not part of the answer.

    A small model copies a marker inside the assistant's text ("France was
    founded in [the person cut in here]"), and its next answer comes out just
    as cut off; a separate note is not copied.
    """
    if not heard:
        return "The person cut in before hearing any of that answer."
    return f'The person cut in there; they heard only: "{heard}".'


@dataclass
class _Image:
    """A row as this process last wrote it; `saved` is the version the file has."""

    row: dict
    version: int = 1
    saved: int = 0

    @property
    def dirty(self) -> bool:
        return self.version != self.saved


class TurnLog(TurnReader):
    """The SQLite turn log, opened by the one process that writes it.

    Args:
        path: the log; created 0600 (its new folders 0700) if it does not exist.
        busy_timeout_s: how long a write waits for another program's lock before it counts as unwritable.
        retry_s: how often, while unwritable, the waiting turns are tried again.
        max_pending: turns kept in memory at most while unwritable.

    `writable` is False from the first failed write until the waiting turns are
    written. Each `watch`er's `unwritable(reason)` is called once per outage
    with a one-line reason, its `writable()` once when it ends; both on the
    thread that noticed (the conductor's voice, STATUS=, a test).
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S, retry_s: float = RETRY_S,
                 max_pending: int = MAX_PENDING):
        self.path = Path(path)
        self.busy_timeout_s, self.retry_s, self.max_pending = busy_timeout_s, retry_s, max_pending
        self.writable = True
        self._watchers: list[tuple[Callable[[str], None], Callable[[], None]]] = []
        self.lost = 0
        """Turns dropped because the log stayed unwritable past `max_pending`."""
        self._lock = threading.RLock()
        self._images: dict[int, _Image] = {}
        self._recover_due = False
        self._closing = threading.Event()
        self._retrier: threading.Thread | None = None
        check_folder(self.path)
        try:
            private_folders(self.path.parent)
        except OSError as e:
            raise SaysoError(f"cannot create the folder of the turn log {self.path}: {e.strerror or e}. Check the "
                             "path and its permissions ([log] db in the config).") from None
        self._writer = WriterLock.take(self.path)  # before anything is read: recovery runs only under it
        try:
            self._db = open_writable(self.path, self.busy_timeout_s)
            self._next_id = self._db.execute(
                "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'turns'), 0), "
                "COALESCE((SELECT max(id) FROM turns), 0)) + 1").fetchone()[0]
        except BaseException:
            self._writer.release()
            raise

    def close(self) -> None:
        """Stop retrying, write what waits if the log takes it, and let go of the log."""
        self._closing.set()
        if self._retrier is not None:
            self._retrier.join(self.busy_timeout_s + 1)
        with self._lock:
            why = self._flush()
            waiting = sum(im.dirty for im in self._images.values())
            if why is not None and waiting:
                log.error("%d turn(s) could not be written to %s (%s) and are lost", waiting, self.path, why)
            self._db.close()
        self._writer.release()

    # ---- writes (the conductor's): never raise for a log that cannot be written

    def add_user(self, conversation_id: str, text: str, started_at: float | None = None) -> int:
        """Write a final user transcript, `complete`, and return its turn id."""
        now = time.time()
        return self._insert(conversation_id=conversation_id, role="user", status="complete", text=text,
                            heard_text=None, reply_to=None, started_at=started_at or now, ended_at=now)

    def begin_assistant(self, conversation_id: str, reply_to: int | None) -> int:
        """Insert the `pending` placeholder before any token is asked for."""
        return self._insert(conversation_id=conversation_id, role="assistant", status="pending", text="",
                            heard_text="", reply_to=reply_to, started_at=time.time(), ended_at=None)

    def checkpoint(self, turn: int, text: str | None = None, heard_text: str | None = None) -> None:
        """Save the answer so far (and what was heard so far); the turn becomes `streaming`."""
        def change(row: dict) -> bool:
            if row["status"] not in OPEN:
                return False
            row["status"] = "streaming"
            row["text"] = row["text"] if text is None else text
            row["heard_text"] = row["heard_text"] if heard_text is None else heard_text
            return True
        self._change(turn, change)

    def finish(self, turn: int, *, text: str, heard_text: str, status: str, reason: str | None = None,
               kind: str | None = None, metrics: dict | None = None) -> bool:
        """Give an assistant turn its one final status; False (and a log line) if it already had one."""
        if status not in ("complete", "interrupted") or reason not in (None, *REASONS) or kind not in (None, *KINDS):
            raise ValueError(f"turn {turn}: no such final status {status!r}, reason {reason!r}, kind {kind!r}")

        def change(row: dict) -> bool:
            if row["status"] not in OPEN:
                return False
            row.update(status=status, text=text, heard_text=heard_text, interrupt_reason=reason,
                       interrupt_kind=kind, ended_at=time.time(), metrics=json.dumps(metrics or {}, sort_keys=True))
            return True
        if not self._change(turn, change):
            log.error("turn %s already had its final status; %s ignored", turn, status)
            return False
        return True

    def amend_user(self, turn: int, text: str) -> bool:
        """Replace a user turn's text: the person's next words joined the same turn. False if no such turn."""
        def change(row: dict) -> bool:
            if row["role"] != "user":
                return False
            row["text"] = text
            return True
        if not self._change(turn, change):
            log.error("turn %s is not a user turn of this log; its text was not amended", turn)
            return False
        return True

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

    def _insert(self, **values) -> int:
        with self._lock:
            turn = self._next_id
            self._next_id += 1
            self._images[turn] = _Image({"id": turn, "interrupt_reason": None, "interrupt_kind": None,
                                         "metrics": "{}", **values}, saved=0)
            notice = self._changed()
        self._announce(notice)
        return turn

    def _change(self, turn: int, change: Callable[[dict], bool]) -> bool:
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

    # ---- reads: the file plus what waits in memory

    def _select(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            log.error("turn log: cannot read %s: %s; using the turns kept in memory", self.path, e)
            return []

    def _overlay(self, found, keep: Callable[[dict], bool] = lambda r: True) -> list[dict]:
        """Rows read from the file, newer ones of this process put over them, by id."""
        rows = {r["id"]: {k: r[k] for k in COLUMNS} for r in found}
        with self._lock:
            for t, im in self._images.items():
                if im.dirty or t in rows:
                    rows[t] = dict(im.row)
        return [rows[t] for t in sorted(rows) if keep(rows[t])]

    def rows(self, last: int | None = None, interrupted_only: bool = False) -> list[dict]:
        where = "WHERE status = 'interrupted'" if interrupted_only else ""
        limit = f"LIMIT {int(last)}" if last else ""
        found = self._select(f"SELECT * FROM turns {where} ORDER BY id DESC {limit}")
        rows = self._overlay(found, lambda r: not interrupted_only or r["status"] == "interrupted")
        return [row_dict(r) for r in (rows[-last:] if last else rows)]

    def get(self, turn: int) -> dict | None:
        rows = self._overlay(self._select("SELECT * FROM turns WHERE id = ?", (turn,)), lambda r: r["id"] == turn)
        return row_dict(rows[0]) if rows else None

    def last_conversation(self) -> tuple[str, float] | None:
        """The newest conversation id and when its last turn ended (or started)."""
        rows = self._overlay(self._select("SELECT * FROM turns ORDER BY id DESC LIMIT 1"))
        if not rows:
            return None
        r = rows[-1]
        return r["conversation_id"], r["ended_at"] or r["started_at"]

    def history(self, conversation_id: str, limit: int, step: int = 1) -> list[tuple[str, str]]:
        """(role, content) for the LLM: an interrupted answer is what was heard, then a note that it was cut.

        An answer superseded (dropped before a word of it was heard, the person
        went on talking) is left out: it was never part of the conversation.
        At most the last `limit` turns; past that the window's start moves `step` turns at a
        time, so the prompt's prefix (which llama.cpp keeps evaluated) stays put for most turns
        instead of changing with every one.
        """
        if limit <= 0:
            return []
        step = max(1, min(step, limit))

        def counts(r: dict) -> bool:
            return (r["conversation_id"] == conversation_id and r["status"] in ("complete", "interrupted")
                    and not (r["role"] == "assistant" and r["interrupt_reason"] == "superseded"))
        found = self._select(
            "SELECT * FROM turns WHERE conversation_id = ? AND status IN ('complete', 'interrupted') "
            "AND NOT (role = 'assistant' AND interrupt_reason IS 'superseded') ORDER BY id DESC LIMIT ?",
            (conversation_id, HISTORY_SCAN_ROWS))
        rows = self._overlay(found, counts)
        if len(rows) > limit:
            rows = rows[((len(rows) - limit) // step + 1) * step:]
        out = []
        for r in rows:
            if r["role"] == "user":
                out.append(("user", r["text"]))
            elif r["status"] == "complete":
                out.append(("assistant", r["text"]))
            else:
                heard = (r["heard_text"] or "").strip()
                if heard:
                    out.append(("assistant", heard))
                out.append(("system", cut_in_note(heard)))
        while out and out[0][0] != "user":  # a window that starts mid-exchange
            out.pop(0)
        return out


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
