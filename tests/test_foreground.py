"""The foreground gate: synthetic levels first, then a real television (espeak-ng) under a real person (Piper)."""

from __future__ import annotations

import numpy as np
import pytest

from sayso.audio import FRAME_SAMPLES, RATE_HZ
from sayso.config import VADSettings
from sayso.hearing.foreground import MIN_FRAMES, WORD_FRAMES, ForegroundGate
from sayso.hearing.vad import Endpointer, SpeechEnd, SpeechStart

MARGIN_DB = VADSettings().foreground_margin_db


def frame(dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """32 ms of white noise at `dbfs` RMS, int16."""
    return np.clip(rng.standard_normal(FRAME_SAMPLES) * 32768 * 10 ** (dbfs / 20), -32768, 32767).astype(np.int16)


def television(seconds: float, rng: np.random.Generator) -> list[tuple[float, bool]]:
    """(level, speech) of each frame of steady speech across a room, about -35 dBFS (the frames' median -38,
    1 in 100 over -28, as the simulator's television): syllables of -44..-28 dBFS that Silero calls speech,
    short gaps at the floor (-48) that it does not, now and then a pause."""
    frames: list[tuple[float, bool]] = []
    while len(frames) * FRAME_SAMPLES < seconds * RATE_HZ:
        frames += [(float(v), True) for v in rng.uniform(-44, -28, int(rng.integers(3, 8)))]
        frames += [(-48.0, False)] * int(rng.integers(1, 3 if rng.random() > 0.1 else 12))
    return frames


def test_in_a_quiet_room_a_quiet_voice_passes_from_its_first_frame():
    rng = np.random.default_rng(1)
    gate = ForegroundGate(MARGIN_DB)
    assert all(gate.passes(frame(-60, rng), speech=False) for _ in range(60))
    assert gate.background_dbfs == pytest.approx(-60, abs=1)
    assert all(gate.passes(frame(-38, rng), speech=True) for _ in range(40))


def test_a_long_talk_does_not_become_the_background():
    rng = np.random.default_rng(2)
    gate = ForegroundGate(MARGIN_DB)
    for _ in range(60):
        gate.passes(frame(-60, rng), speech=False)
    # 20 s of the person reading aloud, sentences of 2.5 s and pauses of 0.5 s: their own words do not lift the bar
    talk = [gate.passes(frame(-25 if k % 94 < 78 else -60, rng), speech=k % 94 < 78) for k in range(625)]
    assert all(talk)
    assert gate.background_dbfs == pytest.approx(-60, abs=1)


def test_a_television_settles_into_the_background_and_a_person_over_it_stands_out():
    rng = np.random.default_rng(3)
    gate = ForegroundGate(MARGIN_DB)
    for level, speech in television(10, rng):
        gate.passes(frame(level, rng), speech)
    assert -44 < gate.background_dbfs < -36
    tv = [(gate.passes(frame(level, rng), speech), speech) for level, speech in television(20, rng)]
    heard = [passed for passed, speech in tv if speech]
    assert sum(heard) / len(heard) < 0.02, "the television still counts as a person"
    person = [gate.passes(frame(level, rng), speech=True) for level in rng.uniform(-24, -16, 60)]
    assert all(person)


def test_a_television_switched_on_in_a_quiet_room_is_learnt_within_half_a_minute():
    # the slow case: every syllable is far over the old floor, so only its gaps and one in ten of its
    # syllables teach the estimate
    rng = np.random.default_rng(4)
    gate = ForegroundGate(MARGIN_DB)
    for _ in range(200):
        gate.passes(frame(-60, rng), speech=False)
    tv = [(gate.passes(frame(level, rng), speech), speech) for level, speech in television(35, rng)]
    late = [passed for passed, speech in tv[25 * RATE_HZ // FRAME_SAMPLES:] if speech]
    assert sum(late) / len(late) < 0.05


def test_speech_is_held_back_until_the_room_is_known_and_non_speech_always_passes():
    rng = np.random.default_rng(5)
    gate = ForegroundGate(MARGIN_DB)
    first = [gate.passes(frame(-30, rng), speech=True) for _ in range(MIN_FRAMES)]
    assert not any(first) and gate.background_dbfs == pytest.approx(-30, abs=1)
    assert gate.passes(frame(-30, rng), speech=False)


def test_while_the_appliance_plays_nothing_is_learnt():
    rng = np.random.default_rng(6)
    gate = ForegroundGate(MARGIN_DB)
    for _ in range(60):
        gate.passes(frame(-60, rng), speech=False)
    for _ in range(300):
        gate.passes(frame(-40, rng), speech=False, learn=False)
    assert gate.background_dbfs == pytest.approx(-60, abs=1)


def test_an_answer_playing_before_the_room_is_known_leaves_speech_to_the_echo_guard():
    rng = np.random.default_rng(8)
    gate = ForegroundGate(MARGIN_DB)
    playing = [gate.passes(frame(-40, rng), speech=True, learn=False) for _ in range(3 * MIN_FRAMES)]
    assert all(playing), "a barge-in over an answer from start-up was held back"
    assert gate.background_dbfs is None, "the appliance's own voice was learnt as the room"
    held = [gate.passes(frame(-30, rng), speech=True) for _ in range(MIN_FRAMES)]
    assert not any(held), "once it plays no more, a voice is held until the room is known"


def test_quieter_frames_just_after_a_word_has_begun_stay_inside_it():
    rng = np.random.default_rng(7)
    gate = ForegroundGate(MARGIN_DB, hangover_ms=96)
    for _ in range(60):
        gate.passes(frame(-40, rng), speech=False)
    assert [gate.passes(frame(-20, rng), speech=True) for _ in range(WORD_FRAMES)] == [True] * WORD_FRAMES
    assert [gate.passes(frame(-40, rng), speech=True) for _ in range(2)] == [True] * 2
    # a loud frame later in the word carries the grace on from there
    assert gate.passes(frame(-20, rng), speech=True)
    assert [gate.passes(frame(-40, rng), speech=True) for _ in range(5)] == [True] * 3 + [False] * 2
    # the word is over: a lone loud frame does not open another
    assert gate.passes(frame(-20, rng), speech=True)
    assert gate.passes(frame(-40, rng), speech=True) is False


def test_a_lone_loud_frame_passes_alone():
    # a television's loudest syllable grazes the bar one frame at a time: no grace follows it
    rng = np.random.default_rng(9)
    gate = ForegroundGate(MARGIN_DB, hangover_ms=160)
    for _ in range(60):
        gate.passes(frame(-40, rng), speech=False)
    heard = []
    for _ in range(3):
        heard.append(gate.passes(frame(-27, rng), speech=True))
        heard += [gate.passes(frame(-36, rng), speech=True) for _ in range(3)]
    assert heard == [True, False, False, False] * 3


# ---- real voices: Silero hears both, the gate tells them apart


@pytest.fixture(scope="module")
def vad(store):
    from sayso.hearing.vad import SileroVAD

    return SileroVAD(store.path("silero-vad-v6", role="vad"))


@pytest.fixture(scope="module")
def person(store):
    from sayso.answering.tts import PiperTTS
    from sayso.sim.simulate import PersonVoice

    return PersonVoice(PiperTTS(store.path("en_US-joe-medium"), repeatable=True))


def gated_speech(vad, audio: np.ndarray, gated: bool = True, learn_s: float | None = None):
    """(first sample, Silero's probability) of each frame of `audio`, zero where the gate holds it back; the gate
    stops learning `learn_s` into `audio` (as it does while an answer plays), or never."""
    vad.reset()
    gate, stop = ForegroundGate(MARGIN_DB), VADSettings().stop_threshold
    for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        f = audio[i:i + FRAME_SAMPLES]
        p = vad.probability(f)
        if gated and not gate.passes(f, p >= stop, learn=learn_s is None or i < learn_s * RATE_HZ):
            p = 0.0
        yield i, p


def endpoints(vad, audio: np.ndarray, gated: bool) -> list[SpeechStart | SpeechEnd]:
    """The default endpointer's starts and ends for `audio`, with or without the gate in front of it."""
    ep = Endpointer(VADSettings())
    return [e for i, p in gated_speech(vad, audio, gated) for e in ep.update(p, i)]


def room(person_line: np.ndarray, gain_db: float, tv_dbfs: float | None,
         noise_dbfs: float) -> tuple[np.ndarray, int, int]:
    """The line 3 s into 8 s of a room (a television through a reverberant room, white noise): the mic, and
    where the line's sound starts and ends."""
    from sayso.sim import voices
    from sayso.sim.acoustics import Acoustics

    total, at = 8 * RATE_HZ, 3 * RATE_HZ
    line = person_line.astype(np.float64) * 10 ** (gain_db / 20)
    loud = np.flatnonzero(np.abs(line) > 0.02 * 32768 * 10 ** (gain_db / 20))
    mic = np.random.default_rng(0).standard_normal(total) * 32768 * 10 ** (noise_dbfs / 20)
    mic[at:at + len(line)] += line
    if tv_dbfs is not None:
        tv = Acoustics.make(rt60_s=0.5, babble=voices.babble(), babble_dbfs=tv_dbfs)
        mic += tv.background(0, total)
    return np.clip(mic, -32768, 32767).astype(np.int16), at + int(loud[0]), at + int(loud[-1])


@pytest.mark.slow
def test_a_person_over_a_television_is_heard_start_to_end(vad, person):
    mic, onset, end = room(person.say("What is the capital of Norway?"), -6, tv_dbfs=-35, noise_dbfs=-50)
    assert [type(e) for e in endpoints(vad, mic, gated=False)] == [SpeechStart], \
        "Silero must take the television for speech, or this test proves nothing"
    events = endpoints(vad, mic, gated=True)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd], events
    assert abs(events[0].onset_sample - onset) <= 0.1 * RATE_HZ
    assert -0.1 * RATE_HZ <= events[1].end_sample - end <= 0.15 * RATE_HZ


@pytest.mark.slow
@pytest.mark.parametrize("gain_db", [0, -12])
def test_in_a_quiet_room_the_gate_changes_nothing(vad, person, gain_db):
    mic, _, _ = room(person.say("Tell me about the history of Italy."), gain_db, tv_dbfs=None, noise_dbfs=-60)
    plain, gated = endpoints(vad, mic, gated=False), endpoints(vad, mic, gated=True)
    assert [type(e) for e in gated] == [type(e) for e in plain] == [SpeechStart, SpeechEnd]
    assert gated[0].onset_sample == plain[0].onset_sample
    assert abs(gated[1].end_sample - plain[1].end_sample) <= FRAME_SAMPLES


def barge_ins(vad, audio: np.ndarray, learn_s: float) -> list[int]:
    """Where speech would cut in on an answer, as the listener decides it (gated speech that lasts the barge-in
    minimum), once the gate stops learning `learn_s` into `audio`, as it does while an answer plays."""
    from sayso.config import BargeInSettings
    from sayso.hearing.vad import VADState

    ep, least_ms = Endpointer(VADSettings()), BargeInSettings().min_speech_ms
    hits, barged = [], False
    for i, p in gated_speech(vad, audio, learn_s=learn_s):
        ep.update(p, i)
        if ep.state is VADState.QUIET:
            barged = False
        elif not barged and ep.speech_ms >= least_ms and i >= learn_s * RATE_HZ:
            hits.append(i + FRAME_SAMPLES)
            barged = True
    return hits


@pytest.mark.slow
def test_over_an_answer_a_television_seldom_cuts_in_and_a_person_at_once(vad, person):
    from sayso.sim import voices
    from sayso.sim.acoustics import Acoustics

    tv = Acoustics.make(rt60_s=0.5, drr_db=3.0, babble=voices.babble(), babble_dbfs=-35)
    noise = np.random.default_rng(0).standard_normal(26 * RATE_HZ) * 32768 * 10 ** (-50 / 20)
    false = []
    for start in range(0, 30 * RATE_HZ, 2 * RATE_HZ):  # stretches of the newsreader, the bar frozen 20 s each
        mic = np.clip(tv.background(start, len(noise)) + noise, -32768, 32767).astype(np.int16)
        false += barge_ins(vad, mic, learn_s=6)
    line = tv.through_room(person.say("Wait, what about Spain?"), 1)
    mic, onset, _ = room(line, 0, tv_dbfs=-35, noise_dbfs=-50)
    heard = barge_ins(vad, mic, learn_s=2.5)
    print(f"television over 300 s of answers: {len(false)} cut-ins; the person cut in "
          f"{[(h - onset) * 1000 // RATE_HZ for h in heard]} ms after their onset")
    assert len(false) <= 2
    assert heard and 0 < heard[0] - onset <= 0.2 * RATE_HZ
