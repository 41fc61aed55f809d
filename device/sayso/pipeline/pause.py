"""Barge-in's pause: which words over a paused answer commit the interrupt, and when it plays on.

A paused answer is cut for good only by a final transcript that holds words
the recogniser stands by and sustained speech. Partials never commit: their
words flip as the recogniser goes, and a cough reads as words in them. A
final's word posteriors drop most of what a recogniser writes for a cough,
but not all, and a cough's decaying burst holds no sustained speech. The
pause holds while the person is still speaking, however long. The
measurements behind the constants are in docs/echo-cancelling.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from sayso.config import BargeInSettings
from sayso.pipeline.messages import Utterance

FILLERS = frozenset({"ah", "oh", "uh", "um", "er", "eh", "hm", "hmm", "mm", "mhm", "huh"})
"""Sounds a recogniser writes for a cough or a hesitation: not words."""

NOISE_WORDS = frozenset({"a", "an", "the", "i", "of", "and", "but", "or", "to", "by"})
"""One-sound words a language model fills noise with: they count only beside a word that carries
meaning, so "stop it" commits and a lone "the" does not."""

SUSTAINED_MS = 160
"""A final commits only if a VAD that heard nothing before its onset found a run of sure speech
(Silero, p >= 0.9) this long in it: a cough has none, a one-word command about twice this. Counted
from the onset, because over an answer the pre-roll holds the canceller's residue of the appliance's
own voice, which is speech."""

COMMIT_CONFIDENCE = 0.3
"""A final's word commits only at this posterior or above: a recogniser's words for a cough score
below it, and a command heard right has at least one word above it (so one sure word is asked for,
not all)."""

RESUME_QUIET_S = 0.5
"""After a sound too short to be speech, how long the room must stay quiet before the answer resumes.
People pause after "Stop." for about this long before going on; a cough rarely comes alone."""


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
        """Why the answer should play on now, or None to keep waiting.

        While the person is mid-utterance it waits for their final, past the
        window: resuming would talk over them.
        """
        if self.resume_at_ns is not None and now_ns > self.resume_at_ns:
            return "the sound was too short to be speech"
        if now_ns > self.deadline_ns and not speech_in_progress:
            return f"no words within {window_s:g} s"
        return None


def commits(u: Utterance, settings: BargeInSettings) -> bool:
    """Whether this final, heard over a paused answer, cuts the answer for good."""
    sustained = u.sustained_ms is None or u.sustained_ms >= SUSTAINED_MS
    return sustained and committing_words(u) >= settings.min_words


def continues(u: Utterance) -> bool:
    """Whether this final, heard over an answer of which nothing was heard yet, goes on with the person's turn.

    The bar is lower than `commits`: nothing is cut that the person heard, and
    a recogniser unsure of a lone word ("Hamlet?" at 0.28) is still the person
    finishing their sentence. A cough has no sustained speech and no words.
    """
    words = [w.lower().strip(".,!?") for w in u.text.split()]
    sustained = u.sustained_ms is None or u.sustained_ms >= SUSTAINED_MS
    return sustained and any(w not in FILLERS for w in words)
