"""The pipeline: stages and channels wired together, started and stopped as one."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import cast

from sayso.answering.speaker import AudioSink, Speaker
from sayso.answering.thinker import LLM, Thinker
from sayso.answering.voice import TTS, Voice
from sayso.config import Settings
from sayso.hearing.capture import Capture, Mic
from sayso.hearing.echo import EchoCanceller
from sayso.hearing.listener import Listener
from sayso.hearing.stt import Recognizer
from sayso.hearing.transcriber import Transcriber
from sayso.hearing.turn import PauseHabit, SmartTurn, TurnDetector
from sayso.hearing.vad import Endpointer, SileroVAD
from sayso.hearing.wake import WakeModel
from sayso.pipeline.cancel import Scopes
from sayso.pipeline.channel import Channel
from sayso.pipeline.conductor import Conductor
from sayso.pipeline.echo_reference import EchoReference
from sayso.pipeline.events import EventBus, Observer
from sayso.pipeline.messages import Kind, Reason, State
from sayso.pipeline.stage import Stage, stop_all
from sayso.pipeline.turnlog import TurnLog

log = logging.getLogger(__name__)


class Engine:
    """thinker -> voice -> speaker around the conductor; inputs post into `conductor`.

    Hardware and models come in through the constructor (a real LLM or a fake,
    a sound card or a fake sink), never patched in. Without `turn_model` the end
    of a turn is decided by silence alone; without `wake` every utterance is a request.
    """

    def __init__(self, *, llm: LLM, tts: TTS, sink: AudioSink, turnlog: TurnLog, settings: Settings | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, observers: Iterable[Observer] = (),
                 ack_timeout_s: float = 3.0, mic: Mic | None = None, vad: SileroVAD | None = None,
                 recognizer: Recognizer | None = None, turn_model: SmartTurn | None = None,
                 wake: WakeModel | None = None):
        settings = settings or Settings()
        if mic is not None and turn_model is None and settings.turn.detector == "smart-turn":
            # without the model, silence ends every turn: nothing waits longer after "the capital of"
            settings = dataclasses.replace(settings, turn=dataclasses.replace(settings.turn, detector="silence"))
        self.turnlog = turnlog
        self.scopes = Scopes()
        self.bus = EventBus()
        for o in observers:
            self.bus.subscribe(o)
        self.requests: Channel = Channel("requests", capacity=4)
        self.clauses: Channel = Channel("clauses", capacity=64)
        self.segments: Channel = Channel("segments", capacity=2)
        self.conductor = Conductor(turnlog, self.requests, self.clauses, self.segments, self.scopes, self.bus,
                                   settings.llm.system_prompt, settings.conversation, clock, ack_timeout_s,
                                   barge_in=settings.barge_in, turn=settings.turn,
                                   wake=None if wake is None else settings.wake)
        failed = self.conductor.stage_failed
        self.thinker = Thinker(llm, self.requests, self.clauses, self.conductor.post, self.scopes, clock,
                               settings.llm.max_seconds, on_error=failed)
        self.voice = Voice(tts, self.clauses, self.segments, self.scopes, on_error=failed)
        self.echo = EchoReference()
        self.speaker = Speaker(sink, self.segments, self.conductor.post, self.scopes, clock, on_error=failed,
                               echo=self.echo)
        self.stages: list[Stage] = [self.conductor, self.thinker, self.voice, self.speaker]
        self.channels = [self.requests, self.clauses, self.segments, self.conductor.inbox]
        self.listener: Listener | None = None
        self.canceller: EchoCanceller | None = None
        self.turns: TurnDetector | None = None
        if mic is not None:
            if vad is None or recognizer is None:
                raise ValueError("listening needs a mic, a VAD and a recognizer together")
            self.frames: Channel = Channel("frames", capacity=256)
            self.utterance_audio: Channel = Channel("utterance-audio", capacity=4096)
            self.capture = Capture(mic, self.frames, clock, settings.audio.stall_s)
            b = settings.barge_in
            self.canceller = None if b.echo_canceller == "off" else EchoCanceller(self.echo, b.echo_tail_ms)
            t = settings.turn
            self.turns = None if turn_model is None else TurnDetector(turn_model, t.threshold,
                                                                      lambda a: cast(Listener, self.listener).answer(a))
            pause_ms = t.pause_ms if self.turns is not None or t.preemptive else None
            end_ms = t.max_silence_ms if self.turns is not None else None
            self.listener = Listener(vad, Endpointer(settings.vad, end_silence_ms=end_ms, pause_ms=pause_ms),
                                     self.frames, self.utterance_audio, self.conductor, b, settings.vad.preroll_ms,
                                     self.echo, self.canceller, self.turns, t.trailing_silence_ms,
                                     None if wake is None else wake.detector(),
                                     PauseHabit() if self.turns is not None and t.learn_pauses else None)
            self.transcriber = Transcriber(recognizer, self.utterance_audio, self.conductor.post,
                                           vad.another_stream(), self.listener.words_at_pause)
            self.stages += [self.transcriber, self.listener, self.capture]
            if self.turns is not None:
                self.stages.append(self.turns)
            self.channels += [self.frames, self.utterance_audio]
        self.recovered: list[int] = []

    def busy(self) -> str | None:
        """What keeps the appliance from being settled idle, or None when nothing is on its way."""
        if self.conductor.state is not State.IDLE:
            return f"it is {self.conductor.state.value}"
        if len(self.conductor.inbox):
            return "reports are waiting for the conductor"
        if self.listener is None:
            return None
        if self.listener.in_utterance:
            return "the listener hears speech (VAD) that has not ended"
        if len(self.frames) or len(self.utterance_audio):
            return "mic audio is waiting to be heard or transcribed"
        return None

    def start(self) -> Engine:
        self.recovered = self.turnlog.recover()
        self.bus.start()
        for s in self.stages:
            s.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Interrupt what is in flight (reason shutdown), stop every stage, leave the log consistent."""
        if self.conductor.alive and self.conductor.interrupt(Kind.FULL, Reason.SHUTDOWN):
            self.conductor.wait_state(State.IDLE, timeout_s / 2)
        try:
            for s in self.stages:
                s.stopping.set()
            for ch in self.channels:
                ch.close()
            stop_all(self.stages, timeout_s / 2)
        finally:
            self.conductor.close_for_shutdown()
            self.bus.drain(1.0)
            stop_all([self.bus], 1.0)
            self.bus.close()
            if self.canceller is not None:
                self.canceller.close()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
