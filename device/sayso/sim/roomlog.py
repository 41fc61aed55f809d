"""What happened in the simulated room, on its clock: the ground truth the report measures the pipeline by.

The room and the runner fill it as sound is injected, the button pressed and
the speaker aborted; the report reads it, with no need of the running room.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Injection:
    """Something played into the mic, with where it sits on the room's clock."""

    kind: str
    """say | wav | noise"""
    label: str
    start_sample: int
    onset_sample: int
    """The first sample of sound (speech), not of the leading silence."""
    end_sample: int
    sound_end_sample: int = 0
    """Just after the last sample of sound, not of the trailing silence: where the person stopped."""

    @property
    def is_speech(self) -> bool:
        return self.kind in ("say", "wav")


@dataclass
class RoomLog:
    """What happened in the room, on its clock; filled by the room's thread and the runner."""

    injections: list[Injection] = field(default_factory=list)
    presses: list[tuple[int, int]] = field(default_factory=list)
    """(press_sample, release_sample)"""
    aborts: list[tuple[int, int]] = field(default_factory=list)
    """(abort_sample, last_played_sample): the speaker went quiet."""
    late_ticks: int = 0
    """Ticks the room's thread ran more than 50 ms behind real time (a machine too loaded for the pipeline)."""
    speaker_s: float = 0.0
    """Seconds the speaker sounded (10 ms ticks with any sound): what a rate per minute of answers is over."""
    sounding: list[list[int]] = field(default_factory=list)
    """[first, end) room samples of each stretch the speaker sounded without a silent tick."""

    def sounded(self, first: int, end: int) -> None:
        """The speaker sounded over room samples [first, end) (one tick)."""
        if self.sounding and self.sounding[-1][1] == first:
            self.sounding[-1][1] = end
        else:
            self.sounding.append([first, end])

    def sounding_at(self, sample: int) -> bool:
        """Whether the speaker was sounding at room sample `sample`."""
        return any(first <= sample < end for first, end in self.sounding)
