"""The room's acoustics on their own: the impulse response's RT60 and DRR, drift, clipping, the babble loop."""

from __future__ import annotations

import numpy as np
import pytest

from sayso.audio import RATE_HZ, resample
from sayso.sim.acoustics import (
    Acoustics,
    Convolver,
    convolve,
    convolve_looped,
    direct_to_reverberant_db,
    drift,
    impulse_response,
    schroeder_rt60,
    soft_clip,
)
from sayso.sim.room import Room


@pytest.mark.parametrize("rt60_s", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("drr_db", [0.0, 3.0, 6.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_impulse_response_has_the_rt60_and_drr_asked_for(rt60_s, drr_db, seed):
    ir = impulse_response(rt60_s, drr_db, seed)
    assert np.sum(ir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-4)
    assert schroeder_rt60(ir) == pytest.approx(rt60_s, rel=0.2)
    assert direct_to_reverberant_db(ir) == pytest.approx(drr_db, abs=1.0)


def test_schroeder_reads_a_known_decay():
    t = np.arange(RATE_HZ) / RATE_HZ
    ir = np.random.default_rng(5).standard_normal(RATE_HZ) * 10 ** (-3 * t / 0.4)  # -60 dB in 0.4 s
    assert schroeder_rt60(ir) == pytest.approx(0.4, rel=0.05)


def test_the_impulse_response_is_seeded():
    assert np.array_equal(impulse_response(0.5, 3, seed=4), impulse_response(0.5, 3, seed=4))
    assert not np.array_equal(impulse_response(0.5, 3, seed=4), impulse_response(0.5, 3, seed=5))


def test_streaming_convolution_equals_the_whole_at_once():
    ir = impulse_response(0.3, 3, seed=2)
    x = np.random.default_rng(0).standard_normal(160 * 60)
    conv = Convolver(ir, 160)
    streamed = np.concatenate([conv.process(x[i:i + 160]) for i in range(0, len(x), 160)])
    assert np.allclose(streamed, convolve(x, ir)[:len(x)], atol=1e-4)


def test_a_loop_rings_into_its_own_start():
    ir = impulse_response(0.2, 0, seed=1)
    x = np.zeros(8000)
    x[-10] = 1.0
    y = convolve_looped(x, ir)
    assert len(y) == len(x)
    assert np.abs(y[:1000]).max() > 1e-3  # the tail of the last click wraps around


@pytest.mark.parametrize("ppm", [100.0, -50.0])
def test_drift_shortens_or_stretches_by_the_ppm(ppm):
    x = np.random.default_rng(0).standard_normal(10 * RATE_HZ).astype(np.float32)
    assert len(drift(x, ppm)) == pytest.approx(len(x) / (1 + ppm * 1e-6), abs=1)


def test_drift_moves_a_late_click_by_its_share():
    x = np.zeros(10 * RATE_HZ, np.float32)
    x[9 * RATE_HZ] = 1.0
    moved = int(np.argmax(np.abs(drift(x, 100.0))))
    assert moved == pytest.approx(9 * RATE_HZ / 1.0001, abs=1)  # 14.4 samples early after 9 s


def test_soft_clip_is_linear_below_the_knee_and_never_passes_the_ceiling():
    ceiling = 32768 * 10 ** (-6 / 20)
    quiet = np.linspace(-ceiling / 2, ceiling / 2, 1001, dtype=np.float32)
    assert np.allclose(soft_clip(quiet, -6), quiet, atol=1e-3)
    loud = np.linspace(-32768 * 4, 32768 * 4, 10001, dtype=np.float32)
    y = soft_clip(loud, -6)
    assert np.abs(y).max() <= ceiling
    assert np.all(np.diff(y) >= 0)  # monotonic: no fold-over
    assert y[-1] > 0.99 * ceiling


def test_babble_loops_at_its_level():
    voice = (np.random.default_rng(3).standard_normal(RATE_HZ) * 3000).astype(np.int16)
    a = Acoustics.make(rt60_s=0.4, drr_db=3, babble=voice, babble_dbfs=-35)
    b = a.background(RATE_HZ - 80, 160)
    assert np.array_equal(b[80:], a.background(0, 80))
    level = 20 * np.log10(np.sqrt(np.mean(a.babble.astype(np.float64) ** 2)) / 32768)
    assert level == pytest.approx(-35, abs=0.1)
    assert Acoustics().background(0, 160) is None


def test_no_acoustics_leave_sound_alone():
    a = Acoustics()
    x = (np.arange(100) * 100).astype(np.int16)
    assert a.through_room(x) is x and a.ir(0) is None
    assert np.array_equal(a.speaker_out(x.astype(np.float32)), x) and a.speaker_rate(22050) == 22050


# ---- the acoustics in the running room


@pytest.fixture
def room():
    rooms = []

    def make(acoustics: Acoustics, **kw) -> Room:
        r = Room(22050, record=True, acoustics=acoustics, **kw).start()
        rooms.append(r)
        return r

    yield make
    for r in rooms:
        r.stop()


def noise(seconds: float, rate_hz: int = 22050, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate_hz)) * 6000).astype(np.int16)


def play(room: Room, audio: np.ndarray, block: int = 441) -> None:
    """Queue all of it at once: a writer thread starved on a loaded machine must not leave gaps."""
    room.speaker.buffer = len(audio) + block
    for i in range(0, len(audio), block):
        room.speaker.write(audio[i:i + block])
    for _ in range(int(len(audio) / 22050 / 0.05) + 100):  # until it has all played, on the room's clock
        if not room.speaker.pending_samples():
            break
        room.sleep(0.05)
    assert not room.speaker.pending_samples()


def test_the_echo_rings_on_after_the_speaker_stops(room):
    r = room(Acoustics(rt60_s=0.4, drr_db=0), echo_gain_db=0)
    r.sleep(0.05)
    play(r, noise(0.3))
    r.sleep(0.6)
    r.stop()
    mic, spk = (t.astype(np.float64) for t in r.tracks())
    last = int(np.flatnonzero(np.abs(spk) > 0)[-1])
    db = [20 * np.log10(np.sqrt(np.mean(mic[a:a + 800] ** 2)) / 32768 + 1e-12) for a in (last + 800, last + 4000)]
    assert -60 < db[0] < -20 and db[1] < db[0] - 10  # a decaying tail, not a cut


def test_a_fast_speaker_clock_walks_the_echo_earlier(room):
    written = noise(2.0, seed=1)
    r = room(Acoustics(drift_ppm=1000), echo_gain_db=0)
    r.sleep(0.05)
    play(r, written)
    r.sleep(0.2)
    r.stop()
    mic, _ = r.tracks()
    mic = mic.astype(np.float64)
    reference = resample(written, 22050, RATE_HZ).astype(np.float64)  # what the canceller's clock says played

    def found(at: int) -> int:
        """Where the reference's samples from `at` on are in the mic."""
        ref = reference[at:at + 2000]
        return int(np.argmax([np.dot(mic[k:k + 2000], ref) for k in range(len(mic) - 2000)]))

    start = found(0)
    # 1.5 s of the speaker's samples take 1.5 ms less of the mic's: 24 samples at 16 kHz
    assert found(24000) - start == pytest.approx(24000 / 1.001, abs=2)


def test_babble_is_in_the_mic_at_its_level(room):
    voice = (np.random.default_rng(3).standard_normal(RATE_HZ) * 3000).astype(np.int16)
    r = room(Acoustics.make(babble=voice, babble_dbfs=-35))
    r.sleep(0.5)
    r.stop()
    mic, _ = r.tracks()
    level = 20 * np.log10(np.sqrt(np.mean(mic.astype(np.float64) ** 2)) / 32768)
    assert level == pytest.approx(-35, abs=1)


def test_the_persons_voice_reaches_the_mic_through_the_room(room):
    r = room(Acoustics(rt60_s=0.3, drr_db=3))
    click = np.zeros(1600, np.int16)
    click[800:880] = 20000
    inj = r.play_into_mic(click, "say", "a click")
    assert inj.onset_sample - inj.start_sample in range(790, 811)  # the sound's own onset, not the room's
    assert inj.end_sample - inj.start_sample > len(click) + 0.25 * RATE_HZ  # the tail plays too
    r.stop()
