"""End of turn: Smart Turn v3.2 says whether a pause ends what the person is saying.

Silence alone cannot tell "What is the capital of… France?" from "What is the
capital of France?": a short wait cuts the first off, a long one slows every
answer. Smart Turn (an int8 Whisper-encoder classifier) hears the words'
intonation and grammar up to the pause. The listener asks it at a short
silence; "complete" ends the turn at once, "incomplete" waits for a long one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sayso.audio import RATE_HZ
from sayso.models.onnx import cpu_session
from sayso.pipeline.channel import Channel
from sayso.pipeline.stage import Stage

TURN_MODEL = "smart-turn-v3.2"
"""The manifest name of the end-of-turn model."""

WINDOW_S = 8
"""The model hears the last 8 s of the utterance, zero-padded in front."""
N_FFT, HOP, N_MELS = 400, 160, 80
"""Whisper's front end: 25 ms windows every 10 ms, 80 mel bands (800 frames for 8 s)."""


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) * 27.0 / np.log(6.4))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0))


def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, rate_hz: int = RATE_HZ) -> np.ndarray:
    """Slaney-normalised triangular filters, [n_mels, n_fft // 2 + 1], as Whisper (and librosa's default) use."""
    bins = np.linspace(0, rate_hz / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate_hz / 2), n_mels + 2))
    lower = (bins[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - bins[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


_FILTERS = mel_filters().astype(np.float32)
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def log_mel(audio: np.ndarray, seconds: int = WINDOW_S) -> np.ndarray:
    """Whisper-style log-mel features of the last `seconds` of 16 kHz audio: float32 [80, seconds * 100].

    The audio is zero-padded in front (or cut to its end), normalised to zero
    mean and unit variance, framed with reflect padding, and the log10 power in
    each mel band is clamped to 8 below its maximum and scaled to about -1..1.
    """
    n = seconds * RATE_HZ
    a = np.asarray(audio)
    x = (a.astype(np.float32) / 32768.0 if np.issubdtype(a.dtype, np.integer) else a.astype(np.float32))[-n:]
    x = np.concatenate([np.zeros(n - len(x), np.float32), x])
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:-1]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    mel = np.log10(np.maximum(_FILTERS @ power.T.astype(np.float32), 1e-10))
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


TRAILING = frozenset("""
a an the my your his her our their its of for from with about into onto than through between to at by as
and or but because if so nor is are was were am um uh er erm hmm very really
""".split())
"""Words an English request all but never ends on: a pause after one is mid-sentence, whatever the
intonation. Words that can end one ("turn it on", "what is this", "what should I do") are not here;
"is" and its kin seldom do ("tell me what the time is") and wait the long silence when they do."""
TRAILING_PAIRS = frozenset({("can", "you"), ("could", "you"), ("would", "you"), ("will", "you"),
                            ("do", "you"), ("i", "want"), ("i", "need"), ("tell", "me")})


def trails_off(text: str) -> bool:
    """Whether the words so far stop where a sentence cannot end ("what is the capital of")."""
    words = [w.strip(".,!?;:\"'").lower() for w in text.split()]
    words = [w for w in words if w]
    return bool(words) and (words[-1] in TRAILING or tuple(words[-2:]) in TRAILING_PAIRS)


class PauseHabit:
    """How long this person pauses mid-sentence, learned from the pauses they went on after.

    A voice gives Smart Turn intonation to hear, but a flat or synthetic one
    does not, and "Tell me about the history… of Spain" is whole at its pause
    in words too. A person who has paused 800 ms and gone on will do it again:
    a turn the model calls complete then waits their longest recent such pause
    (and a margin to hear them go on) before it ends. A person who runs their
    sentences together waits nothing more. Times are audio-clock samples.
    """

    MARGIN_MS = 100
    """Beyond the longest pause: the frames it takes to hear the person go on."""

    def __init__(self, remember: int = 5, forget_s: float = 300.0):
        """Remember the newest `remember` pauses, none older than `forget_s` (another person may be talking)."""
        self._pauses: deque[tuple[int, float]] = deque(maxlen=remember)
        self._forget = int(forget_s * RATE_HZ)

    def went_on(self, pause_ms: float, at_sample: int) -> None:
        """The person spoke again `pause_ms` after they stopped, at `at_sample`."""
        self._pauses.append((at_sample, pause_ms))

    def wait_ms(self, at_sample: int) -> float:
        """The silence a turn the model calls complete waits before it ends (0: end it at once)."""
        recent = [ms for t, ms in self._pauses if at_sample - t <= self._forget]
        return max(recent) + self.MARGIN_MS if recent else 0.0


class SmartTurn:
    """Smart Turn v3.2 on onnxruntime: the probability that a pause ends the person's turn."""

    def __init__(self, model_path: Path, threads: int = 1):
        """Load the model; `threads` is onnxruntime's intra-op count (one leaves a core to the LLM)."""
        self._session = cpu_session(model_path, "end-of-turn model", threads, spinning=False)
        self._input = self._session.get_inputs()[0].name

    def probability(self, audio: np.ndarray) -> float:
        """How likely the turn is complete, 0..1, given the utterance so far (int16 at 16 kHz, pause included)."""
        features = log_mel(audio)[np.newaxis]
        out = self._session.run(None, {self._input: features})[0]
        return float(np.asarray(out).reshape(-1)[0])


@dataclass(frozen=True)
class TurnQuestion:
    """To the detector: does the utterance end at this pause?"""

    pause: int
    """Which pause of the listener's this is about (a later pause makes the answer moot)."""
    audio: np.ndarray
    t_ns: int


@dataclass(frozen=True)
class TurnAnswer:
    pause: int
    probability: float
    complete: bool
    cost_ms: float
    """Wall-clock ms the model took."""


class TurnDetector(Stage):
    """Runs Smart Turn on its own thread, so the listener keeps up with the mic while it thinks.

    Only the newest question matters: an older one still queued is dropped.
    """

    name = "turn"

    def __init__(self, model: SmartTurn, threshold: float, answer: Callable[[TurnAnswer], None]):
        super().__init__()
        self.model, self.threshold, self.answer = model, threshold, answer
        self.questions: Channel = Channel("turn-questions", capacity=1)
        self._lock = threading.Lock()

    def ask(self, q: TurnQuestion) -> None:
        """Never blocks: replaces a question not yet taken."""
        with self._lock:
            self.questions.flush(lambda _: True)
            self.questions.put(q)

    def step(self) -> None:
        q: TurnQuestion | None = self.questions.get(timeout=0.1)
        if q is None:
            return
        t = time.perf_counter()
        p = self.model.probability(q.audio)
        self.answer(TurnAnswer(q.pause, p, p >= self.threshold, (time.perf_counter() - t) * 1000))
