"""Messages that flow between stages. Every item of an answer carries its turn id.

Times are `time.monotonic_ns()` values from the pipeline's clock (`*_ns`);
audio positions are sample counts (`*_samples`) at the rate named beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class Kind(StrEnum):
    """How much an interrupt stops."""

    FULL = "full"
    """Stop generation and speech."""
    SPEECH = "speech"
    """Stop voice and speaker; let generation finish so the log holds the whole answer."""


class Reason(StrEnum):
    USER_SPEAKING = "user_speaking"
    BUTTON = "button"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    ERROR = "error"
    CRASH = "crash"
    """Written only by start-up recovery."""
    SUPERSEDED = "superseded"
    """The person went on talking before hearing any of the answer: their words joined their turn."""


class State(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


# ---- into the conductor, from the listener and transcriber


@dataclass(frozen=True)
class SpeechStarted:
    """The listener heard the person start to speak."""

    onset_ns: int
    onset_sample: int = 0
    """Mic sample index (16 kHz audio clock) of the first speech sample."""


@dataclass(frozen=True)
class PartialTranscript:
    """What the recogniser has so far, while the person is still speaking."""

    text: str


@dataclass(frozen=True)
class Utterance:
    """A final transcript: one thing the person said."""

    text: str
    eos_ns: int
    """When the listener decided the utterance had ended."""
    eos_sample: int = 0
    confidence: tuple[float, ...] | None = None
    """The recogniser's posterior for each word of `text`, 0..1; None when it gives none."""
    sustained_ms: int | None = None
    """The utterance's longest run of sure speech from its onset, to a VAD that heard nothing before, on frames
    the listener took for the person's (a television across the room is not); None when not measured."""
    speech_end_ns: int | None = None
    """When the person's last word ended (the VAD's estimate); `eos_ns` is when that was decided."""
    endpoint: str = "silence"
    """What ended it: smart-turn (the model said complete at a short pause) or silence (the long wait)."""
    turn_probability: float | None = None
    """The end-of-turn model's last probability for this utterance, when it was asked."""
    transcribed: bool = True
    """False for speech the listener kept from the recogniser: idle, waiting for a wake word that never came."""
    foreground_ms: int | None = None
    """The longest run of sure speech the listener judged the person's (not echo, not a television across the
    room); None when not measured. A question has 0.5 s and more, a cough far less."""


@dataclass(frozen=True)
class WakeWordHeard:
    """The listener heard the wake word; `t_ns` is when the phrase ended."""

    word: str
    probability: float
    t_ns: int


@dataclass(frozen=True)
class ListenRequested:
    """The button was pressed while idle: push-to-talk, a request without the wake word."""

    t_ns: int


@dataclass(frozen=True)
class TentativeTranscript:
    """The words so far, at a short pause that may end the utterance: an answer may start on them, unheard."""

    text: str
    t_ns: int
    trails_off: bool = False
    """The words stop where a request cannot end ("the capital of", or a last word said unfinished)."""


@dataclass(frozen=True)
class SpeechResumed:
    """The person spoke again after a short pause: the utterance goes on, so a tentative answer is moot."""

    t_ns: int


@dataclass(frozen=True)
class SpeechDropped:
    """The listener let a run of speech go as too short for an utterance (a cough, a clap): no transcript follows."""

    t_ns: int


# ---- the answer's path: thinker -> voice -> speaker


@dataclass(frozen=True)
class GenerateRequest:
    turn: int
    messages: tuple[tuple[str, str], ...]
    """(role, content) pairs, system prompt first."""
    preface: str = ""
    """Said before the answer (that the appliance cannot remember right now), when there is something to say."""
    ask: bool = True
    """False: the preface is the whole answer, and the LLM is not asked (the person's words were not caught)."""


@dataclass(frozen=True)
class Prefill:
    """The conversation as the next prompt will begin, for the LLM to evaluate while nobody waits.

    Sent when an answer ends, so the next starts on a cached prefix even where the
    history window has just moved; and with the person's words so far while they
    speak, so at the pause only the last words are new. An answer waiting behind
    it stops it where it is.
    """

    messages: tuple[tuple[str, str], ...]
    """(role, content) pairs, system prompt first."""
    turn: int = 0
    """No turn's: a cancel of any turn leaves it be."""


@dataclass(frozen=True)
class Clause:
    """A piece of the answer ready to be spoken."""

    turn: int
    seq: int
    text: str


@dataclass(frozen=True)
class WordSpan:
    """A word and the samples [start, end) it occupies in its segment."""

    text: str
    start: int
    end: int
    estimated: bool = False
    """True when the span was spread by phoneme counts, not read from alignments."""


@dataclass(frozen=True)
class Segment:
    """Synthesized audio for one clause, with where each word sits in it."""

    turn: int
    seq: int
    text: str
    audio: np.ndarray = field(repr=False)
    """Mono int16."""
    rate_hz: int
    words: tuple[WordSpan, ...]


@dataclass(frozen=True)
class EndOfAnswer:
    """Sent after the last clause of a turn; lets the speaker tell a complete answer."""

    turn: int


@dataclass(frozen=True)
class Cancel:
    """Control: stop playing `turn` now and drop its queued audio."""

    turn: int


@dataclass(frozen=True)
class Earcon:
    """To the speaker, while no answer plays: the short tone that says the appliance is listening."""


# ---- reports into the conductor


@dataclass(frozen=True)
class FirstToken:
    turn: int
    t_ns: int


@dataclass(frozen=True)
class TextCheckpoint:
    """The answer so far, at a clause boundary."""

    turn: int
    text: str


@dataclass(frozen=True)
class GenerationEnded:
    turn: int
    text: str
    outcome: str
    """done | cancelled | timeout (cut at a sentence's end after max_seconds of generating)"""
    t_ns: int
    busy_ms: float | None = None
    """How long the LLM itself worked on the answer (time blocked on the voice not counted)."""
    backend: dict | None = None
    """Which LLM answered and why it fell back, when the LLM says (`last_answer` of a failover LLM)."""


@dataclass(frozen=True)
class FirstAudio:
    turn: int
    t_ns: int
    """When the first sample became audible."""


@dataclass(frozen=True)
class FirstWordHeard:
    """The answer's first word reached the person: speech that began before this goes on with their turn."""

    turn: int
    t_ns: int
    """When the word's last sample played."""


@dataclass(frozen=True)
class Heard:
    """Progress from the speaker: the words that have reached the person so far."""

    turn: int
    words: tuple[str, ...]


@dataclass(frozen=True)
class PlaybackEnded:
    turn: int
    words: tuple[str, ...]
    """Every word whose last sample was played."""
    completed: bool
    """True when every segment up to EndOfAnswer played without a cancel."""
    silence_ns: int
    """When the speaker went quiet."""
    underruns: int = 0
    """Times the device ran dry mid-answer (the next audio was not ready in time: a gap the person heard)."""


@dataclass(frozen=True)
class Paused:
    """The speaker went quiet for a pause, rewound to what had been heard, and waits."""

    turn: int
    words: tuple[str, ...]
    """Every word whose last sample was played before the pause."""
    silence_ns: int


@dataclass(frozen=True)
class StageFailed:
    stage: str
    turn: int | None
    error: str


@dataclass(frozen=True)
class InterruptRequested:
    """Control: `interrupt()` has cancelled `turn`; the conductor does the bookkeeping."""

    turn: int
    kind: Kind
    reason: Reason
    t_ns: int
    onset_ns: int | None = None


@dataclass(frozen=True)
class PauseRequested:
    """Control: `pause()` has silenced `turn` until words commit the interrupt or their absence resumes it."""

    turn: int
    t_ns: int
    onset_ns: int | None = None


@dataclass(frozen=True)
class Event:
    """What observers (LED, metrics, logs) receive."""

    type: str
    """turn_started | first_token | first_audio | speech_paused | false_interruption | speech_interrupted |
    turn_finished | state | user_turn | partial"""
    t_ns: int
    data: dict = field(default_factory=dict)
