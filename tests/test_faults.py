"""Fault injection for the turn log: a second writer, a held lock, a full disk, privacy.

Real parts throughout: real SQLite, real files, real second processes, a real
(tmpfs) disk that fills up. The LLM, voice and sound card are sayso.sim.fakes.
Tests wait on events with timeouts, never on sleeps.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sayso.engine import Engine
from sayso.errors import SaysoError
from sayso.pipeline.conductor import CANNOT_REMEMBER
from sayso.pipeline.messages import State, Utterance
from sayso.pipeline.turnlog import TurnLog
from sayso.sim.fakes import FakeLLM, FakeSpeakerSink, FakeTTS

WAIT = 10.0
ANSWER = "Paris is the capital of France."

WRITER = """
import sys
from sayso.pipeline.turnlog import TurnLog
t = TurnLog(sys.argv[1])
u = t.add_user("c1", "tell me a story")
a = t.begin_assistant("c1", u)
t.checkpoint(a, text="Once upon a time,", heard_text="Once")
print("HOLDING", a, flush=True)
sys.stdin.readline()
print("FINISHED", t.finish(a, text="Once upon a time, there was a fox.", heard_text="Once upon a time,",
                           status="complete"), flush=True)
t.close()
"""

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("LOCKED", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


class Child:
    """A real second process running `code` with the db path; it waits on stdin at its first line."""

    def __init__(self, code: str, db: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.first = self.proc.stdout.readline().split()
        assert self.first, f"child failed: {self.proc.wait(5)}"

    def go_on(self) -> str:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.read()
        assert self.proc.wait(WAIT) == 0
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


def sayso(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sayso", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def files_of(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ---- 1. a second writer


def test_a_second_writer_fails_at_once_naming_the_holder_and_the_live_answer_survives(tmp_path):
    db = tmp_path / "turns.db"
    config = tmp_path / "config.toml"
    # no models there: a command that got as far as loading them would fail on that instead
    config.write_text(f'[log]\ndb = "{db}"\n[models]\ndir = "{tmp_path / "no-models"}"\n')
    child = Child(WRITER, db)
    try:
        answer = int(child.first[1])
        pid = str(child.proc.pid)
        with pytest.raises(SaysoError, match=f"in use by another sayso \\(pid {pid}\\)"):
            TurnLog(db)
        for command in (["simulate", "demo", "--db", str(db)], ["run"]):
            done = sayso("--config", str(config), *command, timeout=30)
            assert done.returncode == 2, done.stderr
            assert f"pid {pid}" in done.stderr and "Traceback" not in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1
        # a reader works meanwhile, and sees the answer still open
        seen = sayso("turns", "--db", str(db), "--json")
        assert seen.returncode == 0, seen.stderr
        assert '"streaming"' in seen.stdout
        out = child.go_on()
    finally:
        child.kill()
    assert "FINISHED True" in out, "the live process's final write was refused"
    row = sqlite3.connect(db).execute("SELECT status, heard_text, interrupt_reason FROM turns WHERE id = ?",
                                      (answer,)).fetchone()
    assert row == ("complete", "Once upon a time,", None)


def test_the_lock_dies_with_its_process_and_recovery_then_runs(tmp_path):
    db = tmp_path / "turns.db"
    child = Child(WRITER, db)
    answer = int(child.first[1])
    child.kill()  # kill -9: the kernel drops the flock
    t = TurnLog(db)
    try:
        assert t.recover() == [answer]
    finally:
        t.close()


# ---- 2. never mute: the log cannot be written, the appliance answers anyway


class Recorder:
    def __init__(self) -> None:
        self.events = []
        self._cond = threading.Condition()

    def __call__(self, event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait(self, type_: str, n: int = 1, timeout: float = WAIT) -> list:
        def found():
            got = [e for e in self.events if e.type == type_]
            return got if len(got) >= n else None
        with self._cond:
            got = self._cond.wait_for(found, timeout)
            assert got, f"fewer than {n} {type_} within {timeout}s: {[e.type for e in self.events]}"
            return got


class Outage:
    """An outage's start and end as events a test can wait on."""

    def __init__(self, turnlog: TurnLog):
        self.reasons: list[str] = []
        self.over = threading.Event()
        turnlog.watch(self.reasons.append, self.over.set)


def ask(engine: Engine, rec: Recorder, n: int, question: str) -> dict:
    engine.conductor.post(Utterance(question, time.monotonic_ns()))
    finished = rec.wait("turn_finished", n, timeout=WAIT)[n - 1].data
    assert engine.conductor.wait_state(State.IDLE, WAIT)
    return finished


def engine_on(turnlog: TurnLog, rec: Recorder) -> Engine:
    return Engine(llm=FakeLLM([ANSWER]), tts=FakeTTS(ms_per_char=2.0, gap_ms=5.0), sink=FakeSpeakerSink(),
                  turnlog=turnlog, observers=[rec]).start()


def test_a_lock_held_by_another_program_delays_no_answer_and_the_turns_are_written_after(tmp_path):
    db = tmp_path / "turns.db"
    turnlog = TurnLog(db, retry_s=0.2)
    outage = Outage(turnlog)
    rec = Recorder()
    engine = engine_on(turnlog, rec)
    locker = Child(LOCKER, db)  # a real second process in a write transaction, for as long as it likes
    try:
        first = ask(engine, rec, 1, "capital of france")  # within WAIT: the lock wait is bounded
        # said once, out loud, before the answer: the appliance cannot remember right now
        assert first["status"] == "complete" and first["heard_text"] == f"{CANNOT_REMEMBER} {ANSWER}"
        second = ask(engine, rec, 2, "and again")
        assert second["status"] == "complete"
        assert len(outage.reasons) == 1 and "lock" in outage.reasons[0] and "\n" not in outage.reasons[0]
        assert not turnlog.writable
        assert [r["role"] for r in turnlog.rows()] == ["user", "assistant"] * 2  # memory holds them meanwhile
        locker.go_on()
        assert outage.over.wait(WAIT), "the waiting turns were never written"
        assert turnlog.writable
    finally:
        locker.kill()
        engine.stop()
        turnlog.close()
    rows = sqlite3.connect(db).execute("SELECT id, role, status, text, reply_to FROM turns ORDER BY id").fetchall()
    assert [r[1:4] for r in rows] == [("user", "complete", "capital of france"),
                                      ("assistant", "complete", f"{CANNOT_REMEMBER} {ANSWER}"),
                                      ("user", "complete", "and again"), ("assistant", "complete", ANSWER)]
    assert rows[1][4] == rows[0][0] and rows[3][4] == rows[2][0]
    assert [r[0] for r in rows] == [first["turn"] - 1, first["turn"], second["turn"] - 1, second["turn"]]


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB tmpfs (needs root) that `fill()` fills to the last byte and `free()` empties again."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the page-limit test covers SQLITE_FULL")

    class Disk:
        path = mnt
        filler = mnt / "filler"

        def fill(self) -> None:
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
            finally:
                os.close(fd)

        def free(self) -> None:
            self.filler.unlink()

    yield Disk()
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_keeps_the_appliance_answering_and_nothing_is_lost(small_disk):
    db = small_disk.path / "turns.db"
    turnlog = TurnLog(db, retry_s=0.2)
    outage = Outage(turnlog)
    rec = Recorder()
    engine = engine_on(turnlog, rec)
    try:
        before = ask(engine, rec, 1, "before the disk filled")
        small_disk.fill()
        answers = [ask(engine, rec, n, f"question {n}") for n in (2, 3, 4)]
        said = [f"{CANNOT_REMEMBER} {ANSWER}", ANSWER, ANSWER]  # the outage is said once, before the next answer
        assert [(a["status"], a["heard_text"]) for a in answers] == [("complete", x) for x in said]
        assert len(outage.reasons) == 1 and "disk is full" in outage.reasons[0]
        assert not outage.over.is_set()
        small_disk.free()
        assert outage.over.wait(WAIT), "the waiting turns were never written"
    finally:
        engine.stop()
        turnlog.close()
    rows = sqlite3.connect(db).execute("SELECT id, role, status, text FROM turns ORDER BY id").fetchall()
    assert [r[1:] for r in rows] == [("user", "complete", "before the disk filled"),
                                     ("assistant", "complete", ANSWER)] + [
        r for n, x in zip((2, 3, 4), said, strict=True)
        for r in (("user", "complete", f"question {n}"), ("assistant", "complete", x))]
    assert rows[1][0] == before["turn"] and [rows[i][0] for i in (3, 5, 7)] == [a["turn"] for a in answers]


def test_a_log_that_cannot_grow_raises_nothing_and_takes_the_turns_when_it_can(tmp_path):
    """SQLite's own SQLITE_FULL (PRAGMA max_page_count), for machines where no tmpfs can be mounted."""
    turnlog = TurnLog(tmp_path / "turns.db", retry_s=0.1)
    outage = Outage(turnlog)
    kept = turnlog.add_user("c1", "before the log filled")
    pages = turnlog._db.execute("PRAGMA page_count").fetchone()[0]
    turnlog._db.execute(f"PRAGMA max_page_count = {pages}")
    big = turnlog.add_user("c1", "x" * 100_000)
    answer = turnlog.begin_assistant("c1", big)
    assert (kept, big, answer) == (kept, kept + 1, kept + 2)
    assert turnlog.finish(answer, text="ok", heard_text="ok", status="complete")
    assert len(outage.reasons) == 1 and "disk is full" in outage.reasons[0]
    assert turnlog.history("c1", 10) == [("user", "before the log filled"), ("user", "x" * 100_000),
                                         ("assistant", "ok")]
    with turnlog._lock:
        turnlog._db.execute("PRAGMA max_page_count = 1000000")
    assert outage.over.wait(WAIT)
    turnlog.close()
    rows = sqlite3.connect(tmp_path / "turns.db").execute("SELECT id, status FROM turns ORDER BY id").fetchall()
    assert rows == [(kept, "complete"), (big, "complete"), (answer, "complete")]


def test_any_sqlite_error_raises_nothing_a_damaged_schema_too(tmp_path):
    """SQLITE_CORRUPT is a DatabaseError, not an OperationalError: every kind of sqlite3 error is an outage."""
    db = tmp_path / "turns.db"
    turnlog = TurnLog(db, retry_s=0.1)
    outage = Outage(turnlog)
    kept = turnlog.add_user("c1", "before the damage")
    other = sqlite3.connect(db, isolation_level=None)  # another connection points the table at no page
    root = other.execute("SELECT rootpage FROM sqlite_master WHERE name = 'turns'").fetchone()[0]
    version = other.execute("PRAGMA schema_version").fetchone()[0]
    other.execute("PRAGMA writable_schema = ON")
    other.execute("UPDATE sqlite_master SET rootpage = 9999 WHERE name = 'turns'")
    other.execute(f"PRAGMA schema_version = {version + 1}")
    try:
        during = turnlog.add_user("c1", "while it is damaged")
        answer = turnlog.begin_assistant("c1", during)
        assert turnlog.finish(answer, text="Yes.", heard_text="Yes.", status="complete")
        assert len(outage.reasons) == 1 and "malformed" in outage.reasons[0]
    finally:
        other.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'turns'", (root,))
        other.execute(f"PRAGMA schema_version = {version + 2}")
        other.close()
    assert outage.over.wait(WAIT)
    turnlog.close()
    rows = sqlite3.connect(db).execute("SELECT id, status FROM turns ORDER BY id").fetchall()
    assert rows == [(kept, "complete"), (during, "complete"), (answer, "complete")]


def test_turns_kept_in_memory_are_bounded_and_the_oldest_go_first(tmp_path):
    db = tmp_path / "turns.db"
    turnlog = TurnLog(db, busy_timeout_s=0.2, retry_s=0.1, max_pending=3)
    outage = Outage(turnlog)
    locker = Child(LOCKER, db)
    try:
        ids = [turnlog.add_user("c1", f"turn {i}") for i in range(6)]
        assert turnlog.lost == 3
        locker.go_on()
        assert outage.over.wait(WAIT)
    finally:
        locker.kill()
        turnlog.close()
    rows = sqlite3.connect(db).execute("SELECT id FROM turns ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ids[3:]


def test_doctor_names_the_writer_and_explains_a_held_lock(tmp_path, store):
    from sayso import config
    from sayso.service.doctor import FAIL, OK, Doctor

    db = tmp_path / "turns.db"
    settings = config.parse({"log": {"db": str(db)}})
    child = Child(WRITER, db)
    try:
        check = Doctor(settings, store).turn_log()
        assert check.status == OK and f"sayso (pid {child.proc.pid}) is writing it" in check.detail
        child.go_on()
    finally:
        child.kill()
    locker = Child(LOCKER, db)
    try:
        check = Doctor(settings, store).turn_log()
    finally:
        locker.kill()
    assert check.status == FAIL and "holds a write lock" in check.detail
    assert "says it cannot remember right now" in check.detail and "fuser" in check.fix


# ---- 6. privacy


def test_the_log_and_its_new_folders_are_private_under_any_umask(tmp_path):
    old = os.umask(0)
    try:
        t = TurnLog(tmp_path / "a" / "b" / "turns.db")
        t.add_user("c1", "something private")
    finally:
        os.umask(old)
    try:
        for folder in (tmp_path / "a", tmp_path / "a" / "b"):
            assert folder.stat().st_mode & 0o777 == 0o700, folder
        for f in (tmp_path / "a" / "b").iterdir():  # turns.db, -wal, -shm, .lock
            assert f.stat().st_mode & 0o777 == 0o600, f
    finally:
        t.close()
