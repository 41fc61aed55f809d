"""Where the mic's frames sit on the audio clock, so the listener can read the echo reference under each one."""

from __future__ import annotations

from collections import deque

from sayso.audio import RATE_HZ
from sayso.hearing.capture import Frame
from sayso.pipeline.echo_reference import sample_at


class MicClock:
    """Where mic frames sit on the audio clock, without the capture thread's scheduling jitter.

    A frame's sample index is exact; its stamp is late by however long the
    capture thread took to read it. The least-late offset between the two over
    the last few seconds maps one to the other. The offset in use moves only
    when that is more than `HOLD` off (a stream's first frames, a reopened mic),
    never by the sample or two the stamps wobble: Speex needs the mic and the
    reference to stay put to the sample, and a one-sample step mid-answer
    loses its cancelling for seconds.
    """

    HOLD = RATE_HZ // 1000
    """1 ms: a smaller difference is the stamps' own rounding and lateness, not the mic moving."""

    def __init__(self, keep_frames: int = 160):
        self._offsets: deque[int] = deque(maxlen=keep_frames)
        self._offset: int | None = None

    def start_of(self, frame: Frame) -> int:
        """The audio-clock sample of the frame's first sample."""
        self._offsets.append(sample_at(frame.t_ns) - frame.index)
        least = min(self._offsets)
        if self._offset is None or abs(least - self._offset) > self.HOLD:
            self._offset = least
        return frame.index + self._offset
