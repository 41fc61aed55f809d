"""Silero VAD and the endpointer: scripted probabilities, then real Piper speech in silence and in noise."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from sayso.answering.tts import PiperTTS
from sayso.audio import to_mic_rate
from sayso.config import VADSettings
from sayso.errors import ConfigError, ModelCorrupt, ModelMissing
from sayso.hearing.vad import FRAME_SAMPLES, RATE_HZ, Endpointer, SileroVAD, SpeechEnd, SpeechStart, VADState

UTTERANCES = (
    "Turn on the kitchen lights.",
    "What time is it?",
    "Set a timer for ten minutes.",
    "Play some jazz music.",
    "How is the weather tomorrow?",
    "Stop.",
    "Remind me to call mom.",
    "What is two plus two?",
    "Good morning.",
    "Open the garage door please.",
    "Tell me a joke.",
    "Volume up.",
    "Lock the front door.",
    "Is it going to rain today?",
)

SPEECH_LEVEL = 0.01
"""Full scale fraction above which a clean sample counts as speech, for the true bounds."""
NOISE_DBFS = -45.0
"""RMS of the white background noise."""
LEAD = RATE_HZ // 2 + 123
"""Samples before the speech; off the 512-sample grid so frame rounding shows up in the errors."""
TAIL = 2 * RATE_HZ
"""Samples after the speech: more than end_silence_ms plus Silero's hangover."""

ONSET_TOLERANCE_MS = 100
END_EARLY_MS = 100
# Silero's probability decays over 2-5 frames after the last sound; the endpointer places the end
# at the last confident frame less one frame of lag, which brought these phrases within 100 ms
# (with Piper's sampling noise off, so the audio is the same every run).
END_LATE_MS = 100
END_MEDIAN_MS = 100

P = VADSettings()


def scripted(ep: Endpointer, probs: list[float], first: int = 0) -> list[tuple[int, object]]:
    """(frame number, event) for each event while feeding `probs`, frame n starting at first + n*512."""
    return [(n, e) for n, p in enumerate(probs) for e in ep.update(p, first + n * FRAME_SAMPLES)]


# ---- the endpointer on scripted probabilities


def test_events_come_in_order_with_onset_end_and_decision_samples():
    # 7 frames = 224 ms reach min_speech_ms (200); 18 silent frames = 576 ms reach end_silence_ms (550).
    probs = [0.0] * 5 + [0.9] * 10 + [0.0] * 30
    assert scripted(Endpointer(P), probs) == [
        (11, SpeechStart(onset_sample=5 * 512)),
        # the end is the last confident frame's, less one frame of Silero's lag
        (32, SpeechEnd(end_sample=14 * 512, decided_sample=33 * 512)),
    ]


def test_frame_index_is_the_audio_clock_not_a_count_from_zero():
    clock = 1_000_000
    events = [e for _, e in scripted(Endpointer(P), [0.9] * 10 + [0.0] * 30, first=clock)]
    assert events == [SpeechStart(clock), SpeechEnd(clock + 9 * 512, clock + 28 * 512)]


def test_hysteresis_between_the_thresholds_keeps_speaking_but_never_starts():
    assert P.stop_threshold < 0.4 < P.start_threshold
    ep = Endpointer(P)
    assert scripted(ep, [0.4] * 50) == [] and ep.state is VADState.QUIET

    ep = Endpointer(P)
    events = scripted(ep, [0.9] * 10 + [0.4] * 40)
    assert [type(e) for _, e in events] == [SpeechStart] and ep.state is VADState.SPEAKING
    assert ep.speech_ms == pytest.approx(50 * 32)
    events = scripted(ep, [0.1] * 20, first=50 * 512)
    # the dead band kept the utterance open, but the end is placed after the last confident frame
    assert [e for _, e in events] == [SpeechEnd(end_sample=9 * 512, decided_sample=68 * 512)]


def test_a_blip_shorter_than_min_speech_gives_no_event():
    ep = Endpointer(P)
    assert scripted(ep, [0.9] * 3) == []
    assert ep.state is VADState.STARTING and ep.speech_ms == pytest.approx(96)
    assert scripted(ep, [0.9] * 3 + [0.0] * 30, first=3 * 512) == []  # 192 ms in all
    assert ep.state is VADState.QUIET and ep.speech_ms == 0


def test_a_pause_shorter_than_end_silence_does_not_split_the_utterance():
    ep = Endpointer(P)
    states = []
    probs = [0.9] * 10 + [0.0] * 10 + [0.9] * 10 + [0.0] * 30  # a 320 ms pause
    events = []
    for n, p in enumerate(probs):
        events += ep.update(p, n * 512)
        states.append(ep.state)
    assert events == [SpeechStart(0), SpeechEnd(29 * 512, 48 * 512)]
    assert states[10:21] == [VADState.STOPPING] * 10 + [VADState.SPEAKING]


def test_thresholds_without_a_dead_band_are_refused():
    with pytest.raises(ConfigError, match="stop_threshold"):
        Endpointer(VADSettings(start_threshold=0.4, stop_threshold=0.4))


# ---- Silero on real audio


@pytest.fixture(scope="module")
def vad(store) -> SileroVAD:
    return SileroVAD(store.path("silero-vad-v6", role="vad"))


@pytest.fixture(scope="module")
def tts(store) -> PiperTTS:
    return PiperTTS(store.path("en_US-joe-medium"), repeatable=True)


def speak(tts: PiperTTS, text: str) -> np.ndarray:
    """`text` as 16 kHz int16, the mic's format."""
    return to_mic_rate(tts.audio(text), tts.rate_hz)


def speech_bounds(clean: np.ndarray) -> tuple[int, int]:
    """First speech sample and the one after the last, judged on clean audio."""
    loud = np.flatnonzero(np.abs(clean.astype(np.int32)) > SPEECH_LEVEL * 32768)
    return int(loud[0]), int(loud[-1]) + 1


def with_noise(clean: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 32768 * 10 ** (NOISE_DBFS / 20), len(clean))
    return np.clip(clean + noise, -32768, 32767).astype(np.int16)


def endpoints(vad: SileroVAD, audio: np.ndarray) -> list[SpeechStart | SpeechEnd]:
    """Every event the default endpointer gives for `audio`, fed as 32 ms frames from a fresh VAD."""
    vad.reset()
    ep = Endpointer(P)
    return [e for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
            for e in ep.update(vad.probability(audio[i:i + FRAME_SAMPLES]), i)]


@pytest.fixture(scope="module")
def spoken(tts) -> dict[str, np.ndarray]:
    return {text: speak(tts, text) for text in UTTERANCES}


@pytest.mark.slow
@pytest.mark.parametrize("background", ["silence", "noise"])
def test_endpoints_land_near_the_true_bounds_of_real_speech(vad, spoken, background, capsys):
    rows, wrong = [], []
    for seed, (text, speech) in enumerate(spoken.items()):
        clean = np.concatenate([np.zeros(LEAD, np.int16), speech, np.zeros(TAIL, np.int16)])
        onset, end = (LEAD + b for b in speech_bounds(speech))
        audio = clean if background == "silence" else with_noise(clean, seed)
        events = endpoints(vad, audio)
        if [type(e) for e in events] != [SpeechStart, SpeechEnd]:
            wrong.append(f"{text!r}: expected one start and one end, got {events}")
            continue
        onset_ms = (events[0].onset_sample - onset) * 1000 / RATE_HZ
        end_ms = (events[1].end_sample - end) * 1000 / RATE_HZ
        rows.append((text, onset_ms, end_ms))
        if abs(onset_ms) > ONSET_TOLERANCE_MS or not -END_EARLY_MS <= end_ms <= END_LATE_MS:
            wrong.append(f"{text!r}: onset {onset_ms:+.0f} ms, end {end_ms:+.0f} ms")
    with capsys.disabled():
        print(f"\nendpoint error in {background} (detected - true):")
        for text, onset_ms, end_ms in rows:
            print(f"  {text:32s} onset {onset_ms:+6.0f} ms   end {end_ms:+6.0f} ms")
        if rows:
            print(f"  max |onset| {max(abs(r[1]) for r in rows):.0f} ms, end {min(r[2] for r in rows):+.0f}.."
                  f"{max(r[2] for r in rows):+.0f} ms, median end {statistics.median(r[2] for r in rows):+.0f} ms")
    assert not wrong, "\n".join(wrong)
    assert len(rows) >= 10
    assert abs(statistics.median(r[2] for r in rows)) <= END_MEDIAN_MS


@pytest.mark.slow
@pytest.mark.parametrize("background", ["silence", "noise"])
@pytest.mark.parametrize(("pause_ms", "utterances"), [(300, 1), (1200, 2)])
def test_a_short_pause_stays_inside_one_utterance_and_a_long_one_splits(vad, tts, background, pause_ms,
                                                                         utterances):
    first, second = speak(tts, "Turn on the lights"), speak(tts, "and close the blinds.")
    # trim Piper's own lead and tail so the pause is the one we put there
    first, second = (s[slice(*speech_bounds(s))] for s in (first, second))
    gap = np.zeros(pause_ms * RATE_HZ // 1000, np.int16)
    clean = np.concatenate([np.zeros(LEAD, np.int16), first, gap, second, np.zeros(TAIL, np.int16)])
    audio = clean if background == "silence" else with_noise(clean, pause_ms)
    events = endpoints(vad, audio)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd] * utterances, events
    # each onset only has to fall within the pre-roll, so the listener's audio still holds the first word
    # (a long aspirated "t" in "Turn" once put the onset 132 ms late)
    starts = (LEAD, LEAD + len(first) + len(gap))[:utterances]
    onsets = [e.onset_sample for e in events if isinstance(e, SpeechStart)]
    error_ms = [(got - want) * 1000 / RATE_HZ for got, want in zip(onsets, starts, strict=True)]
    assert all(abs(ms) <= P.preroll_ms for ms in error_ms), error_ms


@pytest.mark.slow
def test_a_frame_of_the_wrong_size_or_type_is_refused(vad):
    for bad in (np.zeros(511, np.int16), np.zeros(513, np.int16), np.zeros((1, 512), np.int16),
                np.zeros(512, np.float32)):
        with pytest.raises(ValueError, match="512"):
            vad.probability(bad)


def test_a_missing_model_says_how_to_fetch_it(tmp_path):
    with pytest.raises(ModelMissing, match="sayso models fetch"):
        SileroVAD(tmp_path / "silero_vad.onnx")


def test_a_damaged_model_is_one_line_that_says_how_to_fetch_it(tmp_path):
    damaged = tmp_path / "silero_vad.onnx"
    damaged.write_bytes(b"not an onnx model")
    with pytest.raises(ModelCorrupt, match=r"^Silero VAD model .* is damaged \(\w+\); run `sayso models fetch`\.$"):
        SileroVAD(damaged)


@pytest.mark.slow
def test_reset_makes_the_probabilities_repeatable(vad, spoken):
    audio = with_noise(np.concatenate([np.zeros(LEAD, np.int16), spoken["Good morning."]]), seed=7)
    frames = [audio[i:i + FRAME_SAMPLES] for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
    vad.reset()
    once = [vad.probability(f) for f in frames]
    carried = [vad.probability(f) for f in frames]  # the state of the first pass carries over
    vad.reset()
    again = [vad.probability(f) for f in frames]
    assert max(once) > 0.9 and once == again
    assert carried != once


@pytest.mark.slow
def test_after_a_long_quiet_spell_speech_is_still_heard(vad, spoken):
    # the appliance feeds Silero every frame all day: its carried state must not drift into
    # hearing noise as speech, nor go deaf to speech after a thousand frames of noise
    quiet = with_noise(np.zeros(1000 * FRAME_SAMPLES, np.int16), seed=1)
    speech = with_noise(spoken["Turn on the kitchen lights."], seed=2)
    vad.reset()
    noise_p = [vad.probability(quiet[i:i + FRAME_SAMPLES]) for i in range(0, len(quiet), FRAME_SAMPLES)]
    speech_p = [vad.probability(speech[i:i + FRAME_SAMPLES])
                for i in range(0, len(speech) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
    assert len(noise_p) == 1000 and max(noise_p) < P.stop_threshold, max(noise_p)
    assert max(speech_p) > P.start_threshold, max(speech_p)
