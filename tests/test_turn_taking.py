"""End of turn: the Whisper front end against its reference, the endpointer's pause, and the listener
deciding with the real Silero VAD, pocketsphinx and Smart Turn whether a pause ends what the person says."""

from __future__ import annotations

import numpy as np
import pytest

from sayso.answering.tts import PiperTTS
from sayso.audio import FRAME_SAMPLES, RATE_HZ, to_mic_rate
from sayso.config import BargeInSettings, VADSettings
from sayso.hearing.capture import Frame
from sayso.hearing.listener import Listener
from sayso.hearing.stt import PocketsphinxRecognizer
from sayso.hearing.transcriber import Transcriber
from sayso.hearing.turn import TURN_MODEL, PauseHabit, SmartTurn, TurnAnswer, TurnQuestion, log_mel, trails_off
from sayso.hearing.vad import VAD_MODEL, Endpointer, SileroVAD, SpeechEnd, SpeechPause, SpeechStart
from sayso.pipeline.channel import Channel
from sayso.pipeline.messages import SpeechResumed, State, TentativeTranscript, Utterance

T0_NS = 1_000_000_000_000


# ---- the Whisper log-mel front end


def test_log_mel_matches_the_whisper_feature_extractor():
    """transformers' WhisperFeatureExtractor (numpy path, no torch) is what Smart Turn was trained on."""
    transformers = pytest.importorskip("transformers")
    reference = transformers.WhisperFeatureExtractor(chunk_length=8)
    rng = np.random.default_rng(3)
    t = np.arange(int(2.7 * RATE_HZ)) / RATE_HZ
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(len(t))
    for audio in (chirp, rng.standard_normal(9 * RATE_HZ) * 0.1):
        pcm = np.clip(audio * 32768, -32768, 32767).astype(np.int16)
        x = pcm.astype(np.float32) / 32768
        x = x[-8 * RATE_HZ:]
        padded = np.concatenate([np.zeros(8 * RATE_HZ - len(x), np.float32), x])
        want = reference(padded, sampling_rate=RATE_HZ, padding="max_length", max_length=8 * RATE_HZ,
                         truncation=True, do_normalize=True, return_tensors="np").input_features[0]
        got = log_mel(pcm)
        assert got.shape == want.shape == (80, 800) and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-4


def test_log_mel_hears_the_last_8_seconds_padded_in_front():
    rng = np.random.default_rng(4)
    long = (rng.standard_normal(10 * RATE_HZ) * 3000).astype(np.int16)
    assert np.array_equal(log_mel(long), log_mel(long[-8 * RATE_HZ:]))
    short = long[:RATE_HZ]
    padded = np.concatenate([np.zeros(7 * RATE_HZ, np.int16), short])
    assert np.array_equal(log_mel(short), log_mel(padded))


@pytest.mark.parametrize("text, trailing", [
    ("what is the capital of", True), ("set a timer for", True), ("how tall is", True), ("can you", True),
    ("i was wondering if", True), ("okay so um", True), ("what is the capital of france", False),
    ("turn the lights on", False), ("what is this", False), ("what should i do", False), ("", False),
])
def test_words_that_cannot_end_a_request(text, trailing):
    assert trails_off(text) is trailing


# ---- the endpointer's pause


def scripted(ep: Endpointer, probs: list[float]) -> list[tuple[int, object]]:
    return [(n, e) for n, p in enumerate(probs) for e in ep.update(p, n * FRAME_SAMPLES)]


def test_a_pause_is_announced_once_then_the_long_silence_ends_the_utterance():
    ep = Endpointer(VADSettings(), end_silence_ms=1600, pause_ms=200)
    events = scripted(ep, [0.9] * 10 + [0.0] * 60)
    assert [type(e) for _, e in events] == [SpeechStart, SpeechPause, SpeechEnd]
    (_, pause), (_, end) = events[1], events[2]
    # counted from the end of the last confident frame, less one frame of Silero's lag
    assert pause.end_sample == end.end_sample == 9 * 512
    quiet = pause.decided_sample - pause.end_sample
    assert quiet >= 200 * RATE_HZ // 1000 > quiet - FRAME_SAMPLES
    assert end.decided_sample - end.end_sample >= 1600 * RATE_HZ // 1000
    assert ep.pauses == 1


def test_speech_after_a_pause_goes_on_and_the_next_pause_is_announced_again():
    ep = Endpointer(VADSettings(), end_silence_ms=1600, pause_ms=200)
    events = scripted(ep, [0.9] * 10 + [0.0] * 15 + [0.9] * 10 + [0.0] * 10)
    assert [type(e) for _, e in events] == [SpeechStart, SpeechPause, SpeechPause]
    assert ep.pauses == 2 and ep.state.value == "stopping"
    end = ep.end_now(45 * 512)
    assert end == SpeechEnd(34 * 512, 45 * 512) and ep.state.value == "quiet"


def feed(ep: Endpointer, probs: list[float], first: int = 0) -> list[object]:
    return [e for n, p in enumerate(probs, first) for e in ep.update(p, n * FRAME_SAMPLES)]


def test_a_longer_wait_holds_for_its_pause_only():
    ep = Endpointer(VADSettings(), end_silence_ms=1100, pause_ms=200)
    events = feed(ep, [0.9] * 10 + [0.0] * 10)  # speech, then the pause is announced
    ep.wait_for(2000)  # the words so far trail off
    events += feed(ep, [0.0] * 30, 20)  # 1.28 s of quiet in all: past 1.1 s, yet not the end
    assert [type(e) for e in events] == [SpeechStart, SpeechPause]
    events += feed(ep, [0.9] * 10 + [0.0] * 50, 50)  # the person goes on, then stops
    assert [type(e) for e in events] == [SpeechStart, SpeechPause, SpeechPause, SpeechEnd]
    quiet = events[-1].decided_sample - 60 * FRAME_SAMPLES  # the usual 1.1 s again
    assert 1100 * RATE_HZ // 1000 <= quiet < 1200 * RATE_HZ // 1000


# ---- the listener and the transcriber deciding on real speech


class ScriptedTurnModel:
    """A fake of Smart Turn that always gives the same probability (the real model is tested below)."""

    def __init__(self, probability: float):
        self.p = probability
        self.heard: list[np.ndarray] = []

    def probability(self, audio: np.ndarray) -> float:
        self.heard.append(audio)
        return self.p


class AtOnce:
    """The TurnDetector's interface answered on the caller's thread, so a test steps frame by frame."""

    def __init__(self, model, threshold: float = 0.5):
        self.model, self.threshold, self.answer = model, threshold, None

    def ask(self, q: TurnQuestion) -> None:
        p = self.model.probability(q.audio)
        self.answer(TurnAnswer(q.pause, p, p >= self.threshold, 0.0))


class Probe:
    state = State.IDLE

    def __init__(self):
        self.posted: list = []

    def post(self, msg) -> None:
        self.posted.append(msg)

    def interrupt(self, *a, **k) -> bool:
        return False

    def pause(self, *a, **k) -> bool:
        return False


@pytest.fixture(scope="module")
def person(store):
    voice = PiperTTS(store.path("en_US-joe-medium"), length_scale=1.15, repeatable=True)

    def say(*parts: str, gap_s: float = 0.7, tail_s: float = 2.5) -> np.ndarray:
        pieces = [np.zeros(int(0.3 * RATE_HZ), np.int16)]
        for i, part in enumerate(parts):
            audio = to_mic_rate(voice.audio(part), voice.rate_hz)
            loud = np.flatnonzero(np.abs(audio) > 0.02 * np.abs(audio).max())
            if i:
                pieces.append(np.zeros(int(gap_s * RATE_HZ), np.int16))
            pieces.append(audio[loud[0]:loud[-1] + 1])
        pieces.append(np.zeros(int(tail_s * RATE_HZ), np.int16))
        return np.concatenate(pieces)

    return say


def listen(store, mic: np.ndarray, model, end_ms: int = 1600, trailing_ms: int | None = None,
           habit: PauseHabit | None = None) -> list:
    """Feed `mic` through a real listener and transcriber, frame by frame; what they posted, in order."""
    probe = Probe()
    frames, audio = Channel("frames", 1 << 20), Channel("audio", 1 << 20)
    detector = AtOnce(model)
    listener = Listener(SileroVAD(store.path(VAD_MODEL, role="vad")),
                        Endpointer(VADSettings(), end_silence_ms=end_ms, pause_ms=200), frames, audio, probe,
                        BargeInSettings(), turns=detector, trailing_silence_ms=trailing_ms, habit=habit)
    detector.answer = listener.answer
    transcriber = Transcriber(PocketsphinxRecognizer(), audio, probe.post, at_pause=listener.words_at_pause)
    for index in range(0, len(mic) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        frames.put(Frame(mic[index:index + FRAME_SAMPLES].copy(), index, T0_NS + int(index * 1e9 / RATE_HZ)))
        listener.step()
        while len(audio):
            transcriber.step()
    return probe.posted


def finals(posted: list) -> list[Utterance]:
    return [m for m in posted if isinstance(m, Utterance)]


@pytest.mark.slow
def test_complete_at_the_pause_ends_the_turn_with_the_words_the_answer_started_on(store, person):
    posted = listen(store, person("What time is it?"), ScriptedTurnModel(0.9))
    (u,) = finals(posted)
    assert u.endpoint == "smart-turn" and u.turn_probability == 0.9
    assert "time" in u.text
    # the turn ended well before the long silence, a few frames after the pause
    assert 200 <= (u.eos_ns - u.speech_end_ns) / 1e6 < 500
    tentative = [m for m in posted if isinstance(m, TentativeTranscript)]
    assert [t.text for t in tentative] == [u.text], "the final differs from the words the answer started on"
    assert posted.index(tentative[0]) < posted.index(u)


@pytest.mark.slow
def test_incomplete_keeps_listening_through_a_pause_mid_sentence(store, person):
    model = ScriptedTurnModel(0.1)
    posted = listen(store, person("What is the capital of", "France?", gap_s=0.8), model)
    (u,) = finals(posted)
    assert u.endpoint == "silence" and (u.eos_ns - u.speech_end_ns) / 1e6 >= 1600
    assert "capital" in u.text and "france" in u.text, u.text
    assert any(isinstance(m, SpeechResumed) for m in posted)
    assert len(model.heard) == 2, "the model is asked at each pause"
    # the second time it heard both halves, with the 0.8 s gap between them cut to about the
    # early-endpoint wait: a long silence mid-utterance would read to it as hesitation
    first, both = model.heard
    said_after = len(person("France?", tail_s=0)) - int(0.3 * RATE_HZ)
    assert both[:len(first) - RATE_HZ // 10].tobytes() == first[:len(first) - RATE_HZ // 10].tobytes()
    assert said_after < len(both) - len(first) < said_after + 0.45 * RATE_HZ, \
        (len(first), len(both), said_after)


@pytest.mark.slow
def test_words_that_trail_off_wait_the_longer_silence_whatever_the_model_says(store, person):
    """ "a timer for" cannot end a request: a 1.4 s search for the next word is not the end, even with
    the model sure it is, and a finished question it doubts still ends on the shorter silence."""
    posted = listen(store, person("Set a timer for", "ten minutes.", gap_s=1.4), ScriptedTurnModel(0.9),
                    end_ms=1100, trailing_ms=2000)
    tentative = [m.text for m in posted if isinstance(m, TentativeTranscript)]
    (u,) = finals(posted)
    assert tentative[0].endswith("timer for") and u.text.endswith("ten minutes"), (tentative, u.text)
    assert u.endpoint == "smart-turn", "after the last words the model's verdict ends it"
    (u,) = finals(listen(store, person("Who wrote the play Hamlet?"), ScriptedTurnModel(0.1), end_ms=1100,
                         trailing_ms=2000))
    assert u.endpoint == "silence" and 1100 <= (u.eos_ns - u.speech_end_ns) / 1e6 < 1600, u


@pytest.mark.slow
def test_the_heard_as_an_unstressed_that_waits_the_longer_silence(store, person):
    """Paused on, "How far is the" is often written "how far is that": said as "the" is, which no request
    ends on. The model sure the turn is over does not end it there."""
    posted = listen(store, person("How far is the", "moon from here?", gap_s=0.8), ScriptedTurnModel(0.9),
                    end_ms=1100, trailing_ms=2000)
    tentative = [m for m in posted if isinstance(m, TentativeTranscript)]
    (u,) = finals(posted)
    print([(t.text, t.trails_off) for t in tentative], u.text)
    assert tentative[0].text.endswith("that") and tentative[0].trails_off, "the test needs 'that' at the pause"
    assert u.text.endswith("from here") and u.endpoint == "smart-turn", u


def test_a_person_s_pause_habit_is_their_longest_recent_pause_and_is_forgotten():
    habit = PauseHabit(remember=3, forget_s=60)
    assert habit.wait_ms(0) == 0
    habit.went_on(800, 10 * RATE_HZ)
    habit.went_on(300, 20 * RATE_HZ)
    assert habit.wait_ms(21 * RATE_HZ) == 800 + PauseHabit.MARGIN_MS
    assert habit.wait_ms(71 * RATE_HZ) == 300 + PauseHabit.MARGIN_MS, "a pause a minute old is forgotten"
    for t in (30, 31, 32):
        habit.went_on(200, t * RATE_HZ)
    assert habit.wait_ms(33 * RATE_HZ) == 200 + PauseHabit.MARGIN_MS, "only the newest pauses are kept"


@pytest.mark.slow
@pytest.mark.parametrize("learn", [True, False])
def test_a_person_who_paused_and_went_on_is_given_that_pause_again(store, person, learn):
    """"Who wrote the play" is a whole request, and the model is sure the turn is over. Said by a
    person who has just paused 0.8 s mid-sentence and gone on, the turn waits that long, and hears
    them go on; with nothing learned it ends at the pause and the rest is a turn of its own."""
    mic = np.concatenate([person("Set a timer for", "ten minutes.", gap_s=0.8),
                          person("Who wrote the play", "Hamlet?", gap_s=0.8)])
    habit = PauseHabit() if learn else None
    posted = listen(store, mic, ScriptedTurnModel(0.9), end_ms=1100, trailing_ms=2000, habit=habit)
    texts = [u.text for u in finals(posted)]
    print(texts)
    assert texts[0].endswith("timer for ten minutes"), texts
    if learn:
        assert len(texts) == 2 and texts[1].startswith("who wrote the play "), texts  # "hamlet" follows
        assert habit is not None and 800 <= habit.wait_ms(len(mic)) - PauseHabit.MARGIN_MS < 1000
        assert finals(posted)[1].endpoint == "smart-turn"
    else:
        assert len(texts) == 3 and texts[1] == "who wrote the play", texts


@pytest.mark.slow
def test_the_person_going_on_is_heard_as_one_sentence_not_two(store, person):
    """After a pause the recogniser hears a short utterance again from its start, so the final has the
    words before the pause and after it, decoded as one sentence."""
    posted = listen(store, person("Tell me about the history of", "Spain.", gap_s=0.7), ScriptedTurnModel(0.1))
    tentative = [m.text for m in posted if isinstance(m, TentativeTranscript)]
    (u,) = finals(posted)
    assert tentative[0].startswith("tell me about the history"), tentative
    assert u.text.startswith("tell me about the history") and len(u.text.split()) > len(tentative[0].split()), \
        u.text


@pytest.mark.slow
def test_smart_turn_hears_a_finished_question_from_a_sentence_left_hanging(store, person):
    model = SmartTurn(store.path(TURN_MODEL, role="turn"))
    done = model.probability(person("What is the capital of France?", tail_s=0.2))
    hanging = model.probability(person("I was wondering if", tail_s=0.2))
    assert done > 0.5 > hanging, (done, hanging)


@pytest.mark.slow
def test_warming_runs_every_model_and_drops_an_end_of_turn_model_the_board_cannot_afford(store):
    from sayso.config import Settings, TurnSettings
    from sayso.service.modelset import Models
    from sayso.sim.fakes import FakeLLM

    class WarmedLLM(FakeLLM):
        """The fake LLM, noting the warm-up the appliance gives a real one before READY=1."""

        def warm(self, system_prompt: str) -> None:
            self.warmed = [*getattr(self, "warmed", []), system_prompt]

    def models() -> Models:
        return Models(llm=WarmedLLM(["Hi."]), tts=PiperTTS(store.path("en_US-joe-medium")),
                      vad=SileroVAD(store.path(VAD_MODEL, role="vad")), recognizer=PocketsphinxRecognizer(),
                      turn=SmartTurn(store.path(TURN_MODEL, role="turn")))

    affordable = models()
    took = affordable.warm(Settings())
    assert set(took) == {"llm", "voice", "vad", "stt", "turn"} and affordable.turn is not None
    assert affordable.llm.warmed == [Settings().llm.system_prompt]
    dear = models()
    dear.warm(Settings(turn=TurnSettings(max_cost_ms=10.0)))  # a call costs 30-40 ms here: a slow board
    assert dear.turn is None, "turns must end on silence alone when the model costs more than max_cost_ms"


def test_an_appliance_without_the_end_of_turn_model_ends_turns_on_silence_and_says_how_to_fetch_it(tmp_path, caplog):
    from sayso.config import TurnSettings
    from sayso.models.manifest import ModelStore
    from sayso.service.modelset import open_turn_model

    assert open_turn_model(TurnSettings(), ModelStore(tmp_path)) is None
    assert "run `sayso models fetch`" in caplog.text and "silence alone" in caplog.text
    assert open_turn_model(TurnSettings(detector="silence"), ModelStore(tmp_path)) is None
