"""One assistant answer as the conductor follows it: ids, cancel scope, text, heard words and timestamps.

The conductor alone changes it, on its own thread, as the stages report; the
turn's metrics and timeline are read from it once the answer is closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sayso.pipeline.cancel import Scope
from sayso.pipeline.pause import Pause


@dataclass
class Answer:
    """The conductor's mutable record of one assistant answer, from the request to its final status."""

    id: int
    """The pipeline's id for the answer (channels, cancel scopes)."""
    row: int | None
    """Its row in the turn log; None while it is preemptive (nothing is logged for it yet)."""
    reply_to: int | None
    scope: Scope
    eos_ns: int
    user_text: str = ""
    """What the person said, as the LLM was given it."""
    speech_end_ns: int | None = None
    endpoint: str = ""
    turn_probability: float | None = None
    preemptive: bool = False
    """Started at a short pause, before the end of the turn was certain."""
    text: str = ""
    heard: tuple[str, ...] = ()
    heard_from_ns: int | None = None
    """When its first word reached the person (the speaker's `FirstWordHeard`)."""
    gen_ended: bool = False
    gen_outcome: str = ""
    llm_busy_ms: float | None = None
    backend: dict | None = None
    play_ended: bool = False
    playback_completed: bool = False
    underruns: int = 0
    started_ns: int | None = None
    """When the LLM was asked (at the pause, for a preemptive answer)."""
    final_ns: int | None = None
    """When the final transcript arrived."""
    first_token_ns: int | None = None
    first_chunk_ns: int | None = None
    first_audio_ns: int | None = None
    llm_stop_ns: int | None = None
    silence_ns: int | None = None
    ack_deadline_ns: int | None = None
    pause: Pause | None = None
    committed: Pause | None = None
    """The pause that became this turn's interrupt."""
    false_interruptions: list[float] = field(default_factory=list)
    """How long each pause that resumed kept the answer quiet, in ms."""

    @property
    def complete(self) -> bool:
        """Every sample played and generation done: an interrupt that raced the natural end and lost
        leaves the turn complete."""
        return self.playback_completed and self.gen_outcome == "done"
