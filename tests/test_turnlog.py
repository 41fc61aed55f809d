import sqlite3

import pytest

from sayso.errors import DiskFull
from sayso.turnlog import COLUMNS, SCHEMA_VERSION, TurnLog, cut_in_note


@pytest.fixture
def turnlog(tmp_path):
    t = TurnLog(tmp_path / "turns.db")
    yield t
    t.close()


def test_durable_settings_and_the_contract_columns(turnlog):
    db = turnlog._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert tuple(r[1] for r in db.execute("PRAGMA table_info(turns)")) == COLUMNS


def test_exchange_write_order_and_one_final_status(turnlog):
    user = turnlog.add_user("c1", "hello")
    assert turnlog.get(user)["status"] == "complete"
    a = turnlog.begin_assistant("c1", user)
    assert turnlog.get(a)["status"] == "pending" and turnlog.get(a)["reply_to"] == user
    turnlog.checkpoint(a, text="Hi there,")
    assert turnlog.get(a)["status"] == "streaming"
    turnlog.checkpoint(a, heard_text="Hi")
    row = turnlog.get(a)
    assert (row["text"], row["heard_text"]) == ("Hi there,", "Hi")
    assert turnlog.finish(a, text="Hi there, friend.", heard_text="Hi", status="interrupted", reason="button",
                          kind="full", metrics={"interrupt_to_silence_ms": 12.5})
    assert not turnlog.finish(a, text="x", heard_text="x", status="complete")
    row = turnlog.get(a)
    assert (row["status"], row["interrupt_reason"], row["interrupt_kind"]) == ("interrupted", "button", "full")
    assert row["metrics"] == {"interrupt_to_silence_ms": 12.5}
    turnlog.checkpoint(a, text="late")  # a checkpoint after the end changes nothing
    assert turnlog.get(a)["text"] == "Hi there, friend."


def test_unknown_reason_is_refused_by_the_schema(turnlog):
    a = turnlog.begin_assistant("c1", turnlog.add_user("c1", "hi"))
    with pytest.raises(sqlite3.IntegrityError):
        turnlog.finish(a, text="", heard_text="", status="interrupted", reason="bored", kind="full")


def test_recovery_turns_leftovers_into_crash_with_what_was_heard(tmp_path):
    t = TurnLog(tmp_path / "turns.db")
    u = t.add_user("c1", "tell me a story")
    pending = t.begin_assistant("c1", u)
    u2 = t.add_user("c1", "and another")
    streaming = t.begin_assistant("c1", u2)
    t.checkpoint(streaming, text="Once upon a time, there", heard_text="Once upon")
    t.close()  # the process dies here
    t = TurnLog(tmp_path / "turns.db")
    assert t.recover() == [pending, streaming]
    for turn, heard in ((pending, ""), (streaming, "Once upon")):
        row = t.get(turn)
        assert (row["status"], row["interrupt_reason"], row["heard_text"]) == ("interrupted", "crash", heard)
        assert row["ended_at"] is not None
    assert t.recover() == []


def test_history_gives_interrupted_answers_as_heard_with_a_marker(turnlog):
    u1 = turnlog.add_user("c1", "capital of France?")
    a1 = turnlog.begin_assistant("c1", u1)
    turnlog.finish(a1, text="Paris. It is lovely in spring.", heard_text="Paris.", status="interrupted",
                   reason="user_speaking", kind="full")
    u2 = turnlog.add_user("c1", "and Germany?")
    a2 = turnlog.begin_assistant("c1", u2)  # still pending: not history yet
    turnlog.add_user("c2", "other conversation")
    assert turnlog.history("c1", 10) == [("user", "capital of France?"), ("assistant", "Paris."),
                                         ("system", 'The person cut in there; they heard only: "Paris.".'),
                                         ("user", "and Germany?")]
    assert turnlog.history("c1", 2) == [("user", "and Germany?")]  # never starts with an answer
    assert a2
    turnlog.finish(a2, text="Berlin.", heard_text="", status="interrupted", reason="button", kind="full")
    assert turnlog.history("c1", 10)[-1] == ("system", cut_in_note(""))  # nothing heard: the note alone


def test_a_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "turns.db"
    TurnLog(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(Exception, match="newer sayso"):
        TurnLog(path)


def test_a_full_disk_is_a_clear_error_and_keeps_what_was_logged(turnlog):
    kept = turnlog.add_user("c1", "before the disk filled")
    pages = turnlog._db.execute("PRAGMA page_count").fetchone()[0]
    turnlog._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL path
    with pytest.raises(DiskFull, match="disk is full.*already logged are safe"):
        turnlog.add_user("c1", "x" * 100_000)
    assert turnlog.get(kept)["text"] == "before the disk filled"
    assert [r["id"] for r in turnlog.rows()] == [kept]
