"""Plainly named fakes for the parts that the engine tests (and the crash harness) stand in for.

The real LLM, voice and sound card are tested on their own; these let the
engine's timing and interruption logic be proven quickly and exactly.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from sayso.answering.voice import Rendered
from sayso.pipeline.messages import WordSpan


class FakeLLM:
    """A scripted LLM that streams canned answers token by token with delays.

    Args:
        answers: one answer per call, in order (the last repeats), or a function of the messages.
        late_tokens: tokens it still yields after `should_stop()` turned true, like a
            stream whose cancel has not landed yet (the "one more token" race).
        fail_on: raise RuntimeError when the answer contains this word.
    """

    def __init__(self, answers: Sequence[str] | Callable[[list[dict]], str], token_delay_s: float = 0.02,
                 first_token_delay_s: float = 0.05, late_tokens: int = 0, fail_on: str | None = None):
        self.answers = answers
        self.token_delay_s, self.first_token_delay_s = token_delay_s, first_token_delay_s
        self.late_tokens, self.fail_on = late_tokens, fail_on
        self.calls: list[list[dict]] = []
        self.yielded_after_stop = 0
        self._pause = threading.Event()  # never set: a stop-aware sleep for the simulated compute

    def _answer(self, messages: list[dict]) -> str:
        if callable(self.answers):
            return self.answers(messages)
        return self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]

    def stream(self, messages: list[dict], should_stop: Callable[[], bool]) -> Iterator[str]:
        self.calls.append(messages)
        answer = self._answer(messages)
        self._pause.wait(self.first_token_delay_s)
        late = None
        for i, token in enumerate(re.findall(r"\s*\S+", answer)):
            if should_stop():
                late = self.late_tokens if late is None else late
                if late == 0:
                    return
                late -= 1
            if self.fail_on and self.fail_on in token:
                raise RuntimeError(f"FakeLLM told to fail on {self.fail_on!r}")
            if i:
                self._pause.wait(self.token_delay_s)
            if should_stop():
                self.yielded_after_stop += 1  # computed before the cancel landed: the race
            yield token


class ResumableFakeLLM(FakeLLM):
    """The fake LLM with a prompt cache, like the local model: it prefills, and goes on with an answer
    it was stopped in (the scripted answer after the words it had). Records both."""

    resumable = True

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.prefilled: list[list[dict]] = []
        self.resumed: list[str] = []
        self._last = ""

    def _answer(self, messages: list[dict]) -> str:
        self._last = super()._answer(messages)
        return self._last

    def prefill(self, messages: list[dict], should_stop: Callable[[], bool]) -> None:
        self.prefilled.append(messages)

    def resume(self, messages: list[dict], so_far: str, should_stop: Callable[[], bool]) -> Iterator[str]:
        self.resumed.append(so_far)
        tokens = re.findall(r"\s*\S+", self._last)
        done = next(k for k in range(len(tokens) + 1) if "".join(tokens[:k]) == so_far)
        for token in tokens[done:]:
            if should_stop():
                return
            self._pause.wait(self.token_delay_s)
            yield token


class FakeTTS:
    """Stand-in for Piper: every word becomes a constant-valued run of samples.

    The value identifies the word (`word_of`), so a test can read back from the
    played audio exactly which words reached the person.
    """

    def __init__(self, rate_hz: int = 22050, ms_per_char: float = 25.0, gap_ms: float = 20.0,
                 fail_on: str | None = None, render_delay_s: float = 0.0):
        self.rate_hz, self.ms_per_char, self.gap_ms, self.fail_on = rate_hz, ms_per_char, gap_ms, fail_on
        self.render_delay_s = render_delay_s
        """Seconds each render takes, as synthesis on a slow board would."""
        self._never = threading.Event()
        self._ids: dict[str, int] = {}
        self._words: dict[int, str] = {}
        self.rendered: list[str] = []

    def _id(self, word: str) -> int:
        if word not in self._ids:
            code = 100 + 7 * len(self._ids)
            self._ids[word], self._words[code] = code, word
        return self._ids[word]

    def render(self, text: str) -> Rendered:
        if self.fail_on and self.fail_on in text:
            raise RuntimeError(f"FakeTTS told to fail on {self.fail_on!r}")
        self.rendered.append(text)
        self._never.wait(self.render_delay_s)
        parts, spans, pos = [], [], 0
        gap = np.zeros(int(self.rate_hz * self.gap_ms / 1000), np.int16)
        for word in text.split():
            n = int(self.rate_hz * self.ms_per_char * len(word) / 1000)
            parts += [np.full(n, self._id(word), np.int16), gap]
            spans.append(WordSpan(word, pos, pos + n))
            pos += n + len(gap)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        return Rendered(audio, self.rate_hz, tuple(spans))

    def words_in(self, audio: np.ndarray) -> list[str]:
        """The words whose runs appear in `audio`, in order (partial runs included)."""
        out, last = [], 0
        for v in audio.tolist():
            if v != last and v in self._words:
                out.append(self._words[v])
            last = v
        return out


class FakeSpeakerSink:
    """Stand-in for a sound card: plays in real time on the clock, with a small buffer.

    It keeps what became audible, so a test can check what the person heard.
    """

    def __init__(self, rate_hz: int = 22050, buffer_ms: float = 40.0,
                 clock: Callable[[], int] = time.monotonic_ns):
        self.rate_hz, self.clock = rate_hz, clock
        self.buffer_ns = int(buffer_ms * 1e6)
        self._end_ns = 0
        self._blocks: list[tuple[int, np.ndarray]] = []
        self._lock = threading.Lock()
        self._never = threading.Event()
        self.aborts = 0

    def _dur_ns(self, n: int) -> int:
        return int(n * 1e9 / self.rate_hz)

    def write(self, block: np.ndarray) -> None:
        with self._lock:
            now = self.clock()
            self._end_ns = max(self._end_ns, now)  # an idle device starts at once
            wait_ns = self._end_ns - now - self.buffer_ns
        if wait_ns > 0:
            self._never.wait(wait_ns / 1e9)
        with self._lock:
            self._end_ns = max(self._end_ns, self.clock())
            self._blocks.append((self._end_ns, np.array(block, dtype=np.int16)))
            self._end_ns += self._dur_ns(len(block))

    def pending_samples(self) -> int:
        with self._lock:
            return max(0, int((self._end_ns - self.clock()) * self.rate_hz / 1e9))

    def abort(self) -> None:
        with self._lock:
            now = self.clock()
            kept = []
            for start, block in self._blocks:
                if start < now:
                    kept.append((start, block[:max(0, min(len(block), int((now - start) * self.rate_hz / 1e9)))]))
            self._blocks = kept
            self._end_ns = now
            self.aborts += 1

    def audible(self) -> np.ndarray:
        """Everything that has played (or is queued to play without an abort)."""
        with self._lock:
            return np.concatenate([b for _, b in self._blocks]) if self._blocks else np.zeros(0, np.int16)
