"""`sayso simulate`: the real pipeline (VAD, STT, LLM, TTS, turn log, gpiozero Button) in a simulated room.

The person's lines are spoken by the installed Piper voice made slower and two
semitones higher, so they are told apart from the appliance in a recording and
the recogniser hears a different speaker. The stop button is a real gpiozero
Button on a MockFactory pin, so a press takes the same code path as on a Pi.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from sayso.answering.tts import PiperTTS
from sayso.audio import RATE_HZ, read_wav_at_mic_rate, to_mic_rate
from sayso.config import Settings, WakeSettings
from sayso.engine import Engine
from sayso.errors import SaysoError, ScenarioFailed
from sayso.hearing.wake import WakeModel
from sayso.models.manifest import ModelStore
from sayso.pipeline.messages import Event, State
from sayso.pipeline.turnlog import TurnLog
from sayso.service.gpio import Controls
from sayso.service.modelset import Models
from sayso.sim import voices
from sayso.sim.acoustics import Acoustics
from sayso.sim.report import build_report
from sayso.sim.room import Room
from sayso.sim.scenario import RoomSpec, Scenario, Step
from sayso.sim.sounds import cough, noise_burst

log = logging.getLogger(__name__)

WAIT_S = 30.0
"""How long a step's `wait` for a busy state may take before the scenario fails."""
END_WAIT_S = 120.0
"""How long a wait for idle may take: a long answer may still be playing."""


def room_acoustics(spec: RoomSpec) -> Acoustics:
    """The scenario's reverberation, drift, clipping and babble (espeak-ng's newsreader), ready for the Room."""
    babble = voices.babble() if spec.babble_dbfs is not None else None
    return Acoustics.make(spec.rt60_s, spec.drr_db, spec.drift_ppm, spec.speaker_clip_db, babble, spec.babble_dbfs)


class PersonVoice:
    """The person in the room: Piper, slower, then played 12% fast, which is about two semitones higher.

    It shares the appliance's loaded voice (`PiperTTS.paced`), so the simulator
    does not hold a second copy of it; the simulation renders every line before
    the pipeline starts, so the two never synthesize at once.
    """

    PITCH = 1.12

    def __init__(self, voice: PiperTTS):
        self.tts = voice.paced(1.25)

    def say(self, text: str) -> np.ndarray:
        """`text` spoken, as int16 at the mic's 16 kHz."""
        return to_mic_rate(self.tts.audio(text), int(self.tts.rate_hz * self.PITCH))

    def say_with_pauses(self, parts: tuple[str, ...], gap_s: float) -> np.ndarray:
        """The parts spoken one after another, `gap_s` of silence between the end of one's sound and the next."""
        return voices.with_pauses(self.say, parts, gap_s)


Person = PersonVoice | voices.EspeakVoice | voices.RecordingVoice


def person_voice(name: str, store: ModelStore) -> voices.EspeakVoice | voices.RecordingVoice:
    """A voice other than the default Piper person, by its scenario name; VoiceUnavailable says what is missing."""
    if name.startswith(voices.RECORDING):
        return voices.RecordingVoice(name.removeprefix(voices.RECORDING), store)
    return voices.EspeakVoice(name.removeprefix(voices.ESPEAK))


def check_recordings(names: Iterable[str], store: ModelStore) -> None:
    """Every recording among the voices `names` is fetched: said before any model loads, not after."""
    for name in set(names):
        if name.startswith(voices.RECORDING):
            person_voice(name, store)


def check_voices(scenario: Scenario, store: ModelStore) -> None:
    """Every recording the scenario's person speaks with is fetched."""
    check_recordings((scenario.voice, *(step.voice for step in scenario.steps if step.voice)), store)


@dataclass
class Kit(Models):
    """The models a simulation runs on, and the person's voice: loaded once, shared by every run of `sayso bench`."""

    person: PersonVoice = field(kw_only=True)
    store: ModelStore = field(kw_only=True)
    """Where a scenario's recordings of real people are (`voice = "recording:NAME"`)."""

    @classmethod
    def load(cls, settings: Settings, store: ModelStore) -> Kit:
        models = Models.load(settings, store)
        models.warm(settings)  # as `sayso run` does before READY=1: the first answer is not the slow one
        return cls(**vars(models), person=PersonVoice(cast(PiperTTS, models.tts)),  # Models.load loads Piper
                   store=store)


@dataclass(frozen=True)
class Result:
    report: dict
    """The report JSON (a contract): scenario, turns, events, summary."""
    per_turn: dict[int, dict]
    """Assistant turn id -> its latencies (barge_in_latency_ms / button_latency_ms)."""
    tracks: tuple[np.ndarray, np.ndarray] | None = None
    """The mic and the speaker, int16 at 16 kHz, when the run was recorded (for the plot)."""


class Simulation:
    """One run of one scenario. `run()` returns the report; `ScenarioFailed` names a step that timed out.

    Args:
        db: the turn log to use; the report holds only the turns this run added.
        wait_timeout_s: how long a step's `wait` may take.
    """

    def __init__(self, scenario: Scenario, kit: Kit, settings: Settings, db: Path, record: Path | None = None,
                 wait_timeout_s: float = WAIT_S, keep_tracks: bool = False):
        # the scenario's lines are written for one wake word, or for none
        settings = dataclasses.replace(settings, wake=dataclasses.replace(settings.wake, word=scenario.wake))
        self.scenario, self.kit, self.settings = scenario, kit, settings
        self.record, self.wait_timeout_s, self.keep_tracks = record, wait_timeout_s, keep_tracks
        spec = scenario.room
        self.room = Room(kit.tts.rate_hz, spec.echo_gain_db, spec.echo_delay_ms, spec.noise_dbfs,
                         record=record is not None or keep_tracks, acoustics=room_acoustics(spec))
        self.events: list[Event] = []
        # everything the room will hear, made now: synthesis must not shift a step's timing
        self._voices: dict[str, Person] = {voices.PIPER: kit.person}
        self._sounds = {step.number: self._sound(step) for step in scenario.steps
                        if step.action in ("say", "wav", "noise_s", "cough")}
        self.turnlog = TurnLog(db)
        self._first_id = max((r["id"] for r in self.turnlog.rows(last=1)), default=0)
        kit.vad.reset()
        kit.recognizer.end()  # a run cut off mid-utterance must not leak into this one
        self.engine = Engine(llm=kit.llm, tts=kit.tts, sink=self.room.speaker, turnlog=self.turnlog,
                             settings=settings, clock=self.room.clock, observers=[self.events.append],
                             mic=self.room.mic, vad=kit.vad, recognizer=kit.recognizer, turn_model=kit.turn,
                             wake=self._wake_model(kit, settings.wake))

    @staticmethod
    def _wake_model(kit: Kit, wake: WakeSettings) -> WakeModel | None:
        if wake.word == "off":
            return None
        if kit.wake is not None and (kit.wake.word, kit.wake.sensitivity) == (wake.word, wake.sensitivity):
            return kit.wake
        return WakeModel(wake.word, wake.sensitivity)

    def run(self) -> Result:
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
        controls = Controls(self.settings.gpio, self.engine.conductor.button, None, factory)
        pin = factory.pin(self.settings.gpio.button_pin)
        since = None
        failed: ScenarioFailed | None = None
        self.room.start()
        self.engine.start()
        try:
            for step in self.scenario.steps:
                if step.wait is not None:
                    # idle may be a whole answer away; a busy state is reached in seconds or never
                    limit = self.wait_timeout_s if step.wait is not State.IDLE else max(self.wait_timeout_s,
                                                                                         END_WAIT_S)
                    self._wait(step, step.wait, since, limit)
                if step.after_s:
                    self._sleep(step.after_s)
                if step.action:
                    since = self.engine.conductor.state_changes
                    self._act(step, pin)
            last = self.scenario.steps[-1]
            # the scenario ends when the appliance is idle again (an answer may run to its time limit)
            self._wait(last, State.IDLE, since, max(self.wait_timeout_s, END_WAIT_S))
            self._sleep(0.2)
        except ScenarioFailed as e:
            failed = e  # reported below with what happened up to it: the run that fails is the one to read
        finally:
            self.engine.stop()
            controls.close()
            self.room.stop()
            if self.record is not None:
                self.room.write_recording(self.record)
            turns = [r for r in self.turnlog.rows() if r["id"] > self._first_id]
            self.turnlog.close()
        report, per_turn = build_report(self.scenario.name, turns, self.events, self.room.log)
        if failed is not None:
            failed.report = report
            raise failed
        return Result(report, per_turn, self.room.tracks() if self.keep_tracks else None)

    def _sleep(self, seconds: float) -> None:
        if not self.room.sleep(seconds):
            raise SaysoError("the simulated room stopped unexpectedly; run with -v for its log")

    def _wait(self, step: Step, state: State, since: int | None, timeout_s: float) -> None:
        """Until the appliance is in `state`.

        A busy state must have been entered after the last action began: "speaking"
        after a barge-in means the next answer, not the one being cut. Idle must be
        settled instead (no speech being heard, no transcript on its way), which
        also covers an action that changed nothing, like a cough nobody answers.
        """
        c = self.engine.conductor
        since = None if state is State.IDLE else since
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScenarioFailed(
                    f"{self.scenario.source}, {step.describe()}: the appliance was not {state.value} within "
                    f"{timeout_s:g}s ({self.engine.busy() or 'it was ' + c.state.value}); "
                    f"check that the step before it leads there")
            if not c.wait_state(state, min(left, 0.5), since):
                continue
            if state is not State.IDLE:
                return
            changes = c.state_changes
            if self.engine.busy() is None:
                self._sleep(0.15)
                if self.engine.busy() is None and c.state_changes == changes:
                    return
            else:
                self._sleep(0.05)

    def _person(self, step: Step) -> Person:
        name = step.voice or self.scenario.voice
        if name not in self._voices:
            self._voices[name] = person_voice(name, self.kit.store)
        return self._voices[name]

    def _sound(self, step: Step) -> tuple[np.ndarray, str, str]:
        if step.say is not None:
            person = self._person(step)
            audio = person.say_with_pauses(step.say_parts, step.gap_s) if step.say_parts else person.say(step.say)
            if step.gain_db:
                audio = (audio * 10 ** (step.gain_db / 20)).clip(-32768, 32767).astype(np.int16)
            # a recording says its own words, and the ground truth must name them
            return audio, "say", person.label if isinstance(person, voices.RecordingVoice) else step.say
        if step.wav is not None:
            return read_wav_at_mic_rate(step.wav), "wav", str(step.wav)
        if step.cough is not None:
            return cough(step.cough, seed=step.number), "noise", f"{step.cough} cough(s)"
        noise_s = cast(float, step.noise_s)  # a step that makes a sound and is none of the above is noise
        return noise_burst(noise_s, seed=step.number), "noise", f"{noise_s:g}s"

    def _act(self, step: Step, pin) -> None:
        room = self.room
        if step.number in self._sounds:
            audio, kind, label = self._sounds[step.number]
            log.info("into the mic: %s %r", kind, label)
            room.play_into_mic(audio, kind, label)
        elif step.press:
            log.info("the stop button is pressed")
            pressed = room.clock() * RATE_HZ // 1_000_000_000
            pin.drive_low()
            self._sleep(step.hold_s)
            pin.drive_high()
            room.log.presses.append((pressed, room.clock() * RATE_HZ // 1_000_000_000))


def simulate(scenario: Scenario, settings: Settings, store: ModelStore, db: Path, record: Path | None = None,
             kit: Kit | None = None, keep_tracks: bool = False) -> Result:
    """Load the models (unless a kit is given) and run one scenario."""
    return Simulation(scenario, kit or Kit.load(settings, store), settings, db, record,
                      keep_tracks=keep_tracks).run()
