"""The turn log: every turn, what was said, what was heard, in SQLite.

WAL with synchronous=FULL: a write that returned survives a power cut. One
process writes a log, and holds `NAME.lock` for its life (writelock.py); the
conductor is that process's only writer. Write order, so that a crash at any
moment leaves an honest log: the user turn the moment its transcript is
final; the assistant placeholder `pending` before the first token is asked
for; `streaming` checkpoints at clause boundaries; one final status; and at
start-up, leftovers of a crash become interrupted/crash (docs/turn-log.md). A
write never raises out to the conductor: while the file refuses writes the
turns wait in memory (turnwrites.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
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
    row_dict,
)
from sayso.pipeline.turnwrites import TurnWrites
from sayso.pipeline.writelock import WriterLock, check_folder

__all__ = ["COLUMNS", "REASONS", "SCHEMA_VERSION", "TurnLog", "TurnReader", "cut_in_note"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 2.0
"""How long a write waits for another program's lock before the turns wait in memory instead."""
RETRY_S = 1.0
MAX_PENDING = 2000
"""Turns kept in memory while the log cannot be written (a few hours of talk); beyond it the oldest go."""
HISTORY_SCAN_ROWS = 5000
"""Turns of one conversation read to place the history window; past these it slides every turn."""


def cut_answer(heard: str) -> list[tuple[str, str]]:
    """An interrupted answer in the LLM's history: the words the person heard of it, then the cut-in note."""
    heard = heard.strip()
    return [*([("assistant", heard)] if heard else []), ("system", cut_in_note(heard))]


def cut_in_note(heard: str) -> str:
    """The marker after an interrupted answer in the LLM's history: a system note, not part of the answer.

    A small model copies a marker inside the assistant's text ("France was
    founded in [the person cut in here]"), and its next answer comes out just
    as cut off; a separate note is not copied. The note does not quote what was
    heard, which the answer before it already is: quoted, the 0.5B model
    parroted the note or the cut words, and each quoted word was one more token
    to evaluate before the next answer could start.
    """
    if not heard:
        return "The person cut in before hearing any of that answer."
    return "The person cut in there."


class TurnLog(TurnReader):
    """The SQLite turn log, opened by the one process that writes it.

    Args:
        path: the log; created 0600 (its new folders 0700) if it does not exist.
        busy_timeout_s: how long a write waits for another program's lock before it counts as unwritable.
        retry_s: how often, while unwritable, the waiting turns are tried again.
        max_pending: turns kept in memory at most while unwritable.

    `writable`, `lost` and `watch` tell of the times the file refuses writes (TurnWrites).
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S, retry_s: float = RETRY_S,
                 max_pending: int = MAX_PENDING):
        self.path = Path(path)
        self.busy_timeout_s, self.retry_s, self.max_pending = busy_timeout_s, retry_s, max_pending
        self._lock = threading.RLock()
        check_folder(self.path)
        try:
            private_folders(self.path.parent)
        except OSError as e:
            raise SaysoError(f"cannot create the folder of the turn log {self.path}: {e.strerror or e}. Check the "
                             "path and its permissions ([log] db in the config).") from None
        self._writer = WriterLock.take(self.path)  # before anything is read: recovery runs only under it
        try:
            self._db = open_writable(self.path, busy_timeout_s)
            next_id = self._db.execute(
                "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'turns'), 0), "
                "COALESCE((SELECT max(id) FROM turns), 0)) + 1").fetchone()[0]
        except BaseException:
            self._writer.release()
            raise
        self._writes = TurnWrites(self._db, self.path, self._lock, next_id, busy_timeout_s, retry_s, max_pending)

    def close(self) -> None:
        """Stop retrying, write what waits if the log takes it, and let go of the log."""
        self._writes.close()
        with self._lock:
            self._db.close()
        self._writer.release()

    @property
    def writable(self) -> bool:
        """False from the first failed write until the turns kept in memory are written."""
        return self._writes.writable

    @property
    def lost(self) -> int:
        """Turns dropped because the log stayed unwritable past `max_pending`."""
        return self._writes.lost

    def watch(self, unwritable: Callable[[str], None], writable: Callable[[], None]) -> None:
        """Be told when an outage starts (with its reason) and when it ends."""
        self._writes.watch(unwritable, writable)

    # ---- writes (the conductor's): never raise for a log that cannot be written

    def add_user(self, conversation_id: str, text: str, started_at: float | None = None,
                 metrics: dict | None = None) -> int:
        """Write a final user transcript, `complete`, and return its turn id."""
        now = time.time()
        extra = {"metrics": json.dumps(metrics, sort_keys=True)} if metrics else {}
        return self._writes.insert(conversation_id=conversation_id, role="user", status="complete", text=text,
                                   heard_text=None, reply_to=None, started_at=started_at or now, ended_at=now, **extra)

    def begin_assistant(self, conversation_id: str, reply_to: int | None) -> int:
        """Insert the `pending` placeholder before any token is asked for."""
        return self._writes.insert(conversation_id=conversation_id, role="assistant", status="pending", text="",
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
        self._writes.change(turn, change)

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
        if not self._writes.change(turn, change):
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
        if not self._writes.change(turn, change):
            log.error("turn %s is not a user turn of this log; its text was not amended", turn)
            return False
        return True

    def recover(self) -> list[int]:
        """At start-up: every turn a crash left `pending`/`streaming` becomes interrupted/crash."""
        return self._writes.recover()

    # ---- reads: the file plus what waits in memory

    def _select(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            log.error("turn log: cannot read %s: %s; using the turns kept in memory", self.path, e)
            return []

    def rows(self, last: int | None = None, interrupted_only: bool = False) -> list[dict]:
        where = "WHERE status = 'interrupted'" if interrupted_only else ""
        limit = f"LIMIT {int(last)}" if last else ""
        found = self._select(f"SELECT * FROM turns {where} ORDER BY id DESC {limit}")
        rows = self._writes.overlay(found, lambda r: not interrupted_only or r["status"] == "interrupted")
        return [row_dict(r) for r in (rows[-last:] if last else rows)]

    def get(self, turn: int) -> dict | None:
        found = self._select("SELECT * FROM turns WHERE id = ?", (turn,))
        rows = self._writes.overlay(found, lambda r: r["id"] == turn)
        return row_dict(rows[0]) if rows else None

    def last_conversation(self) -> tuple[str, float] | None:
        """The newest conversation id and when its last turn ended (or started)."""
        rows = self._writes.overlay(self._select("SELECT * FROM turns ORDER BY id DESC LIMIT 1"))
        if not rows:
            return None
        r = rows[-1]
        return r["conversation_id"], r["ended_at"] or r["started_at"]

    def history(self, conversation_id: str, limit: int, step: int = 1, without: int | None = None
                ) -> list[tuple[str, str]]:
        """(role, content) for the LLM: an interrupted answer is what was heard, then a note that it was cut.

        An answer superseded (dropped because the person went on talking before
        a word of it reached them) is left out: it was never part of the conversation. So
        is speech the recogniser found no words in (an empty user turn), with the request to
        say it again. At most the last `limit` turns; past that the window's start moves `step`
        turns at a time, so the prompt's prefix (which llama.cpp keeps evaluated) stays put for
        most turns instead of changing with every one. The user turn `without` is left out before
        the window is placed: words that join it replace it, and the prompt they end must begin
        as it did before.
        """
        if limit <= 0:
            return []
        step = max(1, min(step, limit))

        def counts(r: dict) -> bool:
            return (r["conversation_id"] == conversation_id and r["status"] in ("complete", "interrupted")
                    and not (r["role"] == "assistant" and r["interrupt_reason"] == "superseded")
                    and r["id"] != without)
        found = self._select(
            "SELECT * FROM turns WHERE conversation_id = ? AND status IN ('complete', 'interrupted') "
            "AND NOT (role = 'assistant' AND interrupt_reason IS 'superseded') ORDER BY id DESC LIMIT ?",
            (conversation_id, HISTORY_SCAN_ROWS))
        rows = self._writes.overlay(found, counts)
        if len(rows) > limit:
            rows = rows[((len(rows) - limit) // step + 1) * step:]
        out = []
        not_caught = {r["id"] for r in rows if r["role"] == "user" and not r["text"]}
        for r in rows:
            if r["id"] in not_caught or r["reply_to"] in not_caught:
                continue  # speech with no words, and the request to say it again: nothing to answer from
            if r["role"] == "user":
                out.append(("user", r["text"]))
            elif r["status"] == "complete":
                out.append(("assistant", r["text"]))
            else:
                out.extend(cut_answer(r["heard_text"] or ""))
        while out and out[0][0] != "user":  # a window that starts mid-exchange
            out.pop(0)
        return out
