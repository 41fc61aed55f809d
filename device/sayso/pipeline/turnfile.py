"""The turn log's file: its schema, its migrations, opening it to write, and reading it read-only.

Shared by the writer (turnlog.py) and `sayso turns`. The file is checked before
anything is changed: another program's SQLite file, or a log from a newer sayso,
is refused as it is (no table added, no switch to WAL). A reader never changes
a file nor makes one: not even the -wal and -shm that mode=ro would add.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from sayso.errors import SaysoError
from sayso.pipeline.writelock import holder

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
COLUMNS = ("id", "conversation_id", "role", "status", "text", "heard_text", "interrupt_reason",
           "interrupt_kind", "reply_to", "started_at", "ended_at", "metrics")
REASONS = ("user_speaking", "button", "timeout", "shutdown", "error", "crash", "superseded")
KINDS = ("full", "speech")
OPEN = ("pending", "streaming")



def schema(reasons: tuple[str, ...], table: str = "turns") -> list[str]:
    listed = ", ".join(f"'{r}'" for r in reasons)
    return [f"""CREATE TABLE {table} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'streaming', 'complete', 'interrupted')),
    text TEXT NOT NULL DEFAULT '',
    heard_text TEXT,
    interrupt_reason TEXT CHECK (interrupt_reason IN ({listed})),
    interrupt_kind TEXT CHECK (interrupt_kind IN ('full', 'speech')),
    reply_to INTEGER REFERENCES turns (id),
    started_at REAL NOT NULL,
    ended_at REAL,
    metrics TEXT NOT NULL DEFAULT '{{}}'
)""", "CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation_id, id)",
            "CREATE INDEX IF NOT EXISTS turns_open ON turns (status) WHERE status IN ('pending', 'streaming')"]


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")  # a damaged row is shown with U+FFFD, not refused


def _damaged(path: Path, e: Exception) -> SaysoError:
    return SaysoError(f"the turn log {path} is damaged ({e}); stop sayso, move it aside (a new log starts) "
                      f"and try `sqlite3 {path.name} .recover` on the copy for its turns.")


class TurnReader:
    """A turn log opened read-only: `sayso turns` while the appliance runs. It never changes the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        if self.path.is_dir():
            raise SaysoError(f"{self.path} is a directory; give the turn log file (turns.db) inside it.")
        if not self.path.exists():
            raise SaysoError(f"no turn log at {self.path}; pass --db PATH or set [log] db in the config.")
        try:
            self._db = self._open_readonly()
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            columns = tuple(r[1] for r in self._db.execute("PRAGMA table_info(turns)"))
        except sqlite3.DatabaseError as e:
            raise unreadable(self.path, e) from None
        if version > SCHEMA_VERSION:
            raise SaysoError(f"{self.path} was written by a newer sayso (schema {version}); upgrade sayso.")
        if columns != COLUMNS:
            raise SaysoError(f"{self.path} is not a sayso turn log (it has no turns table of sayso's); "
                             "pass --db with the log sayso wrote ([log] db in the config).")

    def _open_readonly(self) -> sqlite3.Connection:
        """mode=ro; where that would need files a reader may not make (-shm), immutable while no writer runs."""
        uri = f"file:{quote(str(self.path.resolve()))}"
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        wal = Path(f"{self.path}-wal").exists() and Path(f"{self.path}-shm").exists()
        if not wal and holder(self.path) is None:
            # a WAL log with no -shm: mode=ro would create -wal and -shm beside it (or fail without write
            # access); with no writer running, its main file holds every turn and reading it as is is safe
            db.close()
            db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.text_factory = decode
        return db

    def close(self) -> None:
        self._db.close()

    def _select(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise _damaged(self.path, e) from None

    def rows(self, last: int | None = None, interrupted_only: bool = False) -> list[dict]:
        where = "WHERE status = 'interrupted'" if interrupted_only else ""
        limit = f"LIMIT {int(last)}" if last else ""
        found = self._select(f"SELECT * FROM turns {where} ORDER BY id DESC {limit}")
        return [row_dict(r) for r in reversed(found)]

    def get(self, turn: int) -> dict | None:
        found = self._select("SELECT * FROM turns WHERE id = ?", (turn,))
        return row_dict(found[0]) if found else None


def unreadable(path: Path, e: Exception) -> SaysoError:
    if "not a database" in str(e) or "malformed" in str(e):
        return _damaged(path, e)
    return SaysoError(f"cannot read the turn log {path}: {e}. Check that the user running sayso may read it "
                      "and its folder.")


def open_writable(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """The log for its writer: made 0600 if new, refused as it is if not sayso's or newer, WAL, migrated."""
    fix = "Check the path and its permissions ([log] db in the config)"
    try:
        _create_private(path)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    except OSError as e:
        raise SaysoError(f"cannot create the turn log {path}: {e.strerror or e}. {fix}.") from None
    except sqlite3.Error as e:
        raise SaysoError(f"cannot open the turn log {path}: {e}. {fix}.") from None
    try:
        db.row_factory = sqlite3.Row
        db.text_factory = decode
        version = db.execute("PRAGMA user_version").fetchone()[0]
        # checked before WAL is switched on: a file that is not ours, or is newer, is left as it was
        if version > SCHEMA_VERSION:
            raise SaysoError(f"{path} was written by a newer sayso (schema {version}); upgrade sayso.")
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%'")]
        if version == 0 and tables:
            raise SaysoError(f"{path} is another program's SQLite file ({', '.join(tables[:3])}), not a "
                             "sayso turn log; set [log] db in the config to a new file.")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        migrate(db, version)
        db.execute("PRAGMA foreign_keys=ON")
        return db
    except sqlite3.DatabaseError as e:
        db.close()
        raise unreadable(path, e) from None
    except BaseException:
        db.close()
        raise


def row_dict(r) -> dict:
    d = {k: r[k] for k in COLUMNS}
    try:
        d["metrics"] = json.loads(d["metrics"] or "{}")
    except (TypeError, ValueError):
        d["metrics"] = {"unreadable": str(d["metrics"])}  # a damaged row is shown, not a traceback
    return d


def private_folders(folder: Path) -> None:
    """Every folder made for the log is 0700, whatever the umask: the log holds what people said."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(mode=0o700)
        os.chmod(made, 0o700)


def _create_private(path: Path) -> None:
    """The log is created 0600, whatever the umask (SQLite gives -wal and -shm the log's mode)."""
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def migrate(db: sqlite3.Connection, version: int) -> None:
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")  # one statement at a time: executescript would commit on its own
    try:
        if version == 0:
            for statement in schema(REASONS):
                db.execute(statement)
        elif version == 1:
            # v2 allows reason 'superseded'; SQLite cannot alter a CHECK, so the table is rebuilt with
            # every row and id (foreign keys are off on this connection until the migration is done)
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'turns'").fetchone()
            db.execute(schema(REASONS, "turns_v2")[0])
            db.execute(f"INSERT INTO turns_v2 ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM turns")
            db.execute("DROP TABLE turns")
            db.execute("ALTER TABLE turns_v2 RENAME TO turns")
            for statement in schema(REASONS)[1:]:
                db.execute(statement)
            if seq is not None:
                db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'turns'", (seq[0],))
            if problems := db.execute("PRAGMA foreign_key_check").fetchall():
                raise sqlite3.IntegrityError(f"reply_to points at missing turns: {[tuple(p) for p in problems]}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise


def recover_open(db: sqlite3.Connection, keep: Sequence[int] = ()) -> None:
    keep_out = f"AND id NOT IN ({', '.join(map(str, keep))})" if keep else ""
    db.execute("UPDATE turns SET status = 'interrupted', interrupt_reason = 'crash', interrupt_kind = 'full', "
               "heard_text = COALESCE(heard_text, ''), ended_at = COALESCE(ended_at, ?) "
               f"WHERE status IN ('pending', 'streaming') {keep_out}", (time.time(),))


def rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:  # SQLITE_FULL and some I/O errors have rolled it back already
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error as e:
            log.debug("rollback: %s", e)
