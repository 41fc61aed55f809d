"""Barge-in's pause: which words over a paused answer commit the interrupt, and when it plays on.

Only a final transcript commits, and only with words the recogniser stands by
and sustained speech: partials flip as the recogniser goes, and a cough reads
as words. The figures behind the constants are in docs/echo-cancelling.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from sayso.config import BargeInSettings
from sayso.pipeline.messages import Utterance

FILLERS = frozenset({"ah", "oh", "uh", "um", "er", "eh", "hm", "hmm", "mm", "mhm", "huh"})
"""Sounds a recogniser writes for a cough or a hesitation: not words."""

NOISE_WORDS = frozenset({"a", "an", "the", "i", "of", "and", "but", "or", "to", "by"})
"""One-sound words a recogniser fills noise with: they count only beside a real word ("stop it")."""

SUSTAINED_MS = 160
"""A final commits only with a run of the person's sure speech (Silero, p >= 0.9) this long from its onset:
a cough has none, nor a television's words after it. From the onset, because over an answer the pre-roll
holds the echo's residue."""

COMMIT_CONFIDENCE = 0.3
"""A word commits at this posterior or above: a cough's words score below it; one sure word suffices."""

RESUME_QUIET_S = 0.5
"""After a sound too short to be speech, the quiet before the answer resumes (people pause after "Stop.")."""


def committing_words(u: Utterance) -> int:
    """How many of a final's words may commit a paused interrupt: sure, not fillers, not noise alone."""
    words = [w.lower().strip(".,!?") for w in u.text.split()]
    if u.confidence is not None and len(u.confidence) == len(words):
        words = [w for w, p in zip(words, u.confidence, strict=True) if p >= COMMIT_CONFIDENCE]
    sure = [w for w in words if w not in FILLERS]
    return len(sure) if any(w not in NOISE_WORDS for w in sure) else 0


@dataclass
class Pause:
    """A paused answer waiting for the final of what was said over it."""

    requested_ns: int
    onset_ns: int | None
    deadline_ns: int
    silence_ns: int | None = None
    resume_at_ns: int | None = None
    """Set when the sound turned out too short to be speech: resume then, unless more sound comes."""

    def sound_dropped(self, t_ns: int) -> None:
        """The listener let the sound go as too short to be speech: resume once the room has been quiet a moment."""
        self.resume_at_ns = t_ns + int(RESUME_QUIET_S * 1e9)

    def more_sound(self, deadline_ns: int) -> None:
        """Sound again while paused: the window starts afresh and a pending resume is off."""
        self.deadline_ns, self.resume_at_ns = deadline_ns, None

    def resume_reason(self, now_ns: int, speech_in_progress: bool, window_s: float) -> str | None:
        """Why the answer should play on now, or None to wait (for a final still being said, even past the window)."""
        if self.resume_at_ns is not None and now_ns > self.resume_at_ns:
            return "the sound was too short to be speech"
        if now_ns > self.deadline_ns and not speech_in_progress:
            return f"no words within {window_s:g} s"
        return None


def commits(u: Utterance, settings: BargeInSettings) -> bool:
    """Whether this final, heard over a paused answer, cuts the answer for good."""
    sustained = u.sustained_ms is None or u.sustained_ms >= SUSTAINED_MS
    return sustained and committing_words(u) >= settings.min_words


def unrecognised_speech(u: Utterance) -> bool:
    """Whether this final is a person talking whose words the recogniser missed: sustained speech
    (a cough has none), but no word it stands by. Quiet or distant speech over the answer's echo
    reads so; the answer waits for more of it rather than resuming over them."""
    return u.sustained_ms is not None and u.sustained_ms >= SUSTAINED_MS and committing_words(u) == 0


def continues(u: Utterance) -> bool:
    """Whether this final, over an answer not yet heard, goes on with the person's turn.

    A lower bar than `commits` (any word, however unsure): nothing the person heard is cut.
    """
    sustained = u.sustained_ms is None or u.sustained_ms >= SUSTAINED_MS
    return sustained and has_words(u.text)


def has_words(text: str) -> bool:
    """Whether a transcript holds a word, not only the sounds a recogniser writes for a cough."""
    return any(w.lower().strip(".,!?") not in FILLERS for w in text.split())
