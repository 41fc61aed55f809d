"""The room's ground truth for where speech starts: over the recording's own floor, not in its room tone."""

from __future__ import annotations

import numpy as np
import pytest

from sayso.audio import RATE_HZ
from sayso.sim.onset import onset_of, sound_end_of


def voiced(seconds: float, level_dbfs: float, seed: int = 0) -> np.ndarray:
    """Speech-like sound: a 130 Hz buzz through three vowel resonances, four syllables a second, a 10 ms attack."""
    n = int(seconds * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * 130 * k * t + rng.uniform(0, 6.3)) * np.exp(-0.5 * ((130 * k - f) / 200) ** 2)
            for k in range(1, 25) for f in (600, 1200, 2600))
    syllables = 0.35 + 0.65 * np.abs(np.sin(np.pi * 4 * t + np.pi / 2))
    x = x * syllables * np.minimum(1, t / 0.01) * np.minimum(1, (seconds - t) / 0.01)
    return x / np.sqrt(np.mean(x * x)) * 32768 * 10 ** (level_dbfs / 20)


def recording(speech_dbfs: float, tone_dbfs: float, seed: int = 0) -> tuple[np.ndarray, int, int]:
    """0.3 s of digital silence, 0.4 s of room tone, 1.5 s of speech, 0.3 s of room tone: (int16, onset, end)."""
    rng = np.random.default_rng(seed)
    silence, lead, words, tail = (int(s * RATE_HZ) for s in (0.3, 0.4, 1.5, 0.3))
    x = np.zeros(silence + lead + words + tail)
    x[silence:] = rng.standard_normal(lead + words + tail) * 32768 * 10 ** (tone_dbfs / 20)
    x[silence + lead:silence + lead + words] += voiced(1.5, speech_dbfs, seed)
    return np.clip(x, -32768, 32767).astype(np.int16), silence + lead, silence + lead + words


@pytest.mark.parametrize("speech_dbfs, tone_dbfs", [(-21, -45), (-33, -50), (-21, -60), (-33, -70)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speech_starts_after_the_room_tone_of_a_recording(speech_dbfs, tone_dbfs, seed):
    audio, onset, end = recording(speech_dbfs, tone_dbfs, seed)
    assert onset <= onset_of(audio) <= onset + int(0.015 * RATE_HZ)
    assert end - int(0.015 * RATE_HZ) <= sound_end_of(audio) <= end


def test_the_lead_in_is_a_trap_for_a_fraction_of_the_peak():
    audio, onset, _ = recording(-21, -45)
    a = np.abs(audio.astype(np.float64))
    assert int(np.argmax(a > 0.02 * a.max())) < onset - 0.3 * RATE_HZ  # the old rule: 400 ms early


def test_a_synthetic_voice_starts_at_its_first_sound():
    audio = np.concatenate([np.zeros(800), voiced(0.5, -20)]).astype(np.int16)
    assert 800 <= onset_of(audio) <= 800 + 80
    assert onset_of(np.zeros(100, np.int16)) == 0 and onset_of(np.zeros(0, np.int16)) == 0
    breath = np.random.default_rng(0).standard_normal(int(0.06 * RATE_HZ)) * 32768 * 10 ** (-45 / 20)
    audio = np.concatenate([np.zeros(800), breath, voiced(0.5, -20)]).astype(np.int16)
    assert 800 <= onset_of(audio) <= 800 + 80  # a breathy "h" is the word's start, not the room's tone


def test_a_click_in_the_room_tone_is_not_speech():
    audio, onset, _ = recording(-21, -55)
    audio[int(0.45 * RATE_HZ):int(0.45 * RATE_HZ) + 16] = 12000  # 1 ms: a tick of the room, not a word
    assert onset <= onset_of(audio) <= onset + int(0.015 * RATE_HZ)


def wavering(audio: np.ndarray, onset: int, seed: int = 0) -> np.ndarray:
    """A real room's tone ahead of the words: its level wanders +-3 dB every 20 ms, and a 30 ms lip smack in it."""
    rng = np.random.default_rng(seed)
    x = audio.astype(np.float64)
    steps = np.repeat(10 ** (rng.uniform(-3, 3, onset // 320 + 1) / 20), 320)[:onset]
    x[:onset] *= steps
    smack = onset - int(0.2 * RATE_HZ)
    x[smack:smack + int(0.03 * RATE_HZ)] *= 10 ** (12 / 20)
    return np.clip(x, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_real_rooms_wavering_tone_and_a_lip_smack_in_it_are_not_speech(seed):
    audio, onset, _ = recording(-21, -50, seed)
    audio = wavering(audio, onset, seed)
    assert onset <= onset_of(audio) <= onset + int(0.015 * RATE_HZ)
