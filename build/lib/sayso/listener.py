"""The listener and the transcriber: endpointing, barge-in, the echo guard, streaming STT.

The listener runs the VAD on every 32 ms frame, sends each utterance (with its
pre-roll, so the first word is whole) to the transcriber while the person is
still speaking, and raises `interrupt(full, user_speaking)` when speech persists
over an answer. While the appliance talks, its own voice leaks into the mic: the
echo guard only believes speech that is clearly louder than the echo expected
from what the speaker played.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sayso.capture import FRAME_SAMPLES, RATE_HZ, Frame
from sayso.channel import Channel
from sayso.config import BargeInSettings
from sayso.messages import Kind, PartialTranscript, Reason, SpeechStarted, State, Utterance
from sayso.stage import Stage
from sayso.stt import Recognizer
from sayso.vad import Endpointer, SileroVAD, SpeechEnd, SpeechStart, VADState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndOfSpeech:
    """To the transcriber: the utterance is over, give the final."""

    eos_ns: int
    eos_sample: int


def rms(samples: np.ndarray) -> float:
    """Root mean square of int16 samples, in full-scale units (0..1)."""
    x = np.asarray(samples, dtype=np.float32) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


class EchoReference:
    """What the speaker played, as an energy envelope in time, published for the listener.

    The speaker calls `played` for every block with the time it becomes audible;
    the listener asks for the loudest reference in a window before a mic frame,
    which covers the unknown speaker-to-mic delay.
    """

    def __init__(self, keep_s: float = 3.0):
        self._blocks: deque[tuple[int, float]] = deque()
        self._lock = threading.Lock()
        self.keep_ns = int(keep_s * 1e9)

    def played(self, block: np.ndarray, rate_hz: int, audible_ns: int) -> None:
        level = rms(block)
        end_ns = audible_ns + int(len(block) * 1e9 / rate_hz)
        with self._lock:
            self._blocks.append((end_ns, level))
            while self._blocks and self._blocks[0][0] < end_ns - self.keep_ns:
                self._blocks.popleft()

    def level(self, t_ns: int, window_ns: int) -> float:
        """Loudest reference level audible in [t_ns - window_ns, t_ns + 32 ms]."""
        hi = t_ns + int(FRAME_SAMPLES * 1e9 / RATE_HZ)
        with self._lock:
            return max((lv for end, lv in self._blocks if t_ns - window_ns <= end <= hi + 20_000_000), default=0.0)


class EchoGuard:
    """Decides whether mic energy is more than the appliance's own voice.

    The speaker-to-mic coupling is learnt while the appliance talks: a high
    percentile of mic/reference ratios over the last seconds of frames that
    could be echo (not already margin louder than it), so the echo's loudest
    frames set the bar and the person's speech does not. Until it is learnt, a
    loud coupling (-6 dB) is assumed; it can rise by up to the margin per window.
    """

    def __init__(self, settings: BargeInSettings, window_ms: float = 250.0, initial_coupling: float = 0.5):
        self.margin = 10 ** (settings.echo_margin_db / 20)
        self.window_ns = int(window_ms * 1e6)
        self.initial = initial_coupling
        self._ratios: deque[float] = deque(maxlen=94)  # about 3 s of frames
        self.above_echo = True
        """Whether the last frame was louder than the expected echo at all (no margin)."""

    @property
    def coupling(self) -> float:
        if len(self._ratios) < 8:
            return self.initial
        return float(np.percentile(self._ratios, 90))

    def allows(self, frame: Frame, ref: EchoReference) -> bool:
        """Observe one frame (every frame, so the coupling keeps learning); False if it may be echo."""
        ref_level = ref.level(frame.t_ns, self.window_ns)
        self.above_echo = True
        if ref_level < 1e-4:
            return True  # nothing playing: nothing to mistake
        mic = rms(frame.samples)
        echo = self.coupling * ref_level
        self.above_echo = mic > echo
        allowed = mic > echo * self.margin
        if not allowed:
            # learn only from frames that can be echo: the person's own words, margin louder,
            # would otherwise lift the coupling within 300 ms and the guard would shut them out
            self._ratios.append(mic / ref_level)
        return allowed


class Listener(Stage):
    """VAD, endpointing and barge-in over the mic's frames.

    Args:
        conductor: what it reports to (`post`, `interrupt`, `state`).
        audio: the transcriber's channel: utterance frames, then EndOfSpeech.
        echo: the speaker's reference; None where nothing plays (tests of listening alone).
    """

    name = "listener"

    def __init__(self, vad: SileroVAD, endpointer: Endpointer, frames: Channel, audio: Channel, conductor,
                 barge_in: BargeInSettings, preroll_ms: int = 320, echo: EchoReference | None = None):
        super().__init__()
        self.vad, self.endpointer, self.frames, self.audio = vad, endpointer, frames, audio
        self.conductor, self.barge_in, self.echo = conductor, barge_in, echo
        self.guard = EchoGuard(barge_in)
        # SpeechStart comes min_speech_ms after the onset, so keep that much more than the pre-roll
        keep_ms = preroll_ms + endpointer.settings.min_speech_ms
        self._preroll: deque[Frame] = deque(maxlen=keep_ms * RATE_HZ // 1000 // FRAME_SAMPLES + 2)
        self.preroll_samples = preroll_ms * RATE_HZ // 1000
        self._in_utterance = False
        self._barged = False
        self._recent: deque[tuple[int, bool]] = deque(maxlen=10)

    @property
    def in_utterance(self) -> bool:
        """Whether the person may be speaking now (speech started or starting, not yet ended)."""
        return self.endpointer.state is not VADState.QUIET

    def step(self) -> None:
        frame: Frame | None = self.frames.get(timeout=0.1)
        if frame is None:
            return
        raw = prob = self.vad.probability(frame.samples)
        if self.echo is not None and not self.guard.allows(frame, self.echo):
            prob = 0.0  # the appliance hearing itself
        # frames where a person may already be talking: speech-like and louder than the echo alone
        self._recent.append((frame.index, raw >= self.endpointer.settings.start_threshold and self.guard.above_echo))
        self._preroll.append(frame)
        for event in self.endpointer.update(prob, frame.index):
            if isinstance(event, SpeechStart):
                self.conductor.post(SpeechStarted(_ns_at(frame, event.onset_sample), event.onset_sample))
                self._in_utterance = True
                for f in self._preroll:  # pre-roll: the first word arrives whole
                    if f is not frame and f.index + FRAME_SAMPLES > event.onset_sample - self.preroll_samples:
                        self.audio.put(f)
            elif isinstance(event, SpeechEnd):
                self.audio.put(frame)
                self.audio.put(EndOfSpeech(_ns_at(frame, event.decided_sample), event.decided_sample))
                self._in_utterance = False
        if self._in_utterance:
            self.audio.put(frame)
        self._check_barge_in(frame)

    def _check_barge_in(self, frame: Frame) -> None:
        if self.endpointer.state is VADState.QUIET:
            self._barged = False
            return
        if self._barged or self.endpointer.speech_ms < self.barge_in.min_speech_ms:
            return
        if self.conductor.state in (State.THINKING, State.SPEAKING):
            onset = frame.index + FRAME_SAMPLES - int(self.endpointer.speech_ms * RATE_HZ / 1000)
            # the guard's margin delays the decision, not the onset: walk back over the frames
            # that were already louder than the echo (a stop consonant's 64 ms closure included)
            gap = 0
            for index, rising in reversed(self._recent):
                if index >= onset:
                    continue
                gap = 0 if rising else gap + 1
                if gap > 2:
                    break
                if rising:
                    onset = index
            self._barged = True
            if self.conductor.interrupt(Kind.FULL, Reason.USER_SPEAKING, onset_ns=_ns_at(frame, onset)):
                log.info("barge-in: speech from sample %d over the answer", onset)


class Transcriber(Stage):
    """Feeds utterance audio to the recogniser as it arrives; posts partials and the final."""

    name = "transcriber"

    def __init__(self, recognizer: Recognizer, audio: Channel, post: Callable[[object], None]):
        super().__init__()
        self.recognizer, self.audio, self.post = recognizer, audio, post

    def step(self) -> None:
        item = self.audio.get(timeout=0.1)
        if isinstance(item, Frame):
            partial = self.recognizer.accept(item.samples.tobytes())
            if partial is not None and partial.text:
                self.post(PartialTranscript(partial.text))
        elif isinstance(item, EndOfSpeech):
            final = self.recognizer.end()
            # an empty final is posted too: the conductor goes back from listening to idle
            self.post(Utterance(final.text, item.eos_ns, item.eos_sample))


def _ns_at(frame: Frame, sample: int) -> int:
    """monotonic_ns of an audio-clock sample, from a nearby frame's stamp."""
    return frame.t_ns + int((sample - frame.index) * 1e9 / RATE_HZ)
