"""The conductor: the one owner of conversation state and the only writer of the turn log.

`interrupt()` may be called from any thread (listener, button, thinker). It
cancels the turn's scope at once, so the speaker is silent within one block and
the thinker stops within one token, and then posts a control message that
overtakes queued data; the conductor flushes the cancelled turn's items, waits
for the thinker and speaker to acknowledge, and writes the one final status.

`pause()` is barge-in's softer first step: the speaker goes quiet just as fast
but generation goes on, and the conductor then commits the interrupt when the
recogniser's final has words it stands by, or resumes the answer from where it
stopped when none come (a cough, a door) and logs a `false_interruption` with
the turn. `pause.py` holds that policy.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sayso.cancel import Cancellation, Scope, Scopes
from sayso.channel import Channel, of_turn
from sayso.config import BargeInSettings, ConversationSettings
from sayso.errors import SaysoError
from sayso.events import EventBus
from sayso.messages import (
    Cancel,
    Event,
    FirstAudio,
    FirstToken,
    GenerateRequest,
    GenerationEnded,
    Heard,
    InterruptRequested,
    Kind,
    PartialTranscript,
    Paused,
    PauseRequested,
    PlaybackEnded,
    Reason,
    SpeechDropped,
    SpeechStarted,
    StageFailed,
    State,
    TextCheckpoint,
    Utterance,
)
from sayso.pause import Pause, commits
from sayso.stage import Stage
from sayso.turnlog import TurnLog

log = logging.getLogger(__name__)


@dataclass
class _Turn:
    """The conductor's private, mutable view of the assistant turn in flight."""

    id: int
    reply_to: int
    scope: Scope
    eos_ns: int
    text: str = ""
    heard: tuple[str, ...] = ()
    gen_ended: bool = False
    gen_outcome: str = ""
    play_ended: bool = False
    playback_completed: bool = False
    first_token_ns: int | None = None
    first_audio_ns: int | None = None
    llm_stop_ns: int | None = None
    silence_ns: int | None = None
    ack_deadline_ns: int | None = None
    pause: Pause | None = None
    committed: Pause | None = None
    """The pause that became this turn's interrupt."""
    false_interruptions: list[float] = field(default_factory=list)
    """How long each pause that resumed kept the answer quiet, in ms."""


def _ms(a: int | None, b: int | None) -> float | None:
    return None if a is None or b is None else round((b - a) / 1e6, 3)


class Conductor(Stage):
    """Owns state (idle -> listening -> thinking -> speaking) and the turn log.

    Args:
        turnlog: the SQLite log; this stage is its only writer.
        requests, clauses, segments: the channels into thinker, voice and speaker.
        ack_timeout_s: after an interrupt, how long the thinker and speaker get to
            acknowledge before the turn is closed without them (and the hang logged).
    """

    name = "conductor"

    def __init__(self, turnlog: TurnLog, requests: Channel, clauses: Channel, segments: Channel, scopes: Scopes,
                 bus: EventBus, system_prompt: str, conversation: ConversationSettings | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, ack_timeout_s: float = 3.0,
                 button_debounce_s: float = 0.3, barge_in: BargeInSettings | None = None):
        super().__init__()
        self.turnlog, self.requests, self.clauses, self.segments = turnlog, requests, clauses, segments
        self.scopes, self.bus, self.clock = scopes, bus, clock
        self.system_prompt = system_prompt
        self.settings = conversation or ConversationSettings()
        self.barge_in = barge_in or BargeInSettings()
        self.ack_timeout_ns = int(ack_timeout_s * 1e9)
        self.button_debounce_ns = int(button_debounce_s * 1e9)
        self.inbox: Channel = Channel("conductor", capacity=1024)
        self._lock = threading.Condition()
        self._active: _Turn | None = None
        self._state = State.IDLE
        self._state_changes = 0
        self._queued: tuple[int, Utterance] | None = None
        self._conversation: str | None = None
        self._last_activity = 0.0
        self._last_press_ns: int | None = None
        self._hearing = False
        """Between a SpeechStarted and its final: a pause waits for that final."""

    # ---- called from any thread

    def post(self, message: object) -> None:
        """A stage's report (or the listener's news) for the conductor."""
        self.inbox.put(message)

    def interrupt(self, kind: Kind | str, reason: Reason | str, onset_ns: int | None = None) -> bool:
        """Cancel the answer in flight; True if this call cancelled (or escalated) anything.

        While idle it does nothing. Two racing interrupts give one final status:
        the first fixes the reason, a later `full` still stops generation.
        """
        kind, reason = Kind(kind), Reason(reason)
        with self._lock:
            turn = self._active
            if turn is None:
                log.debug("interrupt(%s, %s) while idle: nothing to stop", kind.value, reason.value)
                return False
            c = Cancellation(kind, reason, self.clock(), onset_ns)
            if not turn.scope.cancel(c):
                return False
        self.inbox.put_control(InterruptRequested(turn.id, kind, reason, c.t_ns, onset_ns))
        return True

    def pause(self, onset_ns: int | None = None) -> bool:
        """Silence the answer in flight now and let generation go on; True if there was one to pause.

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
        """The stop button: a hard full interrupt, debounced."""
        now = self.clock()
        if self._last_press_ns is not None and now - self._last_press_ns < self.button_debounce_ns:
            log.debug("button bounce ignored")
            return False
        self._last_press_ns = now
        return self.interrupt(Kind.FULL, Reason.BUTTON)

    def stage_failed(self, stage: str, turn: int | None, exc: BaseException) -> None:
        self.inbox.put_control(StageFailed(stage, turn, f"{type(exc).__name__}: {exc}"))

    @property
    def state(self) -> State:
        return self._state

    @property
    def active_turn(self) -> int | None:
        t = self._active
        return t.id if t else None

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

    # ---- the conductor's own thread

    def step(self) -> None:
        msg = self.inbox.get(timeout=0.02)
        if msg is not None:
            self._handle(msg)
        turn = self._active
        why = turn and turn.pause and turn.pause.resume_reason(self.clock(), self._hearing,
                                                               self.barge_in.commit_window_s)
        if why:
            self._resume(turn, why)
        if turn and turn.ack_deadline_ns and self.clock() > turn.ack_deadline_ns:
            missing = [n for n, done in (("thinker", turn.gen_ended), ("speaker", turn.play_ended)) if not done]
            log.error("turn %s: %s did not acknowledge the interrupt within %.1fs; closing the turn without them",
                      turn.id, " and ".join(missing), self.ack_timeout_ns / 1e9)
            turn.gen_ended = turn.play_ended = True
            self._maybe_finish(turn)

    def _handle(self, msg: object) -> None:
        if isinstance(msg, Utterance):
            self._on_utterance(msg)
            return
        if isinstance(msg, SpeechStarted):
            self._hearing = True
            if self._state is State.IDLE:
                self._set_state(State.LISTENING)
            return
        if isinstance(msg, PartialTranscript):
            self._emit("partial", text=msg.text)  # never commits a pause: partial words flip (pause.py)
            return
        if isinstance(msg, SpeechDropped):
            if self._active and self._active.pause:
                self._active.pause.sound_dropped(msg.t_ns)
            return
        turn = self._active
        if turn is None or getattr(msg, "turn", None) != turn.id:
            log.debug("dropping %s: not for the turn in flight (%s)", type(msg).__name__, turn and turn.id)
            return
        if isinstance(msg, InterruptRequested):
            self._on_interrupt(turn, msg)
        elif isinstance(msg, PauseRequested):
            self._on_pause(turn, msg)
        elif isinstance(msg, Paused):
            if turn.pause is not None and turn.pause.silence_ns is None:
                turn.pause.silence_ns = msg.silence_ns
            turn.heard = msg.words
        elif isinstance(msg, FirstToken):
            turn.first_token_ns = msg.t_ns
            self._emit("first_token", turn=turn.id)
        elif isinstance(msg, TextCheckpoint):
            turn.text = msg.text
            self._write(self.turnlog.checkpoint, turn.id, text=msg.text)
        elif isinstance(msg, FirstAudio):
            turn.first_audio_ns = msg.t_ns
            self._set_state(State.SPEAKING)
            self._emit("first_audio", turn=turn.id)
        elif isinstance(msg, Heard):
            turn.heard = msg.words
            self._write(self.turnlog.checkpoint, turn.id, heard_text=" ".join(msg.words))
        elif isinstance(msg, GenerationEnded):
            turn.gen_ended, turn.gen_outcome, turn.llm_stop_ns = True, msg.outcome, msg.t_ns
            turn.text = msg.text or turn.text
            self._maybe_finish(turn)
        elif isinstance(msg, PlaybackEnded):
            turn.play_ended, turn.playback_completed = True, msg.completed
            turn.heard, turn.silence_ns = msg.words, msg.silence_ns
            self._maybe_finish(turn)
        elif isinstance(msg, StageFailed):
            self._on_stage_failed(turn, msg)

    def _on_utterance(self, u: Utterance) -> None:
        self._hearing = False
        text = u.text.strip()
        turn = self._active
        if turn is not None and turn.pause is not None:
            if not commits(u, self.barge_in):
                # a cough the recogniser heard as "oh" or "i bought", or an "uh-huh": the answer
                # goes on, and it is no turn
                log.info("turn %s: final over the pause %r (posteriors %s, sustained speech %s ms) does not commit",
                         turn.id, text, u.confidence, u.sustained_ms)
                self._resume(turn, f"too few words: {text!r}" if text else "the speech had no words", text)
                return
            turn.committed, turn.pause = turn.pause, None
            log.info("turn %s: words over the paused answer (%r, posteriors %s, sustained speech %s ms): "
                     "interrupting it", turn.id, text, u.confidence, u.sustained_ms)
            self.interrupt(Kind.FULL, Reason.USER_SPEAKING, onset_ns=turn.committed.onset_ns)
        if not text:
            log.debug("a final transcript with no words is not a turn")
            if self._state is State.LISTENING:
                self._set_state(State.IDLE)
            return
        conversation = self._conversation_id()
        user_id = self._write(self.turnlog.add_user, conversation, text)
        self._emit("user_turn", turn=user_id, text=text)
        if self._active is not None:
            # cancel-then-send: the new utterance waits until the cut answer is closed
            self.interrupt(Kind.FULL, Reason.USER_SPEAKING)
            self._queued = (user_id, u)
            return
        self._start(user_id, u)

    def _start(self, user_id: int | None, u: Utterance) -> None:
        conversation = self._conversation_id()
        assistant_id = self._write(self.turnlog.begin_assistant, conversation, user_id)
        if assistant_id is None:
            self._set_state(State.IDLE)
            return
        turn = _Turn(assistant_id, user_id, self.scopes.open(assistant_id), u.eos_ns)
        with self._lock:
            self._active = turn
        history = self.turnlog.history(conversation, self.settings.history_turns + 1)
        self._emit("turn_started", turn=turn.id, reply_to=user_id)
        self._set_state(State.THINKING)
        self.requests.put(GenerateRequest(turn.id, (("system", self.system_prompt), *history)))

    def _on_interrupt(self, turn: _Turn, msg: InterruptRequested) -> None:
        self.clauses.flush(of_turn(turn.id))
        self.segments.flush(of_turn(turn.id))
        self.segments.put_control(Cancel(turn.id))
        if msg.kind is Kind.FULL and self.requests.flush(of_turn(turn.id)):
            # the thinker never saw this request, so it will not acknowledge it
            turn.gen_ended, turn.gen_outcome, turn.llm_stop_ns = True, "cancelled", self.clock()
        turn.ack_deadline_ns = self.clock() + self.ack_timeout_ns
        first = turn.scope.first
        self._emit("speech_interrupted", turn=turn.id, reason=first.reason.value, kind=first.kind.value)
        self._maybe_finish(turn)

    def _on_pause(self, turn: _Turn, msg: PauseRequested) -> None:
        if turn.scope.speech.is_set():
            return  # cancelled meanwhile (the button): nothing to hold
        turn.scope.paused.set()  # again: a resume may have raced this request
        deadline = msg.t_ns + int(self.barge_in.commit_window_s * 1e9)
        if turn.pause is None:
            turn.pause = Pause(msg.t_ns, msg.onset_ns, deadline)
            self._emit("speech_paused", turn=turn.id)
        else:
            turn.pause.more_sound(deadline)

    def _resume(self, turn: _Turn, why: str, words: str = "") -> None:
        pause, turn.pause = turn.pause, None
        if pause is None or turn.scope.speech.is_set():
            return  # cancelled while paused: the button (or a real interrupt) is never undone
        with self._lock:
            turn.scope.paused.clear()
        paused_ms = round((self.clock() - pause.requested_ns) / 1e6, 1)
        turn.false_interruptions.append(paused_ms)
        log.info("turn %s: resumed after %.0f ms paused (%s)", turn.id, paused_ms, why)
        self._emit("false_interruption", turn=turn.id, paused_ms=paused_ms, why=why, words=words)

    def _on_stage_failed(self, turn: _Turn, msg: StageFailed) -> None:
        log.error("stage %s failed during turn %s: %s", msg.stage, turn.id, msg.error)
        self.interrupt(Kind.FULL, Reason.ERROR)
        if msg.stage == "thinker":
            turn.gen_ended, turn.gen_outcome, turn.llm_stop_ns = True, "error", self.clock()
        elif msg.stage == "speaker":
            turn.play_ended, turn.silence_ns = True, self.clock()
        self._maybe_finish(turn)

    def _maybe_finish(self, turn: _Turn) -> None:
        if not (turn.gen_ended and turn.play_ended) or self._active is not turn:
            return
        first = turn.scope.first
        # An interrupt that raced the natural end and lost (every sample already
        # played, generation done) leaves the turn complete.
        complete = turn.playback_completed and turn.gen_outcome == "done"
        metrics = {"eos_to_first_token_ms": _ms(turn.eos_ns, turn.first_token_ns),
                   "eos_to_first_audio_ms": _ms(turn.eos_ns, turn.first_audio_ns)}
        if turn.false_interruptions:
            metrics["false_interruptions"] = len(turn.false_interruptions)
            metrics["false_interruption_paused_ms"] = turn.false_interruptions
        if not complete and first is not None:
            quiet_from, p = first.t_ns, turn.committed
            if p is not None and first.reason is Reason.USER_SPEAKING:
                # the person heard silence from the pause on: that is the interrupt's silence
                metrics["pause_to_commit_ms"] = _ms(p.requested_ns, first.t_ns)
                quiet_from, turn.silence_ns = p.requested_ns, p.silence_ns or turn.silence_ns
            if turn.first_audio_ns is not None:
                metrics["interrupt_to_silence_ms"] = max(0.0, _ms(quiet_from, turn.silence_ns) or 0.0)
            if first.kind is Kind.FULL and turn.llm_stop_ns is not None and turn.llm_stop_ns >= first.t_ns:
                metrics["interrupt_to_llm_stop_ms"] = _ms(first.t_ns, turn.llm_stop_ns)
            if first.onset_ns is not None and turn.silence_ns is not None and turn.first_audio_ns is not None:
                metrics["speech_onset_to_silence_ms"] = _ms(first.onset_ns, turn.silence_ns)
        metrics = {k: v for k, v in metrics.items() if v is not None}
        if complete:
            status, heard, reason, kind = "complete", turn.text, None, None
        else:
            first = first or Cancellation(Kind.FULL, Reason.ERROR, self.clock())
            status, heard, reason, kind = "interrupted", " ".join(turn.heard), first.reason.value, first.kind.value
        self._write(self.turnlog.finish, turn.id, text=turn.text, heard_text=heard, status=status,
                    reason=reason, kind=kind, metrics=metrics)
        with self._lock:
            self._active = None
        self._last_activity = time.time()
        self._emit("turn_finished", turn=turn.id, status=status, reason=reason, kind=kind, text=turn.text,
                   heard_text=heard, metrics=metrics)
        queued, self._queued = self._queued, None
        if queued:
            self._start(*queued)
        else:
            self._set_state(State.IDLE)

    def close_for_shutdown(self) -> None:
        """After the stages stopped: close a turn still in flight with what is known."""
        turn = self._active
        if turn is None:
            return
        turn.scope.cancel(Cancellation(Kind.FULL, Reason.SHUTDOWN, self.clock()))
        turn.gen_ended = turn.play_ended = True
        turn.silence_ns = turn.silence_ns or self.clock()
        self._queued = None
        self._maybe_finish(turn)

    # ---- helpers

    def _conversation_id(self) -> str:
        now = time.time()
        if self._conversation is None:
            last = self.turnlog.last_conversation()
            if last and now - last[1] < self.settings.idle_timeout_s:
                self._conversation, self._last_activity = last[0], last[1]
        if self._conversation is None or now - self._last_activity > self.settings.idle_timeout_s:
            self._conversation = uuid.uuid4().hex[:12]
        self._last_activity = now
        return self._conversation

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
