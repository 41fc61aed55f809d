"""The simulated room on its own: one clock, echo with its gain and delay, abort, injections, the recording."""

from __future__ import annotations

import threading
import wave

import numpy as np
import pytest

from sayso.audio import RATE_HZ
from sayso.sim.onset import onset_of
from sayso.sim.room import TICK_SAMPLES, Room
from sayso.sim.sounds import noise_burst


def tone(seconds: float, rate_hz: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def play(room: Room, audio: np.ndarray, block: int = 441) -> None:
    for i in range(0, len(audio), block):
        room.speaker.write(audio[i:i + block])


@pytest.fixture
def room():
    rooms = []

    def make(**kw) -> Room:
        r = Room(22050, record=True, **kw).start()
        rooms.append(r)
        return r

    yield make
    for r in rooms:
        r.stop()


def tracks(room: Room, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    path = tmp_path / "rec.wav"
    room.write_recording(path)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, RATE_HZ, 2)
        stereo = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    return stereo[:, 0].astype(np.float64), stereo[:, 1].astype(np.float64)


def test_the_speakers_echo_reaches_the_mic_with_the_rooms_gain_and_delay(room, tmp_path):
    r = room(echo_gain_db=-20, echo_delay_ms=30)
    r.sleep(0.1)
    play(r, tone(0.5, 22050))
    r.sleep(0.3)
    r.stop()
    mic, spk = tracks(r, tmp_path)
    n = min(len(mic), len(spk))
    lags = range(0, 1200)
    corr = [float(np.dot(mic[lag:n], spk[:n - lag])) for lag in lags]
    lag = lags[int(np.argmax(corr))]
    assert lag == 480  # 30 ms at 16 kHz, exactly: mic and speaker are one clock
    gain_db = 20 * np.log10(np.sqrt(np.mean(mic[lag:n] ** 2)) / np.sqrt(np.mean(spk[:n - lag] ** 2)))
    assert gain_db == pytest.approx(-20, abs=0.5)


def test_the_log_keeps_when_the_speaker_sounded(room):
    r = room()
    r.sleep(0.2)
    started = r.log.sounding[:]
    play(r, tone(0.5, 22050))
    r.sleep(0.8)
    r.stop()
    assert started == []
    [(first, end)] = r.log.sounding
    assert first >= 0.2 * RATE_HZ and (end - first) == pytest.approx(0.5 * RATE_HZ, abs=2 * TICK_SAMPLES)


def test_no_echo_and_no_noise_leave_the_mic_silent(room, tmp_path):
    r = room()
    play(r, tone(0.2, 22050))
    r.sleep(0.1)
    r.stop()
    mic, spk = tracks(r, tmp_path)
    assert np.abs(spk).max() > 10000 and np.abs(mic).max() == 0


def test_the_noise_floor_has_the_level_asked_for(room, tmp_path):
    r = room(noise_dbfs=-50)
    r.sleep(0.5)
    r.stop()
    mic, _ = tracks(r, tmp_path)
    assert 20 * np.log10(np.sqrt(np.mean(mic ** 2)) / 32768) == pytest.approx(-50, abs=1)


def test_abort_silences_the_speaker_and_records_the_last_sample_played(room, tmp_path):
    r = room()
    cut = threading.Event()

    def speaker_stage():  # like the Speaker: it writes blocks and aborts, on one thread
        audio = tone(3.0, 22050)
        for i in range(0, len(audio), 441):
            if cut.is_set():
                r.speaker.abort()
                return
            r.speaker.write(audio[i:i + 441])

    writer = threading.Thread(target=speaker_stage)
    writer.start()
    r.sleep(0.3)
    cut.set()
    writer.join(5)
    at, last = r.log.aborts[-1]
    assert at - TICK_SAMPLES <= last <= at
    assert r.speaker.pending_samples() == 0
    r.sleep(0.2)
    r.stop()
    _, spk = tracks(r, tmp_path)
    played = np.flatnonzero(np.abs(spk) > 500)
    # what the recording holds ends where the log says, to the sample (the resampler's ring-out aside),
    # not at the end of the 10 ms the room had already taken: the echo stops there too
    assert last - TICK_SAMPLES <= int(played[-1]) < last + 4
    assert len(played) < 0.5 * RATE_HZ


def test_pending_counts_what_is_queued_and_playing(room):
    r = room()
    writer = threading.Thread(target=play, args=(r, tone(0.5, 22050), 22050 // 50))
    writer.start()
    r.sleep(0.1)
    pending = r.speaker.pending_samples()
    assert 0 < pending <= r.speaker.buffer + 22050 // 50 + 221
    writer.join(5)
    left = r.speaker.pending_samples()
    assert r.wait_samples(left * RATE_HZ // 22050 + 2 * TICK_SAMPLES)  # what it held, played at the room's rate
    assert r.speaker.pending_samples() == 0


def test_injected_speech_is_placed_on_the_clock_from_its_first_sound(room, tmp_path):
    r = room()
    audio = np.concatenate([np.zeros(800, np.int16), tone(0.2, RATE_HZ)])
    inj = r.play_into_mic(audio, "say", "a tone")
    assert inj.onset_sample - inj.start_sample in (800, 801) and inj.end_sample == inj.start_sample + len(audio)
    assert r.now_sample >= inj.end_sample
    r.stop()
    mic, _ = tracks(r, tmp_path)
    assert onset_of(mic) == inj.onset_sample


def test_the_clock_runs_in_real_time_and_never_goes_back(room):
    r = room()
    readings = [r.clock() for _ in range(2000)]
    assert readings == sorted(readings)
    before = r.clock()
    assert r.sleep(0.25)
    assert r.clock() - before >= 250_000_000 - 10_000_000


def test_a_noise_burst_is_loud_and_short():
    burst = noise_burst(0.4, level_dbfs=-20)
    assert len(burst) == int(0.4 * RATE_HZ)
    rms_db = 20 * np.log10(np.sqrt(np.mean(burst.astype(np.float64) ** 2)) / 32768)
    assert rms_db == pytest.approx(-20, abs=0.5)
    assert np.abs(burst[:800]).max() > np.abs(burst[-800:]).max() * 4  # it decays
