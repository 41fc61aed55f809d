"""The doctor's sound checks: the devices PortAudio sees, a live mic level meter, a tone on the speaker.

They open the mic and speaker the way `sayso run` does (device lookup by name,
PyAudioMic, PyAudioSink), so a pass here means the appliance can hear and speak.
"""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Callable

import numpy as np

from sayso.audio import FRAME_SAMPLES, find_device, rms
from sayso.config import AudioSettings
from sayso.errors import SaysoError
from sayso.hearing.capture import Framer, PyAudioMic
from sayso.hearing.wake import WakeModel
from sayso.service.check import FAIL, OK, WARN, Check


def dbfs(x: float) -> float:
    """A full-scale level (0..1) in dBFS."""
    return 20 * math.log10(max(x, 1e-9 / 32768))


def audio_devices(settings: AudioSettings, print: Callable[[str], None]) -> Check:
    """The devices PortAudio sees, and the mic and speaker the config picks from them."""
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        devices = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
        for d in devices:
            ways = "/".join(w for w, k in (("in", "maxInputChannels"), ("out", "maxOutputChannels")) if d[k])
            if ways:
                print(f"      device {d['index']}: {d['name']!r} ({ways}, {d['defaultSampleRate']:.0f} Hz)")
        picked, problems = [], []
        for direction, name in (("input", settings.input_device),
                                ("output", settings.output_device)):
            key = "maxInputChannels" if direction == "input" else "maxOutputChannels"
            if not any(d[key] for d in devices):
                problems.append(f"no {direction} devices at all")
                continue
            try:
                _, info = find_device(pa, name, direction)
                picked.append(f"{'mic' if direction == 'input' else 'speaker'} {info['name']!r}")
            except SaysoError as e:
                problems.append(str(e))
    finally:
        pa.terminate()
    if problems:
        return Check("audio devices", FAIL, " / ".join(problems),
                     "plug in the mic and speaker (a USB mic and speaker, or a HAT whose overlay is in "
                     "/boot/firmware/config.txt), then check `arecord -l` and `aplay -l`; set "
                     "audio.input_device / audio.output_device in the config to part of their names")
    return Check("audio devices", OK, ", ".join(picked) + " (from audio.input_device / audio.output_device)")

class WakeMeter:
    """The wake word's probability over the meter's audio, fed at the mic's rate in 512-sample frames at 16 kHz."""

    def __init__(self, model: WakeModel, rate_hz: int):
        self.model, self.detector = model, model.detector()
        self.peak = 0.0
        """The highest probability so far."""
        self._index, self._framer = 0, Framer(rate_hz)

    def feed(self, samples: np.ndarray) -> float:
        """Mic samples in; the highest probability among the frames they completed."""
        best = 0.0
        for frame in self._framer.frames(samples):
            self.detector.process(frame, self._index)
            self._index += FRAME_SAMPLES
            best = max(best, self.detector.probability)
        self.peak = max(self.peak, best)
        return best

    def summary(self) -> str:
        heard = "heard" if self.peak >= self.model.threshold else "not heard"
        return f"wake word {self.model.word} peak {self.peak:.2f} ({heard}; needs {self.model.threshold:.2f})"


def mic_level(settings: AudioSettings, meter_s: float, print: Callable[[str], None],
              wake: WakeModel | None = None) -> Check:
    """A live level meter over `meter_s` of mic audio: a bar per quarter second, with the wake word's probability."""
    blocks: queue.Queue[bytes] = queue.Queue()
    mic = PyAudioMic(settings.input_device)
    chunks, got = [], 0
    meter: WakeMeter | None = None
    try:
        mic.open(lambda data, t_ns: blocks.put(data))
        rate = mic.rate_hz
        meter = WakeMeter(wake, rate) if wake is not None else None
        want = int(meter_s * rate)
        deadline = time.monotonic() + meter_s + 2.0
        quarter, pending = rate // 4, np.zeros(0, np.int16)
        while got < want and time.monotonic() < deadline:
            try:
                samples = np.frombuffer(blocks.get(timeout=0.1), np.int16)
            except queue.Empty:
                continue
            chunks.append(samples)
            got += len(samples)
            pending = np.concatenate([pending, samples])
            while len(pending) >= quarter:
                q, pending = pending[:quarter], pending[quarter:]
                level = dbfs(rms(q))
                bar = "#" * max(0, int((level + 70) / 2))
                wake_col = f"  wake {meter.feed(q):.2f}" if meter is not None else ""
                print(f"      mic {level:6.1f} dBFS |{bar:35}|{wake_col}")
    except (OSError, SaysoError) as e:
        return Check("mic level", FAIL, f"the mic would not open: {e}",
                     "another program may hold it (`fuser -v /dev/snd/*`); stop it, or replug the mic")
    finally:
        mic.close()
    if not got:
        return Check("mic level", FAIL, f"no audio from the mic in {meter_s + 2:g} s",
                     "replug the mic; check `arecord -D <device> -d 3 test.wav` records something")
    audio = np.concatenate(chunks)[:want]
    peak = int(np.max(np.abs(audio.astype(np.int32))))
    heard = (f"{len(audio) / rate:.1f} s at {rate} Hz: peak {dbfs(peak / 32768):.0f} dBFS, "
             f"average {dbfs(rms(audio)):.0f} dBFS")
    wake_note = f"; {meter.summary()}" if meter is not None else ""
    if peak == 0:
        return Check("mic level", WARN, f"{heard}: digital silence{wake_note}",
                     "the mic is muted or its gain is at zero: raise the capture level in `alsamixer` "
                     "(F4 shows capture controls)")
    if peak >= 32767:
        return Check("mic level", WARN, f"{heard}: clipping{wake_note}",
                     "lower the capture level in `alsamixer`; clipped speech is recognised worse")
    return Check("mic level", OK, heard + wake_note)

def speaker(settings: AudioSettings, seconds: float = 0.6, freq: float = 440.0) -> Check:
    """A short tone on the configured speaker: the person listening hears whether it works."""
    from sayso.answering.audio_out import PyAudioSink

    try:
        sink = PyAudioSink(settings.output_device)
    except (OSError, SaysoError) as e:
        return Check("speaker", FAIL, f"the speaker would not open: {e}",
                     "another program may hold it (`fuser -v /dev/snd/*`); stop it, or replug the speaker")
    try:
        t = np.arange(int(seconds * sink.rate_hz)) / sink.rate_hz
        fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)  # no clicks
        tone = (np.sin(2 * np.pi * freq * t) * fade * 0.25 * 32767).astype(np.int16)
        for i in range(0, len(tone), sink.block):
            sink.write(tone[i:i + sink.block])
        while sink.pending_samples():
            time.sleep(0.02)
    except OSError as e:
        return Check("speaker", FAIL, f"playing failed: {e}", "replug the speaker; try `speaker-test -t sine`")
    finally:
        sink.close()
    return Check("speaker", OK, f"played a {freq:.0f} Hz tone for {seconds:g} s on {sink.device_name!r} at "
                 f"{sink.rate_hz} Hz; if you heard nothing, raise the volume in `alsamixer`")
