"""Listening on real parts: Silero VAD, the echo guard and barge-in, pocketsphinx, PortAudio via ALSA."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from sayso.answering.tts import PiperTTS
from sayso.audio import FRAME_SAMPLES, RATE_HZ, rms, to_mic_rate
from sayso.config import BargeInSettings, VADSettings
from sayso.engine import Engine
from sayso.hearing.capture import Frame, PyAudioMic
from sayso.hearing.echo import EchoCanceller
from sayso.hearing.listener import Listener
from sayso.hearing.stt import PocketsphinxRecognizer
from sayso.hearing.transcriber import EndOfSpeech, StartOfSpeech, Transcriber, WakeMark
from sayso.hearing.vad import Endpointer, SileroVAD
from sayso.hearing.wake import WakeModel
from sayso.pipeline.channel import Channel
from sayso.pipeline.echo_reference import EchoReference, sample_at
from sayso.pipeline.messages import SpeechDropped, SpeechStarted, State, Utterance, WakeWordHeard
from sayso.pipeline.pause import SUSTAINED_MS
from sayso.pipeline.turnlog import TurnLog
from sayso.sim.fakes import FakeLLM, FakeSpeakerSink, FakeTTS

pytestmark = pytest.mark.slow

T0_NS = 1_000_000_000_000
ANSWER = ("The weather today is mild with a light breeze from the west, and later in the afternoon "
          "there may be a little rain, so take a coat if you go out for a long walk.")


class ConductorProbe:
    """Stands in for the conductor's three-method interface; records what the listener told it."""

    def __init__(self, state: State):
        self.state = state
        self.posted: list = []
        self.interrupts: list[tuple[str, str, int | None]] = []
        self.pauses: list[int | None] = []

    def post(self, msg) -> None:
        self.posted.append(msg)

    def interrupt(self, kind, reason, onset_ns=None) -> bool:
        self.interrupts.append((str(kind), str(reason), onset_ns))
        return True

    def pause(self, onset_ns=None) -> bool:
        self.pauses.append(onset_ns)
        return True

    awaiting_wake = False


@pytest.fixture(scope="module")
def voices(store):
    appliance = PiperTTS(store.path("en_US-joe-medium"), repeatable=True)
    person = PiperTTS(store.path("en_US-joe-medium"), length_scale=1.15, repeatable=True)
    return appliance, person


def onset_of(clean: np.ndarray) -> int:
    return int(np.argmax(np.abs(clean) > 0.05 * 32768))


def run_listener(mic: np.ndarray, echo: EchoReference | None, state: State = State.SPEAKING,
                 barge: BargeInSettings | None = None, wake: WakeModel | None = None,
                 audio: Channel | None = None, probe: ConductorProbe | None = None) -> ConductorProbe:
    """Feed `mic` (16 kHz int16) frame by frame through a real listener; frames stamped on a fixed clock."""
    probe = probe or ConductorProbe(state)
    probe.awaiting_wake = wake is not None
    frames = Channel("frames", 1 << 20)
    audio = audio if audio is not None else Channel("audio", 1 << 20)
    listener = Listener(SileroVAD(_vad_path()), Endpointer(VADSettings()), frames, audio,
                        probe, barge or BargeInSettings(mode="immediate"), echo=echo,
                        wake=None if wake is None else wake.detector())
    n = len(mic) // FRAME_SAMPLES
    for k in range(n):
        index = k * FRAME_SAMPLES
        frames.put(Frame(mic[index:index + FRAME_SAMPLES].copy(), index, T0_NS + int(index * 1e9 / RATE_HZ)))
    for _ in range(n):
        listener.step()
    return probe


def _vad_path():
    from sayso.models.manifest import ModelStore

    return ModelStore().path("silero-vad-v6", role="vad")


def leaking(answers: list[tuple[int, np.ndarray]], total: int, gain_db: float, delay_ms: float):
    """Answers (16 kHz int16, each from its start sample) published to an EchoReference as they play, and
    the mic hearing them `delay_ms` later at `gain_db` over a -60 dBFS noise floor (float samples)."""
    ref, played = EchoReference(keep_s=total / RATE_HZ + 5), np.zeros(total, np.float32)
    for start, audio in answers:
        for i in range(0, len(audio), 320):
            ref.played(audio[i:i + 320], T0_NS + int((start + i) * 1e9 / RATE_HZ))
        played[start:start + len(audio)] = audio
    d = int(delay_ms * RATE_HZ / 1000)
    mic = np.concatenate([np.zeros(d, np.float32), played])[:total] * 10 ** (gain_db / 20)
    mic += np.random.default_rng(7).standard_normal(total).astype(np.float32) * 32768 * 10 ** (-60 / 20)
    return mic, ref


def appliance_playing(appliance: PiperTTS, seconds: float, gain_db: float, delay_ms: float = 30.0):
    """The answer as played (published to an EchoReference) and as it leaks into the mic."""
    r = appliance.render(ANSWER)
    at_16k = to_mic_rate(r.audio[: int(seconds * r.rate_hz)], r.rate_hz)
    return leaking([(0, at_16k)], len(at_16k) + int(delay_ms * RATE_HZ / 1000), gain_db, delay_ms)


def test_its_own_voice_at_minus_20_db_does_not_interrupt(voices):
    mic, ref = appliance_playing(voices[0], 6.0, gain_db=-20)
    probe = run_listener(np.clip(mic, -32768, 32767).astype(np.int16), ref)
    assert probe.interrupts == []
    # and the guard is what did it: the same leak with no reference is taken for a person
    unguarded = run_listener(np.clip(mic, -32768, 32767).astype(np.int16), None)
    assert unguarded.interrupts, "the VAD must hear the leak as speech, or this test proves nothing"


def person_over_answer(voices, words: str, at_s: float = 2.5):
    """The answer leaking into the mic at -20 dB, the person saying `words` over it from `at_s`: the mic
    (int16), the echo reference, and when their speech truly began (ns)."""
    mic, ref = appliance_playing(voices[0], 6.0, gain_db=-20)
    person = to_mic_rate(voices[1].audio(words), voices[1].rate_hz).astype(np.float32) * 10 ** (-3 / 20)
    start = int(at_s * RATE_HZ)
    mic[start:start + len(person)] += person[: len(mic) - start]
    onset_ns = T0_NS + int((start + onset_of(person)) * 1e9 / RATE_HZ)
    return np.clip(mic, -32768, 32767).astype(np.int16), ref, onset_ns


def test_a_person_talking_over_the_answer_interrupts_at_the_right_onset(voices):
    mic, ref, true_onset_ns = person_over_answer(voices, "Stop, that is enough.")
    probe = run_listener(mic, ref)
    assert [(k, r) for k, r, _ in probe.interrupts] == [("full", "user_speaking")]
    error_ms = (probe.interrupts[0][2] - true_onset_ns) / 1e6
    print(f"barge-in onset error: {error_ms:+.0f} ms")
    assert abs(error_ms) <= 100


class ClosingConductorProbe(ConductorProbe):
    """Refuses the first pauses, as the conductor does while the answer they would pause is being closed."""

    def __init__(self, state: State, refusals: int):
        super().__init__(state)
        self.refusals = refusals

    def pause(self, onset_ns=None) -> bool:
        super().pause(onset_ns)
        return len(self.pauses) > self.refusals


def test_speech_goes_on_asking_to_pause_until_an_answer_takes_it_with_its_first_onset(voices):
    # "Stop." closed one answer; the person goes on before the reply to it starts, and the reply is paused
    samples, ref, true_onset_ns = person_over_answer(voices, "Stop, tell me about Germany instead.")
    probe = run_listener(samples, ref, barge=BargeInSettings(mode="pause"),
                         probe=ClosingConductorProbe(State.SPEAKING, refusals=5))
    assert len(probe.pauses) == 6, "asked again after the pause took, or gave up before it did"
    assert all(abs(p - true_onset_ns) <= 100e6 for p in probe.pauses), "a later ask moved the onset"


def test_no_barge_in_while_idle_but_the_utterance_is_sent_with_its_preroll(voices):
    person = to_mic_rate(voices[1].audio("What time is it?"), voices[1].rate_hz)
    mic = np.concatenate([np.zeros(RATE_HZ, np.int16), person, np.zeros(RATE_HZ, np.int16)])
    probe = run_listener(mic, None, state=State.IDLE)
    assert probe.interrupts == []
    starts = [m for m in probe.posted if isinstance(m, SpeechStarted)]
    assert len(starts) == 1
    assert abs(starts[0].onset_sample - (RATE_HZ + onset_of(person))) <= 0.1 * RATE_HZ


class PacedMic(PyAudioMic):
    """The real mic, delivering in real time: ALSA's null slave is not paced, a sound card is."""

    def open(self, deliver):
        start = time.monotonic()
        count = [0]
        pace = threading.Event()

        def paced(data, t_ns):
            count[0] += len(data) // 2
            ahead = start + count[0] / self.rate_hz - time.monotonic()
            if ahead > 0:
                pace.wait(ahead)
            deliver(data, time.monotonic_ns())

        super().open(paced)


def test_spoken_question_through_portaudio_becomes_a_logged_turn(alsa_devices, voices, tmp_path):
    person = to_mic_rate(voices[1].audio("What time is it?"), voices[1].rate_hz)
    alsa_devices(np.concatenate([np.zeros(RATE_HZ // 2, np.int16), person, np.zeros(RATE_HZ * 30, np.int16)]))
    heard = threading.Event()
    events = []

    def observe(e):
        events.append(e)
        if e.type == "turn_finished":
            heard.set()

    engine = Engine(llm=FakeLLM(["It is noon."]), tts=FakeTTS(), sink=FakeSpeakerSink(),
                    turnlog=TurnLog(tmp_path / "turns.db"), observers=[observe], mic=PacedMic("saysomic"),
                    vad=SileroVAD(_vad_path()), recognizer=PocketsphinxRecognizer())
    engine.start()
    try:
        assert heard.wait(30), [e.type for e in events]
    finally:
        engine.stop()
    rows = engine.turnlog.rows()
    assert rows[0]["role"] == "user" and "time" in rows[0]["text"]
    assert rows[1]["status"] == "complete" and rows[1]["text"] == "It is noon."
    types = [e.type for e in events]
    assert types.index("state") < types.index("user_turn")  # listening came first
    assert any(e.type == "partial" for e in events), "partial transcripts are published while speaking"


def test_end_of_speech_reaches_the_transcriber_after_the_utterance(voices):
    person = to_mic_rate(voices[1].audio("Turn on the light."), voices[1].rate_hz)
    mic = np.concatenate([np.zeros(RATE_HZ // 2, np.int16), person, np.zeros(RATE_HZ, np.int16)])
    probe = ConductorProbe(State.IDLE)
    frames, audio = Channel("frames", 1 << 20), Channel("audio", 1 << 20)
    listener = Listener(SileroVAD(_vad_path()), Endpointer(VADSettings()), frames, audio, probe, BargeInSettings())
    n = len(mic) // FRAME_SAMPLES
    for k in range(n):
        frames.put(Frame(mic[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES], k * FRAME_SAMPLES, T0_NS))
    for _ in range(n):
        listener.step()
    items = []
    while (item := audio.get(timeout=0)) is not None:
        items.append(item)
    assert isinstance(items[0], StartOfSpeech) and isinstance(items[-1], EndOfSpeech)
    assert all(isinstance(i, Frame) for i in items[1:-1])
    assert items[1].index < items[0].onset_sample, "the pre-roll comes after the start, before the onset"
    got = np.concatenate([i.samples for i in items[1:-1]])
    # pre-roll included: the utterance audio starts before the speech does
    assert items[1].index <= RATE_HZ // 2 + onset_of(person) - 0.2 * RATE_HZ
    assert len(got) >= len(person)


def test_the_transcriber_measures_each_utterances_sustained_speech_afresh(voices):
    from sayso.sim.sounds import cough

    posted: list = []
    audio = Channel("audio", 1 << 20)
    vad = SileroVAD(_vad_path())
    transcriber = Transcriber(PocketsphinxRecognizer(), audio, posted.append, vad.another_stream())
    person = to_mic_rate(voices[1].audio("Stop please."), voices[1].rate_hz)
    # over an answer the pre-roll holds what the canceller left of the appliance's voice: not the person's
    residue = to_mic_rate(voices[0].audio("The history of England is long."), voices[0].rate_hz)[:RATE_HZ // 2]
    pad = np.zeros(RATE_HZ // 4, np.int16)
    for lead, clip in ((pad, person), (residue, cough(2, -10.0, seed=1))):  # the cough must not inherit a run
        clip = np.concatenate([lead, clip, pad])
        audio.put(StartOfSpeech(len(lead) // FRAME_SAMPLES * FRAME_SAMPLES))
        for i in range(0, len(clip) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            audio.put(Frame(clip[i:i + FRAME_SAMPLES], i, T0_NS))
        audio.put(EndOfSpeech(T0_NS, len(clip)))
    while len(audio):
        transcriber.step()
    spoken, coughed = [m for m in posted if isinstance(m, Utterance)]
    print(f"sustained speech: 'Stop please.' {spoken.sustained_ms} ms, a double cough {coughed.sustained_ms} ms")
    assert spoken.sustained_ms >= 2 * SUSTAINED_MS and coughed.sustained_ms < SUSTAINED_MS


def test_a_televisions_words_after_a_cough_are_no_sustained_speech_of_the_persons():
    # Over a paused answer a cough's utterance can run on for seconds (its words trailed off, so the listener
    # waited for more), and a fresh VAD scores the television's words in it sure speech: 1.3 s of it, with a
    # word the recogniser stood by, cut an answer nobody had interrupted. Only the frames the foreground gate
    # took for the person's count.
    from sayso.hearing.foreground import ForegroundGate
    from sayso.sim import voices as sim_voices
    from sayso.sim.acoustics import Acoustics
    from sayso.sim.sounds import cough

    room = Acoustics.make(rt60_s=0.5, drr_db=3.0, babble=sim_voices.babble(), babble_dbfs=-35)
    total, coughed_at, heard_s = 10 * RATE_HZ, 6 * RATE_HZ, 3
    mic = room.background(0, total) + np.random.default_rng(0).standard_normal(total) * 32768 * 10 ** (-50 / 20)
    coughs = room.through_room(cough(2, -12.0, seed=3))
    mic[coughed_at:coughed_at + len(coughs)] += coughs
    mic = np.clip(mic, -32768, 32767).astype(np.int16)
    settings, vad = VADSettings(), SileroVAD(_vad_path())
    gate = ForegroundGate(settings.foreground_margin_db)
    utterance = []
    for index in range(0, total - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        samples = mic[index:index + FRAME_SAMPLES]
        near = gate.passes(samples, vad.probability(samples) >= settings.stop_threshold)  # as the listener does
        if coughed_at <= index < coughed_at + heard_s * RATE_HZ:
            utterance.append(Frame(samples, index, T0_NS, near=near))
    sustained = {}
    for gated in (True, False):
        posted: list = []
        audio = Channel("audio", 1 << 20)
        transcriber = Transcriber(PocketsphinxRecognizer(), audio, posted.append, vad.another_stream())
        audio.put(StartOfSpeech(coughed_at))
        for frame in utterance:
            audio.put(frame if gated else dataclasses.replace(frame, near=True))
        audio.put(EndOfSpeech(T0_NS, coughed_at + heard_s * RATE_HZ))
        while len(audio):
            transcriber.step()
        sustained[gated] = next(m for m in posted if isinstance(m, Utterance)).sustained_ms
    print(f"sustained speech over the cough and the television: {sustained[False]} ms, the person's "
          f"{sustained[True]} ms")
    assert sustained[False] >= SUSTAINED_MS, "the television must be sure speech to a fresh VAD, or this proves nothing"
    assert sustained[True] < SUSTAINED_MS


def test_over_a_television_a_question_has_a_run_of_the_persons_sure_speech_and_a_cough_has_not(voices):
    from sayso.config import TurnSettings
    from sayso.sim import voices as sim_voices
    from sayso.sim.acoustics import Acoustics
    from sayso.sim.sounds import cough

    room = Acoustics.make(rt60_s=0.5, drr_db=3.0, babble=sim_voices.babble(), babble_dbfs=-35)
    question = room.through_room(to_mic_rate(voices[1].audio("How many days are in a week?"), voices[1].rate_hz))
    coughs = room.through_room(cough(3, -12.0, seed=3))
    total, asked_at, coughed_at = 10 * RATE_HZ, 2 * RATE_HZ, 6 * RATE_HZ
    mic = room.background(0, total) + np.random.default_rng(0).standard_normal(total) * 32768 * 10 ** (-50 / 20)
    mic[asked_at:asked_at + len(question)] += question
    mic[coughed_at:coughed_at + len(coughs)] += coughs
    audio = Channel("audio", 1 << 20)
    run_listener(np.clip(mic, -32768, 32767).astype(np.int16), None, State.IDLE, audio=audio)
    items = []
    while (item := audio.get(timeout=0)) is not None:
        items.append(item)
    starts = [i.onset_sample for i in items if isinstance(i, StartOfSpeech)]
    ends = [i for i in items if isinstance(i, EndOfSpeech)]
    # the television's speech around the words reaches the recogniser, marked as not the person's
    assert any(isinstance(i, Frame) and not i.near for i in items)
    heard = {("question" if at < coughed_at - RATE_HZ else "cough"): e.foreground_ms
             for at, e in zip(starts, ends, strict=True)}
    print(f"longest run of the person's sure speech: {heard}")
    bar = TurnSettings().not_caught_speech_ms
    assert sorted(heard) == ["cough", "question"], "both must be taken for speech, or this proves nothing"
    assert heard["question"] >= bar and heard["cough"] < bar


# ---- a loud speaker close to the mic (echo at -6 dB): the canceller, the pause, the cough


def two_answers(appliance: PiperTTS, gain_db: float, person_db: float | None = None, person_at_s: float = 1.5,
                delay_ms: float = 30.0, seconds: float = 7.0):
    """Two answers with 2 s between them (as in a conversation), leaking at `gain_db`; the person may
    talk over the second one. Returns the mic, the reference and the person's true onset (clock ns)."""
    r = appliance.render(ANSWER)
    at_16k = to_mic_rate(r.audio, r.rate_hz)[:int(seconds * RATE_HZ)]
    starts = [0, len(at_16k) + 2 * RATE_HZ]
    mic, ref = leaking([(s, at_16k) for s in starts], starts[1] + len(at_16k) + RATE_HZ, gain_db, delay_ms)
    onset_ns = None
    if person_db is not None:
        person = to_mic_rate(appliance.paced(1.15).audio("Stop, that is enough."), r.rate_hz)
        at = starts[1] + int(person_at_s * RATE_HZ)
        mic[at:at + len(person)] += person * 10 ** (person_db / 20)
        onset_ns = T0_NS + int((at + onset_of(person)) * 1e9 / RATE_HZ)
    return np.clip(mic, -32768, 32767).astype(np.int16), ref, onset_ns


def listen(mic: np.ndarray, ref: EchoReference, barge: BargeInSettings, cancel: bool = True):
    """A real listener (VAD, canceller, guard) over `mic`; returns the probe and when each pause was decided."""
    probe = ConductorProbe(State.SPEAKING)
    frames, audio = Channel("frames", 1 << 20), Channel("audio", 1 << 20)
    canceller = EchoCanceller(ref) if cancel else None
    listener = Listener(SileroVAD(_vad_path()), Endpointer(VADSettings()), frames, audio, probe, barge,
                        echo=ref, canceller=canceller)
    decided: list[int] = []
    for k in range(len(mic) // FRAME_SAMPLES):
        index = k * FRAME_SAMPLES
        frames.put(Frame(mic[index:index + FRAME_SAMPLES].copy(), index, T0_NS + int(index * 1e9 / RATE_HZ)))
        before = len(probe.pauses) + len(probe.interrupts)
        listener.step()
        if len(probe.pauses) + len(probe.interrupts) > before:
            decided.append(T0_NS + int((index + FRAME_SAMPLES) * 1e9 / RATE_HZ))
    if canceller is not None:
        found = canceller.estimator.delay
        assert found is not None and abs(found - 30 * RATE_HZ // 1000) <= 16, "the delay was not measured"
        assert canceller.covers(found), "the canceller does not model the echo where it is"
        canceller.close()
    return probe, decided, audio


def echo_removed_db(mic: np.ndarray, ref: EchoReference, seconds: list[int], from_sample: int):
    """Run a canceller over `mic`; dB it took from each listed second after `from_sample`, and the canceller."""
    canceller = EchoCanceller(ref)
    n = len(mic) // FRAME_SAMPLES * FRAME_SAMPLES
    out = np.concatenate([canceller.process(mic[i:i + FRAME_SAMPLES], sample_at(T0_NS) + i)
                          for i in range(0, n, FRAME_SAMPLES)]).astype(np.float64)
    canceller.close()
    at = [slice(from_sample + k * RATE_HZ, from_sample + (k + 1) * RATE_HZ) for k in seconds]
    return [20 * np.log10(rms(mic[s]) / max(rms(out[s]), 1e-9)) for s in at], canceller


@pytest.mark.parametrize("delay_ms", [30, 120, 250])
def test_the_canceller_keeps_its_filter_across_answers_and_moves_it_only_for_an_echo_it_cannot_model(
        voices, delay_ms):
    mic, ref, _ = two_answers(voices[0], gain_db=-6, delay_ms=delay_ms)
    second = len(mic) - 8 * RATE_HZ  # where the second answer starts
    removed, canceller = echo_removed_db(mic, ref, [0, 4], second)
    print(f"echo {delay_ms} ms: {canceller.resets} restart(s); second answer: "
          f"{removed[0]:.1f} dB taken in its first second, {removed[1]:.1f} dB in its fifth")
    assert abs(canceller.estimator.delay - delay_ms * RATE_HZ // 1000) <= 16
    assert canceller.covers(canceller.estimator.delay)
    assert removed[1] >= 15, "the filter did not converge on the second answer"
    if delay_ms == 30:
        # 30 ms (a speaker beside the mic) is inside the filter from the start: never restarted, so the
        # second answer is cancelled from its first word and a person talking over it is heard at once
        assert canceller.resets == 0 and removed[0] >= 15
    else:
        # further than the filter reaches: moved once, between the answers, and the filter started afresh
        assert canceller.resets == 1


@pytest.mark.parametrize("mode", ["pause", "immediate"])
def test_its_own_voice_at_minus_6_db_neither_pauses_nor_interrupts(voices, mode):
    mic, ref, _ = two_answers(voices[0], gain_db=-6)
    probe, _, _ = listen(mic, ref, BargeInSettings(mode=mode))
    assert probe.pauses == [] and probe.interrupts == []


def test_a_quieter_person_is_heard_over_minus_6_db_because_the_echo_is_cancelled(voices):
    # the person 6 dB under the appliance's own level at the mic, the echo 6 dB under it too
    mic, ref, onset_ns = two_answers(voices[0], gain_db=-6, person_db=-6)
    probe, decided, _ = listen(mic, ref, BargeInSettings(mode="pause"))
    assert probe.interrupts == [] and len(probe.pauses) >= 1
    assert 0 < (decided[0] - onset_ns) / 1e6 <= 350
    # without the canceller the guard must hold the bar at the raw echo, and the person is not heard in time
    _, late, _ = listen(mic, ref, BargeInSettings(mode="pause"), cancel=False)
    assert not late or (late[0] - onset_ns) / 1e6 > 350


def test_a_sound_too_short_to_be_speech_pauses_the_answer_and_is_let_go_without_an_utterance(voices):
    # 130 ms of a voice (an "ah" cut off): speech to the VAD for longer than a barge-in needs (64 ms), and
    # shorter than an utterance (200 ms). A synthetic cough is no good here: with the echo cancelled, Silero
    # gives it two frames over 0.5 at some phases of the frame grid and none at others (5 of 8 measured).
    ah = to_mic_rate(voices[1].audio("Ah."), voices[1].rate_hz)
    sound = ah[onset_of(ah):][:130 * RATE_HZ // 1000].astype(np.float64)
    sound[-160:] *= np.linspace(1, 0, 160)
    mic, ref, _ = two_answers(voices[0], gain_db=-6)
    at = int(11.5 * RATE_HZ)  # 2.5 s into the second answer
    mic[at:at + len(sound)] = np.clip(mic[at:at + len(sound)].astype(np.int32) + sound.astype(np.int32),
                                      -32768, 32767)
    probe, _, audio = listen(mic, ref, BargeInSettings(mode="pause"))
    assert len(probe.pauses) >= 1 and probe.interrupts == []
    dropped = [m for m in probe.posted if isinstance(m, SpeechDropped)]
    assert len(dropped) == len(probe.pauses), "every pause must be followed by its let-go"
    assert not [m for m in probe.posted if isinstance(m, SpeechStarted)] and len(audio) == 0


def test_barge_in_off_lets_the_answer_play_over_the_person(voices):
    mic, ref, _ = two_answers(voices[0], gain_db=-20, person_db=0)
    probe, _, audio = listen(mic, ref, BargeInSettings(mode="off"))
    assert probe.pauses == [] and probe.interrupts == [] and len(audio) == 0


def drained(channel: Channel) -> list:
    items = []
    while (item := channel.get(timeout=0)) is not None:
        items.append(item)
    return items


def idle_with_a_wake_word(person: PiperTTS, text: str) -> tuple[ConductorProbe, Channel]:
    """The listener, idle and waiting for okay_nabu, over `text` said between quiet; what it posted and sent."""
    r = person.render(text)
    quiet = np.zeros(RATE_HZ, np.int16)
    mic = np.concatenate([quiet, to_mic_rate(r.audio, r.rate_hz), quiet, quiet])
    audio = Channel("audio", 1 << 20)
    return run_listener(mic, None, State.IDLE, wake=WakeModel("okay_nabu"), audio=audio), audio


def test_speech_without_the_wake_word_never_reaches_the_recogniser(voices):
    probe, audio = idle_with_a_wake_word(voices[1], "What is the capital of Italy? I always forget it.")
    assert drained(audio) == [], "nothing of it was sent to be transcribed"
    finals = [m for m in probe.posted if isinstance(m, Utterance)]
    assert [(u.text, u.transcribed) for u in finals] == [("", False)]


def test_a_wake_word_hands_the_recogniser_the_speech_it_was_said_in(voices):
    probe, audio = idle_with_a_wake_word(voices[1], "Okay Nabu, what time is it?")
    sent = drained(audio)
    assert isinstance(sent[0], StartOfSpeech) and any(isinstance(m, WakeMark) for m in sent)
    frames = [m for m in sent if isinstance(m, Frame)]
    # from before the phrase began, gap-free, to the end of the utterance
    assert frames[0].index <= RATE_HZ and [f.index for f in frames] == list(
        range(frames[0].index, frames[-1].index + 1, FRAME_SAMPLES))
    assert isinstance(sent[-1], EndOfSpeech)
    assert any(isinstance(m, WakeWordHeard) for m in probe.posted)
