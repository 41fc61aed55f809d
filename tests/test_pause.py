"""The pause policy on its own: which finals commit a paused interrupt, and when the answer plays on."""

from __future__ import annotations

import pytest

from sayso.config import BargeInSettings
from sayso.pipeline.messages import Utterance
from sayso.pipeline.pause import Pause, commits, committing_words, unrecognised_speech


def said(text: str, *confidence: float) -> Utterance:
    return Utterance(text, 0, confidence=confidence or None)


@pytest.mark.parametrize("u, n", [
    (said("stop please", 0.9, 0.6), 2),
    (said("i bought", 0.10, 0.17), 0),  # pocketsphinx over a double cough: words it doubts
    (said("the", 0.48), 0),  # sure, but a word a language model fills noise with
    (said("ah ah", 0.24, 0.16), 0),
    (said("stop it", 0.8, 0.5), 2),  # a noise word beside a real one counts
    (said("gotta tell me", 0.0, 1.0, 1.0), 2),
    (said("okay"), 1),  # no posteriors (a recogniser that gives none): every word is sure
    (said("um the"), 0),
    (said("Stop.", 0.9), 1),
    (said(""), 0),
])
def test_committing_words_are_sure_and_not_fillers_or_noise_alone(u, n):
    assert committing_words(u) == n


def test_a_final_without_sustained_speech_does_not_commit():
    # pocketsphinx's "up all" at 0.97 / 0.50 for a double cough over echo at -6 dB: sure words, no speech
    cough = Utterance("up all", 0, confidence=(0.97, 0.50), sustained_ms=96)
    assert committing_words(cough) == 2 and not commits(cough, BargeInSettings())
    assert commits(Utterance("stop please", 0, confidence=(0.9, 0.6), sustained_ms=704), BargeInSettings())
    assert commits(Utterance("stop please", 0, confidence=(0.9, 0.6)), BargeInSettings())  # not measured


@pytest.mark.parametrize("u, person", [
    (Utterance("", 0, sustained_ms=512), True),  # the quiet real reader over a -20 dB echo: no word found
    (Utterance("oh", 0, confidence=(0.108,), sustained_ms=576), True),
    (Utterance("of spain", 0, confidence=(0.102, 0.149), sustained_ms=608), True),
    (Utterance("", 0, sustained_ms=0), False),  # a cough
    (Utterance("but ah", 0, confidence=(0.215, 0.611), sustained_ms=0), False),  # a double cough
    (Utterance("", 0), False),  # not measured: the final alone decides, as before
    (Utterance("stop please", 0, confidence=(0.9, 0.6), sustained_ms=704), False),  # words: it commits instead
])
def test_sustained_speech_without_sure_words_is_a_person_the_recogniser_missed(u, person):
    assert unrecognised_speech(u) is person


def test_min_words_sets_the_bar():
    assert commits(said("okay stop", 0.9, 0.9), BargeInSettings(min_words=2))
    assert not commits(said("okay", 0.9), BargeInSettings(min_words=2))
    assert commits(said("okay", 0.9), BargeInSettings(min_words=1))


def test_a_pause_resumes_after_its_window_unless_the_person_is_mid_utterance():
    p = Pause(requested_ns=0, onset_ns=None, deadline_ns=1_000)
    assert p.resume_reason(999, False, 1.5) is None
    assert p.resume_reason(1_001, True, 1.5) is None
    assert p.resume_reason(1_001, False, 1.5) == "no words within 1.5 s"


def test_a_dropped_sound_resumes_after_the_quiet_moment_and_more_sound_calls_it_off():
    p = Pause(requested_ns=0, onset_ns=None, deadline_ns=10_000, resume_at_ns=500)
    assert p.resume_reason(400, False, 1.5) is None
    assert p.resume_reason(501, False, 1.5) == "the sound was too short to be speech"
    p.more_sound(20_000)
    assert p.resume_at_ns is None and p.resume_reason(10_001, False, 1.5) is None
