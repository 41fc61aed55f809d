"""One spoken exchange on the real default models: Piper -> recogniser -> LLM -> Piper."""

import wave

import pytest

from sayso.config import Settings
from sayso.sim.exchange import run_exchange

pytestmark = pytest.mark.slow


def test_a_spoken_question_is_heard_answered_and_spoken(store, tmp_path):
    r = run_exchange(Settings(), store, "What is the capital of France?", tmp_path, repeatable=True)
    assert "capital" in r.heard and "france" in r.heard
    assert "paris" in r.answer.lower()
    with wave.open(str(r.answer_wav)) as w:
        assert w.getframerate() == 22050 and w.getnframes() > 22050 // 2
    assert r.eos_to_first_token_ms > 0 and r.stt_rtf > 0
