"""The turn log: every turn, what was said, what was heard, in SQLite.

WAL with synchronous=FULL: a write that returned survives a power cut. The
conductor is the only writer. Write order (the seeds' lesson): the user turn the
moment its transcript is final; the assistant placeholder `pending` before the
first token is asked for; `streaming` checkpoints at clause boundaries; one
final status; and at start-up, leftovers of a crash become interrupted/crash.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sayso.errors import DiskFull, SaysoError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
COLUMNS = ("id", "conversation_id", "role", "status", "text", "heard_text", "interrupt_reason",
           "interrupt_kind", "reply_to", "started_at", "ended_at", "metrics")
def cut_in_note(heard: str) -> str:
    """The marker after an interrupted answer in the LLM's history: a system note, not part of the answer.

    Measured with the default 0.5B model: a marker inside the assistant's text
    ("France was founded in [the person cut in here]") is copied, and the next
    answer comes out just as cut off; a separate note is not copied.
    """
    if not heard:
        return "The person cut in before hearing any of that answer."
    return f'The person cut in there; they heard only: "{heard}".'


_SCHEMA = """
CREATE TABLE turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'streaming', 'complete', 'interrupted')),
    text TEXT NOT NULL DEFAULT '',
    heard_text TEXT,
    interrupt_reason TEXT CHECK (interrupt_reason IN
        ('user_speaking', 'button', 'timeout', 'shutdown', 'error', 'crash')),
    interrupt_kind TEXT CHECK (interrupt_kind IN ('full', 'speech')),
    reply_to INTEGER REFERENCES turns (id),
    started_at REAL NOT NULL,
    ended_at REAL,
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX turns_by_conversation ON turns (conversation_id, id);
CREATE INDEX turns_open ON turns (status) WHERE status IN ('pending', 'streaming');
"""


class TurnLog:
    """The SQLite turn log. Open it once, in the process that writes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the conductor thread writes; the connection is made here, before it starts
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise SaysoError(f"cannot open the turn log {self.path}: {e}. Check the path and its permissions "
                             "([log] db in the config); move a damaged file aside to start a new log.") from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SaysoError(f"{self.path} was written by a newer sayso (schema {version}); upgrade sayso.")
        if version == 0:
            with self._tx():  # executescript would commit on its own; one statement at a time instead
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._db.in_transaction:  # SQLITE_FULL has already rolled it back
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if "full" in str(e):
                raise DiskFull(28, f"the turn log {self.path} cannot grow: the disk is full. Free some space; "
                                   "turns already logged are safe.") from None
            raise

    def close(self) -> None:
        self._db.close()

    # ---- writes (the conductor's)

    def add_user(self, conversation_id: str, text: str, started_at: float | None = None) -> int:
        """Write a final user transcript, `complete`, and return its turn id."""
        now = time.time()
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO turns (conversation_id, role, status, text, started_at, ended_at) "
                "VALUES (?, 'user', 'complete', ?, ?, ?)", (conversation_id, text, started_at or now, now))
        return cur.lastrowid

    def begin_assistant(self, conversation_id: str, reply_to: int) -> int:
        """Insert the `pending` placeholder before any token is asked for."""
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO turns (conversation_id, role, status, text, heard_text, reply_to, started_at) "
                "VALUES (?, 'assistant', 'pending', '', '', ?, ?)", (conversation_id, reply_to, time.time()))
        return cur.lastrowid

    def checkpoint(self, turn: int, text: str | None = None, heard_text: str | None = None) -> None:
        """Save the answer so far (and what was heard so far); the turn becomes `streaming`."""
        with self._tx():
            self._db.execute(
                "UPDATE turns SET status = 'streaming', text = COALESCE(?, text), "
                "heard_text = COALESCE(?, heard_text) WHERE id = ? AND status IN ('pending', 'streaming')",
                (text, heard_text, turn))

    def finish(self, turn: int, *, text: str, heard_text: str, status: str, reason: str | None = None,
               kind: str | None = None, metrics: dict | None = None) -> bool:
        """Give an assistant turn its one final status; False (and a log line) if it already had one."""
        with self._tx():
            cur = self._db.execute(
                "UPDATE turns SET status = ?, text = ?, heard_text = ?, interrupt_reason = ?, interrupt_kind = ?, "
                "ended_at = ?, metrics = ? WHERE id = ? AND status IN ('pending', 'streaming')",
                (status, text, heard_text, reason, kind, time.time(), json.dumps(metrics or {}, sort_keys=True),
                 turn))
        if cur.rowcount != 1:
            log.error("turn %s already had its final status; %s ignored", turn, status)
            return False
        return True

    def recover(self) -> list[int]:
        """At start-up: every turn a crash left `pending`/`streaming` becomes interrupted/crash."""
        with self._tx():
            rows = [r[0] for r in self._db.execute(
                "SELECT id FROM turns WHERE status IN ('pending', 'streaming') ORDER BY id")]
            self._db.execute(
                "UPDATE turns SET status = 'interrupted', interrupt_reason = 'crash', interrupt_kind = 'full', "
                "heard_text = COALESCE(heard_text, ''), ended_at = COALESCE(ended_at, ?) "
                "WHERE status IN ('pending', 'streaming')", (time.time(),))
        if rows:
            log.warning("recovered %d turn(s) cut by a crash: %s", len(rows), rows)
        return rows

    # ---- reads

    def rows(self, last: int | None = None, interrupted_only: bool = False) -> list[dict]:
        where = "WHERE status = 'interrupted'" if interrupted_only else ""
        limit = f"LIMIT {int(last)}" if last else ""
        found = self._db.execute(f"SELECT * FROM turns {where} ORDER BY id DESC {limit}").fetchall()
        return [_row(r) for r in reversed(found)]

    def get(self, turn: int) -> dict | None:
        r = self._db.execute("SELECT * FROM turns WHERE id = ?", (turn,)).fetchone()
        return _row(r) if r else None

    def last_conversation(self) -> tuple[str, float] | None:
        """The newest conversation id and when its last turn ended (or started)."""
        r = self._db.execute("SELECT conversation_id, COALESCE(ended_at, started_at) FROM turns "
                             "ORDER BY id DESC LIMIT 1").fetchone()
        return (r[0], r[1]) if r else None

    def history(self, conversation_id: str, limit: int) -> list[tuple[str, str]]:
        """(role, content) for the LLM: an interrupted answer is what was heard, then a note that it was cut."""
        if limit <= 0:
            return []
        found = self._db.execute(
            "SELECT * FROM turns WHERE conversation_id = ? AND status IN ('complete', 'interrupted') "
            "ORDER BY id DESC LIMIT ?", (conversation_id, limit)).fetchall()
        out = []
        for r in reversed(found):
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


def _row(r: sqlite3.Row) -> dict:
    d = {k: r[k] for k in COLUMNS}
    d["metrics"] = json.loads(d["metrics"] or "{}")
    return d
