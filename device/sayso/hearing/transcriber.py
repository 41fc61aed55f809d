"""The transcriber: utterance audio into the recogniser as it arrives, partials and the final out.

The listener sends it each utterance, framed by the messages below, while the
person is still speaking; it posts partial, tentative and final transcripts to
the conductor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sayso.audio import FRAME_SAMPLES, RATE_HZ
from sayso.hearing.capture import Frame
from sayso.hearing.stt import Recognizer, Transcript
from sayso.hearing.turn import trails_off
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
    foreground_ms: int | None = None
    """The utterance's longest run of sure speech that the echo guard and foreground gate passed."""


NOTHING = Transcript("", final=True)

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
    final, word for word. If the person goes on while the utterance is at most
    `refeed_s` long, its audio is fed again from the start, so the recogniser
    hears the sentence whole rather than two fragments. After that the words so
    far are kept, and the recogniser starts afresh from the part before the
    pause (when that part is at most `refeed_s` long): it hears it again as
    context for what follows, and of its final only the words after the pause
    are new. Feeding again costs the recogniser time (about a sixth of the
    audio's length on a Pi) right when the person goes on, so it is bounded:
    the work per pause stays the same however many pauses the utterance has.

    With a VAD of its own it also measures each utterance's longest run of sure
    speech (p >= 0.9) from its onset, heard afresh: the listener's VAD carries
    the appliance's voice in its memory and calls a cough's tail speech, and
    the pre-roll over an answer holds what the canceller left of the
    appliance's voice. A fresh stream from the onset gives a cough 0 ms and a
    short word 320 ms and more (pause.py uses it). Only frames the listener
    took for the person's count: a television's words after a cough are sure
    speech too, and they are not the person's.
    """

    name = "transcriber"
    SURE = 0.9
    REFEED_S = 3.0
    """Most audio fed again when the person goes on after a pause: a short question heard whole."""

    def __init__(self, recognizer: Recognizer, audio: Channel, post: Callable[[object], None],
                 vad: SileroVAD | None = None,
                 at_pause: Callable[[int, str, bool], None] = lambda pause, text, trailing: None,
                 refeed_s: float = REFEED_S):
        super().__init__()
        self.recognizer, self.audio, self.post, self.vad, self.at_pause = recognizer, audio, post, vad, at_pause
        self._run = self._longest = self._onset = 0
        self._refeed_frames = int(refeed_s * RATE_HZ) // FRAME_SAMPLES
        self._heard: list[bytes] | None = []
        """The audio of the recogniser's utterance, while it may be fed again."""
        self._part = 0
        """Where in `_heard` the part since the last pause begins."""
        self._since = 0
        """Where the recogniser's utterance began, in samples from `_first`."""
        self._context_s = 0.0
        """How much of the recogniser's utterance was heard again only as context: its words are in `_joined`."""
        self._context_words = 0
        """How many words the recogniser's partial had when the context was fed: partials leave them out."""
        self._joined = NOTHING
        """The words kept at pauses before the recogniser's utterance's own; ends count from `_first`."""
        self._at_pause: Transcript | None = None
        """The final taken at the last pause, while nothing has been heard after it."""
        self._segment: Transcript = NOTHING
        """The recogniser's own final at the last pause."""
        self._first: int | None = None
        """The audio-clock sample of the utterance's first frame fed (word times count from it)."""
        self._wake: int | None = None
        """Where the newest wake phrase ended."""

    def step(self) -> None:
        item = self.audio.get(timeout=0.1)
        if isinstance(item, StartOfSpeech):
            self._onset, self._run, self._longest = item.onset_sample, 0, 0
            self._restart(0, NOTHING)
            self._first = None
            if self.vad is not None:
                self.vad.reset()
        elif isinstance(item, WakeMark):
            self._wake = item.sample
        elif isinstance(item, Frame):
            if self._first is None:
                self._first = item.index
            if self.vad is not None and item.index >= self._onset:
                sure = self.vad.probability(item.samples) >= self.SURE
                self._run = self._run + 1 if sure and item.near else 0
                self._longest = max(self._longest, self._run)
            pcm = item.samples.tobytes()
            if self._at_pause is not None:  # the person went on
                self._go_on(item.index - self._first)
            if self._heard is not None:
                self._heard.append(pcm)
                if len(self._heard) - self._part > self._refeed_frames:
                    self._heard = None  # a part too long to hear again: the next one starts afresh
            partial = self.recognizer.accept(pcm)
            if partial is not None and partial.text:
                new = " ".join(partial.text.split()[self._context_words:])
                self.post(PartialTranscript(" ".join(filter(None, (self._joined.text, new)))))
        elif isinstance(item, Checkpoint):
            self._segment = self.recognizer.end()
            self._at_pause = self._request(self._so_far(self._segment))
            text = self._at_pause.text
            trailing = self._at_pause.unfinished or trails_off(text)
            self.at_pause(item.pause, text, trailing)
            self.post(TentativeTranscript(text, item.t_ns, trailing))
        elif isinstance(item, EndOfSpeech):
            final = self._at_pause or self._request(self._so_far(self.recognizer.end()))
            self._restart(0, NOTHING)
            sustained = None if self.vad is None else self._longest * FRAME_SAMPLES * 1000 // RATE_HZ
            # an empty final is posted too: the conductor goes back from listening to idle
            self.post(Utterance(final.text, item.eos_ns, item.eos_sample, final.confidence or None, sustained,
                                item.speech_end_ns, item.endpoint, item.turn_probability,
                                foreground_ms=item.foreground_ms))

    def _go_on(self, at: int) -> None:
        """The person went on after a pause, from sample `at` (counted from `_first`)."""
        self._at_pause = None
        heard, part = self._heard, self._part
        if heard is not None and not self._context_s and len(heard) <= self._refeed_frames:
            self._part = len(heard)
            self._feed(heard)  # a short sentence: heard again whole
            return
        joined = self._so_far(self._segment)
        timed = len(self._segment.ends) == len(self._segment.words)
        context = heard[part:] if heard is not None and timed else []
        self._restart(at - len(context) * FRAME_SAMPLES, joined, context)
        self._context_words = len(self._feed(context).split())

    def _feed(self, audio: list[bytes]) -> str:
        """Feed `audio` again; the recogniser's partial after it."""
        text = ""
        for pcm in audio:
            partial = self.recognizer.accept(pcm)
            text = text if partial is None else partial.text
        return text

    def _restart(self, since: int, joined: Transcript, context: list[bytes] | None = None) -> None:
        """The recogniser's next utterance begins at `since` with `context`, words already in `joined`."""
        context = context or []
        self._heard, self._part, self._since, self._joined = list(context), len(context), since, joined
        self._context_s, self._context_words = len(context) * FRAME_SAMPLES / RATE_HZ, 0
        self._at_pause, self._segment = None, NOTHING

    def _so_far(self, segment: Transcript) -> Transcript:
        """The utterance's words: those kept at earlier pauses, then the recogniser's after its context."""
        if not self._since and not self._context_s:
            return segment
        return self._joined.then(segment.after(self._context_s), self._since / RATE_HZ)

    def _request(self, final: Transcript) -> Transcript:
        """The final without the wake phrase, when one ended in this utterance."""
        if self._wake is None or self._first is None or self._wake < self._first:
            return final
        woke_s = (self._wake - self._first) / RATE_HZ
        request = final.after(woke_s - WAKE_EARLY_S)
        if request.ends and request.ends[-1] <= woke_s + WAKE_TAIL_S:
            return Transcript("", final=True)  # the wake word alone: what is left is the end of the phrase
        return request
