"""The conductor: the one owner of conversation state and the only writer of the turn log.

`interrupt()` may be called from any thread (listener, button, thinker): it
cancels the turn's scope at once, so the speaker is silent within one block and
the thinker stops within one token, then posts a control message that overtakes
queued data; the conductor flushes the cancelled turn's items, waits for the
thinker and speaker to acknowledge, and writes the one final status. `pause()`
is barge-in's softer first step: the speaker goes quiet as fast but generation
goes on, until the recogniser's final has words that commit the interrupt, or
none come (a cough, a door) and the answer resumes where it stopped, logged as
a `false_interruption` (pause.py holds that policy).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sayso.config import BargeInSettings, ConversationSettings, TurnSettings, WakeSettings
from sayso.errors import ChannelClosed, SaysoError
from sayso.hearing.turn import trails_off
from sayso.pipeline.answer import Answer
from sayso.pipeline.cancel import Cancellation, Scopes
from sayso.pipeline.channel import Channel, of_turn
from sayso.pipeline.conversation import Conversations
from sayso.pipeline.events import EventBus
from sayso.pipeline.messages import (
    Cancel,
    Earcon,
    Event,
    FirstAudio,
    FirstToken,
    FirstWordHeard,
    GenerateRequest,
    GenerationEnded,
    Heard,
    InterruptRequested,
    Kind,
    ListenRequested,
    PartialTranscript,
    Paused,
    PauseRequested,
    PlaybackEnded,
    Prefill,
    Reason,
    SpeechDropped,
    SpeechResumed,
    SpeechStarted,
    StageFailed,
    State,
    TentativeTranscript,
    TextCheckpoint,
    Utterance,
    WakeWordHeard,
)
from sayso.pipeline.metrics import timeline, turn_metrics
from sayso.pipeline.pause import Pause, commits, continues, has_words, unrecognised_speech
from sayso.pipeline.stage import Stage
from sayso.pipeline.turnlog import TurnLog, cut_answer
from sayso.pipeline.wake_gate import WakeGate

log = logging.getLogger(__name__)


CANNOT_REMEMBER = "I can't remember our conversation right now, but I can still answer."
"""Said once, before the next answer, when the turn log cannot be written."""


@dataclass(frozen=True)
class _Join:
    """A user turn whose answer was dropped because the person went on before hearing it: their next words join it."""

    user_row: int
    text: str


def _ms(a: int | None, b: int | None) -> float | None:
    return None if a is None or b is None else round((b - a) / 1e6, 3)


class Conductor(Stage):
    """Owns state (idle -> listening -> thinking -> speaking) and the turn log.

    Args:
        turnlog: the SQLite log; this stage is its only writer.
        requests, clauses, segments: the channels into thinker, voice and speaker.
        ack_timeout_s: after an interrupt, how long the thinker and speaker get to
            acknowledge before the turn is closed without them (and the hang logged).
        turn: end-of-turn settings: whether an answer may start preemptively at a short pause,
            and when the person's next words join their last turn.
        wake: with a wake word on, speech while idle is a request only through the gate (wake_gate.py);
            None takes every utterance.
    """

    name = "conductor"

    def __init__(self, turnlog: TurnLog, requests: Channel, clauses: Channel, segments: Channel, scopes: Scopes,
                 bus: EventBus, system_prompt: str, conversation: ConversationSettings | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, ack_timeout_s: float = 3.0,
                 barge_in: BargeInSettings | None = None, turn: TurnSettings | None = None,
                 wake: WakeSettings | None = None):
        super().__init__()
        self.turnlog, self.requests, self.clauses, self.segments = turnlog, requests, clauses, segments
        self.scopes, self.bus, self.clock = scopes, bus, clock
        self.system_prompt = system_prompt
        self.settings = conversation or ConversationSettings()
        self.barge_in = barge_in or BargeInSettings()
        self.turn_settings = turn or TurnSettings()
        self.ack_timeout_ns = int(ack_timeout_s * 1e9)
        self.inbox: Channel = Channel("conductor", capacity=1024)
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self._active: Answer | None = None
        self._preempt: Answer | None = None
        """An answer started at a short pause, generated and synthesized but held until the turn is final."""
        self._state = State.IDLE
        self._state_changes = 0
        self._queued: tuple[int | None, Utterance, str, str] | None = None
        """A user turn to answer once the cut answer is closed: its row, final, text and any fixed reply."""
        self._join: _Join | None = None
        """Set when an answer was superseded and closed before the words that dropped it were final."""
        self._tentative: TentativeTranscript | None = None
        """The words at a pause that dropped an unheard answer: its successor starts on them once it is closed."""
        self._deferred: tuple[int, TentativeTranscript] | None = None
        """Words at a pause that trail off, and when the silence is long enough to start an answer on them."""
        self.conversations = Conversations(turnlog, self.settings.idle_timeout_s, clock)
        self._hearing = False
        """Between a SpeechStarted and its final: a pause waits for that final."""
        self.gate = WakeGate(wake) if wake is not None else None
        self._onset_ns: int | None = None
        """When the person's newest speech began."""
        self._onset_sample = 0
        """Its mic sample: a final that ended before it is an older utterance's, late from a busy recogniser."""
        self._notice = ""
        """Said before the next answer: the turn log cannot be written (once per outage)."""
        turnlog.watch(self._cannot_remember, self._remembers_again)

    # ---- called from any thread

    def post(self, message: object) -> None:
        """A stage's report (or the listener's news) for the conductor."""
        self.inbox.put(message)

    def interrupt(self, kind: Kind | str, reason: Reason | str, onset_ns: int | None = None) -> bool:
        """Cancel the answer in flight; True if this call cancelled (or escalated) anything.

        While idle it does nothing. Two racing interrupts give one final status:
        the first fixes the reason, a later `full` still stops generation. The
        person's speech over an answer of which nothing was heard yet (see
        `_joins`) supersedes it: their words join their last turn.
        """
        kind, reason = Kind(kind), Reason(reason)
        with self._lock:
            turn = self._active
            if turn is None:
                log.debug("interrupt(%s, %s) while idle: nothing to stop", kind.value, reason.value)
                return False
            if reason is Reason.USER_SPEAKING and self._joins(turn, onset_ns) and not self._woke_in(onset_ns):
                reason = Reason.SUPERSEDED
            c = Cancellation(kind, reason, self.clock(), onset_ns)
            if not turn.scope.cancel(c):
                return False
        self.inbox.put_control(InterruptRequested(turn.id, kind, reason, c.t_ns, onset_ns))
        return True

    def pause(self, onset_ns: int | None = None) -> bool:
        """Silence the answer in flight now; True if there was one to pause. Generation goes on, or with
        an LLM that can resume it, waits while the LLM evaluates the person's words (see Thinker).

        The conductor then commits `interrupt(full, user_speaking)` once a
        final has `min_words` words the recogniser stands by, or resumes the
        answer when the speech is dropped as too short, ends without such words,
        or none is heard within `commit_window_s`. A cancel (the button) is
        never undone by a resume.
        """
        with self._lock:
            turn = self._active
            if turn is None or turn.scope.speech.is_set():
                return False
            turn.scope.paused.set()
        self.inbox.put_control(PauseRequested(turn.id, self.clock(), onset_ns))
        return True

    def button(self) -> bool:
        """The stop button (debounced by gpiozero): a hard full interrupt; while idle with a wake word on,
        push-to-talk (the next speech is a request)."""
        if self.interrupt(Kind.FULL, Reason.BUTTON):
            return True
        if self.gate is not None:
            self.inbox.put_control(ListenRequested(self.clock()))
        return False

    def stage_failed(self, stage: str, turn: int | None, exc: BaseException) -> None:
        self.inbox.put_control(StageFailed(stage, turn, f"{type(exc).__name__}: {exc}"))

    @property
    def state(self) -> State:
        return self._state

    @property
    def active_turn(self) -> int | None:
        """The turn log's id of the answer in flight."""
        t = self._active
        return t.row if t else None

    @property
    def state_changes(self) -> int:
        """How many times the state has changed so far: pass it as `since` to `wait_state`."""
        return self._state_changes

    def wait_state(self, state: State | str, timeout_s: float, since: int | None = None) -> bool:
        """Block until the conductor is in `state` (for the simulator and tests).

        With `since` (a `state_changes` value), only a state entered after that point
        counts: "speaking" then means the next answer, not the one already playing.
        """
        state = State(state)
        with self._lock:
            return self._lock.wait_for(
                lambda: self._state is state and (since is None or self._state_changes > since), timeout_s)

    def _cannot_remember(self, why: str) -> None:
        """The turn log stopped taking writes (from whichever thread noticed): answer on, and say so once."""
        log.error("the turn log cannot be written (%s): answering on, keeping turns in memory", why)
        self._notice = CANNOT_REMEMBER
        self._emit("turn_log", writable=False, why=why)

    def _remembers_again(self) -> None:
        log.info("the turn log takes writes again; the turns kept in memory are written")
        self._notice = ""
        self._emit("turn_log", writable=True)

    # ---- the conductor's own thread

    def step(self) -> None:
        msg = self.inbox.get(timeout=0.02)
        if msg is not None:
            self._handle(msg)
        turn = self._active
        why = turn and turn.pause and turn.pause.resume_reason(self.clock(), self._hearing,
                                                               self.barge_in.commit_window_s)
        if turn is not None and why:
            self._resume(turn, why)
        if self._deferred is not None and self.clock() >= self._deferred[0]:
            t, self._deferred = self._deferred[1], None
            self._on_tentative(t, long_pause=True)
        if turn and turn.ack_deadline_ns and self.clock() > turn.ack_deadline_ns:
            missing = [n for n, done in (("thinker", turn.gen_ended), ("speaker", turn.play_ended)) if not done]
            log.error("turn %s: %s did not acknowledge the interrupt within %.1fs; closing the turn without them",
                      turn.row, " and ".join(missing), self.ack_timeout_ns / 1e9)
            turn.gen_ended = turn.play_ended = True
            self._maybe_finish(turn)

    def _handle(self, msg: object) -> None:
        """One inbox message: the listener's news of the person, or a stage's report on an answer."""
        match msg:
            case Utterance():
                self._on_utterance(msg)
            case TentativeTranscript():
                self._on_tentative(msg)
            case SpeechResumed():
                self._tentative = self._deferred = None
                self._discard_preempt("the person went on")
            case SpeechStarted():
                self._hearing, self._onset_ns, self._onset_sample = True, msg.onset_ns, msg.onset_sample
                if self._state is State.IDLE:
                    self._set_state(State.LISTENING)
            case WakeWordHeard():
                self._on_wake(msg)
            case ListenRequested():
                if self._active is None and self.gate is not None:
                    self.gate.button(msg.t_ns)
                    self._listening("button")
            case PartialTranscript():
                self._emit("partial", text=msg.text)  # never commits a pause: partial words flip (pause.py)
                self._prefill_heard(msg.text)
            case SpeechDropped():
                if self._active and self._active.pause:
                    self._active.pause.sound_dropped(msg.t_ns)
                elif (join := self._join_of(self._active)) is not None:
                    self._answer_again(join)
            case _:
                self._on_report(msg)

    def _on_report(self, msg: object) -> None:
        """A stage's report, for the preemptive answer or the one in flight by its turn id; others came late."""
        turn_id = getattr(msg, "turn", None)
        if self._preempt is not None and turn_id == self._preempt.id:
            self._on_preempt_report(self._preempt, msg)
        elif self._active is not None and turn_id == self._active.id:
            self._on_answer_report(self._active, msg)
        else:
            log.debug("dropping %s: not for the turn in flight", type(msg).__name__)

    def _on_answer_report(self, turn: Answer, msg: object) -> None:
        match msg:
            case InterruptRequested():
                self._on_interrupt(turn, msg)
            case PauseRequested():
                self._on_pause(turn, msg)
            case Paused():
                if turn.pause is not None and turn.pause.silence_ns is None:
                    turn.pause.silence_ns = msg.silence_ns
                turn.heard = msg.words
            case FirstToken():
                turn.first_token_ns = msg.t_ns
                self._emit("first_token", turn=turn.row)
            case TextCheckpoint():
                turn.text = msg.text
                turn.first_chunk_ns = turn.first_chunk_ns or self.clock()
                self._write(self.turnlog.checkpoint, turn.row, text=msg.text)
            case FirstAudio():
                turn.first_audio_ns = msg.t_ns
                self._set_state(State.SPEAKING)
                self._emit("first_audio", turn=turn.row)
            case FirstWordHeard():
                turn.heard_from_ns = msg.t_ns
            case Heard():
                turn.heard = msg.words
                self._write(self.turnlog.checkpoint, turn.row, heard_text=" ".join(msg.words))
            case GenerationEnded():
                self._generation_ended(turn, msg)
                self._maybe_finish(turn)
            case PlaybackEnded():
                turn.play_ended, turn.playback_completed, turn.underruns = True, msg.completed, msg.underruns
                turn.heard, turn.silence_ns = msg.words, msg.silence_ns
                self._maybe_finish(turn)
            case StageFailed():
                self._on_stage_failed(turn, msg)

    @staticmethod
    def _generation_ended(turn: Answer, msg: GenerationEnded) -> None:
        turn.gen_ended, turn.gen_outcome, turn.llm_stop_ns = True, msg.outcome, msg.t_ns
        turn.text, turn.llm_busy_ms, turn.backend = msg.text or turn.text, msg.busy_ms, msg.backend

    def _on_utterance(self, u: Utterance) -> None:
        self._tentative = self._deferred = None
        newest = not (0 < u.eos_sample < self._onset_sample)
        onset_ns = self._onset_ns if newest and self._hearing else None  # this utterance's, when known
        if newest:
            self._hearing = False  # else the person is still saying what came after it
        text = u.text.strip()
        turn = self._active
        log.debug("final %r (posteriors %s, sustained speech %s ms, the person's %s ms)", text, u.confidence,
                  u.sustained_ms, u.foreground_ms)
        wake = self._request(turn)
        if wake is None:
            if text or not u.transcribed:
                log.info("not a request (no wake word): %r", text if u.transcribed else "(not transcribed)")
                self._emit("ignored", text=text, transcribed=u.transcribed)
            self._discard_preempt("not a request")
            if self._state is State.LISTENING:
                self._set_state(State.IDLE)
            return
        if turn is not None and turn.pause is not None:
            joins = self._joins(turn, turn.pause.onset_ns)
            going_on = joins and continues(u) and not self._woke_in(self._onset_ns)
            if not joins and unrecognised_speech(u):
                if self._spoke(u):
                    # the person said a whole phrase over the answer and the recogniser caught none of it:
                    # they meant to cut in, so it stops for good and asks them to say it again (once: over
                    # that question itself, someone reading on is let be until words come)
                    turn.committed, turn.pause = turn.pause, None
                    log.info("turn %s: %s ms of the person's speech over the pause and no words the recogniser "
                             "stands by (%r, posteriors %s): interrupting it", turn.row, u.foreground_ms, text,
                             u.confidence)
                    self.interrupt(Kind.FULL, Reason.USER_SPEAKING, onset_ns=turn.committed.onset_ns)
                    self._discard_preempt("the final had no words")
                    if wake == "always" and self.turn_settings.not_caught_reply and turn.user_text:
                        self._ask_again(u)
                    return
                # someone talking over an answer they heard, too quiet or far for the recogniser:
                # it stays quiet while they go on, and plays on once they have been quiet a window
                log.info("turn %s: speech over the pause without words the recogniser stands by (%r, posteriors "
                         "%s, sustained speech %s ms, the person's %s ms): still paused", turn.row, text,
                         u.confidence, u.sustained_ms, u.foreground_ms)
                turn.pause.more_sound(self.clock() + int(self.barge_in.commit_window_s * 1e9))
                return
            if not (going_on or commits(u, self.barge_in)):
                # a cough the recogniser heard as "oh" or "i bought", or an "uh-huh": the answer
                # goes on, and it is no turn
                log.info("turn %s: final over the pause %r (posteriors %s, sustained speech %s ms, the person's %s ms) "
                         "does not commit", turn.row, text, u.confidence, u.sustained_ms, u.foreground_ms)
                self._resume(turn, f"too few words: {text!r}" if text else "the speech had no words", text)
                return
            turn.committed, turn.pause = turn.pause, None
            log.info("turn %s: words over the paused answer (%r, posteriors %s, sustained speech %s ms, the person's "
                     "%s ms): interrupting it", turn.row, text, u.confidence, u.sustained_ms, u.foreground_ms)
            self.interrupt(Kind.FULL, Reason.USER_SPEAKING, onset_ns=turn.committed.onset_ns)
        elif turn is not None and text:  # cancel-then-send
            self.interrupt(Kind.FULL, Reason.USER_SPEAKING, onset_ns=onset_ns)
        join = self._join_of(turn)
        if not text:
            if join is not None:
                self._answer_again(join)
                return
            if turn is None and self._not_caught(u, wake):
                return
            log.debug("a final transcript with no words is not a turn")
            self._discard_preempt("the final had no words")
            if self._state is State.LISTENING:
                self._set_state(State.IDLE)
            return
        if join is not None:
            text = f"{join.text} {text}"
            user_id: int | None = join.user_row
            self._write(self.turnlog.amend_user, join.user_row, text)
            log.info("turn %s: the person went on before hearing its answer; it now reads %r", user_id, text)
            self._emit("user_turn", turn=user_id, text=text, joined=True)
        else:
            metrics = {} if self.gate is None else {"wake": wake}
            user_id = self._write(self.turnlog.add_user, self.conversations.current(), text, metrics=metrics)
            self._emit("user_turn", turn=user_id, text=text, **metrics)
            if self.gate is not None:
                self.gate.used(wake)
        if self._active is not None:
            # cancel-then-send: the new utterance waits until the cut answer is closed
            self._queued = (user_id, u, text, "")
            return
        self._start(user_id, u, text)

    def _not_caught(self, u: Utterance, wake: str) -> bool:
        """The person spoke, and the recogniser found no words in it: ask them to say it again rather than
        meet them with silence. Only with no wake word to wait for (a wake phrase on its own is not yet a
        request)."""
        if not self.turn_settings.not_caught_reply or wake != "always" or not self._spoke(u):
            return False
        log.info("%d ms of the person's speech and no words the recogniser stands by: asking again",
                 u.foreground_ms)
        self._discard_preempt("the final had no words")
        self._ask_again(u)
        return True

    def _spoke(self, u: Utterance) -> bool:
        """Whether this final held a run of the person's sure speech that a cough does not have."""
        return (u.transcribed and u.foreground_ms is not None
                and u.foreground_ms >= self.turn_settings.not_caught_speech_ms)

    def _ask_again(self, u: Utterance) -> None:
        """An empty user turn, answered with the fixed not-caught reply (after the cut answer, if one closes)."""
        user_id = self._write(self.turnlog.add_user, self.conversations.current(), "",
                              metrics={"not_caught": True, "speech_ms": u.foreground_ms})
        self._emit("user_turn", turn=user_id, text="", not_caught=True)
        if self._active is not None:
            self._queued = (user_id, u, "", self.turn_settings.not_caught_reply)
        else:
            self._start(user_id, u, "", reply=self.turn_settings.not_caught_reply)

    def _join_of(self, cut: Answer | None) -> _Join | None:
        """The user turn these words join, if the answer they cut was superseded."""
        join, self._join = self._join, None
        if cut is not None:
            first = cut.scope.first
            if first is None or first.reason is not Reason.SUPERSEDED or cut.reply_to is None:
                return None
            return _Join(cut.reply_to, cut.user_text)
        return join

    def _joins(self, turn: Answer, onset_ns: int | None) -> bool:
        """Whether the person's speech over `turn` goes on with the turn it answers rather than cutting in:
        it began before a word of the answer was heard, and while it was thinking or within the join window.

        The speech's onset decides, not when the listener got to it: a listener behind on a busy machine
        may report the person going on after the answer's first words played over them.
        """
        window_ns = int(self.turn_settings.join_window_s * 1e9)
        if window_ns <= 0 or turn.reply_to is None or not turn.user_text:
            return False  # nothing to join: a turn with no words was only asked to be said again
        if turn.heard and (onset_ns is None or turn.heard_from_ns is None or onset_ns >= turn.heard_from_ns):
            return False
        if turn.first_audio_ns is None:
            return True
        since = turn.speech_end_ns if turn.speech_end_ns is not None else turn.eos_ns
        return (onset_ns if onset_ns is not None else self.clock()) - since <= window_ns

    def _request(self, turn: Answer | None) -> str | None:
        """Why the person's newest speech is a request: always over an answer or going on with a turn
        (follow_up), else as the wake gate says; None when it is not one."""
        if self.gate is None:
            return "always"
        if turn is not None or self._join is not None or self._queued is not None:
            return "word" if self._woke_in(self._onset_ns) else "follow_up"
        return self.gate.admits(self._onset_ns)

    def _woke_in(self, onset_ns: int | None) -> bool:
        return self.gate is not None and self.gate.woke_in(onset_ns)

    def _on_wake(self, msg: WakeWordHeard) -> None:
        """The wake word: over an answer it stops it (the request follows); while idle it opens listening."""
        if self.gate is None:
            return
        self.gate.woke(msg.t_ns)
        self._emit("wake_word", word=msg.word, probability=msg.probability)
        turn = self._active
        if turn is not None:
            if turn.pause is not None:
                turn.committed, turn.pause = turn.pause, None
            log.info("turn %s: the wake word over the answer: stopping it for the new request", turn.row)
            self.interrupt(Kind.FULL, Reason.USER_SPEAKING, onset_ns=self._onset_ns)
        else:
            # no tone: the person may be saying the request already, or about to (a turn may end at the comma
            # after the wake word), and the echo guard takes speech under the tone for the appliance's own
            self._listening("word", earcon=False)

    def _listening(self, why: str, earcon: bool = True) -> None:
        """A window for a request opened: say so (the `listening` event, the LED) and play the earcon."""
        self._emit("listening", why=why)
        if earcon and self.gate is not None and self.gate.settings.earcon:
            self.segments.put_control(Earcon())

    @property
    def awaiting_wake(self) -> bool:
        """Idle with a wake word on and no window open: only the wake word (or the button) starts a request."""
        gate = self.gate
        return gate is not None and self._state is State.IDLE and not gate.open_at(self.clock())

    def _answer_again(self, join: _Join) -> None:
        """The sound that dropped an unheard answer had no words: answer the person's turn after all,
        once the dropped answer is closed."""
        log.info("turn %s: what cut its answer had no words; answering it again", join.user_row)
        again = (join.user_row, Utterance(join.text, self.clock()), join.text, "")
        if self._active is not None:
            self._queued = again
        else:
            self._start(*again)

    # ---- preemptive answers

    def _on_tentative(self, t: TentativeTranscript, long_pause: bool = False) -> None:
        """A short pause: start the answer on the words so far, held unheard until the turn is final.

        Words that trail off ("what is the capital of") are only prefilled: the turn waits the long
        silence after them, and an answer started now would be dropped as the person goes on, taking
        the CPU their next words need. It starts if the pause lasts as long as an "incomplete" one.
        """
        text = t.text.strip()
        if not (self.turn_settings.preemptive and text) or self._queued is not None:
            return
        if self._active is not None:
            self._going_on(self._active, t)
            return
        if self._request(None) is None:
            return  # not a request (yet): nothing to answer
        if self._join is not None:
            text = f"{self._join.text} {text}"
        if self._preempt is not None:
            if self._preempt.user_text == text:
                return
            self._discard_preempt("the words changed")
        if self.turn_settings.detector == "smart-turn" and not long_pause and (t.trails_off or trails_off(text)):
            ts = self.turn_settings
            self._deferred = (t.t_ns + (ts.max_silence_ms - ts.pause_ms) * 1_000_000, t)
            self._prefill_heard(t.text)
            return
        pid = next(self._ids)
        turn = Answer(pid, None, None, self.scopes.open(pid, playable=False), t.t_ns, user_text=text,
                     preemptive=True, started_ns=self.clock())
        self._preempt = turn
        history = self._history(text, self._join)
        self._emit("preemptive_start", text=text)
        self._ask(GenerateRequest(pid, (("system", self.system_prompt), *history)))

    def _ask(self, request: GenerateRequest | Prefill, timeout: float | None = None) -> None:
        """Queue work for the thinker. A prefill still queued is dropped: what comes now begins as its
        prompt did and goes further, or answers and fills the cache itself."""
        self.requests.flush(lambda x: isinstance(x, Prefill))
        self.requests.put(request, timeout=timeout)

    def _prefill_heard(self, text: str) -> None:
        """While the person speaks, have the LLM evaluate their words so far into its prompt cache: when the
        answer starts, only the words that changed since are new to it.

        Over an answer paused by their speech it is the prompt the answer to them would have if they are
        cutting in: the conversation, the words of the answer heard, the cut-in note, then theirs.
        """
        text = text.strip()
        cut = self._active
        if not (self.turn_settings.preemptive and text) or self._queued or self._preempt:
            return
        if cut is not None and (cut.pause is None or self._joins(cut, cut.pause.onset_ns)):
            return  # words over an answer that plays on, or that go on with the turn it answers
        if self._request(cut) is None:
            return
        if cut is not None:
            heard = " ".join(cut.heard)
            history = [*self._logged_history(self.conversations.current()), *cut_answer(heard), ("user", text)]
        else:
            if self._join is not None:
                text = f"{self._join.text} {text}"
            history = self._history(text, self._join)
        try:
            self._ask(Prefill((("system", self.system_prompt), *history)), timeout=0)
        except (ChannelClosed, TimeoutError):
            pass  # shutting down, or answers queued: they fill the cache themselves

    def _going_on(self, turn: Answer, t: TentativeTranscript) -> None:
        """Words at a pause in speech that paused an answer nobody heard yet: the person is going on with
        their turn. Drop the answer now, and start the joined turn's answer once it is closed, rather than
        wait for their final (a cough has no words here; one misread as words is answered again)."""
        if turn.pause is None or not self._joins(turn, turn.pause.onset_ns) or self._woke_in(self._onset_ns):
            return
        if not has_words(t.text):
            return
        turn.committed, turn.pause = turn.pause, None
        log.info("turn %s: the person went on (%r) before hearing it: dropping it now", turn.row, t.text)
        self.interrupt(Kind.FULL, Reason.USER_SPEAKING, onset_ns=turn.committed.onset_ns)
        self._tentative = t

    def _history(self, text: str, join: _Join | None) -> list[tuple[str, str]]:
        """The logged conversation, ending with `text` as the person's turn (replacing a turn it joins)."""
        history = self._logged_history(self.conversations.current(), None if join is None else join.user_row)
        return [*history, ("user", text)]

    def _logged_history(self, conversation: str, without: int | None = None) -> list[tuple[str, str]]:
        """The conversation's last turns for the LLM, but the user turn `without`; the window moves in
        steps, so the prompt prefix llama.cpp keeps evaluated survives most turns."""
        limit = self.settings.history_turns + 1
        return self.turnlog.history(conversation, limit, step=max(1, limit // 2), without=without)

    def _on_preempt_report(self, turn: Answer, msg: object) -> None:
        match msg:
            case FirstToken():
                turn.first_token_ns = msg.t_ns
            case TextCheckpoint():
                turn.text = msg.text
                turn.first_chunk_ns = turn.first_chunk_ns or self.clock()
            case GenerationEnded():
                self._generation_ended(turn, msg)
            case StageFailed():
                self._discard_preempt(f"stage {msg.stage} failed: {msg.error}")

    def _discard_preempt(self, why: str) -> None:
        """Drop the preemptive answer: nothing of it was played or logged."""
        turn, self._preempt = self._preempt, None
        if turn is None:
            return
        turn.scope.cancel(Cancellation(Kind.FULL, Reason.USER_SPEAKING, self.clock()))
        self.requests.flush(of_turn(turn.id))
        self._silence(turn.id)
        log.info("preemptive answer to %r dropped: %s", turn.user_text, why)
        self._emit("preemptive_discarded", why=why, text=turn.user_text)

    def _adopt(self, turn: Answer, row: int, user_id: int | None, u: Utterance) -> None:
        """The turn is final and its words are the ones the preemptive answer was started on: play it."""
        self._preempt = None
        turn.row, turn.reply_to = row, user_id
        self._fill(turn, u)
        with self._lock:
            self._active = turn
        self._emit("turn_started", turn=row, reply_to=user_id, preemptive=True)
        self._set_state(State.THINKING)
        if turn.first_token_ns is not None:
            self._emit("first_token", turn=row)
        if turn.text:
            self._write(self.turnlog.checkpoint, row, text=turn.text)
        turn.scope.playable.set()

    # ---- answers

    def _start(self, user_id: int | None, u: Utterance, text: str, reply: str = "") -> None:
        """Answer the user turn: the LLM on the conversation so far, or the fixed `reply` without it."""
        conversation = self.conversations.current()
        preempt = self._preempt
        if preempt is not None and (reply or preempt.user_text != text or preempt.scope.generation.is_set()):
            self._discard_preempt("the final transcript differs from the words at the pause")
            preempt = None
        assistant_id = self._write(self.turnlog.begin_assistant, conversation, user_id)
        if assistant_id is None:
            self._discard_preempt("the turn log refused the answer")
            self._set_state(State.IDLE)
            return
        if preempt is not None:
            self._adopt(preempt, assistant_id, user_id, u)
            return
        pid = next(self._ids)
        turn = Answer(pid, assistant_id, user_id, self.scopes.open(pid), u.eos_ns, user_text=text,
                     started_ns=self.clock())
        self._fill(turn, u)
        with self._lock:
            self._active = turn
        self._emit("turn_started", turn=turn.row, reply_to=user_id)
        self._set_state(State.THINKING)
        if reply:
            self._ask(GenerateRequest(turn.id, (("system", self.system_prompt),), reply, ask=False))
            return
        history = self._logged_history(conversation)
        preface, self._notice = self._notice, ""
        self._ask(GenerateRequest(turn.id, (("system", self.system_prompt), *history), preface))

    def _fill(self, turn: Answer, u: Utterance) -> None:
        """What the final tells about the end of the person's turn, for the answer's metrics."""
        turn.eos_ns, turn.speech_end_ns, turn.final_ns = u.eos_ns, u.speech_end_ns, self.clock()
        turn.endpoint, turn.turn_probability = u.endpoint, u.turn_probability

    def _on_interrupt(self, turn: Answer, msg: InterruptRequested) -> None:
        self._silence(turn.id)
        if msg.kind is Kind.FULL and self.requests.flush(of_turn(turn.id)):
            # the thinker never saw this request, so it will not acknowledge it
            turn.gen_ended, turn.gen_outcome, turn.llm_stop_ns = True, "cancelled", self.clock()
        turn.ack_deadline_ns = self.clock() + self.ack_timeout_ns
        first = cast(Cancellation, turn.scope.first)  # set by the interrupt this message carries
        self._emit_at("speech_interrupted", first.t_ns, turn=turn.row, reason=first.reason.value, kind=first.kind.value)
        self._maybe_finish(turn)

    def _on_pause(self, turn: Answer, msg: PauseRequested) -> None:
        if turn.scope.speech.is_set():
            return  # cancelled meanwhile (the button): nothing to hold
        turn.scope.paused.set()  # again: a resume may have raced this request
        deadline = msg.t_ns + int(self.barge_in.commit_window_s * 1e9)
        if turn.pause is None:
            turn.pause = Pause(msg.t_ns, msg.onset_ns, deadline)
            self._emit_at("speech_paused", msg.t_ns, turn=turn.row)
        else:
            turn.pause.more_sound(deadline)

    def _resume(self, turn: Answer, why: str, words: str = "") -> None:
        pause, turn.pause = turn.pause, None
        if pause is None or turn.scope.speech.is_set():
            return  # cancelled while paused: the button (or a real interrupt) is never undone
        with self._lock:
            turn.scope.paused.clear()
        paused_ms = round((self.clock() - pause.requested_ns) / 1e6, 1)
        turn.false_interruptions.append(paused_ms)
        log.info("turn %s: resumed after %.0f ms paused (%s)", turn.row, paused_ms, why)
        self._emit("false_interruption", turn=turn.row, paused_ms=paused_ms, why=why, words=words)

    def _on_stage_failed(self, turn: Answer, msg: StageFailed) -> None:
        log.error("stage %s failed during turn %s: %s", msg.stage, turn.row, msg.error)
        self.interrupt(Kind.FULL, Reason.ERROR)
        if msg.stage == "thinker":
            turn.gen_ended, turn.gen_outcome, turn.llm_stop_ns = True, "error", self.clock()
        elif msg.stage == "speaker":
            turn.play_ended, turn.silence_ns = True, self.clock()
        self._maybe_finish(turn)

    def _maybe_finish(self, turn: Answer) -> None:
        if not (turn.gen_ended and turn.play_ended) or self._active is not turn:
            return
        first = turn.scope.first
        complete = turn.complete
        if first is None and turn.gen_outcome == "timeout":
            # generation was cut at a sentence's end and all of that was played
            first = Cancellation(Kind.FULL, Reason.TIMEOUT, turn.llm_stop_ns or self.clock())
        metrics = turn_metrics(turn)
        if complete:
            status, heard, reason, kind = "complete", turn.text, None, None
        else:
            first = first or Cancellation(Kind.FULL, Reason.ERROR, self.clock())
            status, heard, reason, kind = "interrupted", " ".join(turn.heard), first.reason.value, first.kind.value
        self._write(self.turnlog.finish, turn.row, text=turn.text, heard_text=heard, status=status,
                    reason=reason, kind=kind, metrics=metrics)
        with self._lock:
            self._active = None
        self.conversations.touch()
        self._emit("turn_finished", turn=turn.row, status=status, reason=reason, kind=kind, text=turn.text,
                   heard_text=heard, metrics=metrics)
        self._emit("answer_timeline", turn=turn.row, **timeline(turn))
        queued, self._queued = self._queued, None
        if reason == Reason.SUPERSEDED and queued is None and turn.reply_to is not None:
            self._join = _Join(turn.reply_to, turn.user_text)  # the words that dropped it are not final yet
        if self.gate is not None:
            self.gate.answered(self.clock())
        if queued:
            self._start(*queued)
        else:
            self._set_state(State.IDLE)
            if self._join is None and not self.stopping.is_set():
                self._prefill_next()
            elif self._join is not None and self._tentative is not None:
                self._on_tentative(self._tentative)
        self._tentative = None

    def _prefill_next(self) -> None:
        """While nobody waits, have the LLM evaluate how the next prompt will begin."""
        history = self._logged_history(self.conversations.current())
        try:
            self._ask(Prefill((("system", self.system_prompt), *history)), timeout=0)
        except (ChannelClosed, TimeoutError):
            pass  # shutting down, or requests already queued: they will fill the cache themselves

    def close_for_shutdown(self) -> None:
        """After the stages stopped: close a turn still in flight with what is known."""
        self._tentative = self._deferred = None  # nobody will answer it now
        self._discard_preempt("shutting down")
        turn = self._active
        if turn is None:
            return
        turn.scope.cancel(Cancellation(Kind.FULL, Reason.SHUTDOWN, self.clock()))
        turn.gen_ended = turn.play_ended = True
        turn.silence_ns = turn.silence_ns or self.clock()
        self._queued = None
        self._maybe_finish(turn)

    # ---- helpers

    def _silence(self, turn: int) -> None:
        """Drop a turn's clauses and audio not yet played, and tell the speaker to stop it; a speaker already
        stopped for shutdown has nothing left to stop."""
        self.clauses.flush(of_turn(turn))
        self.segments.flush(of_turn(turn))
        try:
            self.segments.put_control(Cancel(turn))
        except ChannelClosed:
            pass

    def _write(self, fn, *args, **kwargs):
        """A turn-log write; a failure is logged loudly and the appliance keeps talking."""
        try:
            return fn(*args, **kwargs)
        except SaysoError as e:
            log.error("turn log: %s", e)
            return None

    def _set_state(self, state: State) -> None:
        with self._lock:
            if self._state is state:
                return
            self._state = state
            self._state_changes += 1
            self._lock.notify_all()
        self._emit("state", state=state.value)

    def _emit(self, type_: str, **data) -> None:
        self.bus.emit(Event(type_, self.clock(), data))

    def _emit_at(self, type_: str, t_ns: int, **data) -> None:
        """An event stamped when what it reports happened, not when the conductor got to it: a report lays
        it beside what the speaker and the room did meanwhile."""
        self.bus.emit(Event(type_, t_ns, data))
