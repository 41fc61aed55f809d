"""Small audio helpers shared across the appliance and its tools: level, rates, WAV files, devices by name."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import numpy as np
import soxr

from sayso.errors import DeviceNotFound, SaysoError

log = logging.getLogger(__name__)

RATE_HZ = 16000
"""The one sample rate of the mic path: Silero, Smart Turn and the recognisers all take 16 kHz."""
FRAME_SAMPLES = 512
"""Samples per mic frame (32 ms): Silero v6 takes 512-sample frames at 16 kHz."""


def rms(samples: np.ndarray) -> float:
    """Root mean square of int16 samples, in full-scale units (0..1)."""
    x = np.asarray(samples, dtype=np.float32) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def resample(audio: np.ndarray, rate_hz: int, to_hz: int) -> np.ndarray:
    """int16 at `rate_hz` -> int16 at `to_hz` (soxr, whole signal: no stream delay); as it is when the rates match."""
    audio = np.asarray(audio, dtype=np.int16)
    if rate_hz == to_hz:
        return audio
    out = soxr.resample(audio.astype(np.float32) / 32768.0, rate_hz, to_hz)
    return (np.clip(out, -1.0, 1.0) * 32767).astype(np.int16)


def to_mic_rate(audio: np.ndarray, rate_hz: int) -> np.ndarray:
    """int16 at any rate -> int16 at 16 kHz (soxr)."""
    return resample(audio, rate_hz, RATE_HZ)


def write_wav(path: Path, audio: np.ndarray, rate_hz: int) -> None:
    """Mono int16 WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(np.asarray(audio).astype(np.int16).tobytes())


def read_wav_at_mic_rate(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV (any rate, channels mixed to mono) as int16 at 16 kHz."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise SaysoError(f"{path}: {8 * w.getsampwidth()}-bit samples; give a 16-bit PCM WAV "
                                 f"(e.g. `sox in.wav -b 16 out.wav`)")
            channels, rate = w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise SaysoError(f"{path} is not a PCM WAV file ({e}); give a 16-bit PCM WAV") from None
    except OSError as e:
        raise SaysoError(f"cannot read {path}: {e.strerror or e}") from None
    whole = len(raw) - len(raw) % (2 * channels)
    if whole != len(raw):  # a file cut off mid-frame (its header promises more than it holds)
        log.warning("%s ends in a partial frame (%d bytes); it is left out", path, len(raw) - whole)
    data = np.frombuffer(raw[:whole], dtype=np.int16)
    mono = data.reshape(-1, channels).mean(axis=1) if channels > 1 else data
    return to_mic_rate(mono, rate) if rate != RATE_HZ else mono.astype(np.int16)


def find_device(pa, name: str, direction: str) -> tuple[int, dict]:
    """The first `direction` ("input"/"output") device whose name contains `name` (any, when empty)."""
    key = "maxInputChannels" if direction == "input" else "maxOutputChannels"
    devices = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    usable = [d for d in devices if d.get(key, 0) > 0]
    if not name:
        try:
            default = pa.get_default_input_device_info() if direction == "input" else \
                pa.get_default_output_device_info()
            return int(default["index"]), default
        except OSError:
            pass
    for d in usable:
        if name.lower() in d["name"].lower():
            return int(d["index"]), d
    names = ", ".join(repr(d["name"]) for d in usable)
    wanted = f"no {direction} device matching {name!r}" if name else f"no default {direction} device"
    if not names:
        raise DeviceNotFound(f"{wanted}, and no {direction} devices at all: is the sound card or USB "
                             f"{'mic' if direction == 'input' else 'speaker'} plugged in? `arecord -l` and "
                             "`aplay -l` list what ALSA sees; `sayso doctor` checks the rest.")
    raise DeviceNotFound(f"{wanted}; {direction} devices here: {names}. "
                         f"Set audio.{direction}_device in the config to part of one of these names.")
