"""One writer per turn log: an flock on `NAME.lock` beside it, held for the writing process's life.

A second `sayso run` or `simulate` on the same log would run start-up recovery
and close the live process's answer as a crash. The kernel drops an flock when
its holder dies, kill -9 included, so a stale lock file never blocks anyone.
Within one process the lock is shared (tests open a log again to read it).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from sayso.errors import LogInUse, SaysoError


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def holder(db: Path) -> int | None:
    """The pid of the process that writes `db`, or None when none does. Creates nothing."""
    try:
        fd = os.open(lock_path(db), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid(fd) or -1
    finally:
        os.close(fd)
    return None


def check_folder(db: Path) -> None:
    """A log under a regular file can never be made: say so plainly, not as an OS error."""
    if db.parent.exists() and not db.parent.is_dir():
        raise SaysoError(f"the turn log {db} cannot be made: {db.parent} is a file, not a folder; "
                         "set [log] db in the config (or --db) to a path in a folder.")


def check_free(db: Path) -> None:
    """Fail at once, before any model loads, when another process writes `db` or it cannot be made."""
    check_folder(db)
    pid = holder(db)
    if pid is not None and pid != os.getpid():  # this process shares its own lock (WriterLock.take)
        raise LogInUse(_in_use(db, pid if pid > 0 else None))


def _in_use(db: Path, pid: int | None) -> str:
    who = f"pid {pid}" if pid else "another process"
    return (f"the turn log {db} is in use by another sayso ({who}); stop it first (`sudo systemctl stop sayso`), "
            "or give this one its own log (--db or [log] db).")


def _pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


PROBE_S = 0.2
"""How long a writer tries for the lock: `holder()` (sayso turns, doctor) holds it shared for a moment."""


def _lock_within(fd: int, seconds: float) -> bool:
    give_up = threading.Event()
    for _ in range(max(1, int(seconds / 0.02))):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            give_up.wait(0.02)
    return False


class WriterLock:
    """The exclusive lock of one turn log; `take` it, `release` it once per take."""

    _held: dict[str, list] = {}
    """Resolved lock path -> [fd, takes] for the locks this process holds."""
    _guard = threading.Lock()

    def __init__(self, key: str):
        self.key = key
        self._released = False

    @classmethod
    def take(cls, db: Path) -> WriterLock:
        """Lock `db` for this process; LogInUse names the pid of another process that has it."""
        path = lock_path(db)
        try:
            key = str(path.resolve())
        except OSError:
            key = str(path.absolute())
        with cls._guard:
            if key in cls._held:
                cls._held[key][1] += 1
                return cls(key)
            try:
                fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise SaysoError(f"cannot create the turn log's lock {path}: {e.strerror or e}. Check the path "
                                 "and its permissions ([log] db in the config).") from None
            if not _lock_within(fd, PROBE_S):
                pid = _pid(fd)
                os.close(fd)
                raise LogInUse(_in_use(db, pid))
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            cls._held[key] = [fd, 1]
        return cls(key)

    def release(self) -> None:
        with self._guard:
            if self._released:
                return
            self._released = True
            held = self._held[self.key]
            held[1] -= 1
            if held[1] == 0:
                del self._held[self.key]
                os.close(held[0])  # the flock goes with the last descriptor
