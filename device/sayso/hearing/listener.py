"""The listener: echo cancelling, endpointing and barge-in over the mic's frames.

The listener takes each 32 ms frame through the echo canceller, runs the VAD on
what is left, sends each utterance (with its pre-roll, so the first word is
whole) to the transcriber while the person is still speaking, and acts on
speech over an answer as `barge_in.mode` says: pause it (the conductor commits
or resumes on the words that follow), interrupt it, or ignore it. The echo
guard only believes speech clearly louder than the echo the canceller leaves,
and the foreground gate only speech clearly louder than the room's background
(a television talking across the room is not the person).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import Protocol, cast

import numpy as np

from sayso.audio import FRAME_SAMPLES, RATE_HZ
from sayso.config import BargeInSettings
from sayso.hearing.capture import Frame
from sayso.hearing.echo import EchoCanceller, EchoGuard
from sayso.hearing.foreground import ForegroundGate
from sayso.hearing.mic_clock import MicClock
from sayso.hearing.transcriber import Checkpoint, EndOfSpeech, StartOfSpeech, Transcriber, WakeMark
from sayso.hearing.turn import WINDOW_S, PauseHabit, TurnAnswer, TurnDetector, TurnQuestion
from sayso.hearing.vad import Endpointer, SileroVAD, SpeechEnd, SpeechPause, SpeechStart, VADState
from sayso.hearing.wake import WakeDetector
from sayso.pipeline.channel import Channel
from sayso.pipeline.echo_reference import EchoReference
from sayso.pipeline.messages import (
    Kind,
    Reason,
    SpeechDropped,
    SpeechResumed,
    SpeechStarted,
    State,
    Utterance,
    WakeWordHeard,
)
from sayso.pipeline.stage import Stage

log = logging.getLogger(__name__)

RESUME_LEAD_FRAMES = 2
"""Frames of a pause kept before speech resumes: Silero lags a soft onset by a frame or so."""
UNHEARD_KEEP_S = 3.0
"""Of speech kept from the recogniser, the last this many seconds are kept: a wake word heard in it
hands the recogniser those, the phrase among them."""

class ConductorView(Protocol):
    """The conductor as the listener sees it: the state it reads, where its news goes, how it stops an answer."""

    @property
    def state(self) -> State: ...

    def post(self, message: object) -> None: ...

    def pause(self, onset_ns: int | None = None) -> bool: ...

    def interrupt(self, kind: Kind | str, reason: Reason | str, onset_ns: int | None = None) -> bool: ...

    @property
    def awaiting_wake(self) -> bool: ...


class Listener(Stage):
    """VAD, endpointing and barge-in over the mic's frames.

    Args:
        conductor: what it reports to and reads the state of.
        audio: the transcriber's channel: utterance frames, then EndOfSpeech.
        echo: the speaker's reference; None where nothing plays (tests of listening alone).
        canceller: takes the echo out of each frame first; None to listen to the raw mic.
        turns: the end-of-turn model, asked at each short pause (the endpointer's SpeechPause); None
            to end utterances on silence alone.
        trailing_silence_ms: with `turns`, the silence that ends an utterance whose words so far stop
            where a sentence cannot end; None keeps the endpointer's own.
        habit: with `turns`, how long this person pauses mid-sentence: learned here, and waited before a
            turn the model calls complete ends; None ends such a turn at once.
        wake: the wake-word detector, run on every frame the canceller cleaned; None when the wake word is off.

    At a short pause the transcriber is asked for the words so far (an answer may start on them)
    and the frames after it are held back: if the person goes on they follow, if the utterance
    ends there the final is exactly those words.

    With a wake word on, speech that begins while the appliance waits for it
    is kept from the recogniser and the end-of-turn model (nothing of a
    conversation the appliance was not asked into is transcribed, and a room of
    chatter costs the VAD and the wake model only). A wake word heard in it
    hands the recogniser its last seconds, the phrase among them.
    """

    name = "listener"

    def __init__(self, vad: SileroVAD, endpointer: Endpointer, frames: Channel, audio: Channel,
                 conductor: ConductorView, barge_in: BargeInSettings, preroll_ms: int = 320,
                 echo: EchoReference | None = None, canceller: EchoCanceller | None = None,
                 turns: TurnDetector | None = None, trailing_silence_ms: int | None = None,
                 wake: WakeDetector | None = None, habit: PauseHabit | None = None):
        super().__init__()
        self.wake = wake
        self.turns, self.trailing_silence_ms, self.habit = turns, trailing_silence_ms, habit
        self._pause_end: int | None = None
        """Where the person stopped, in the pause in progress."""
        self._ends_at: int | None = None
        """The sample at which the pause in progress ends a turn the model called complete; `_check_turn`
        drops it as soon as the endpointer leaves the pause."""
        self._ended_at: int | None = None
        """Where the person stopped in the newest utterance the model ended: going on soon after is a pause."""
        self._answers: deque[TurnAnswer] = deque()
        self._utterance: deque[np.ndarray] = deque(maxlen=WINDOW_S * RATE_HZ // FRAME_SAMPLES)
        """The utterance's last 8 s, for the end-of-turn model."""
        self._held: list[Frame] | None = None
        """Frames after a short pause, kept from the transcriber until the person goes on."""
        self._probability: float | None = None
        self._words: tuple[int, str, bool] | None = None
        """The transcriber's words at the newest pause, (pause, text, whether they trail off)."""
        self.vad, self.endpointer, self.frames, self.audio = vad, endpointer, frames, audio
        self.conductor, self.barge_in, self.echo, self.canceller = conductor, barge_in, echo, canceller
        self.guard = EchoGuard(barge_in)
        margin = endpointer.settings.foreground_margin_db
        self.foreground = ForegroundGate(margin) if margin > 0 else None
        self.clock = MicClock()
        self._resets = 0
        # SpeechStart comes min_speech_ms after the onset, so keep that much more than the pre-roll
        keep_ms = preroll_ms + endpointer.settings.min_speech_ms
        self._preroll: deque[Frame] = deque(maxlen=keep_ms * RATE_HZ // 1000 // FRAME_SAMPLES + 2)
        self.preroll_samples = preroll_ms * RATE_HZ // 1000
        self._in_utterance = False
        self._barged = False
        self._recent: deque[tuple[int, bool]] = deque(maxlen=10)
        self._unheard: deque[Frame] | None = None
        """The newest frames of speech kept from the recogniser (None: this utterance is being transcribed)."""
        self._woke_at: int | None = None
        """The audio-clock sample of the newest wake word."""
        self._near_run = self._near_longest = 0
        """Frames of sure foreground speech in a row now, and the utterance's longest such run."""

    @property
    def in_utterance(self) -> bool:
        """Whether the person may be speaking now (speech started or starting, not yet ended)."""
        return self.endpointer.state is not VADState.QUIET

    def step(self) -> None:
        frame: Frame | None = self.frames.get(timeout=0.1)
        if frame is None:
            return
        delay, mic = None, None
        at = self.clock.start_of(frame)
        if self.canceller is not None:
            # everything after this (VAD, pre-roll, STT) hears the room without the appliance in it
            mic, frame = frame.samples, dataclasses.replace(frame, samples=self.canceller.process(frame.samples, at))
            delay = self.canceller.estimator.delay
            if self.canceller.resets != self._resets:
                self._resets = self.canceller.resets
                self.guard = EchoGuard(self.barge_in)  # what it learnt was of the old filter
        if self.wake is not None:
            self._check_wake(frame)
        raw = prob = self.vad.probability(frame.samples)
        if self.echo is not None and not self.guard.allows(frame.samples, at, self.echo, delay, mic):
            prob = 0.0  # the appliance hearing itself
        settings = self.endpointer.settings
        # the gate stands in front of onset, end and barge-in alike: a voice across the room does none of them
        near = self.foreground is None or self.foreground.passes(
            frame.samples, raw >= settings.stop_threshold, learn=self.echo is None or not self.guard.expecting_echo)
        if not near:
            prob = 0.0  # someone else talking: a television across the room
            frame = dataclasses.replace(frame, near=False)
        if self.barge_in.mode == "off" and self.conductor.state in (State.THINKING, State.SPEAKING):
            prob = 0.0  # half duplex: nothing said over an answer counts
        self._near_run = self._near_run + 1 if prob >= Transcriber.SURE else 0
        # frames where a person may already be talking: speech-like and louder than the echo alone
        self._recent.append((frame.index, raw >= settings.start_threshold and self.guard.above_echo and near))
        self._preroll.append(frame)
        was = self.endpointer.state
        events = self.endpointer.update(prob, frame.index)
        if was is VADState.STARTING and self.endpointer.state is VADState.QUIET and self._barged:
            self.conductor.post(SpeechDropped(frame.t_ns))  # what paused the answer was not speech after all
        if self._held is not None and was is VADState.STOPPING and self.endpointer.state is VADState.SPEAKING:
            for f in self._held:  # the person went on: the pause belongs to the utterance
                self.audio.put(f)
            # ...but the end-of-turn model hears it shortened to the early-endpoint wait: a long
            # silence mid-utterance reads to it as hesitation, and it then calls the finished
            # question incomplete.
            lead = [self._utterance.pop() for _ in range(min(RESUME_LEAD_FRAMES, len(self._held)))]
            for _ in range(min(len(self._held) - len(lead), len(self._utterance))):
                self._utterance.pop()
            self._utterance.extend(reversed(lead))
            self._held = None
            if self._pause_end is not None:
                self._went_on((frame.index - self._pause_end) * 1000 / RATE_HZ, frame.index)
            self.conductor.post(SpeechResumed(frame.t_ns))
        for event in events:
            if isinstance(event, SpeechStart):
                self.conductor.post(SpeechStarted(_ns_at(frame, event.onset_sample), event.onset_sample))
                self._went_on_after_end(event.onset_sample)
                self._in_utterance, self._probability = True, None
                self._near_longest = self._near_run
                unheard = (self.wake is not None and self.conductor.awaiting_wake
                           and (self._woke_at is None or frame.index - self._woke_at > UNHEARD_KEEP_S * RATE_HZ))
                self._unheard = deque(maxlen=int(UNHEARD_KEEP_S * RATE_HZ) // FRAME_SAMPLES) if unheard else None
                if not unheard:
                    self.audio.put(StartOfSpeech(event.onset_sample))
                self._utterance.clear()
                for f in self._preroll:  # pre-roll: the first word arrives whole
                    if f is not frame and f.index + FRAME_SAMPLES > event.onset_sample - self.preroll_samples:
                        self._to_transcriber(f)
                        self._utterance.append(f.samples)
            elif self._unheard is not None:
                if isinstance(event, SpeechEnd):
                    self.conductor.post(Utterance("", _ns_at(frame, event.decided_sample), event.decided_sample,
                                                  transcribed=False))
                    self._in_utterance, self._unheard = False, None
            elif isinstance(event, SpeechPause):
                self.audio.put(Checkpoint(self.endpointer.pauses, frame.t_ns))
                self._held, self._pause_end = [], event.end_sample
                self._utterance.append(frame.samples)
                if self.turns is not None:
                    self.turns.ask(TurnQuestion(self.endpointer.pauses, np.concatenate(self._utterance),
                                                frame.t_ns))
            elif isinstance(event, SpeechEnd):
                if self._held is None:
                    self.audio.put(frame)
                self._end(frame, event, "silence")
        if self._in_utterance:
            self._near_longest = max(self._near_longest, self._near_run)
            if not events or not isinstance(events[-1], SpeechPause):
                self._utterance.append(frame.samples)
            if self._held is not None:
                self._held.append(frame)
            else:
                self._to_transcriber(frame)
        self._check_turn(frame)
        self._check_barge_in(frame)

    def _to_transcriber(self, frame: Frame) -> None:
        if self._unheard is not None:
            self._unheard.append(frame)
        else:
            self.audio.put(frame)

    def _check_wake(self, frame: Frame) -> None:
        """The wake word: the transcriber drops the words before it, the conductor opens listening."""
        hit = cast(WakeDetector, self.wake).process(frame.samples, frame.index)
        if hit is None:
            return
        self._woke_at = hit.sample
        if self._unheard is not None:  # the speech it was said in is a request after all
            kept, self._unheard = list(self._unheard), None
            self.audio.put(StartOfSpeech(kept[0].index if kept else frame.index))
            for f in kept:
                self.audio.put(f)
        self.audio.put(WakeMark(hit.sample))
        self.conductor.post(WakeWordHeard(hit.word, hit.probability, _ns_at(frame, hit.sample)))

    def answer(self, a: TurnAnswer) -> None:
        """The end-of-turn model's verdict (from its thread): acted on at the next frame."""
        self._answers.append(a)

    def words_at_pause(self, pause: int, text: str, trailing: bool) -> None:
        """The transcriber's words at a pause (from its thread), and whether they trail off: a turn never
        ends on "the" or "of"."""
        self._words = (pause, text, trailing)

    def _went_on_after_end(self, onset: int) -> None:
        """Speech soon after a turn the model ended: the person had paused, not finished."""
        ended, self._ended_at = self._ended_at, None
        if ended is None:
            return
        gap_ms = (onset - ended) * 1000 / RATE_HZ
        if gap_ms <= self.endpointer.end_silence_ms:
            self._went_on(gap_ms, onset)

    def _went_on(self, pause_ms: float, at: int) -> None:
        """The person spoke again after a pause: the habit learns it."""
        if self.habit is not None:
            log.debug("the person went on after a %.0f ms pause", pause_ms)
            self.habit.went_on(pause_ms, at)

    def _check_turn(self, frame: Frame) -> None:
        """At a pause: end the utterance if the model says complete and the words do not trail off; wait
        the longer silence if they do (a person finding a word mid-sentence pauses after "of", "the").
        A complete turn ends once the pause is as long as this person's habit (at once with none)."""
        self._verdict(frame)
        if self._ends_at is None:
            return
        if self.endpointer.state is not VADState.STOPPING:
            self._ends_at = None  # they went on, or the utterance ended on silence
        elif frame.index + FRAME_SAMPLES >= self._ends_at:
            self._ends_at = None
            self._end(frame, self.endpointer.end_now(frame.index + FRAME_SAMPLES), "smart-turn")

    def _verdict(self, frame: Frame) -> None:
        """The end-of-turn model's answer for the newest pause, with the words there, once both are in."""
        pause = self.endpointer.pauses
        while self._answers and self._answers[0].pause != pause:
            self._answers.popleft()  # an older pause's: the person went on
        words = self._words
        if not self._answers or words is None or words[0] != pause:
            return
        a = self._answers.popleft()
        if self.endpointer.state is not VADState.STOPPING:
            return  # the utterance already ended on silence
        self._probability = a.probability
        trailing = words[2]
        log.debug("end of turn at %r: p=%.2f in %.0f ms: %s", words[1], a.probability, a.cost_ms,
                  "trails off" if trailing else "complete" if a.complete else "incomplete")
        if trailing:
            if self.trailing_silence_ms is not None:
                self.endpointer.wait_for(self.trailing_silence_ms)
        elif a.complete:
            wait_ms = 0.0 if self.habit is None else self.habit.wait_ms(frame.index)
            if wait_ms:
                log.debug("the turn ends after %.0f ms of quiet: this person pauses mid-sentence", wait_ms)
            self._ends_at = self.endpointer.last_speech_sample + int(wait_ms * RATE_HZ / 1000)

    def _end(self, frame: Frame, end: SpeechEnd, endpoint: str) -> None:
        """The utterance is over: frames held since its pause were silence and are dropped."""
        self.audio.put(EndOfSpeech(_ns_at(frame, end.decided_sample), end.decided_sample,
                                   _ns_at(frame, end.end_sample), endpoint, self._probability,
                                   self._near_longest * FRAME_SAMPLES * 1000 // RATE_HZ))
        self._in_utterance, self._held = False, None
        self._ended_at = end.end_sample if endpoint == "smart-turn" else None

    def _check_barge_in(self, frame: Frame) -> None:
        if self.endpointer.state is VADState.QUIET:
            self._barged = False
            return
        if self._barged or self.endpointer.speech_ms < self.barge_in.min_speech_ms:
            return
        if self.conductor.state in (State.THINKING, State.SPEAKING):
            onset = frame.index + FRAME_SAMPLES - int(self.endpointer.speech_ms * RATE_HZ / 1000)
            # the guard's margin delays the decision, not the onset: walk back over the frames
            # that were already louder than the echo (a stop consonant's 64 ms closure included)
            gap = 0
            for index, rising in reversed(self._recent):
                if index >= onset:
                    continue
                gap = 0 if rising else gap + 1
                if gap > 2:
                    break
                if rising:
                    onset = index
            # Until a call takes, every frame of this speech asks again: an answer being closed refuses,
            # and the next one (the reply to the person's last words) may start while they are still talking.
            if self.barge_in.mode == "pause":
                self._barged = self.conductor.pause(onset_ns=_ns_at(frame, onset))
                if self._barged:
                    log.info("barge-in: speech from sample %d over the answer; paused until words come", onset)
            else:
                self._barged = self.conductor.interrupt(Kind.FULL, Reason.USER_SPEAKING, onset_ns=_ns_at(frame, onset))
                if self._barged:
                    log.info("barge-in: speech from sample %d over the answer", onset)


def _ns_at(frame: Frame, sample: int) -> int:
    """monotonic_ns of an audio-clock sample, from a nearby frame's stamp."""
    return frame.t_ns + int((sample - frame.index) * 1e9 / RATE_HZ)
