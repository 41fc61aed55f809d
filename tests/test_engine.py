"""Sequence tests for the engine: the order of events and log rows through every interruption.

The LLM, voice and sound card are the plainly named fakes from sayso.sim.fakes; the
turn log is real SQLite. Tests wait on events with timeouts, never on sleeps.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import numpy as np
import pytest

from sayso.answering.earcon import earcon
from sayso.answering.thinker import NOTHING_TO_SAY
from sayso.config import BargeInSettings, ConversationSettings, LLMSettings, Settings, TurnSettings, WakeSettings
from sayso.engine import Engine
from sayso.hearing.wake import WakeModel
from sayso.pipeline.messages import (
    Event,
    GenerateRequest,
    PartialTranscript,
    Prefill,
    SpeechDropped,
    SpeechResumed,
    SpeechStarted,
    State,
    TentativeTranscript,
    Utterance,
    WakeWordHeard,
)
from sayso.pipeline.turnlog import TurnLog, cut_in_note
from sayso.sim.fakes import FakeLLM, FakeSpeakerSink, FakeTTS, ResumableFakeLLM
from waits import lasts, wait_until

LONG = ("Paris is the capital of France. It sits on the river Seine and has many old bridges. "
        "The city is known for its museums, its cafes and its long boulevards. "
        "Millions of people visit it every year to walk along the water.")
WAIT = 10.0


class Recorder:
    """An observer that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait(self, type_: str, timeout: float = WAIT, **match) -> Event:
        def found():
            return next((e for e in self.events if e.type == type_
                         and all(e.data.get(k) == v for k, v in match.items())), None)
        with self._cond:
            if not self._cond.wait_for(found, timeout):
                raise AssertionError(f"no {type_} {match} within {timeout}s; got {self.sequence()}")
            return found()

    def sequence(self, turn: int | None = None) -> list[str]:
        with self._cond:
            return [e.type if e.type != "state" else f"state:{e.data['state']}" for e in self.events
                    if turn is None or e.data.get("turn") in (turn, None)]


class Clock:
    """time.monotonic_ns, moved on by however much quiet a test lets pass."""

    def __init__(self) -> None:
        self.skew_ns = 0

    def __call__(self) -> int:
        return time.monotonic_ns() + self.skew_ns

    def advance(self, seconds: float) -> None:
        self.skew_ns += int(seconds * 1e9)


NO_JOIN = TurnSettings(join_window_s=0)
"""These tests cut answers the moment they start: with joining on, that would be the person going on."""


class Rig:
    def __init__(self, tmp_path, answers, llm_kwargs=None, tts_kwargs=None, settings=None, observers=(),
                 clock=time.monotonic_ns, wake=None):
        settings = settings or Settings(turn=NO_JOIN)
        self.clock = clock
        self.llm = FakeLLM(answers, **(llm_kwargs or {}))
        self.tts = FakeTTS(**(tts_kwargs or {}))
        self.sink = FakeSpeakerSink()
        self.rec = Recorder()
        self.db_path = tmp_path / "turns.db"
        self.engine = Engine(llm=self.llm, tts=self.tts, sink=self.sink, turnlog=TurnLog(self.db_path),
                             settings=settings, clock=clock, observers=[self.rec, *observers], wake=wake)
        self.c = self.engine.conductor

    def say(self, text: str) -> None:
        self.c.post(SpeechStarted(self.clock()))
        self.c.post(Utterance(text, self.clock()))

    def finished(self, turn: int | None = None, timeout: float = WAIT) -> dict:
        match = {"turn": turn} if turn is not None else {}
        return self.rec.wait("turn_finished", timeout, **match).data

    def row(self, turn: int) -> dict:
        return self.engine.turnlog.get(turn)

    def played(self) -> list[str]:
        """The words that reached the fake sound card so far, in order."""
        return self.tts.words_in(self.sink.audible())


@pytest.fixture
def rig(tmp_path):
    rigs = []

    def make(answers, **kwargs) -> Rig:
        r = Rig(tmp_path / f"r{len(rigs)}", answers, **kwargs)
        (tmp_path / f"r{len(rigs)}").mkdir(exist_ok=True)
        rigs.append(r)
        r.engine.start()
        return r

    yield make
    for r in rigs:
        r.engine.stop()


def assert_word_prefix(heard: str, text: str) -> None:
    h, t = heard.split(), text.split()
    assert h == t[:len(h)], (heard, text)
    assert len(h) < len(t), "an interrupted answer was heard whole"


def test_a_complete_exchange_in_order(rig):
    seen_at_call = []

    def answer(messages):
        db = sqlite3.connect(rig_.db_path)
        seen_at_call.append(db.execute("SELECT role, status, text FROM turns ORDER BY id").fetchall())
        db.close()
        return "Paris is the capital of France."

    rig_ = rig(answer)
    rig_.say("what is the capital of france")
    done = rig_.finished()
    assert rig_.c.wait_state(State.IDLE, WAIT)
    # the user turn is complete and the placeholder pending before the first token is asked for
    assert seen_at_call == [[("user", "complete", "what is the capital of france"), ("assistant", "pending", "")]]
    assert rig_.rec.sequence() == ["state:listening", "user_turn", "turn_started", "state:thinking", "first_token",
                                   "state:speaking", "first_audio", "turn_finished", "answer_timeline",
                                   "state:idle"]
    row = rig_.row(done["turn"])
    assert row["status"] == "complete" and row["heard_text"] == row["text"] == "Paris is the capital of France."
    assert row["interrupt_reason"] is None and row["reply_to"] == done["turn"] - 1
    assert set(row["metrics"]) == {"eos_to_first_token_ms", "eos_to_first_audio_ms"}
    assert rig_.tts.words_in(rig_.sink.audible()) == row["text"].split()


def test_an_answer_with_nothing_to_say_aloud_is_not_met_with_silence(rig):
    r = rig(["```python\nprint(sorted(items))\n```"])
    r.say("Write me a function that sorts a list")
    done = r.finished()
    row = r.row(done["turn"])
    assert row["status"] == "complete" and row["heard_text"] == row["text"] == NOTHING_TO_SAY
    assert r.tts.words_in(r.sink.audible()) == NOTHING_TO_SAY.split()


def test_when_an_answer_ends_the_next_prompts_beginning_is_prefilled(rig):
    r = rig(["Paris.", "Berlin."])
    r.llm = r.engine.thinker.llm = ResumableFakeLLM(["Paris.", "Berlin."])
    r.say("What is the capital of France?")
    assert r.finished()["status"] == "complete"
    assert wait_until(lambda: r.llm.prefilled, WAIT), "no prefill after the answer"
    (prefilled,) = r.llm.prefilled
    assert [(m["role"], m["content"]) for m in prefilled[1:]] == [("user", "What is the capital of France?"),
                                                                  ("assistant", "Paris.")]
    r.say("And of Germany?")
    assert r.finished(4)["status"] == "complete"
    assert r.llm.calls[-1][:len(prefilled)] == prefilled, "the next prompt begins with what was prefilled"


class HeldPrefillFakeLLM(FakeLLM):
    """The fake LLM with a prompt cache whose prefill lasts until the test lets it go, or until the thinker
    tells it to stop; records how each prefill ended."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.prefilled: list[list[dict]] = []
        self.ended: list[str] = []
        self.running, self.release = threading.Event(), threading.Event()
        self.should_stop = lambda: False

    def prefill(self, messages: list[dict], should_stop) -> None:
        self.prefilled.append(messages)
        self.should_stop = should_stop
        self.running.set()
        assert wait_until(lambda: should_stop() or self.release.is_set()), "a prefill held past the test's wait"
        self.ended.append("gave way" if should_stop() else "finished")
        self.running.clear()


def held_prefill_rig(rig, answer: str = "Paris.") -> Rig:
    r = rig([answer])
    r.llm = r.engine.thinker.llm = HeldPrefillFakeLLM([answer])
    return r


def test_the_words_so_far_are_prefilled_and_an_answer_to_other_words_stops_it(rig):
    r = held_prefill_rig(rig)
    r.c.post(SpeechStarted(time.monotonic_ns()))
    r.c.post(PartialTranscript("what is the capital"))
    assert r.llm.running.wait(WAIT), "no prefill of the words so far"
    assert r.llm.prefilled[-1][-1] == {"role": "user", "content": "what is the capital"}
    r.c.post(Utterance("what is the capital of france", time.monotonic_ns()))
    assert r.finished()["status"] == "complete"
    assert r.llm.ended[0] == "gave way"
    assert r.llm.calls[0][-1] == {"role": "user", "content": "what is the capital of france"}


def test_an_answer_to_the_very_words_prefilled_lets_the_prefill_finish(rig):
    r = held_prefill_rig(rig)
    r.c.post(SpeechStarted(time.monotonic_ns()))
    r.c.post(PartialTranscript("what is the capital of france"))
    assert r.llm.running.wait(WAIT), "no prefill of the words so far"
    r.c.post(Utterance("what is the capital of france", time.monotonic_ns()))
    assert wait_until(lambda: r.engine.requests.holds(lambda x: isinstance(x, GenerateRequest)))
    assert not r.llm.should_stop(), "the prefill the answer starts on was stopped"
    r.llm.release.set()
    assert r.finished()["status"] == "complete"
    assert r.llm.ended[0] == "finished" and r.llm.calls[0][-1]["content"] == "what is the capital of france"


def test_words_heard_over_an_answer_are_not_prefilled(rig):
    r = held_prefill_rig(rig, LONG)
    r.llm.release.set()
    r.say("what is the capital of france")
    turn = r.rec.wait("turn_started").data["turn"]
    r.c.post(PartialTranscript("stop"))
    r.c.post(PartialTranscript("stop it"))
    r.rec.wait("partial", text="stop it")  # both handled: the conductor takes its inbox in order
    assert not r.engine.requests.holds(lambda x: isinstance(x, Prefill))
    assert all(m[-1]["content"] != "stop" for m in r.llm.prefilled)
    assert r.c.interrupt("full", "button")
    r.finished(turn)


def test_interrupt_while_thinking_stops_before_any_sound(rig):
    r = rig([LONG], llm_kwargs={"first_token_delay_s": 0.5})
    r.say("tell me about paris")
    turn = r.rec.wait("turn_started").data["turn"]
    assert r.c.wait_state(State.THINKING, WAIT)
    assert r.c.interrupt("full", "button")
    done = r.finished(turn)
    assert (done["status"], done["reason"], done["kind"], done["heard_text"]) == ("interrupted", "button", "full", "")
    assert "first_audio" not in r.rec.sequence(turn)
    assert len(r.sink.audible()) == 0
    assert r.row(turn)["status"] == "interrupted"


def test_interrupt_while_speaking_keeps_exactly_what_was_heard(rig):
    r = rig([LONG])
    r.say("tell me about paris")
    turn = r.rec.wait("first_audio").data["turn"]
    r.rec.wait("turn_started")
    # let a few words play, then press stop
    assert wait_until(lambda: len(r.played()) >= 3), "no three words played"
    assert r.c.interrupt("full", "button")
    done = r.finished(turn)
    row = r.row(turn)
    assert row["status"] == "interrupted" and row["interrupt_reason"] == "button"
    assert_word_prefix(row["heard_text"], LONG)
    played = r.tts.words_in(r.sink.audible())
    heard = row["heard_text"].split()
    # every heard word played whole; at most one more word was cut halfway
    assert played[:len(heard)] == heard and len(played) - len(heard) <= 1
    assert "interrupt_to_silence_ms" in row["metrics"] and row["metrics"] == done["metrics"]
    assert r.rec.sequence(turn).index("speech_interrupted") < r.rec.sequence(turn).index("turn_finished")


def test_speech_only_interrupt_lets_generation_finish(rig):
    r = rig([LONG], llm_kwargs={"token_delay_s": 0.03})
    r.say("tell me about paris")
    turn = r.rec.wait("first_audio").data["turn"]
    assert r.c.interrupt("speech", "user_speaking")
    done = r.finished(turn)
    row = r.row(turn)
    assert (row["status"], row["interrupt_kind"], row["interrupt_reason"]) == ("interrupted", "speech",
                                                                               "user_speaking")
    assert row["text"] == LONG, "generation must run to the end of the intended answer"
    assert_word_prefix(row["heard_text"], LONG)
    assert "interrupt_to_llm_stop_ms" not in row["metrics"]
    assert done["heard_text"] == row["heard_text"]
    assert r.llm.yielded_after_stop == 0


def test_cancel_then_send(rig):
    r = rig([LONG, "Berlin is the capital of Germany."])
    r.say("tell me about paris")
    first = r.rec.wait("first_audio").data["turn"]
    r.c.post(Utterance("stop, tell me about germany instead", time.monotonic_ns()))
    old = r.finished(first)
    second = r.rec.wait("turn_started", reply_to=first + 1).data["turn"]
    new = r.finished(second)
    assert (old["status"], old["reason"], old["kind"]) == ("interrupted", "user_speaking", "full")
    assert new["status"] == "complete"
    rows = r.engine.turnlog.rows()
    assert [(x["role"], x["status"]) for x in rows] == [("user", "complete"), ("assistant", "interrupted"),
                                                        ("user", "complete"), ("assistant", "complete")]
    # the new question was logged the moment it was final, before the cut answer was closed
    seq = r.rec.sequence()
    assert seq.index("user_turn", seq.index("first_audio")) < seq.index("turn_finished")
    # the next answer was asked for with the cut one as heard, marked
    history = r.llm.calls[1]
    heard = old["heard_text"]
    tail = ([{"role": "assistant", "content": heard}] if heard else []) + [
        {"role": "system", "content": cut_in_note(heard)},
        {"role": "user", "content": "stop, tell me about germany instead"}]
    assert history[-len(tail):] == tail


def test_button_while_idle_does_nothing(rig, caplog):
    r = rig(["unused"])
    with caplog.at_level(logging.DEBUG, logger="sayso.pipeline.conductor"):
        assert r.c.button() is False
    assert "while idle" in caplog.text
    assert r.engine.turnlog.rows() == [] and r.rec.events == []


def test_a_second_press_on_a_stopped_answer_does_nothing(rig):
    r = rig([LONG])
    r.say("tell me about paris")
    turn = r.rec.wait("first_audio").data["turn"]
    assert r.c.button() is True
    assert r.c.button() is False
    assert r.finished(turn)["reason"] == "button"


def test_two_interrupts_at_once_give_one_final_status(rig, caplog):
    r = rig([LONG])
    r.say("tell me about paris")
    turn = r.rec.wait("first_audio").data["turn"]
    barrier = threading.Barrier(2)
    results = {}

    def press(reason):
        barrier.wait()
        results[reason] = r.c.interrupt("full", reason)

    threads = [threading.Thread(target=press, args=(reason,)) for reason in ("button", "user_speaking")]
    with caplog.at_level(logging.ERROR):
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        done = r.finished(turn)
        assert r.c.wait_state(State.IDLE, WAIT)
    assert sorted(results.values()) == [False, True]
    winner = next(k for k, v in results.items() if v)
    assert done["reason"] == winner == r.row(turn)["interrupt_reason"]
    assert [e.type for e in r.rec.events].count("turn_finished") == 1
    assert [e.type for e in r.rec.events].count("speech_interrupted") == 1
    assert "already had its final status" not in caplog.text


def test_interrupt_racing_the_natural_end(rig, caplog):
    r = rig(["One two three."], llm_kwargs={"token_delay_s": 0.0, "first_token_delay_s": 0.0})
    outcomes = []
    with caplog.at_level(logging.ERROR):
        for i in range(12):
            r.say(f"count {i}")
            turn = r.rec.wait("turn_started", reply_to=2 * i + 1).data["turn"]
            r.rec.wait("first_audio", turn=turn)
            # the answer lasts ~0.4 s: the press comes around its end, a little later each time
            lasts(0.25 + 0.02 * i)
            accepted = r.c.interrupt("full", "button")
            outcomes.append((accepted, r.finished(turn)))
            assert r.c.wait_state(State.IDLE, WAIT)
    for accepted, o in outcomes:
        row = r.row(o["turn"])
        assert (row["status"], row["interrupt_reason"]) == (o["status"], o["reason"])
        if o["status"] == "complete":
            assert row["heard_text"] == row["text"] == "One two three." and o["reason"] is None
        else:
            assert accepted, "a press the conductor turned away still cut the answer"
            assert (o["reason"], o["kind"]) == ("button", "full")
            heard = row["heard_text"].split()
            assert heard == row["text"].split()[:len(heard)]
    finished = [e.data["turn"] for e in r.rec.events if e.type == "turn_finished"]
    assert len(finished) == len(set(finished)) == 12
    assert "already had its final status" not in caplog.text


def test_late_tokens_after_cancel_never_reach_the_next_turn(rig):
    first = " ".join(f"alpha{i}" for i in range(60)) + "."
    second = " ".join(f"bravo{i}" for i in range(6)) + "."
    r = rig([first, second], llm_kwargs={"token_delay_s": 0.03, "late_tokens": 5})
    r.say("go")
    turn1 = r.rec.wait("first_audio").data["turn"]
    r.c.interrupt("full", "button")
    r.finished(turn1)
    r.say("again")
    turn2 = r.rec.wait("turn_started", reply_to=turn1 + 1).data["turn"]
    r.finished(turn2)
    assert r.llm.yielded_after_stop > 0, "the fake must really emit after the cancel for this test to mean anything"
    row1, row2 = r.row(turn1), r.row(turn2)
    assert row2["text"] == second and row2["heard_text"] == second
    assert "alpha" not in row2["text"]
    played = r.tts.words_in(r.sink.audible())
    alphas = [i for i, w in enumerate(played) if w.startswith("alpha")]
    bravos = [i for i, w in enumerate(played) if w.startswith("bravo")]
    assert bravos and (not alphas or max(alphas) < min(bravos))
    assert played[min(bravos):] == second.split()
    assert_word_prefix(row1["heard_text"], first)


@pytest.mark.parametrize("where", ["voice", "thinker"])
def test_a_stage_that_raises_ends_the_turn_as_error_and_keeps_listening(rig, where):
    kwargs = {"tts_kwargs": {"fail_on": "boom"}} if where == "voice" else {"llm_kwargs": {"fail_on": "boom"}}
    r = rig(["Fine so far, then boom goes the stage.", "All good now."], **kwargs)
    r.say("first")
    bad = r.finished()
    assert (bad["status"], bad["reason"], bad["kind"]) == ("interrupted", "error", "full")
    r.say("second")
    good = r.rec.wait("turn_finished", status="complete").data
    assert good["text"] == "All good now." and good["turn"] > bad["turn"]
    assert all(s.alive for s in r.engine.stages)


def test_an_answer_that_runs_too_long_is_cut_with_reason_timeout(rig):
    settings = Settings(llm=LLMSettings(max_seconds=1.0), turn=NO_JOIN)
    r = rig([" ".join(["word"] * 400)], llm_kwargs={"token_delay_s": 0.02}, settings=settings)
    r.say("talk forever")
    done = r.finished(timeout=WAIT)
    assert (done["status"], done["reason"], done["kind"]) == ("interrupted", "timeout", "full")


def test_a_slow_or_failing_observer_cannot_delay_an_interrupt(rig):
    gate = threading.Event()

    def slow(event):
        gate.wait(30)  # blocks the observer thread until the test ends

    def broken(event):
        raise RuntimeError("observer bug")

    r = rig([LONG], observers=[broken, slow])
    r.say("tell me about paris")
    assert r.c.wait_state(State.SPEAKING, WAIT)
    assert r.c.interrupt("full", "button")
    assert r.c.wait_state(State.IDLE, WAIT)  # the conductor finished without the observers
    turn = r.c.active_turn
    rows = r.engine.turnlog.rows()
    assert rows[-1]["status"] == "interrupted" and rows[-1]["interrupt_reason"] == "button" and turn is None
    gate.set()


def test_shutdown_mid_answer_is_logged_as_shutdown(tmp_path):
    r = Rig(tmp_path, [LONG])
    r.engine.start()
    r.say("tell me about paris")
    turn = r.rec.wait("first_audio").data["turn"]
    r.engine.stop()
    row = r.row(turn)
    assert (row["status"], row["interrupt_reason"]) == ("interrupted", "shutdown")
    assert_word_prefix(row["heard_text"], LONG)
    assert not any(s.alive for s in r.engine.stages)


def test_shutdown_with_a_preemptive_answer_held_stops_cleanly_and_loses_nothing(tmp_path):
    r = Rig(tmp_path, [LONG])
    r.engine.start()
    r.say("tell me about paris")
    done = r.finished()
    r.c.post(SpeechStarted(time.monotonic_ns()))
    r.c.post(TentativeTranscript("and what about rome", time.monotonic_ns()))
    r.rec.wait("preemptive_start")
    r.engine.stop()  # the speaker's channel is closed before the held answer is dropped
    assert r.rec.wait("preemptive_discarded").data["why"] == "shutting down"
    assert not any(s.alive for s in r.engine.stages)
    assert [x["text"] for x in r.engine.turnlog.rows()] == ["tell me about paris", done["text"]]


def test_start_up_recovers_turns_a_crash_left_open(tmp_path):
    t = TurnLog(tmp_path / "turns.db")
    u = t.add_user("c", "hello")
    a = t.begin_assistant("c", u)
    t.checkpoint(a, text="Hello, I was", heard_text="Hello,")
    t.close()
    r = Rig(tmp_path, ["Hi."])
    r.engine.start()
    try:
        assert r.engine.recovered == [a]
        row = r.row(a)
        assert (row["status"], row["interrupt_reason"], row["heard_text"]) == ("interrupted", "crash", "Hello,")
    finally:
        r.engine.stop()


def test_a_new_conversation_starts_after_the_idle_timeout(tmp_path):
    clock = Clock()
    r = Rig(tmp_path, ["Hi."], settings=Settings(conversation=ConversationSettings(idle_timeout_s=5), turn=NO_JOIN),
            clock=clock)
    r.engine.start()
    try:
        r.say("one")
        first = r.finished()
        clock.advance(60)  # a minute of quiet
        r.say("two")
        second = r.rec.wait("turn_finished", turn=first["turn"] + 2).data
        rows = {x["id"]: x for x in r.engine.turnlog.rows()}
        assert rows[first["turn"]]["conversation_id"] != rows[second["turn"]]["conversation_id"]
        assert r.llm.calls[1][1:] == [{"role": "user", "content": "two"}]
    finally:
        r.engine.stop()


# ---- barge-in's pause: quiet at once, words commit, no words resume where it stopped


def pause_rig(rig, window_s: float = 0.5, min_words: int = 1, **kw) -> Rig:
    settings = Settings(barge_in=BargeInSettings(mode="pause", commit_window_s=window_s, min_words=min_words),
                        turn=NO_JOIN)
    return rig([LONG], settings=settings, **kw)


def paused_at_speaking(r: Rig) -> int:
    r.say("tell me about paris")
    turn = r.rec.wait("first_audio").data["turn"]
    assert wait_until(lambda: len(r.played()) >= 3), "no three words played"
    assert r.c.pause(onset_ns=time.monotonic_ns())
    r.rec.wait("speech_paused", turn=turn)
    assert wait_until(lambda: r.sink.aborts >= 1), "the pause did not silence the speaker"
    return turn


def test_a_pause_with_no_words_resumes_where_it_stopped_and_is_logged(rig):
    r = pause_rig(rig)
    turn = paused_at_speaking(r)
    resumed = r.rec.wait("false_interruption", turn=turn).data
    done = r.finished(turn)
    row = r.row(turn)
    assert row["status"] == "complete" and row["heard_text"] == row["text"] == LONG
    # nothing lost, nothing played twice: the words that reached the ear are the answer, once each
    assert r.tts.words_in(r.sink.audible()) == LONG.split()
    assert r.sink.aborts >= 1, "the pause did not silence the speaker"
    assert resumed["why"] == "no words within 0.5 s" and resumed["paused_ms"] >= 500
    assert row["metrics"]["false_interruptions"] == 1 and row["metrics"] == done["metrics"]
    seq = r.rec.sequence(turn)
    assert seq.index("speech_paused") < seq.index("false_interruption") < seq.index("turn_finished")
    assert "speech_interrupted" not in seq


def test_words_while_paused_commit_the_interrupt_with_what_was_heard_before_the_pause(rig):
    r = pause_rig(rig, window_s=5.0)
    turn = paused_at_speaking(r)
    before = r.played()
    # paused: generation goes on to the end of the answer, and nothing more plays
    assert wait_until(lambda: r.row(turn)["text"] == LONG), "generation stopped at the pause"
    r.c.post(PartialTranscript("stop please"))  # partials flip over a cough: only the final commits
    r.rec.wait("partial", text="stop please")
    assert r.c.active_turn == turn and "speech_interrupted" not in r.rec.sequence(turn)
    r.c.post(Utterance("stop please", time.monotonic_ns(), confidence=(0.9, 0.6)))
    done = r.finished(turn)
    row = r.row(turn)
    assert (row["status"], row["interrupt_reason"], row["interrupt_kind"]) == ("interrupted", "user_speaking",
                                                                                "full")
    assert r.tts.words_in(r.sink.audible()) == before, "audio played after the pause"
    assert_word_prefix(row["heard_text"], LONG)
    assert before[:len(row["heard_text"].split())] == row["heard_text"].split()
    assert {"pause_to_commit_ms", "interrupt_to_silence_ms"} <= set(row["metrics"])
    assert row["metrics"]["pause_to_commit_ms"] >= 300 and "false_interruption" not in r.rec.sequence(turn)
    assert done["reason"] == "user_speaking"


def resumable_pause_rig(rig, window_s: float) -> Rig:
    """A pause rig whose LLM can leave an answer and resume it, slow enough to be mid-answer at the pause."""
    r = pause_rig(rig, window_s=window_s)
    r.llm = r.engine.thinker.llm = ResumableFakeLLM([LONG], token_delay_s=0.08)
    return r


def test_a_pause_with_no_words_lets_the_llm_go_on_generating(rig):
    r = resumable_pause_rig(rig, window_s=1.0)
    turn = paused_at_speaking(r)
    assert wait_until(lambda: r.row(turn)["text"] == LONG), "generation stopped at a pause with no words"
    assert r.finished(turn)["status"] == "complete"
    assert r.llm.resumed == [] and r.played() == LONG.split()


def test_words_over_a_paused_answer_take_the_llm_and_it_goes_on_from_its_words_if_the_pause_resumes(rig):
    r = resumable_pause_rig(rig, window_s=5.0)
    turn = paused_at_speaking(r)
    r.c.post(PartialTranscript("ah"))  # a cough the recogniser heard as a word
    assert wait_until(lambda: r.llm.prefilled), "the words over the paused answer were not prefilled"
    left_at = r.row(turn)["text"]
    assert left_at != LONG, "the answer was whole before the pause"
    r.c.post(Utterance("ah", time.monotonic_ns(), confidence=(0.9,)))  # a filler: no turn, the answer resumes
    r.rec.wait("false_interruption", turn=turn)
    assert r.finished(turn)["status"] == "complete"
    (so_far,) = r.llm.resumed
    assert LONG.startswith(so_far) and so_far.startswith(left_at) and so_far != LONG, (so_far, left_at)
    row = r.row(turn)
    assert row["text"] == row["heard_text"] == LONG, "words lost or doubled where the answer was resumed"
    assert r.played() == LONG.split()


def test_words_over_a_paused_answer_prefill_the_prompt_that_answers_them_if_they_cut_in(rig):
    r = resumable_pause_rig(rig, window_s=5.0)
    turn = paused_at_speaking(r)
    r.c.post(PartialTranscript("tell me about rome"))
    assert wait_until(lambda: r.llm.prefilled), "the person's words over the paused answer were not prefilled"
    prefilled = r.llm.prefilled[-1]
    assert prefilled[-1] == {"role": "user", "content": "tell me about rome"}
    assert prefilled[-2] == {"role": "system", "content": cut_in_note("heard")}
    r.c.post(Utterance("tell me about rome", time.monotonic_ns(), confidence=(0.9, 0.9, 0.9, 0.9)))
    assert r.finished(turn)["status"] == "interrupted"
    assert r.llm.resumed == [], "a cut answer was resumed"
    r.finished()
    assert wait_until(lambda: len(r.llm.calls) == 2)
    assert r.llm.calls[1] == prefilled, "the answer's prompt is not the one prefilled"


def test_an_empty_final_resumes_at_once_and_fillers_are_not_words(rig):
    r = pause_rig(rig, window_s=10.0)
    turn = paused_at_speaking(r)
    r.c.post(PartialTranscript("oh"))  # a recogniser's word for a cough
    r.c.post(PartialTranscript("bought our"))  # partials never commit
    r.c.post(Utterance("uh", time.monotonic_ns()))
    resumed = r.rec.wait("false_interruption", turn=turn, timeout=5.0).data
    assert resumed["why"] == "too few words: 'uh'"
    assert r.finished(turn)["status"] == "complete"
    assert [x["role"] for x in r.engine.turnlog.rows()] == ["user", "assistant"], "a cough became a turn"


def test_speech_without_words_it_can_stand_by_keeps_the_answer_paused_until_the_person_has_said_them(rig):
    r = pause_rig(rig, window_s=0.4)
    turn = paused_at_speaking(r)
    # a quiet reader over the echo: seconds of sure speech, and the recogniser finds no word in it
    r.c.post(Utterance("", time.monotonic_ns(), sustained_ms=512))
    r.c.post(SpeechStarted(time.monotonic_ns(), 0))
    lasts(0.8)  # they read on past the window
    assert "false_interruption" not in r.rec.sequence(turn), "the answer resumed over the person"
    r.c.post(Utterance("ever failed", time.monotonic_ns(), confidence=(0.8, 0.85), sustained_ms=672))
    assert r.finished(turn)["reason"] == "user_speaking"


def test_a_phrase_over_the_pause_with_no_words_caught_cuts_the_answer_and_asks_again(rig):
    r = pause_rig(rig, window_s=0.4)
    turn = paused_at_speaking(r)
    # "Stop. Tell me about..." over a reverberant room and a television: the recogniser doubts every word
    r.c.post(Utterance("now yes", time.monotonic_ns(), confidence=(0.116, 0.123), sustained_ms=1664,
                       foreground_ms=1200))
    cut = r.finished(turn)
    assert (cut["status"], cut["reason"]) == ("interrupted", "user_speaking")
    assert "false_interruption" not in r.rec.sequence(turn), "the answer resumed over the person"
    reply = TurnSettings().not_caught_reply
    again = r.finished(turn + 2)
    assert again["status"] == "complete" and again["text"] == reply
    rows = r.engine.turnlog.rows()
    assert [(x["role"], x["text"]) for x in rows[2:]] == [("user", ""), ("assistant", reply)]
    assert rows[2]["metrics"] == {"not_caught": True, "speech_ms": 1200}
    assert rows[1]["heard_text"] and rows[1]["heard_text"] != LONG


def test_a_reader_going_on_over_the_question_again_is_not_asked_twice(rig):
    r = pause_rig(rig, window_s=0.4)
    turn = paused_at_speaking(r)
    missed = dict(confidence=(0.147,), sustained_ms=1088, foreground_ms=800)  # "Ever tried." read quietly
    r.c.post(Utterance("it", time.monotonic_ns(), **missed))
    r.finished(turn)
    again = r.rec.wait("turn_started", turn=turn + 2).data["turn"]
    assert r.c.pause(onset_ns=time.monotonic_ns())  # "Ever failed." over the question
    r.rec.wait("speech_paused", turn=again)
    r.c.post(Utterance("ever", time.monotonic_ns(), **missed))
    assert (r.finished(again)["reason"]) == "user_speaking"
    assert r.c.wait_state(State.IDLE, WAIT)
    rows = r.engine.turnlog.rows()
    assert [x["role"] for x in rows] == ["user", "assistant", "user", "assistant"], "asked again over the reader"
    assert (rows[2]["text"], rows[3]["text"]) == ("", TurnSettings().not_caught_reply)


def test_speech_without_words_resumes_the_answer_once_the_room_is_quiet_for_the_window(rig):
    r = pause_rig(rig, window_s=0.4)
    turn = paused_at_speaking(r)
    # coughs under a television: the recogniser's sustained speech counts the television's words
    r.c.post(Utterance("oh", time.monotonic_ns(), confidence=(0.11,), sustained_ms=1440, foreground_ms=480))
    resumed = r.rec.wait("false_interruption", turn=turn, timeout=5.0).data
    assert resumed["why"] == "no words within 0.4 s"
    assert r.finished(turn)["status"] == "complete"
    assert [x["role"] for x in r.engine.turnlog.rows()] == ["user", "assistant"], "no words became a turn"


def test_min_words_lets_a_lone_okay_pass_and_a_sentence_through(rig):
    r = pause_rig(rig, window_s=10.0, min_words=2)
    turn = paused_at_speaking(r)
    r.c.post(PartialTranscript("okay"))
    r.c.post(Utterance("okay", time.monotonic_ns()))
    assert r.rec.wait("false_interruption", turn=turn, timeout=5.0).data["words"] == "okay"
    assert r.c.wait_state(State.SPEAKING, WAIT)
    assert r.c.pause(onset_ns=time.monotonic_ns())
    r.c.post(Utterance("okay stop", time.monotonic_ns()))
    assert r.finished(turn)["reason"] == "user_speaking"


def test_a_cough_the_recogniser_wrote_as_words_it_doubts_resumes_and_is_no_turn(rig):
    r = pause_rig(rig, window_s=10.0)
    turn = paused_at_speaking(r)
    # pocketsphinx's finals for the simulator's double coughs: "i bought" at 0.10 / 0.17, a lone "the" at 0.48
    r.c.post(Utterance("i bought", time.monotonic_ns(), confidence=(0.10, 0.17)))
    assert r.rec.wait("false_interruption", turn=turn, timeout=5.0).data["words"] == "i bought"
    assert r.c.wait_state(State.SPEAKING, WAIT)
    assert r.c.pause(onset_ns=time.monotonic_ns())
    r.c.post(Utterance("the", time.monotonic_ns(), confidence=(0.48,)))
    r.rec.wait("false_interruption", turn=turn, words="the", timeout=5.0)
    assert r.finished(turn)["status"] == "complete"
    assert [x["role"] for x in r.engine.turnlog.rows()] == ["user", "assistant"], "a cough became a turn"


def test_a_pause_waits_past_its_window_for_the_final_of_speech_in_progress(rig):
    r = pause_rig(rig, window_s=0.3)
    turn = paused_at_speaking(r)
    r.c.post(SpeechStarted(time.monotonic_ns(), 0))
    lasts(0.8)  # the person talks on past the 0.3 s window
    assert "false_interruption" not in r.rec.sequence(turn)
    r.c.post(Utterance("stop, tell me about rome", time.monotonic_ns(), confidence=(0.2, 1.0, 1.0, 1.0, 1.0, 0.9)))
    assert r.finished(turn)["reason"] == "user_speaking"
    assert "false_interruption" not in r.rec.sequence(turn)


def test_a_final_that_comes_after_newer_speech_began_does_not_end_that_speech(rig):
    r = pause_rig(rig, window_s=0.3)
    first = paused_at_speaking(r)
    # a busy recogniser: the person's next words began (sample 48000) before the final of "stop" (ended 40000)
    r.c.post(SpeechStarted(time.monotonic_ns(), 48_000))
    r.c.post(Utterance("stop", time.monotonic_ns(), 40_000, confidence=(0.9,)))
    assert r.finished(first)["reason"] == "user_speaking"
    second = r.rec.wait("first_audio", turn=first + 2).data["turn"]
    assert r.c.pause(onset_ns=time.monotonic_ns())
    r.rec.wait("speech_paused", turn=second)
    lasts(0.8)  # the newer speech goes on past the 0.3 s window
    assert "false_interruption" not in r.rec.sequence(second), "the answer resumed over the person"
    r.c.post(Utterance("tell me about rome", time.monotonic_ns(), 90_000, confidence=(1.0,) * 4))
    assert r.finished(second)["reason"] == "user_speaking"


def test_a_sound_too_short_for_speech_resumes_after_a_quiet_moment(rig):
    r = pause_rig(rig, window_s=10.0)
    turn = paused_at_speaking(r)
    r.c.post(SpeechDropped(time.monotonic_ns()))
    assert r.rec.wait("false_interruption", turn=turn, timeout=5.0).data["why"] == \
        "the sound was too short to be speech"
    assert r.finished(turn)["status"] == "complete"


def test_the_button_during_a_pause_is_never_undone(rig):
    r = pause_rig(rig, window_s=0.3)
    turn = paused_at_speaking(r)
    before = r.tts.words_in(r.sink.audible())
    assert r.c.button()
    done = r.finished(turn)  # the turn is closed: nothing can resume it from here on
    assert (done["status"], done["reason"]) == ("interrupted", "button")
    assert r.tts.words_in(r.sink.audible()) == before
    assert "false_interruption" not in r.rec.sequence(turn)


def test_a_pause_while_thinking_holds_the_first_word_until_it_resumes(rig):
    r = pause_rig(rig, window_s=0.4, llm_kwargs={"first_token_delay_s": 0.3})
    r.say("tell me about paris")
    turn = r.rec.wait("turn_started").data["turn"]
    assert r.c.wait_state(State.THINKING, WAIT)
    assert r.c.pause()
    r.rec.wait("false_interruption", turn=turn)
    assert r.finished(turn)["status"] == "complete"
    seq = r.rec.sequence(turn)
    assert seq.index("speech_paused") < seq.index("false_interruption") < seq.index("first_audio")
    assert r.tts.words_in(r.sink.audible()) == LONG.split()


# ---- turn-taking: preemptive answers, the person going on, timeouts


def test_a_preemptive_answer_is_held_until_the_turn_is_final_then_played_as_the_answer(rig):
    r = rig(["Oslo is the capital of Norway."], llm_kwargs={"first_token_delay_s": 0.0})
    r.c.post(SpeechStarted(time.monotonic_ns()))
    r.c.post(TentativeTranscript("what is the capital of norway", time.monotonic_ns()))
    r.rec.wait("preemptive_start")
    # it is generated and synthesized, but the turn is not over: nothing plays and nothing is logged
    assert wait_until(lambda: r.tts.rendered)
    assert len(r.sink.audible()) == 0 and r.engine.turnlog.rows() == []
    assert r.c.state is State.LISTENING
    r.c.post(Utterance("what is the capital of norway", time.monotonic_ns()))
    done = r.finished()
    assert done["status"] == "complete" and done["metrics"]["preemptive"] == "used"
    assert len(r.llm.calls) == 1, "the answer was asked for twice"
    rows = r.engine.turnlog.rows()
    assert [(x["role"], x["status"]) for x in rows] == [("user", "complete"), ("assistant", "complete")]
    assert rows[1]["reply_to"] == rows[0]["id"] and rows[1]["text"] == "Oslo is the capital of Norway."
    assert r.tts.words_in(r.sink.audible()) == rows[1]["text"].split()
    # the log's order is kept: the user turn, then the answer started, then its audio
    seq = r.rec.sequence()
    assert seq.index("user_turn") < seq.index("turn_started") < seq.index("first_audio")


def test_a_preemptive_answer_to_a_turn_that_went_on_is_never_spoken_nor_logged(rig):
    r = rig(lambda m: f"About {m[-1]['content']}.", llm_kwargs={"first_token_delay_s": 0.0})
    r.c.post(SpeechStarted(time.monotonic_ns()))
    r.c.post(TentativeTranscript("what is the capital", time.monotonic_ns()))
    r.rec.wait("preemptive_start")
    assert wait_until(lambda: r.tts.rendered)
    r.c.post(SpeechResumed(time.monotonic_ns()))
    assert r.rec.wait("preemptive_discarded").data["why"] == "the person went on"
    r.c.post(Utterance("what is the capital of norway", time.monotonic_ns()))
    done = r.finished()
    assert done["text"] == "About what is the capital of norway." and "preemptive" not in done["metrics"]
    assert r.tts.words_in(r.sink.audible()) == done["text"].split()
    assert r.sink.aborts == 0, "the held answer was cut from the speaker although it never played"
    assert [x["text"] for x in r.engine.turnlog.rows()] == ["what is the capital of norway", done["text"]]


def test_a_final_unlike_the_words_at_the_pause_starts_the_answer_afresh(rig):
    r = rig(lambda m: f"About {m[-1]['content']}.")
    r.c.post(SpeechStarted(time.monotonic_ns()))
    r.c.post(TentativeTranscript("how tall", time.monotonic_ns()))
    r.rec.wait("preemptive_start")
    r.c.post(Utterance("how tall is everest", time.monotonic_ns()))
    done = r.finished()
    assert done["text"] == "About how tall is everest." and r.rec.wait("preemptive_discarded")
    assert r.tts.words_in(r.sink.audible()) == done["text"].split()


@pytest.mark.parametrize("said, unfinished", [("what is the capital of", False), ("what is that", True)])
def test_words_that_trail_off_are_prefilled_not_answered_and_the_person_goes_on(rig, said, unfinished):
    """Words trail off when they stop on "of", or when the transcriber heard the last said unfinished."""
    clock = Clock()
    r = rig([], clock=clock)
    r.llm = r.engine.thinker.llm = ResumableFakeLLM(lambda m: f"About {m[-1]['content']}.")
    r.c.post(SpeechStarted(clock()))
    r.c.post(TentativeTranscript(said, clock(), trails_off=unfinished))
    assert wait_until(lambda: r.llm.prefilled), "the words at the pause were not prefilled"
    assert r.llm.prefilled[-1][-1]["content"] == said
    assert "preemptive_start" not in r.rec.sequence(), "an answer started on words that trail off"
    r.c.post(SpeechResumed(clock()))
    r.c.post(Utterance(f"{said} norway", clock()))
    done = r.finished()
    assert done["text"] == f"About {said} norway." and "preemptive" not in done["metrics"]
    seq = r.rec.sequence()
    assert "preemptive_start" not in seq and "preemptive_discarded" not in seq
    assert len(r.llm.calls) == 1


def test_words_that_trail_off_get_an_answer_started_once_the_pause_is_long(rig):
    clock = Clock()
    turn = TurnSettings(join_window_s=0, pause_ms=200, max_silence_ms=1100)
    r = rig([], clock=clock, settings=Settings(turn=turn))
    r.llm = r.engine.thinker.llm = ResumableFakeLLM(lambda m: f"About {m[-1]['content']}.")
    r.c.post(SpeechStarted(clock()))
    r.c.post(TentativeTranscript("tell me what the time is", clock()))
    assert wait_until(lambda: r.llm.prefilled)
    assert "preemptive_start" not in r.rec.sequence()
    clock.advance(0.9)  # the pause has lasted as long as one the end-of-turn model calls incomplete
    assert r.rec.wait("preemptive_start").data["text"] == "tell me what the time is"
    r.c.post(Utterance("tell me what the time is", clock()))
    done = r.finished()
    assert done["metrics"]["preemptive"] == "used" and len(r.llm.calls) == 1


def join_rig(rig, **kw) -> Rig:
    return rig(lambda m: f"About {m[-1]['content']}.", settings=Settings(turn=TurnSettings(join_window_s=4.0)),
               **kw)


def going_on_while_thinking(rig, said: str) -> tuple[Rig, dict]:
    """The person says `said`, and speaks again while its answer is still thinking: the rig and that
    answer's turn_started event."""
    r = join_rig(rig, llm_kwargs={"first_token_delay_s": 0.5})
    r.say(said)
    first = r.rec.wait("turn_started").data
    assert r.c.wait_state(State.THINKING, WAIT)
    r.c.post(SpeechStarted(time.monotonic_ns()))
    return r, first


def test_words_while_thinking_join_the_turn_and_it_is_answered_once(rig):
    r, first = going_on_while_thinking(rig, "ever tried")
    r.c.post(Utterance("ever failed", time.monotonic_ns()))
    cut = r.finished(first["turn"])
    assert (cut["reason"], cut["heard_text"]) == ("superseded", "")
    second = r.rec.wait("turn_started", reply_to=first["reply_to"], turn=first["turn"] + 1).data
    done = r.finished(second["turn"])
    assert done["status"] == "complete" and done["text"] == "About ever tried ever failed."
    rows = r.engine.turnlog.rows()
    assert [(x["role"], x["interrupt_reason"]) for x in rows] == [("user", None), ("assistant", "superseded"),
                                                                  ("assistant", None)]
    assert rows[0]["text"] == "ever tried ever failed"
    # the LLM answered the joined turn, without the dropped answer or a note about it
    assert r.llm.calls[-1][1:] == [{"role": "user", "content": "ever tried ever failed"}]
    assert r.rec.wait("user_turn", joined=True).data["turn"] == first["reply_to"]


def test_words_at_a_pause_over_an_unheard_answer_start_the_joined_answer_before_the_final(rig):
    r, first = going_on_while_thinking(rig, "tell me about the history")
    assert r.c.pause(onset_ns=time.monotonic_ns())
    r.c.post(TentativeTranscript("um", time.monotonic_ns()))  # no words: nothing is dropped yet
    r.c.post(TentativeTranscript("of spain", time.monotonic_ns()))
    cut = r.finished(first["turn"])
    assert (cut["reason"], cut["heard_text"]) == ("superseded", "")
    assert r.rec.wait("preemptive_start").data["text"] == "tell me about the history of spain"
    assert r.rec.sequence().count("user_turn") == 1, "the joined answer waited for the final"
    r.c.post(Utterance("of spain", time.monotonic_ns()))
    second = r.rec.wait("turn_started", preemptive=True).data
    done = r.finished(second["turn"])
    assert done["text"] == "About tell me about the history of spain." and done["metrics"]["preemptive"] == "used"
    assert r.engine.turnlog.rows()[0]["text"] == "tell me about the history of spain"


def test_words_after_an_answer_was_heard_are_a_new_turn(rig):
    r = join_rig(rig)
    r.say("tell me about paris")
    first = r.rec.wait("first_audio").data["turn"]
    assert wait_until(lambda: r.row(first)["heard_text"])
    r.c.post(Utterance("and rome", time.monotonic_ns()))
    assert r.finished(first)["reason"] == "user_speaking"
    assert [x["role"] for x in r.engine.turnlog.rows()][:3] == ["user", "assistant", "user"]


def test_speech_that_began_before_a_word_was_heard_joins_even_when_reported_late(rig):
    r = join_rig(rig)
    r.say("tell me about paris")
    first = r.rec.wait("turn_started").data["turn"]
    onset = time.monotonic_ns()  # the person went on while it was thinking; a busy listener is behind
    r.rec.wait("first_audio", turn=first)
    assert wait_until(lambda: r.row(first)["heard_text"])
    assert r.c.interrupt("full", "user_speaking", onset_ns=onset)
    r.c.post(Utterance("and rome", time.monotonic_ns()))
    cut = r.finished(first)
    assert cut["reason"] == "superseded" and cut["heard_text"], "what played over the person is still logged"
    rows = r.engine.turnlog.rows()
    assert [(x["role"], x["interrupt_reason"]) for x in rows][:2] == [("user", None), ("assistant", "superseded")]
    assert rows[0]["text"] == "tell me about paris and rome"


def test_speech_that_began_after_a_word_was_heard_cuts_in(rig):
    r = join_rig(rig)
    r.say("tell me about paris")
    first = r.rec.wait("first_audio").data["turn"]
    assert wait_until(lambda: r.row(first)["heard_text"])
    assert r.c.interrupt("full", "user_speaking", onset_ns=time.monotonic_ns())
    r.c.post(Utterance("and rome", time.monotonic_ns()))
    assert r.finished(first)["reason"] == "user_speaking"
    assert [x["role"] for x in r.engine.turnlog.rows()][:3] == ["user", "assistant", "user"]


def test_a_sound_with_no_words_that_cut_an_unheard_answer_gets_the_turn_answered_after_all(rig):
    settings = Settings(barge_in=BargeInSettings(mode="immediate"), turn=TurnSettings(join_window_s=4.0))
    r = rig(["Paris is the capital of France."], settings=settings, llm_kwargs={"first_token_delay_s": 0.4})
    r.say("what is the capital of france")
    first = r.rec.wait("turn_started").data
    assert r.c.interrupt("full", "user_speaking")  # the listener in immediate mode, at a cough's onset
    assert r.finished(first["turn"])["reason"] == "superseded"
    r.c.post(SpeechDropped(time.monotonic_ns()))
    again = r.rec.wait("turn_started", turn=first["turn"] + 1).data
    assert again["reply_to"] == first["reply_to"] and r.finished(again["turn"])["status"] == "complete"
    assert [x["role"] for x in r.engine.turnlog.rows()] == ["user", "assistant", "assistant"]


def test_an_answer_cut_for_time_ends_at_a_whole_sentence(rig):
    settings = Settings(llm=LLMSettings(max_seconds=1.0), turn=NO_JOIN)
    answer = "One two three four five six. Seven eight nine ten. " + " ".join(["more"] * 300)
    r = rig([answer], llm_kwargs={"token_delay_s": 0.02}, settings=settings)
    r.say("count")
    done = r.finished(timeout=WAIT)
    assert (done["status"], done["reason"], done["kind"]) == ("interrupted", "timeout", "full")
    assert done["heard_text"] == "One two three four five six. Seven eight nine ten."
    assert r.tts.words_in(r.sink.audible()) == done["heard_text"].split()
    assert done["text"].startswith(done["heard_text"] + " more"), "what was generated is logged"


def test_waiting_for_the_voice_does_not_count_against_the_llm_time_limit(rig):
    settings = Settings(llm=LLMSettings(max_seconds=1.0), turn=NO_JOIN)
    r = rig(["A short first part, then the rest of a short answer."], settings=settings,
            tts_kwargs={"render_delay_s": 1.2})
    r.say("hello")
    done = r.finished(timeout=WAIT)
    assert done["status"] == "complete", done


def test_a_log_that_cannot_be_written_is_said_once_out_loud_and_the_answers_go_on(tmp_path):
    db = tmp_path / "turns.db"
    turnlog = TurnLog(db, retry_s=0.1)
    rec = Recorder()
    llm, tts, sink = FakeLLM(["Paris is the capital."]), FakeTTS(ms_per_char=2.0, gap_ms=5.0), FakeSpeakerSink()
    engine = Engine(llm=llm, tts=tts, sink=sink, turnlog=turnlog, settings=Settings(turn=NO_JOIN),
                    observers=[rec]).start()
    try:
        pages = turnlog._db.execute("PRAGMA page_count").fetchone()[0]
        with turnlog._lock:
            turnlog._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL from the next page on
        for n, question in enumerate(["x" * 20000, "and again"], 1):
            engine.conductor.post(Utterance(question, time.monotonic_ns()))
            assert engine.conductor.wait_state(State.SPEAKING, WAIT)
            rec.wait("turn_finished", turn=rec.wait("turn_started", reply_to=2 * n - 1).data["turn"])
        first, second = [e.data for e in rec.events if e.type == "turn_finished"]
        assert first["text"] == "I can't remember our conversation right now, but I can still answer. " \
                                "Paris is the capital." and first["status"] == "complete"
        assert second["text"] == "Paris is the capital.", "the notice is said once per outage"
        assert rec.wait("turn_log").data["writable"] is False
        with turnlog._lock:
            turnlog._db.execute("PRAGMA max_page_count = 1000000")
        assert rec.wait("turn_log", writable=True)
    finally:
        engine.stop()
        turnlog.close()
    rows = sqlite3.connect(db).execute("SELECT role, status FROM turns ORDER BY id").fetchall()
    assert rows == [("user", "complete"), ("assistant", "complete")] * 2


def test_an_empty_final_after_an_unheard_answer_was_cut_gets_the_turn_answered_after_all(rig):
    settings = Settings(barge_in=BargeInSettings(mode="immediate"), turn=TurnSettings(join_window_s=4.0))
    r = rig(["Paris is the capital of France."], settings=settings, llm_kwargs={"first_token_delay_s": 0.4})
    r.say("what is the capital of france")
    first = r.rec.wait("turn_started").data
    assert r.c.interrupt("full", "user_speaking")
    r.c.post(Utterance("", time.monotonic_ns()))  # may come before or after the cut answer is closed
    assert r.finished(first["turn"])["reason"] == "superseded"
    again = r.rec.wait("turn_started", turn=first["turn"] + 1).data
    assert again["reply_to"] == first["reply_to"] and r.finished(again["turn"])["status"] == "complete"


def test_speech_with_no_words_found_in_it_is_asked_again_and_left_out_of_the_history(rig):
    asked = []
    r = rig(lambda m: asked.append(m) or "Oslo is the capital of Norway.")
    r.c.post(SpeechStarted(time.monotonic_ns()))
    r.c.post(Utterance("", time.monotonic_ns(), foreground_ms=1200))
    done = r.finished()
    reply = TurnSettings().not_caught_reply
    assert done["status"] == "complete" and r.played() == reply.split()
    user, answer = r.engine.turnlog.rows()
    assert (user["text"], user["metrics"]) == ("", {"not_caught": True, "speech_ms": 1200})
    assert (answer["text"], answer["heard_text"], answer["reply_to"]) == (reply, reply, user["id"])
    assert asked == []  # a fixed reply: the LLM is not asked
    assert r.c.wait_state(State.IDLE, WAIT)
    r.say("what is the capital of norway")
    r.finished(done["turn"] + 2)
    assert [(m["role"], m["content"]) for m in asked[0][1:]] == [("user", "what is the capital of norway")]


@pytest.mark.parametrize("foreground_ms", [None, 320])
def test_a_sound_with_no_words_and_little_sure_speech_is_no_turn(rig, foreground_ms):
    r = rig(["Oslo."])
    r.c.post(SpeechStarted(time.monotonic_ns()))
    assert r.rec.wait("state", state="listening")
    r.c.post(Utterance("", time.monotonic_ns(), foreground_ms=foreground_ms))  # a cough, a clap
    r.rec.wait("state", state="idle")
    r.say("and now a question")
    r.finished()
    assert [(x["role"], x["text"]) for x in r.engine.turnlog.rows()] == [("user", "and now a question"),
                                                                        ("assistant", "Oslo.")]


def wake_rig(rig, clock, **kw) -> Rig:
    return rig(lambda m: f"About {m[-1]['content']}.", clock=clock, wake=WakeModel("okay_nabu"),
               settings=Settings(turn=NO_JOIN, wake=WakeSettings(listen_s=6.0, follow_up_s=5.0)), **kw)


def test_with_a_wake_word_speech_without_it_is_no_turn_and_with_it_is_answered(rig):
    clock = Clock()
    r = wake_rig(rig, clock)
    r.say("what is on television")
    assert r.rec.wait("ignored").data["text"] == "what is on television"
    onset = clock()
    r.c.post(SpeechStarted(onset))
    r.c.post(WakeWordHeard("okay_nabu", 0.97, onset + 700_000_000))
    r.c.post(Utterance("what is the capital of italy", clock()))
    done = r.finished()
    assert done["text"] == "About what is the capital of italy." and done["status"] == "complete"
    rows = r.engine.turnlog.rows()
    assert [(x["role"], x["text"]) for x in rows][0] == ("user", "what is the capital of italy")
    assert rows[0]["metrics"] == {"wake": "word"}
    assert [e.type for e in r.rec.events if e.type in ("ignored", "wake_word", "listening", "user_turn")] == [
        "ignored", "wake_word", "listening", "user_turn"]


def test_with_a_wake_word_a_wake_phrase_said_alone_is_not_asked_again(rig):
    clock = Clock()
    r = wake_rig(rig, clock)
    onset = clock()
    r.c.post(SpeechStarted(onset))
    r.c.post(WakeWordHeard("okay_nabu", 0.97, onset + 700_000_000))
    r.c.post(Utterance("", clock(), foreground_ms=900))  # the phrase, then a pause: the request may follow
    r.rec.wait("listening")
    r.c.post(SpeechStarted(clock()))
    r.c.post(Utterance("what is the capital of italy", clock()))
    assert r.finished()["text"] == "About what is the capital of italy."
    assert [x["text"] for x in r.engine.turnlog.rows() if x["role"] == "user"] == ["what is the capital of italy"]


def test_a_follow_up_needs_no_wake_word_until_its_window_closes(rig):
    clock = Clock()
    r = wake_rig(rig, clock)
    r.c.post(WakeWordHeard("okay_nabu", 0.9, clock()))
    r.say("how tall is everest")
    r.finished()
    r.say("and k2")  # within follow_up_s of the answer's end
    second = r.finished(r.rec.wait("turn_started", reply_to=3).data["turn"])
    assert second["text"] == "About and k2."
    clock.advance(6.0)
    r.say("and the alps")
    assert r.rec.wait("ignored").data["text"] == "and the alps"
    assert [x["metrics"].get("wake") for x in r.engine.turnlog.rows() if x["role"] == "user"] == ["word", "follow_up"]


def test_the_button_while_idle_is_push_to_talk(rig):
    clock = Clock()
    r = wake_rig(rig, clock)
    assert r.c.awaiting_wake
    assert r.c.button() is False  # nothing to stop: it listens instead
    assert r.rec.wait("listening").data["why"] == "button"
    assert not r.c.awaiting_wake
    # the earcon says so, through the speaker (with its echo reference, like an answer)
    assert wait_until(lambda: len(r.sink.audible()) >= len(earcon(r.sink.rate_hz)))
    assert np.array_equal(r.sink.audible()[:len(earcon(r.sink.rate_hz))], earcon(r.sink.rate_hz))
    r.say("what time is it")
    assert r.finished()["status"] == "complete"
    assert r.engine.turnlog.rows()[0]["metrics"] == {"wake": "button"}


def test_a_listening_window_closes_after_listen_s(rig):
    clock = Clock()
    r = wake_rig(rig, clock)
    r.c.button()
    r.rec.wait("listening")
    clock.advance(7.0)
    assert r.c.awaiting_wake
    r.say("what time is it")
    assert r.rec.wait("ignored").data["text"] == "what time is it"
    assert r.engine.turnlog.rows() == []


def speaking_after_a_wake_word(rig, clock) -> tuple[Rig, int]:
    """A rig answering "tell me about paris" (asked with the wake word), slowly; the answer's turn id."""
    r = wake_rig(rig, clock, tts_kwargs={"ms_per_char": 40.0})
    r.c.post(WakeWordHeard("okay_nabu", 0.9, clock()))
    r.say("tell me about paris")
    return r, r.rec.wait("first_audio").data["turn"]


def test_speech_over_an_answer_cuts_it_without_the_wake_word(rig):
    clock = Clock()
    r, first = speaking_after_a_wake_word(rig, clock)
    assert r.c.interrupt("full", "user_speaking", onset_ns=clock())
    r.c.post(Utterance("no rome", clock()))
    assert r.finished(first)["reason"] == "user_speaking"
    rows = r.engine.turnlog.rows()
    assert [(x["role"], x["metrics"].get("wake")) for x in rows if x["role"] == "user"] == [
        ("user", "word"), ("user", "follow_up")]


def test_the_wake_word_over_an_answer_stops_it_for_the_new_request(rig):
    clock = Clock()
    r, first = speaking_after_a_wake_word(rig, clock)
    r.c.post(SpeechStarted(clock()))
    r.c.post(WakeWordHeard("okay_nabu", 0.95, clock()))
    assert r.finished(first)["reason"] == "user_speaking"
    r.c.post(Utterance("what time is it", clock()))
    done = r.finished(r.rec.wait("turn_started", reply_to=first + 1).data["turn"])
    assert done["text"] == "About what time is it."
    assert [x["metrics"].get("wake") for x in r.engine.turnlog.rows() if x["role"] == "user"] == ["word", "word"]
