"""The transcriber at pauses: real pocketsphinx on Piper's speech, the words joined, the work per pause bounded."""

from __future__ import annotations

import numpy as np
import pytest

from sayso.answering.tts import PiperTTS
from sayso.audio import FRAME_SAMPLES, RATE_HZ, to_mic_rate
from sayso.hearing.capture import Frame
from sayso.hearing.stt import PocketsphinxRecognizer, Transcript
from sayso.hearing.transcriber import Checkpoint, EndOfSpeech, StartOfSpeech, Transcriber, WakeMark
from sayso.pipeline.channel import Channel
from sayso.pipeline.messages import TentativeTranscript, Utterance
from test_stt import word_errors

CHECKPOINT_S = 0.2
"""The listener's pause: this much silence after the words before it asks for the words so far."""


class SpyRecognizer:
    """A spy around the real recogniser: counts the samples it was fed and its utterances."""

    def __init__(self, recognizer):
        self.recognizer, self.name = recognizer, recognizer.name
        self.fed = self.ends = 0

    def accept(self, pcm: bytes) -> Transcript | None:
        self.fed += len(pcm) // 2
        return self.recognizer.accept(pcm)

    def end(self) -> Transcript:
        self.ends += 1
        return self.recognizer.end()


@pytest.fixture(scope="module")
def person(store):
    voice = PiperTTS(store.path("en_US-joe-medium", role="voice"), length_scale=1.15, repeatable=True)

    def say(part: str) -> np.ndarray:
        audio = to_mic_rate(voice.audio(part), voice.rate_hz)
        loud = np.flatnonzero(np.abs(audio) > 0.02 * np.abs(audio).max())
        return audio[loud[0]:loud[-1] + 1]

    return say


@pytest.mark.slow
class TestPauses:
    def utterance(self, person, parts: tuple[str, ...], gap_s: float, refeed_s: float, wake_before: int | None = None,
                  end_at_last_pause: bool = True):
        """Feed `parts` with `gap_s` pauses (a Checkpoint in each) through a Transcriber; what it posted, the spy,
        the audio's length and the sample each part starts at. With `wake_before`, a WakeMark where that part starts."""
        spy = SpyRecognizer(PocketsphinxRecognizer())
        audio, posted = Channel("audio", 1 << 20), []
        transcriber = Transcriber(spy, audio, posted.append, refeed_s=refeed_s)
        lead, gap = np.zeros(RATE_HZ // 3, np.int16), np.zeros(int(gap_s * RATE_HZ), np.int16)
        pieces, starts, pauses = [lead], [], []
        for part in parts:
            if len(pieces) > 1:
                pieces.append(gap)
            starts.append(sum(map(len, pieces)))
            pieces.append(person(part))
            pauses.append(sum(map(len, pieces)) + int(CHECKPOINT_S * RATE_HZ))
        mic = np.concatenate([*pieces, gap])
        audio.put(StartOfSpeech(len(lead)))
        for i in range(0, len(mic) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            if wake_before is not None and i <= starts[wake_before] < i + FRAME_SAMPLES:
                audio.put(WakeMark(starts[wake_before]))
            audio.put(Frame(mic[i:i + FRAME_SAMPLES], i, 0))
            if pauses and i <= pauses[0] < i + FRAME_SAMPLES:
                audio.put(Checkpoint(len(parts) - len(pauses) + 1, i))
                pauses.pop(0)
                if not pauses and end_at_last_pause:
                    break
        audio.put(EndOfSpeech(0, len(mic)))
        while len(audio):
            transcriber.step()
        return posted, spy, len(mic), starts

    def test_a_short_question_is_heard_again_whole_after_its_pause(self, person):
        parts = ("What is the capital of", "Norway?")
        posted, spy, length, _ = self.utterance(person, parts, 0.7, refeed_s=3.0)
        (final,) = [m for m in posted if isinstance(m, Utterance)]
        assert word_errors("what is the capital of norway", final.text) <= 1, final.text
        # the first part was fed twice: once as it was said, once more when the person went on
        assert spy.fed > length + RATE_HZ, "the sentence was not heard again from its start"

    def test_many_pauses_cost_each_pause_the_same_and_keep_every_word(self, person):
        parts = ("Ever tried.", "Ever failed.", "No matter.", "Try again.", "Fail again.", "Fail better.")
        refeed_s = Transcriber.REFEED_S
        posted, spy, length, _ = self.utterance(person, parts, 0.5, refeed_s=refeed_s)
        whole, whole_spy, _, _ = self.utterance(person, parts, 0.5, refeed_s=60.0)  # all of it again at each pause
        (final,) = [m for m in posted if isinstance(m, Utterance)]
        (reference,) = [m for m in whole if isinstance(m, Utterance)]
        said = "ever tried ever failed no matter try again fail again fail better"
        errors, whole_errors = word_errors(said, final.text), word_errors(said, reference.text)
        print(f"word errors: {errors} ({final.text!r}), all heard again: {whole_errors} ({reference.text!r}); "
              f"fed {spy.fed / RATE_HZ:.1f} s against {whole_spy.fed / RATE_HZ:.1f} s, of {length / RATE_HZ:.1f} s")
        assert errors <= min(whole_errors + 1, 4), (final.text, reference.text)
        # each pause the person went on from fed at most `refeed_s` again
        assert spy.fed <= length + (len(parts) - 1) * refeed_s * RATE_HZ < whole_spy.fed, spy.fed / RATE_HZ
        tentative = [m for m in posted if isinstance(m, TentativeTranscript)]
        assert len(tentative) == len(parts) and tentative[-1].text == final.text, \
            "the words at the last pause are not the final, word for word"

    def test_the_final_at_a_pause_the_person_went_on_from_is_the_whole_utterance(self, person):
        parts = ("Please remind me", "to buy milk", "and some bread.")
        posted, _, _, _ = self.utterance(person, parts, 0.6, refeed_s=0.0, end_at_last_pause=False)
        (final,) = [m for m in posted if isinstance(m, Utterance)]
        assert word_errors("please remind me to buy milk and some bread", final.text) <= 2, final.text
        assert len(final.confidence) == len(final.text.split())

    @pytest.mark.parametrize("refeed_s", [0.0, 2.0])
    def test_the_wake_phrase_is_left_out_with_word_times_from_the_utterance_start(self, person, refeed_s):
        """The mark falls in the third part: words of the parts before it go, every word after it stays."""
        parts = ("Ever tried.", "Ever failed.", "What time is it?")
        posted, _, _, _ = self.utterance(person, parts, 0.6, refeed_s=refeed_s, wake_before=2)
        (final,) = [m for m in posted if isinstance(m, Utterance)]
        assert "ever" not in final.text.split() and word_errors("what time is it", final.text) <= 1, final.text


def test_a_joined_transcript_counts_word_ends_from_the_first_part():
    first = Transcript("ever tried", True, ("ever", "tried"), (0.9, 0.8), (0.4, 0.9))
    later = Transcript("no matter", True, ("no", "matter"), (0.7, 0.6), (0.3, 0.7))
    joined = first.then(later, 1.5)
    assert joined == Transcript("ever tried no matter", True, ("ever", "tried", "no", "matter"),
                                (0.9, 0.8, 0.7, 0.6), (0.4, 0.9, 1.8, 2.2))
    assert joined.after(1.0).text == "no matter"
    assert Transcript("", True).then(later, 2.0).ends == (2.3, 2.7)
    assert first.then(Transcript("no", True, ("no",)), 1.0).ends == (), "a part without word times has none"
