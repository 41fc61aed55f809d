import sqlite3
import time

import pytest

from sayso.pipeline.conversation import Conversations
from sayso.pipeline.turnlog import COLUMNS, SCHEMA_VERSION, TurnLog, cut_in_note


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


def test_unknown_reason_is_refused_before_the_schema_and_by_it(turnlog):
    a = turnlog.begin_assistant("c1", turnlog.add_user("c1", "hi"))
    with pytest.raises(ValueError, match="bored"):
        turnlog.finish(a, text="", heard_text="", status="interrupted", reason="bored", kind="full")
    with pytest.raises(sqlite3.IntegrityError):
        turnlog._db.execute("UPDATE turns SET interrupt_reason = 'bored' WHERE id = ?", (a,))


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
                                         ("system", "The person cut in there."),
                                         ("user", "and Germany?")]
    assert turnlog.history("c1", 2) == [("user", "and Germany?")]  # never starts with an answer
    assert a2
    turnlog.finish(a2, text="Berlin.", heard_text="", status="interrupted", reason="button", kind="full")
    assert turnlog.history("c1", 10)[-1] == ("system", cut_in_note(""))  # nothing heard: the note alone


def test_history_leaves_out_speech_with_no_words_and_the_request_to_say_it_again(turnlog):
    u1 = turnlog.add_user("c1", "", metrics={"not_caught": True, "speech_ms": 900})
    a1 = turnlog.begin_assistant("c1", u1)
    turnlog.finish(a1, text="Sorry, I didn't catch that.", heard_text="Sorry, I didn't catch that.",
                   status="complete")
    u2 = turnlog.add_user("c1", "capital of France?")
    a2 = turnlog.begin_assistant("c1", u2)
    turnlog.finish(a2, text="Paris.", heard_text="Paris.", status="complete")
    assert turnlog.history("c1", 10) == [("user", "capital of France?"), ("assistant", "Paris.")]
    assert [r["text"] for r in turnlog.rows()][:2] == ["", "Sorry, I didn't catch that."]  # kept for the record


def test_the_history_window_moves_in_steps_so_its_start_stays_put_for_most_turns(turnlog):
    starts = []
    for n in range(12):
        u = turnlog.add_user("c1", f"question {n}")
        a = turnlog.begin_assistant("c1", u)
        turnlog.finish(a, text=f"answer {n}", heard_text=f"answer {n}", status="complete")
        history = turnlog.history("c1", 9, step=4)
        assert history[0][0] == "user" and history[-1] == ("assistant", f"answer {n}")
        assert min(2 * (n + 1), 9 - 4) <= len(history) <= 9
        starts.append(history[0][1])
    # 24 turns: the window starts at turn 0 until it is full, then jumps four turns (two exchanges)
    assert starts == ["question 0"] * 4 + ["question 2"] * 2 + ["question 4"] * 2 + ["question 6"] * 2 \
        + ["question 8"] * 2
    # one step at a time it is the last nine, less the answer it would start on
    assert turnlog.history("c1", 9)[:2] == [("user", "question 8"), ("assistant", "answer 8")]


def test_a_turn_being_joined_does_not_move_the_window(turnlog):
    """The prompt of words that join a turn begins as the one prefilled before that turn was logged."""
    for n in range(4):
        u = turnlog.add_user("c1", f"question {n}")
        a = turnlog.begin_assistant("c1", u)
        turnlog.finish(a, text=f"answer {n}", heard_text=f"answer {n}", status="complete")
    before = turnlog.history("c1", 7, step=2)
    joined = turnlog.add_user("c1", "what is the")
    early = turnlog.begin_assistant("c1", joined)
    turnlog.finish(early, text="That is", heard_text="", status="interrupted", reason="superseded", kind="full")
    assert turnlog.history("c1", 7, step=2)[0] != before[0]  # counted, the joined turn moves the window
    assert turnlog.history("c1", 7, step=2, without=joined) == before


def test_a_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "turns.db"
    TurnLog(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(Exception, match="newer sayso"):
        TurnLog(path)


def test_superseded_answers_are_not_history_and_amend_user_joins_words(turnlog):
    u = turnlog.add_user("c1", "what is the capital")
    early = turnlog.begin_assistant("c1", u)
    turnlog.checkpoint(early, text="The capital of")
    # the person went on before hearing a word: the answer is dropped, the words join the turn
    assert turnlog.finish(early, text="The capital of", heard_text="", status="interrupted", reason="superseded",
                          kind="full")
    assert turnlog.amend_user(u, "what is the capital of France")
    a = turnlog.begin_assistant("c1", u)
    turnlog.finish(a, text="Paris.", heard_text="Paris.", status="complete")
    assert turnlog.history("c1", 10) == [("user", "what is the capital of France"), ("assistant", "Paris.")]
    assert turnlog.get(early)["interrupt_reason"] == "superseded"  # kept in the log, for the record
    assert not turnlog.amend_user(a, "not a user turn")


V1_SCHEMA = """
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
PRAGMA user_version = 1;
"""


def test_a_version_1_log_is_migrated_keeping_every_row_and_id(tmp_path):
    """Schema 2 allows reason 'superseded'; a v1 file (the first schema's DDL, verbatim) is rebuilt in one go."""
    path = tmp_path / "turns.db"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("PRAGMA journal_mode=WAL")
    rows = [(1, "c", "user", "complete", "hi", None, None, None, None, 1.0, 1.0, "{}"),
            (2, "c", "assistant", "interrupted", "Hello there", "Hello", "button", "full", 1, 1.5, 2.0,
             '{"interrupt_to_silence_ms": 12}'),
            (5, "c", "user", "complete", "again", None, None, None, None, 3.0, 3.0, "{}"),
            (7, "c", "assistant", "streaming", "Once", "", None, None, 5, 3.5, None, "{}")]
    db.executemany(f"INSERT INTO turns VALUES ({', '.join('?' * 12)})", rows)
    db.execute("INSERT INTO turns (conversation_id, role, status, started_at) VALUES ('c', 'user', 'complete', 4)")
    db.execute("DELETE FROM turns WHERE id = 8")  # AUTOINCREMENT: 8 is never handed out again
    db.commit()
    db.close()
    t = TurnLog(path)
    try:
        assert t._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert [tuple(r.values())[:11] for r in t.rows()] == [
            (*r[:11],) for r in rows]
        assert t.get(2)["metrics"] == {"interrupt_to_silence_ms": 12}
        assert t.recover() == [7]
        u = t.add_user("c", "go on")
        assert u == 9
        a = t.begin_assistant("c", u)
        assert t.finish(a, text="So", heard_text="", status="interrupted", reason="superseded", kind="full")
        assert t._db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert t._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        sql = t._db.execute("SELECT sql FROM sqlite_master WHERE name = 'turns'").fetchone()[0]
        assert "superseded" in sql and "turns_v2" not in sql
        indexes = {r[0] for r in t._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"turns_by_conversation", "turns_open"} <= indexes
    finally:
        t.close()


# ---- conversations: one while turns keep coming, a new one after a quiet spell, on a given clock

S = 1_000_000_000


class Clock:
    """A pipeline clock a test moves by hand, in seconds."""

    def __init__(self) -> None:
        self.now_ns = 10 * S

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * S)


def test_turns_keep_their_conversation_until_the_quiet_outlasts_the_timeout(turnlog):
    clock = Clock()
    c = Conversations(turnlog, idle_timeout_s=120, clock=clock)
    first = c.current()
    clock.advance(119)
    assert c.current() == first
    clock.advance(119)
    assert c.current() == first, "the quiet is counted from the last turn, not the first"
    clock.advance(121)
    second = c.current()
    assert second != first
    assert c.current() == second


def test_the_quiet_starts_when_the_answer_ends(turnlog):
    clock = Clock()
    c = Conversations(turnlog, idle_timeout_s=120, clock=clock)
    first = c.current()
    clock.advance(100)  # a long answer
    c.touch()
    clock.advance(110)
    assert c.current() == first


def test_a_restart_mid_conversation_carries_on_with_it(turnlog):
    turnlog.add_user("before-restart", "hello")
    soon = Conversations(turnlog, idle_timeout_s=120, clock=Clock(), wall=lambda: time.time() + 30)
    assert soon.current() == "before-restart"
    later = Conversations(turnlog, idle_timeout_s=120, clock=Clock(), wall=lambda: time.time() + 600)
    assert later.current() != "before-restart"

