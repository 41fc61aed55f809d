"""Voice activity: Silero VAD v6 speech probabilities and the endpointer that turns them into utterances."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sayso.audio import FRAME_SAMPLES, RATE_HZ  # Silero v6 takes 512-sample frames at 16 kHz
from sayso.config import VADSettings
from sayso.errors import ConfigError
from sayso.models.onnx import cpu_session

log = logging.getLogger(__name__)

VAD_MODEL = "silero-vad-v6"
"""The manifest name of the Silero VAD model the appliance runs."""

CONTEXT_SAMPLES = 64
STATE_SHAPE = (2, 1, 128)


class SileroVAD:
    """Silero VAD v6 on onnxruntime: one speech probability per 32 ms frame, streaming."""

    def __init__(self, model_path: Path, threads: int = 1):
        """Load the model.

        Args:
            model_path: silero_vad.onnx, e.g. `ModelStore().path(VAD_MODEL, role="vad")`.
            threads: onnxruntime intra-op threads; one is plenty for a 32 ms frame and leaves
                the other cores to the STT and the LLM.
        """
        self._session = cpu_session(model_path, "Silero VAD model", threads)
        self._sr = np.array(RATE_HZ, dtype=np.int64)
        self.reset()

    def another_stream(self) -> SileroVAD:
        """A VAD for a second stream that shares this one's loaded model (onnxruntime's run is thread-safe)."""
        other = object.__new__(SileroVAD)
        other._session, other._sr = self._session, self._sr
        other.reset()
        return other

    def reset(self) -> None:
        """Forget the stream so far (recurrent state and context): call between unrelated streams."""
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability (0..1) of the next frame of the stream.

        Args:
            frame: 512 mono int16 samples at 16 kHz, following the previous call's frame.

        Raises:
            ValueError: the frame is not 512 int16 samples.
        """
        frame = np.asarray(frame)
        if frame.shape != (FRAME_SAMPLES,) or frame.dtype != np.int16:
            raise ValueError(f"SileroVAD takes frames of {FRAME_SAMPLES} mono int16 samples at {RATE_HZ} Hz; "
                             f"got shape {frame.shape}, dtype {frame.dtype}. Cut the stream into 32 ms frames.")
        x = frame.astype(np.float32) / 32768.0
        # v6 expects each frame preceded by the last 64 samples of the one before (silero's own
        # wrapper feeds it so): its first convolution then sees one continuous signal, not a false
        # edge every 32 ms. Zeros there lower the probabilities only slightly, but it is the input it knows.
        batch = np.concatenate([self._context, x])[np.newaxis, :]
        out, self._state = self._session.run(["output", "stateN"],
                                             {"input": batch, "state": self._state, "sr": self._sr})
        self._context = x[-CONTEXT_SAMPLES:]
        return float(out[0, 0])


class VADState(enum.Enum):
    QUIET = "quiet"
    STARTING = "starting"
    """Speech seen, not yet long enough to count as an utterance."""
    SPEAKING = "speaking"
    STOPPING = "stopping"
    """Silence seen, not yet long enough to end the utterance."""


@dataclass(frozen=True)
class SpeechStart:
    """An utterance began; emitted min_speech_ms after its onset."""

    onset_sample: int
    """Audio-clock index of the first sample of the utterance's first speech frame."""


@dataclass(frozen=True)
class SpeechEnd:
    """An utterance ended; emitted end_silence_ms after its last speech frame."""

    end_sample: int
    """Audio-clock index just after the utterance's last speech frame."""
    decided_sample: int
    """Audio-clock index just after the frame that completed the silence (end_sample + ~end_silence_ms)."""


@dataclass(frozen=True)
class SpeechPause:
    """The utterance has been quiet for `pause_ms`: an early endpoint, where the end-of-turn model is asked."""

    end_sample: int
    """Audio-clock index just after the last speech frame before the pause."""
    decided_sample: int


VADEvent = SpeechStart | SpeechEnd | SpeechPause


class Endpointer:
    """Turns per-frame speech probabilities into SpeechStart / SpeechEnd; pure, no clock of its own.

    Hysteresis: a run of speech starts only at prob >= start_threshold, but once started (already
    while starting) it continues until prob < stop_threshold. One threshold would make an utterance
    flicker on and off as soft consonants and word tails wobble around it; two give a dead band.
    """

    def __init__(self, settings: VADSettings, frame_samples: int = FRAME_SAMPLES, rate_hz: int = RATE_HZ,
                 end_silence_ms: int | None = None, pause_ms: int | None = None):
        """`end_silence_ms` overrides the settings' (an end-of-turn model waits longer); `pause_ms` adds
        a SpeechPause after that much silence, once per pause."""
        if settings.stop_threshold >= settings.start_threshold:
            raise ConfigError(f"vad.stop_threshold = {settings.stop_threshold:g} must be below "
                              f"vad.start_threshold = {settings.start_threshold:g} (hysteresis).")
        if frame_samples <= 0 or rate_hz <= 0:
            raise ValueError(f"frame_samples and rate_hz must be positive, got {frame_samples}, {rate_hz}.")
        self.settings = settings
        self.frame_samples = frame_samples
        self.rate_hz = rate_hz
        self._min_speech = settings.min_speech_ms * rate_hz // 1000
        self.end_silence_ms = settings.end_silence_ms if end_silence_ms is None else end_silence_ms
        self._default_end_silence = self.end_silence_ms * rate_hz // 1000
        self._pause = None if pause_ms is None else pause_ms * rate_hz // 1000
        # Silero's recurrent state carries speech about one frame past the sound: one frame is taken back
        self._lag = frame_samples
        self.pauses = 0
        """How many SpeechPause events there have been (identifies the newest)."""
        self.reset()

    def reset(self) -> None:
        """Back to quiet, dropping any utterance in progress (no event)."""
        self._state = VADState.QUIET
        self._onset = 0
        self._speech_end = 0
        self._strong_end = 0
        self._paused = False
        self._end_silence = self._default_end_silence

    def wait_for(self, end_silence_ms: int) -> None:
        """For the pause in progress only: the silence that ends the utterance (the words trail off)."""
        self._end_silence = end_silence_ms * self.rate_hz // 1000

    @property
    def state(self) -> VADState:
        return self._state

    @property
    def speech_ms(self) -> float:
        """How long the current run of speech has lasted, in ms; 0 when quiet. Barge-in reads this."""
        if self._state is VADState.QUIET:
            return 0.0
        return (self._speech_end - self._onset) * 1000 / self.rate_hz

    @property
    def last_speech_sample(self) -> int:
        """Where the last speech ended: Silero's probability decays over several frames after the last
        sound, so the end of the last confident frame (>= start_threshold), one frame taken back, sits
        much nearer the true end than the end of the hysteresis tail."""
        return max(self._onset, (self._strong_end or self._speech_end) - self._lag)

    def end_now(self, decided_sample: int) -> SpeechEnd:
        """End the utterance in its pause (the end-of-turn model said it is complete)."""
        end = SpeechEnd(self.last_speech_sample, decided_sample)
        self.reset()
        return end

    def update(self, prob: float, frame_index: int) -> list[VADEvent]:
        """Feed one frame's speech probability; returns the events it caused, in order.

        Args:
            prob: speech probability of the frame, 0..1.
            frame_index: audio-clock index of the frame's first sample.
        """
        s = self.settings
        frame_end = frame_index + self.frame_samples
        if self._state is VADState.QUIET:
            if prob < s.start_threshold:
                return []
            self._state, self._onset = VADState.STARTING, frame_index
        elif prob < s.stop_threshold:
            if self._state is VADState.STARTING:
                # Too short to be speech (a click, a cough): forget it without a word.
                self.reset()
                return []
            self._state = VADState.STOPPING
            if frame_end - self._speech_end < self._end_silence:
                quiet = frame_end - self.last_speech_sample
                if self._pause is not None and not self._paused and quiet >= self._pause:
                    self._paused = True
                    self.pauses += 1
                    return [SpeechPause(self.last_speech_sample, frame_end)]
                return []
            return [self.end_now(frame_end)]
        elif self._state is VADState.STOPPING:
            # Speech back within end_silence_ms: a pause inside the utterance, not its end.
            self._state = VADState.SPEAKING
            self._paused = False
            self._end_silence = self._default_end_silence
        self._speech_end = frame_end
        if prob >= s.start_threshold:
            self._strong_end = frame_end
        if self._state is VADState.STARTING and frame_end - self._onset >= self._min_speech:
            self._state = VADState.SPEAKING
            return [SpeechStart(self._onset)]
        return []
