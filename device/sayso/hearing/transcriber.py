"""The transcriber: utterance audio into the recogniser as it arrives, partials and the final out.

The listener sends it each utterance, framed by the messages below, while the
person is still speaking; it posts partial, tentative and final transcripts to
the conductor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sayso.audio import FRAME_SAMPLES, RATE_HZ
from sayso.hearing.capture import Frame
from sayso.hearing.stt import Recognizer, Transcript
from sayso.hearing.vad import SileroVAD
from sayso.pipeline.channel import Channel
from sayso.pipeline.messages import PartialTranscript, TentativeTranscript, Utterance
from sayso.pipeline.stage import Stage


@dataclass(frozen=True)
class StartOfSpeech:
    """To the transcriber: an utterance begins; its pre-roll follows, then the frames from `onset_sample`."""

    onset_sample: int


@dataclass(frozen=True)
class WakeMark:
    """To the transcriber: the wake phrase ended at `sample`; the words before it are not the request."""

    sample: int


@dataclass(frozen=True)
class Checkpoint:
    """To the transcriber: a short pause that may end the utterance; post the words so far as tentative."""

    pause: int
    """The endpointer's count of pauses: which pause the words belong to."""
    t_ns: int


@dataclass(frozen=True)
class EndOfSpeech:
    """To the transcriber: the utterance is over, give the final."""

    eos_ns: int
    eos_sample: int
    speech_end_ns: int | None = None
    endpoint: str = "silence"
    turn_probability: float | None = None


WAKE_EARLY_S = 0.05
"""A word that ends this little before the wake detection is kept as the request's: the model decides 0-200 ms
after the phrase ends, so a request said without a pause may end its first word just before the detection.
Keeping a tail of the phrase ("but what is...") costs the answer less than losing the request's first word."""


WAKE_TAIL_S = 0.25
"""When every word kept ends this soon after the detection, they are the phrase's own end, not a request."""


class Transcriber(Stage):
    """Feeds utterance audio to the recogniser as it arrives; posts partials and the final.

    At a short pause (Checkpoint) it takes the recogniser's final for the words
    so far and posts it as tentative: if the utterance ends there, that is the
    final, word for word. If the person goes on, the utterance's audio is fed
    again from its start, so the recogniser hears the sentence whole rather
    than two fragments.

    With a VAD of its own it also measures each utterance's longest run of sure
    speech (p >= 0.9) from its onset, heard afresh: the listener's VAD carries
    the appliance's voice in its memory and calls a cough's tail speech, and
    the pre-roll over an answer holds what the canceller left of the
    appliance's voice. A fresh stream from the onset gives a cough 0 ms and a
    short word 320 ms and more (pause.py uses it).
    """

    name = "transcriber"
    SURE = 0.9
    KEEP_S = 30
    """Most audio of one utterance kept to feed again after a pause."""

    def __init__(self, recognizer: Recognizer, audio: Channel, post: Callable[[object], None],
                 vad: SileroVAD | None = None, at_pause: Callable[[int, str], None] = lambda pause, text: None):
        super().__init__()
        self.recognizer, self.audio, self.post, self.vad, self.at_pause = recognizer, audio, post, vad, at_pause
        self._run = self._longest = self._onset = 0
        self._heard: deque[bytes] = deque(maxlen=self.KEEP_S * RATE_HZ // FRAME_SAMPLES)
        """The utterance's audio so far."""
        self._at_pause: Transcript | None = None
        """The final taken at the last pause, while nothing has been heard after it."""
        self._first: int | None = None
        """The audio-clock sample of the utterance's first frame fed (word times count from it)."""
        self._wake: int | None = None
        """Where the newest wake phrase ended."""

    def step(self) -> None:
        item = self.audio.get(timeout=0.1)
        if isinstance(item, StartOfSpeech):
            self._onset, self._run, self._longest = item.onset_sample, 0, 0
            self._heard.clear()
            self._at_pause, self._first = None, None
            if self.vad is not None:
                self.vad.reset()
        elif isinstance(item, WakeMark):
            self._wake = item.sample
        elif isinstance(item, Frame):
            if self._first is None:
                self._first = item.index
            if self.vad is not None and item.index >= self._onset:
                self._run = self._run + 1 if self.vad.probability(item.samples) >= self.SURE else 0
                self._longest = max(self._longest, self._run)
            pcm = item.samples.tobytes()
            if self._at_pause is not None:  # the person went on: hear the sentence again from its start
                self._at_pause = None
                for earlier in self._heard:
                    self.recognizer.accept(earlier)
            self._heard.append(pcm)
            partial = self.recognizer.accept(pcm)
            if partial is not None and partial.text:
                self.post(PartialTranscript(partial.text))
        elif isinstance(item, Checkpoint):
            self._at_pause = self._request(self.recognizer.end())
            self.at_pause(item.pause, self._at_pause.text)
            self.post(TentativeTranscript(self._at_pause.text, item.t_ns))
        elif isinstance(item, EndOfSpeech):
            final, self._at_pause = self._at_pause or self._request(self.recognizer.end()), None
            self._heard.clear()
            sustained = None if self.vad is None else self._longest * FRAME_SAMPLES * 1000 // RATE_HZ
            # an empty final is posted too: the conductor goes back from listening to idle
            self.post(Utterance(final.text, item.eos_ns, item.eos_sample, final.confidence or None, sustained,
                                item.speech_end_ns, item.endpoint, item.turn_probability))

    def _request(self, final: Transcript) -> Transcript:
        """The final without the wake phrase, when one ended in this utterance."""
        if self._wake is None or self._first is None or self._wake < self._first:
            return final
        woke_s = (self._wake - self._first) / RATE_HZ
        request = final.after(woke_s - WAKE_EARLY_S)
        if request.ends and request.ends[-1] <= woke_s + WAKE_TAIL_S:
            return Transcript("", final=True)  # the wake word alone: what is left is the end of the phrase
        return request
