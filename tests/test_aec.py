"""The Speex echo canceller through its ctypes binding: echo out, the person's voice through."""

from __future__ import annotations

import numpy as np
import pytest

from sayso.aec import SpeexAEC
from sayso.audio import to_mic_rate
from sayso.tts import PiperTTS

FRAME = 512


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-9))


@pytest.fixture(scope="module")
def voices(store):
    tts = PiperTTS(store.path("en_US-joe-medium", role="voice"))
    answer = to_mic_rate(tts.audio("The history of France is long and full of kings, wars and revolutions, "
                                   "and its people changed it many times over the centuries."), tts.rate_hz)
    person = to_mic_rate(tts.paced(1.25).audio("Wait, tell me about Berlin instead."), int(tts.rate_hz * 1.12))
    return answer.astype(np.float64), person.astype(np.float64)


def cancel(aec: SpeexAEC, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
    n = (len(mic) // FRAME) * FRAME
    m = np.clip(mic[:n], -32768, 32767).astype(np.int16)
    r = ref[:n].astype(np.int16)
    return np.concatenate([aec.process(m[i:i + FRAME], r[i:i + FRAME]) for i in range(0, n, FRAME)]).astype(float)


def test_the_echo_goes_and_the_person_stays(voices):
    answer, person = voices
    delay = 30 * 16  # 30 ms from the speaker to the mic
    echo = np.concatenate([np.zeros(delay), answer])[:len(answer)] * 10 ** (-6 / 20)  # a loud, close speaker
    talk = int(len(answer) * 0.6)
    said = person[:len(answer) - talk]
    mic = echo.copy()
    mic[talk:talk + len(said)] += said
    aec = SpeexAEC()
    try:
        out = cancel(aec, mic, answer)
    finally:
        aec.close()
    settled = slice(len(out) // 4, talk)  # converged, nobody talking
    assert db(mic[settled]) - db(out[settled]) >= 10, "less than 10 dB of the echo removed"
    over = slice(talk, min(len(out), talk + len(said)))
    kept = out[over]
    assert np.corrcoef(kept, said[:len(kept)])[0, 1] > 0.9, "the person's voice did not come through"


def test_frames_of_the_wrong_size_are_refused():
    aec = SpeexAEC()
    try:
        with pytest.raises(ValueError, match="frames of 512 samples"):
            aec.process(np.zeros(256, np.int16), np.zeros(512, np.int16))
    finally:
        aec.close()
