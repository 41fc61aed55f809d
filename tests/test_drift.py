"""Clock drift between the speaker and the mic: measured from the echo's delay, and followed by the canceller."""

from __future__ import annotations

import numpy as np
import pytest

from sayso.audio import RATE_HZ
from sayso.hearing.drift import DriftTracker, read_at
from sayso.hearing.echo import EchoCanceller
from sayso.pipeline.echo_reference import EchoReference
from sayso.sim.acoustics import convolve, drift, impulse_response

FRAME = 512


def tones(n: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * 1234.5 * n / RATE_HZ) * 10000 + np.sin(2 * np.pi * 5000 * n / RATE_HZ) * 5000


def test_the_reference_is_read_between_its_samples():
    ref = EchoReference(keep_s=5.0)
    played = tones(np.arange(2 * RATE_HZ)).astype(np.int16)
    for i in range(0, len(played), 320):
        ref.played(played[i:i + 320], int((RATE_HZ + i) * 1e9 / RATE_HZ))
    for frac in (0.0, 0.25, 0.5, 0.9, 3.3):
        got = read_at(ref, RATE_HZ + 8000 + frac, FRAME).astype(np.float64)
        want = tones(np.arange(FRAME) + 8000 + frac)
        assert np.abs(got - want).max() < 4, frac  # under -70 dB of the tones


def test_each_run_of_the_reference_knows_where_it_began():
    ref = EchoReference(keep_s=10.0)
    block = np.full(320, 1000, np.int16)
    for start in (RATE_HZ, 3 * RATE_HZ):  # one answer from 1 s, another from 3 s
        for i in range(0, RATE_HZ, 320):
            ref.played(block, int((start + i) * 1e9 / RATE_HZ))
    assert ref.run_start(RATE_HZ - 1) is None
    assert ref.run_start(RATE_HZ + 100) == RATE_HZ
    assert ref.run_start(int(2.5 * RATE_HZ)) == RATE_HZ
    assert ref.run_start(3 * RATE_HZ + 5) == 3 * RATE_HZ


def test_a_stray_estimate_does_not_bend_the_slope():
    tracker = DriftTracker()
    for k in range(6):  # -100 ppm: the delay shrinks 1.6 samples a second
        at = k * RATE_HZ
        tracker.observe(0, at, 480 - 100e-6 * at)
        if k == 3:
            tracker.observe(0, at + 100, 520.0)  # the person talking over the answer threw one
    assert tracker.ppm == pytest.approx(-100, abs=1)
    tracker.observe(20 * RATE_HZ, 20 * RATE_HZ, 480.0)  # a new answer starts on time
    assert tracker.ppm == pytest.approx(-100, abs=1)


@pytest.mark.parametrize("ppm", [-50.0, 100.0])
def test_the_canceller_follows_the_drift_and_keeps_taking_the_echo(ppm):
    # Syllable-like bursts of noise, through a reverberant room, on a speaker clock `ppm` apart from the
    # mic's. Without following the drift, Speex took 6-7 dB from such an echo at 100 ppm.
    rng = np.random.default_rng(5)
    seconds, t0, delay = 16, 2 * RATE_HZ, 480
    envelope = np.repeat(rng.uniform(0.0, 1.0, seconds * 10) > 0.3, RATE_HZ // 10)
    played = rng.standard_normal(seconds * RATE_HZ) * 4000 * envelope
    ref = EchoReference(keep_s=30.0)
    for i in range(0, len(played), 320):
        ref.played(played[i:i + 320].astype(np.int16), int((t0 + i) * 1e9 / RATE_HZ))
    echo = drift(convolve(played, impulse_response(0.4, 3.0, seed=1)) * 0.5, ppm)
    mic = np.zeros(len(played))
    n = min(len(echo), len(mic) - delay)
    mic[delay:delay + n] = echo[:n]
    mic = np.clip(mic + rng.standard_normal(len(mic)) * 3, -32768, 32767).astype(np.int16)
    canceller = EchoCanceller(ref)
    try:
        out = np.concatenate([canceller.process(mic[k * FRAME:(k + 1) * FRAME], t0 + k * FRAME)
                              for k in range(len(mic) // FRAME)]).astype(np.float64)
        measured = canceller.drift.ppm
    finally:
        canceller.close()
    assert measured == pytest.approx(-ppm, rel=0.15)  # the speaker's clock fast: the echo comes ever sooner
    late = slice(10 * RATE_HZ, len(out))
    taken = 10 * np.log10(np.mean(mic[late].astype(np.float64) ** 2) / np.mean(out[late] ** 2))
    assert taken >= 15, f"only {taken:.1f} dB of the drifting echo taken"


def test_no_drift_is_read_into_the_estimates_scatter():
    rng = np.random.default_rng(4)
    still, drifting = DriftTracker(), DriftTracker()
    for k in range(4):  # one 3 s answer: four estimates, each off by up to half a sample
        at, off = k * RATE_HZ, float(rng.uniform(-0.5, 0.5))
        still.observe(0, at, 480 + off)
        drifting.observe(0, at, 480 - 100e-6 * at + off)
    assert still.ppm == 0
    assert drifting.ppm == pytest.approx(-100, rel=0.3)
