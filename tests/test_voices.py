"""The room's other voices: espeak-ng as the person, and the newsreader babbling in the background."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sayso.audio import RATE_HZ
from sayso.sim import voices
from sayso.sim.onset import onset_of

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng; make setup does it)")


def test_espeak_speaks_a_line_at_the_mic_rate():
    audio = voices.EspeakVoice("en-us").say("What is the capital of France?")
    assert audio.dtype == np.int16 and 1.0 < len(audio) / RATE_HZ < 4.0
    assert np.abs(audio).max() > 3000
    assert np.array_equal(audio, voices.EspeakVoice("en-us").say("What is the capital of France?"))  # repeatable


def test_an_unknown_espeak_voice_fails_before_the_scenario_starts():
    with pytest.raises(voices.VoiceUnavailable, match="no voice 'nobody-here'"):
        voices.EspeakVoice("nobody-here")


def test_a_line_with_pauses_has_the_gaps_asked_for():
    voice = voices.EspeakVoice("en-us")
    one, two = voice.say("What is the capital of"), voice.say("Norway?")
    joined = voice.say_with_pauses(("What is the capital of", "Norway?"), 0.7)
    sound_one = len(one) - onset_of(one[::-1])
    sound_two = len(two) - onset_of(two)
    assert len(joined) == sound_one + int(0.7 * RATE_HZ) + sound_two


def test_the_babble_is_a_long_voice_other_than_the_persons():
    b = voices.babble()
    assert len(b) / RATE_HZ > 20
    assert not np.array_equal(b[:RATE_HZ], voices.EspeakVoice("en-us").say(voices.BABBLE_TEXT)[:RATE_HZ])
