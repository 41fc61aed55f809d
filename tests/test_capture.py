"""Capture through the real pyaudio/PortAudio/ALSA path (file plugin), and its recovery."""

import threading

import numpy as np
import pytest

from sayso.audio import FRAME_SAMPLES, find_device
from sayso.errors import DeviceNotFound
from sayso.hearing.capture import Capture, PyAudioMic
from sayso.pipeline.channel import Channel


def take(frames: Channel, n: int, timeout_s: float = 20.0) -> list:
    got, deadline = [], threading.Event()
    timer = threading.Timer(timeout_s, deadline.set)
    timer.start()
    try:
        while len(got) < n and not deadline.is_set():
            f = frames.get(timeout=0.1)
            if f is not None:
                got.append(f)
    finally:
        timer.cancel()
    assert len(got) == n, f"only {len(got)} of {n} frames arrived"
    return got


def capture(n: int, muted: bool = False) -> list:
    """The first `n` frames from the ALSA file-plugin mic through a Capture stage."""
    frames: Channel = Channel("frames", capacity=100_000)
    cap = Capture(PyAudioMic("saysomic"), frames)
    if muted:
        cap.muted.set()
    cap.start()
    try:
        return take(frames, n)
    finally:
        cap.stopping.set()
        cap.join(5)


def test_frames_arrive_through_portaudio_stamped_with_the_audio_clock(alsa_devices):
    signal = (np.sin(np.arange(16000 * 2) * 2 * np.pi * 300 / 16000) * 9000).astype(np.int16)
    alsa_devices(signal)
    got = capture(len(signal) // FRAME_SAMPLES)
    assert [f.index for f in got] == [i * FRAME_SAMPLES for i in range(len(got))]
    assert all(f.samples.dtype == np.int16 and len(f.samples) == FRAME_SAMPLES for f in got)
    audio = np.concatenate([f.samples for f in got])
    assert np.array_equal(audio, signal[:len(audio)])
    assert all(a.t_ns <= b.t_ns for a, b in zip(got, got[1:], strict=False))


def test_a_muted_mic_gives_digital_silence_on_the_same_clock(alsa_devices):
    signal = (np.sin(np.arange(16000) * 2 * np.pi * 300 / 16000) * 9000).astype(np.int16)
    alsa_devices(signal)
    got = capture(len(signal) // FRAME_SAMPLES, muted=True)
    assert [f.index for f in got] == [i * FRAME_SAMPLES for i in range(len(got))]
    assert not any(f.samples.any() for f in got), "a muted mic let sound through"


def test_a_missing_device_lists_the_ones_that_exist(alsa_devices):
    import pyaudio

    alsa_devices(np.zeros(16000, np.int16))
    pa = pyaudio.PyAudio()
    try:
        with pytest.raises(DeviceNotFound) as e:
            find_device(pa, "respeaker", "input")
        assert "'saysomic'" in str(e.value) and "audio.input_device" in str(e.value)
        assert find_device(pa, "SAYSOMIC", "input")[1]["name"] == "saysomic"
    finally:
        pa.terminate()


class FlakyMic(PyAudioMic):
    """The real mic with injected faults: the first open fails; later the stream goes silent."""

    def __init__(self, name: str, deliveries_before_hang: int):
        super().__init__(name)
        self.opens = 0
        self.left = deliveries_before_hang

    def open(self, deliver):
        self.opens += 1
        if self.opens == 1:
            raise OSError(-9996, "Invalid input device (injected: mic unplugged)")

        def hanging(data, t_ns):
            if self.opens > 2 or self.left > 0:
                self.left -= 1
                deliver(data, t_ns)
            # else: like a USB mic pulled mid-stream, nothing more arrives

        super().open(hanging)


def test_capture_recovers_from_a_failed_open_and_a_stream_that_goes_quiet(alsa_devices, caplog):
    alsa_devices((np.random.default_rng(1).standard_normal(16000 * 4) * 3000).astype(np.int16))
    frames: Channel = Channel("frames", capacity=100_000)
    mic = FlakyMic("saysomic", deliveries_before_hang=20)
    cap = Capture(mic, frames, stall_s=0.3, backoff_s=(0.05,))
    cap.start()
    try:
        first = take(frames, 20)
        later = take(frames, 200)  # only a reopened stream can deliver these
    finally:
        cap.stopping.set()
        cap.join(5)
    assert mic.opens == 3 and cap.reopens == 1
    assert "mic not available" in caplog.text and "reopening it" in caplog.text
    indices = [f.index for f in first + later]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    # the audio clock kept time through the outage (about 0.3 s = 4800 samples)
    gap = later[0].index - first[-1].index
    assert gap >= 4096, gap


def test_a_device_at_48_khz_is_resampled_to_16_khz_frames(alsa_devices):
    rate = 48000
    tone = (np.sin(np.arange(rate * 2) * 2 * np.pi * 440 / rate) * 9000).astype(np.int16)
    alsa_devices(tone)
    frames: Channel = Channel("frames", capacity=100_000)
    cap = Capture(PyAudioMic("saysomic", rate_hz=rate), frames)
    cap.start()
    try:
        got = take(frames, 40)
    finally:
        cap.stopping.set()
        cap.join(5)
    assert cap.mic.rate_hz == rate
    audio = np.concatenate([f.samples for f in got[4:]]).astype(np.float32)  # past soxr's start-up
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * 16000 / len(audio)
    assert abs(peak_hz - 440) < 5
    assert 0.55 < np.sqrt(np.mean(audio ** 2)) / 9000 < 0.85  # level kept (sine RMS = 0.707)
