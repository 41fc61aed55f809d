"""Which speech is a request when a wake word is on: the gate the conductor asks before a turn begins.

Speech is a request when the wake word was heard in it ("Okay Nabu, what time
is it?") or when it began while a window was open: after the wake word alone or
a button press while idle (`listen_s`), or after an answer (`follow_up_s`; one
follow-up per call, so chatter after an answer does not keep it answering).
Speech over an answer is never gated: barge-in needs no wake word.
"""
from __future__ import annotations

from dataclasses import dataclass

from sayso.config import WakeSettings

HEARD_BEFORE_ONSET_S = 1.5
"""The VAD may start an utterance a little after the wake phrase began: a wake word this long before the
onset of the speech still belongs to it."""


@dataclass(frozen=True)
class Window:
    """Speech starting before `until_ns` is a request, for this reason (the user turn's `wake` metric)."""

    until_ns: int
    why: str


class WakeGate:
    """The wake word's and the windows' times, on the conductor's clock; used from its thread only."""

    def __init__(self, settings: WakeSettings):
        self.settings = settings
        self.window: Window | None = None
        self._woke_ns: int | None = None
        self._last: str | None = None
        """Why the newest request was taken."""

    def woke(self, t_ns: int) -> None:
        """The wake word: this speech is a request, and a window opens for one that follows it."""
        self._woke_ns = t_ns
        self.window = Window(t_ns + int(self.settings.listen_s * 1e9), "word")

    def button(self, t_ns: int) -> None:
        """Push-to-talk: the next speech is a request."""
        self.window = Window(t_ns + int(self.settings.listen_s * 1e9), "button")

    def answered(self, t_ns: int) -> None:
        """An answer ended or was cut: the person may go on without the wake word for a while, unless
        it answered a follow-up."""
        if self.settings.follow_up_s > 0 and self._last != "follow_up":
            self.window = Window(t_ns + int(self.settings.follow_up_s * 1e9), "follow_up")

    def woke_in(self, onset_ns: int | None) -> bool:
        """Whether the wake word was heard in the speech that began at `onset_ns`."""
        return (self._woke_ns is not None and onset_ns is not None
                and self._woke_ns >= onset_ns - int(HEARD_BEFORE_ONSET_S * 1e9))

    def admits(self, onset_ns: int | None) -> str | None:
        """Why the speech that began at `onset_ns` is a request (word, button, follow_up), or None if it is not."""
        if self.woke_in(onset_ns):
            return "word"
        if self.window is not None and onset_ns is not None and onset_ns <= self.window.until_ns:
            return self.window.why
        return None

    def open_at(self, t_ns: int) -> bool:
        """Whether a window is open at `t_ns` (the LED shows listening); may be read from any thread."""
        window = self.window
        return window is not None and t_ns <= window.until_ns

    def used(self, why: str) -> None:
        """A request was taken (for `why`): the window it came through is spent, and the wake word with it."""
        self.window, self._woke_ns, self._last = None, None, why
