"""A simulated room: one mic and one speaker on one 16 kHz sample clock, running in real time.

Every 10 ms the room takes the next 10 ms of audio from the speaker's queue (as
a sound card's DMA would) and delivers 10 ms of mic signal to whoever opened the
mic: the person's injected speech, background noise, and the echo of what the
speaker played, with a gain and a delay. Because both ends live on one clock,
latencies are measured in samples, not in the scheduler's mood: the ground-truth
onset of a person's speech and the last sample the speaker played are both
sample indices of the same stream. `Room.clock()` is that audio clock in
nanoseconds; handing it to the Engine puts every metric it logs on it too.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from sayso.audio import RATE_HZ
from sayso.sim.acoustics import Acoustics, Convolver
from sayso.sim.devices import SimMic, SimSpeaker
from sayso.sim.onset import onset_of
from sayso.sim.roomlog import Injection, RoomLog
from sayso.sim.sounds import dbfs_gain

log = logging.getLogger(__name__)

TICK_SAMPLES = 160
"""10 ms at 16 kHz: the room's step."""
TICK_NS = TICK_SAMPLES * 1_000_000_000 // RATE_HZ
RESAMPLER_SAMPLES = 2
"""How many output samples of soxr's "QQ" stream carry the input before (measured: an impulse spans two)."""


@dataclass(frozen=True)
class _Playing:
    audio: np.ndarray
    start_sample: int


class Room:
    """The simulated room. Start it, hand `mic`, `speaker` and `clock` to the Engine, inject sound.

    Args:
        speaker_rate_hz: the voice's rate (what the speaker plays).
        echo_gain_db: speaker -> mic coupling; None = no echo.
        echo_delay_ms: acoustic plus device delay from the speaker to the mic.
        noise_dbfs: background noise floor (white); None = digital silence.
        record: keep every sample of mic and speaker for `write_recording`.
        acoustics: reverberation, clock drift, clipping and babble (sim/acoustics.py); None = none of them.
    """

    def __init__(self, speaker_rate_hz: int, echo_gain_db: float | None = None, echo_delay_ms: float = 0.0,
                 noise_dbfs: float | None = None, record: bool = False, seed: int = 0,
                 acoustics: Acoustics | None = None):
        self.acoustics = acoustics or Acoustics()
        ir = self.acoustics.ir(0)
        self._reverb = None if ir is None else Convolver(ir, TICK_SAMPLES)
        self.echo_gain = None if echo_gain_db is None else dbfs_gain(echo_gain_db)
        self.noise_std = None if noise_dbfs is None else dbfs_gain(noise_dbfs) * 32768
        self._stop = threading.Event()
        self.speaker = SimSpeaker(self.clock, self._stop, self._aborted, speaker_rate_hz)
        self.mic = SimMic()
        self.log = RoomLog()
        self._rng = np.random.default_rng(seed)
        # "QQ": one sample of latency and an even 160 samples out per tick. The better
        # qualities hold back hundreds of samples and release them in bursts, which would
        # stretch the echo's delay beyond what the scenario asked for.
        self._to_mic = soxr.ResampleStream(self.acoustics.speaker_rate(speaker_rate_hz), RATE_HZ, 1, dtype="float32",
                                           quality="QQ")
        # the echo path: played audio at 16 kHz waits here for its delay
        self._echo_line = np.zeros(int(echo_delay_ms * RATE_HZ / 1000), np.float32)
        self._line_end = 0
        """Room sample just after the last played sample the echo line holds."""
        self._cut: tuple[int, int] = (0, 0)
        """(room sample, abort count) of the last abort: sound from there on, taken before it, never played."""
        self._cut_done = 0
        """The abort count whose cut the echo line has finished with."""
        self._echo_lock = threading.Lock()
        self._ticks = 0
        self._tick_mono = 0
        self._last_ns = 0
        self._lock = threading.Condition()
        self._playing: list[_Playing] = []
        self._record = record
        self._mic_track: list[np.ndarray] = []
        self._speaker_track: list[np.ndarray] = []
        self._thread = threading.Thread(target=self._run, name="room", daemon=True)

    # ---- the clock

    @property
    def now_sample(self) -> int:
        with self._lock:
            return self._ticks * TICK_SAMPLES

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def clock(self) -> int:
        """The audio clock in ns: the room's sample count, interpolated within the current 10 ms."""
        with self._lock:
            within = min(max(0, time.monotonic_ns() - self._tick_mono), TICK_NS)
            now = self._ticks * TICK_NS + within
            self._last_ns = max(self._last_ns, now)
            return self._last_ns

    def wait_samples(self, n: int) -> bool:
        """Sleep until the room's clock has advanced `n` samples; False if the room stopped first."""
        target = self.now_sample + n
        with self._lock:
            return self._lock.wait_for(lambda: self._ticks * TICK_SAMPLES >= target or self._stop.is_set(),
                                       timeout=n / RATE_HZ * 4 + 5) and not self._stop.is_set()

    def sleep(self, seconds: float) -> bool:
        return self.wait_samples(int(seconds * RATE_HZ))

    # ---- what happens in the room

    def inject(self, audio: np.ndarray, kind: str, label: str) -> Injection:
        """Play int16 16 kHz `audio` into the mic from the next tick on; returns where it sits."""
        audio = np.asarray(audio, dtype=np.int16)
        wet = self.acoustics.through_room(audio)  # its onset and end stay those of the sound itself
        with self._lock:
            start = self._ticks * TICK_SAMPLES  # the 10 ms now under way: not yet delivered
            self._playing.append(_Playing(wet, start))
        inj = Injection(kind, label, start, start + onset_of(audio), start + len(wet),
                        start + len(audio) - onset_of(audio[::-1]))
        self.log.injections.append(inj)
        return inj

    def play_into_mic(self, audio: np.ndarray, kind: str, label: str) -> Injection:
        """`inject`, then wait until the last sample of it has reached the mic."""
        inj = self.inject(audio, kind, label)
        self.wait_samples(inj.end_sample - self.now_sample + TICK_SAMPLES)
        return inj

    # ---- running

    def start(self) -> Room:
        self._tick_mono = time.monotonic_ns()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join(2.0)
        if self.log.late_ticks:
            log.warning("the simulated room fell more than 50 ms behind real time %d times (an overloaded "
                        "machine); its audio stayed on its own clock, but the pipeline saw bursts", self.log.late_ticks)

    def _run(self) -> None:
        t0 = time.monotonic_ns()
        step = 0
        speaker_due = 0.0
        # 220.5 at 22.05 kHz; a drifting speaker's clock takes a little more or less per tick of the mic's
        per_tick = self.acoustics.speaker_rate(self.speaker.rate_hz) * TICK_SAMPLES / RATE_HZ
        played = np.zeros(TICK_SAMPLES, np.float32)
        try:
            while not self._stop.is_set():
                due = t0 + step * TICK_NS
                ahead = due - time.monotonic_ns()
                if ahead > 0:
                    self._stop.wait(ahead / 1e9)
                elif ahead < -50_000_000:
                    self.log.late_ticks += 1
                tick_sample = step * TICK_SAMPLES
                # the speaker's next 10 ms leave before the clock shows this tick: by the time
                # anyone can read time `tick_sample`, those samples are playing
                speaker_due += per_tick
                n = int(speaker_due)
                speaker_due -= n
                out, aborts = self.speaker.take(n, tick_sample)
                if out.any():
                    self.log.speaker_s += TICK_SAMPLES / RATE_HZ
                    self.log.sounded(tick_sample, tick_sample + TICK_SAMPLES)
                heard_next = self._echo(out, aborts, tick_sample)
                with self._lock:
                    self._ticks = step
                    self._tick_mono = time.monotonic_ns()
                    self._lock.notify_all()
                if step:
                    # the 10 ms that just ended: the mic heard the person, the room and the echo
                    self._deliver(tick_sample - TICK_SAMPLES, played)
                played = heard_next
                step += 1
        except Exception:
            log.exception("the simulated room failed")
            self._stop.set()

    def _echo(self, out: np.ndarray, taken_after: int, tick_sample: int) -> np.ndarray:
        """The speaker's 10 ms at 16 kHz (float, full scale 32768), into the echo line; the delayed part out."""
        at_mic_rate = self._to_mic.resample_chunk(self.acoustics.speaker_out(out.astype(np.float32)))
        with self._echo_lock:
            at, count = self._cut
            if count > taken_after and at < tick_sample + len(at_mic_rate):
                # taken just before an abort that came before the clock showed this tick: it never sounds
                at_mic_rate[max(0, at - tick_sample):] = 0
            elif count > self._cut_done and at <= tick_sample:
                # the first 10 ms after an abort: the resampler still holds the last samples it stopped
                at_mic_rate[:RESAMPLER_SAMPLES] = 0
            self._cut_done = max(self._cut_done, taken_after)
            self._echo_line = np.concatenate([self._echo_line, at_mic_rate])
            self._line_end = tick_sample + len(at_mic_rate)
            if self._record:
                self._speaker_track.append(np.clip(at_mic_rate, -32768, 32767).astype(np.int16))
            k = min(TICK_SAMPLES, len(self._echo_line))
            echo = np.zeros(TICK_SAMPLES, np.float32)
            echo[:k] = self._echo_line[:k]
            self._echo_line = self._echo_line[k:]
        # the room rings on after an abort: the reverberation follows the line, past the cut
        return echo if self._reverb is None else self._reverb.process(echo)

    def _aborted(self, at_sample: int, last_played: int, abort_count: int) -> None:
        """The speaker was aborted at room sample `at_sample` (on its thread, under its lock)."""
        self.silence_from(last_played, abort_count)
        self.log.aborts.append((at_sample, last_played))

    def silence_from(self, sample: int, abort_count: int) -> None:
        """The speaker was aborted with its last sound at room sample `sample`.

        The room takes each 10 ms of the speaker's audio at the start of the
        tick, so what the abort stopped mid-tick is already in the echo line:
        without this the mic heard up to 10 ms of the appliance after the
        report said it went quiet (the barge-in latency read short by that),
        and that echo, past the reference's cut, reached the canceller uncancelled.
        """
        with self._echo_lock:
            self._cut = (sample, abort_count)
            drop = self._line_end - sample
            if drop > 0:  # (with an echo delay under 10 ms, some of it has already gone to the mic)
                self._echo_line[max(0, len(self._echo_line) - drop):] = 0
            for chunk in reversed(self._speaker_track if self._record else []):
                if drop <= 0:
                    break
                chunk[max(0, len(chunk) - drop):] = 0
                drop -= len(chunk)

    def _deliver(self, first_sample: int, played: np.ndarray) -> None:
        mic = np.zeros(TICK_SAMPLES, np.float32)
        if self.echo_gain is not None:
            mic += played * self.echo_gain
        if self.noise_std is not None:
            mic += self._rng.standard_normal(TICK_SAMPLES).astype(np.float32) * self.noise_std
        babble = self.acoustics.background(first_sample, TICK_SAMPLES)
        if babble is not None:
            mic += babble
        end = first_sample + TICK_SAMPLES
        with self._lock:
            playing = list(self._playing)
            self._playing = [p for p in self._playing if p.start_sample + len(p.audio) > end]
        for p in playing:
            lo, hi = max(first_sample, p.start_sample), min(end, p.start_sample + len(p.audio))
            if lo < hi:
                mic[lo - first_sample:hi - first_sample] += p.audio[lo - p.start_sample:hi - p.start_sample]
        block = np.clip(mic, -32768, 32767).astype(np.int16)
        if self._record:
            self._mic_track.append(block)
        deliver = self.mic.deliver
        if deliver is not None:
            deliver(block.tobytes(), first_sample * 1_000_000_000 // RATE_HZ)

    def tracks(self) -> tuple[np.ndarray, np.ndarray]:
        """What the mic heard and what the speaker played, int16 at 16 kHz (kept only with `record`)."""
        mic = np.concatenate(self._mic_track) if self._mic_track else np.zeros(0, np.int16)
        spk = np.concatenate(self._speaker_track) if self._speaker_track else np.zeros(0, np.int16)
        return mic, spk

    def write_recording(self, path: Path) -> None:
        """Stereo 16 kHz WAV: the mic on the left, the speaker on the right."""
        import wave

        mic, spk = self.tracks()
        n = max(len(mic), len(spk))
        stereo = np.zeros((n, 2), np.int16)
        stereo[:len(mic), 0] = mic
        stereo[:len(spk), 1] = spk
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(RATE_HZ)
            w.writeframes(stereo.tobytes())
