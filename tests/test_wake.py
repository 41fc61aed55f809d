"""The wake word: the real microWakeWord models on spoken phrases, the gate's windows, the phrase left out."""

from __future__ import annotations

import numpy as np
import pytest

from sayso.audio import FRAME_SAMPLES, RATE_HZ
from sayso.config import WakeSettings
from sayso.hearing.capture import Frame
from sayso.hearing.stt import PocketsphinxRecognizer, Transcript
from sayso.hearing.transcriber import EndOfSpeech, StartOfSpeech, Transcriber, WakeMark
from sayso.hearing.wake import LENIENT, STRICT, WakeModel, threshold
from sayso.pipeline.channel import Channel
from sayso.pipeline.messages import Utterance
from sayso.pipeline.wake_gate import WakeGate
from sayso.sim.voices import espeak
from waits import wait_until

S = 1_000_000_000


def hits(model: WakeModel, audio: np.ndarray) -> list:
    d = model.detector()
    found = []
    for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        h = d.process(audio[i:i + FRAME_SAMPLES], i)
        if h is not None:
            found.append(h)
    return found


def spoken(text: str, voice: str = "en-us") -> np.ndarray:
    quiet = np.zeros(RATE_HZ // 2, np.int16)
    return np.concatenate([quiet, espeak(text, voice), quiet, quiet])


@pytest.mark.parametrize("word, phrase", [("okay_nabu", "Okay Nabu, what is the capital of Italy?"),
                                          ("alexa", "Alexa, what is the capital of Italy?")])
def test_the_wake_word_is_heard_once_at_the_end_of_its_phrase_and_not_in_other_speech(word, phrase):
    model = WakeModel(word)
    audio = spoken(phrase)
    found = hits(model, audio)
    assert len(found) == 1, found
    # decided within the phrase's first 1.5 s, long before the question ends
    assert RATE_HZ // 2 < found[0].sample < RATE_HZ // 2 + int(1.5 * RATE_HZ) < len(audio) - RATE_HZ
    assert found[0].word == word and found[0].probability >= model.threshold
    for other in ("What is the capital of Italy?", "Tell me about the history of France.",
                  "I think we should go to the market later, okay?"):
        assert hits(model, spoken(other)) == [], other


def test_sensitivity_moves_the_threshold_around_the_models_own():
    assert threshold(0.85, 0.5) == pytest.approx(0.85)
    assert threshold(0.85, 0.0) == pytest.approx(STRICT) and threshold(0.85, 1.0) == pytest.approx(LENIENT)
    assert threshold(0.85, 0.25) > 0.85 > threshold(0.85, 0.75)
    assert WakeModel("okay_nabu", 1.0).threshold == pytest.approx(LENIENT)


def test_the_gate_admits_speech_with_the_wake_word_or_in_a_window():
    gate = WakeGate(WakeSettings(listen_s=6.0, follow_up_s=5.0))
    assert gate.admits(10 * S) is None
    gate.woke(11 * S)
    assert gate.admits(10 * S) == "word"  # the wake word came in this speech
    gate.used("word")
    assert gate.admits(20 * S) is None, "one wake word is one request"
    gate.answered(30 * S)
    assert gate.admits(34 * S) == "follow_up" and gate.admits(36 * S) is None
    gate.used("follow_up")
    gate.answered(40 * S)
    assert gate.admits(41 * S) is None, "one follow-up per call"
    gate.button(50 * S)
    assert gate.admits(55 * S) == "button" and gate.admits(57 * S) is None
    assert WakeGate(WakeSettings(follow_up_s=0)).admits(1) is None


def test_a_transcript_keeps_the_words_that_end_after_a_time():
    t = Transcript("okay now what time is it", True, ("okay", "now", "what", "time", "is", "it"),
                   (0.9, 0.8, 0.9, 0.9, 0.9, 0.9), (0.5, 0.9, 1.2, 1.5, 1.7, 1.9))
    rest = t.after(1.0)
    assert rest.text == "what time is it" and rest.confidence == (0.9,) * 4 and rest.ends == (1.2, 1.5, 1.7, 1.9)
    assert Transcript("no times", True, ("no", "times")).after(5.0).text == "no times"


@pytest.mark.slow
@pytest.mark.parametrize("phrase, first_word", [("Okay Nabu, what time is it?", "what"), ("Okay Nabu.", None)])
def test_the_transcriber_leaves_the_wake_phrase_out_of_the_request(phrase, first_word):
    model = WakeModel("okay_nabu")
    audio = spoken(phrase)
    (hit,) = hits(model, audio)
    frames, posted = Channel("audio", 4096), []
    transcriber = Transcriber(PocketsphinxRecognizer(), frames, posted.append)
    transcriber.start()
    try:
        frames.put(StartOfSpeech(0))
        for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            frames.put(Frame(audio[i:i + FRAME_SAMPLES], i, 0))
            if i <= hit.sample < i + FRAME_SAMPLES:
                frames.put(WakeMark(hit.sample))
        frames.put(EndOfSpeech(0, len(audio)))
        assert wait_until(lambda: posted and isinstance(posted[-1], Utterance))
    finally:
        transcriber.stopping.set()
        transcriber.join(5)
    text = posted[-1].text
    assert "okay" not in text.split() and "nabu" not in text
    # the request's first word is kept; the wake word alone leaves no request
    assert (text.split()[:1] == [first_word]) if first_word else text == "", text
