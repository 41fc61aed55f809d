"""The speaking half on real parts: chunks, speakable text, Piper word spans, heard text, PortAudio out."""

import threading

import numpy as np
import pytest

from sayso.answering.audio_out import PyAudioSink
from sayso.answering.chunker import ClauseChunker
from sayso.answering.sanitize import speakable
from sayso.answering.speaker import Speaker
from sayso.answering.tts import MAX_CALL_CHARS, PiperTTS, pieces
from sayso.pipeline.cancel import Cancellation, Scopes
from sayso.pipeline.channel import Channel
from sayso.pipeline.messages import (
    EndOfAnswer,
    FirstAudio,
    FirstWordHeard,
    Heard,
    Kind,
    Paused,
    PlaybackEnded,
    Reason,
    Segment,
    WordSpan,
)
from sayso.sim.fakes import FakeSpeakerSink
from waits import wait_until


def chunks(text: str, step: int = 3) -> list[str]:
    """Feed `text` in small uneven pieces, as tokens arrive."""
    c, out = ClauseChunker(), []
    for i in range(0, len(text), step):
        out += c.feed(text[i:i + step])
    rest = c.flush()
    return out + ([rest] if rest else [])


@pytest.mark.parametrize("text, expected", [
    ("Sure, Paris is the capital. It is big.", ["Sure,", "Paris is the capital.", "It is big."]),
    ("One two three four five six seven eight. Nine.", ["One two three four five six", "seven eight.", "Nine."]),
    ("It costs 3.5 dollars, about 1,000 yen. Fine.", ["It costs 3.5 dollars,", "about 1,000 yen.", "Fine."]),
    ("Ask Dr. Smith, e.g. today. Then rest.", ["Ask Dr. Smith,", "e.g. today.", "Then rest."]),
    ("Well - maybe. Yes; no: later, okay.", ["Well -", "maybe.", "Yes; no: later, okay."]),
    ("No boundary at all", ["No boundary at all"]),
    ("Spain was founded in [the person cut in here] long ago. Yes.",
     ["Spain was founded in [the person cut in here] long", "ago.", "Yes."]),
    ("Here:\n```python\nprint(1)\n\nprint(2)\n```\nDone.", ["Here:", "```python\nprint(1)\n\nprint(2)\n```", "Done."]),
])
def test_chunker_cuts_early_first_then_at_sentences_and_never_inside_numbers(text, expected):
    assert chunks(text) == expected
    assert chunks(text, step=1) == expected


LONG = ("It began as a small market town on the river, and over the next four hundred years it grew into "
        "the busy port and the crowded city that people know today with its docks and its bridges.")


@pytest.mark.parametrize("text, first", [
    ("Ask Dr. Smith. It costs 3.5 dollars.", "Ask Dr. Smith. It costs 3.5 dollars."),
    (LONG, "It began as a small market town on the river,"),
    (LONG.replace(",", ""), "It began as a small market town on the river and over the next four hundred years it"),
    ("Sure. " + LONG, "Sure."),
])
def test_piper_speaks_a_long_sentence_in_pieces_cut_at_a_clause_else_a_word(text, first):
    out = pieces(text)
    assert out[0].startswith(first)
    assert all(len(p) <= MAX_CALL_CHARS for p in out)
    assert " ".join(out) == text


@pytest.mark.parametrize("text, expected", [
    ("**Paris** is the capital 🇫🇷 of France!", "Paris is the capital of France!"),
    ("# Steps\n- first\n- second", "Steps first second"),
    ("Run `ls` then:\n```sh\nrm -rf /\n```\nDone.", "Run ls then: Done."),
    ("See [the guide](https://x.org/a) or https://x.org/b now.", "See the guide or a link now."),
    ("It is 2 * 3, e.g. six.", "It is 2 times 3, e.g. six."),
    ("It began in 1870 [the person cut in here] and ended.", "It began in 1870 and ended."),
    ("Half a [stage direction", "Half a stage direction"),
])
def test_speakable_text_has_no_markup_code_urls_or_emoji(text, expected):
    assert speakable(text) == expected


SENTENCES = [
    "Paris is the capital of France.", "It costs 3.5 dollars, not 4.", "Dr. Smith arrived at 10:30 a.m. today.",
    "The year 1969 saw the first moon landing.", "Yes!", "Well, that depends on the weather, doesn't it?",
    "Turn left, then right, then left again.", "My phone number is 555 0123.", "It is 72 degrees outside.",
    "Berlin has about 3,700,000 people.", "We met on May 5th, 2021.", "Water boils at 100 degrees Celsius.",
    "Hmm... let me think about that for a second.", "The meeting is at 3 p.m. in room 204.",
    "Add two cups of flour and one egg.", "Light travels at about 300,000 kilometres per second.",
    "Don't forget your keys; it's cold.", "Is it 50% off, or 25%?", "Mount Everest is 8,849 metres tall.",
    "Thank you, and good night!",
]


@pytest.fixture(scope="module")
def voice(store):
    return PiperTTS(store.path("en_US-joe-medium"), repeatable=True)


@pytest.mark.slow
def test_word_spans_on_twenty_sentences_are_monotonic_and_cover_the_audio(voice):
    estimated = 0
    for text in SENTENCES:
        r = voice.render(text)
        words = r.words
        assert [w.text for w in words] == text.split()
        assert all(w.start < w.end for w in words), text
        assert all(a.end <= b.start for a, b in zip(words, words[1:], strict=False)), text
        assert words[0].start < 0.4 * r.rate_hz and words[-1].end > len(r.audio) - 0.6 * r.rate_hz, text
        assert words[-1].end <= len(r.audio)
        estimated += any(w.estimated for w in words)
    print(f"\n{len(SENTENCES) - estimated} of {len(SENTENCES)} sentences aligned word for word; "
          f"{estimated} spread by phoneme counts")


@pytest.mark.slow
def test_a_sentence_spoken_in_pieces_keeps_one_span_per_word_in_order(voice):
    assert len(pieces(LONG)) == 3
    r = voice.render(LONG)
    words = r.words
    assert [w.text for w in words] == LONG.split()
    assert all(a.end <= b.start for a, b in zip(words, words[1:], strict=False))
    assert words[-1].end <= len(r.audio)


@pytest.mark.slow
def test_a_voice_not_patched_for_alignments_is_patched_in_memory(store, tmp_path, voice):
    import shutil

    import onnx

    model = onnx.load(str(store.path("en_US-joe-medium")))
    kept = [o for o in model.graph.output if o.name == "output"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    shutil.copy(f"{store.path('en_US-joe-medium')}.json", f"{plain}.json")
    text = "Add two cups of flour and one egg."
    patched = PiperTTS(plain, repeatable=True).render(text)
    assert [w.text for w in patched.words] == text.split()
    assert [(w.start, w.end) for w in patched.words] == [(w.start, w.end) for w in voice.render(text).words]


VOICE_MEMORY = """
import sys
from sayso.answering.tts import PiperTTS

def resident_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) // 1024

voice = PiperTTS(sys.argv[1], repeatable=True)
voice.render("Hello there.")
before = resident_mb()
voice.render("The history of France is long, and it begins with the Gauls, who lived there before the Romans.")
print(before, resident_mb())
"""


@pytest.mark.slow
def test_a_long_sentence_gives_its_working_memory_back(store):
    """Piper's working memory grows with the sentence (about 100 MB for five seconds); it must not stay."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", VOICE_MEMORY, str(store.path("en_US-joe-medium"))],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    before, after = map(int, out.split())
    assert after - before < 30, f"{after - before} MB more resident after one long sentence"


def play(sink, segment, cancel_at_sample=None, reports=None):
    """Run a real Speaker stage on one segment; cancel once `cancel_at_sample` samples are audible."""
    scopes, segments, reports = Scopes(), Channel("segments", 4), [] if reports is None else reports
    scope = scopes.open(segment.turn)
    ended = threading.Event()

    def report(msg):
        reports.append(msg)
        if isinstance(msg, PlaybackEnded):
            ended.set()

    speaker = Speaker(sink, segments, report, scopes, clock=__import__("time").monotonic_ns)
    speaker.start()
    segments.put(segment)
    segments.put(EndOfAnswer(segment.turn))
    played_at_cancel = None
    try:
        if cancel_at_sample is not None:
            assert wait_until(lambda: len(sink.audible()) >= cancel_at_sample or ended.is_set(), 20)
            played_at_cancel = len(sink.audible())
            scope.cancel(Cancellation(Kind.FULL, Reason.BUTTON, 0))
        assert ended.wait(20)
    finally:
        speaker.stopping.set()
        speaker.join(5)
    return next(m for m in reports if isinstance(m, PlaybackEnded)), played_at_cancel


@pytest.mark.slow
def test_an_interrupt_at_a_known_sample_keeps_the_words_heard_by_then(voice):
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    r = voice.render(text)
    target = r.words[6].end + 200  # just after "the" ends
    sink = FakeSpeakerSink(rate_hz=r.rate_hz, buffer_ms=40)
    ended, played = play(sink, Segment(1, 0, text, r.audio, r.rate_hz, r.words), cancel_at_sample=target)
    # what the fake device had actually sounded by the time the speaker stopped
    audible = len(sink.audible())
    expected = [w.text for w in r.words if w.end <= audible]
    assert not ended.completed
    assert abs(len(ended.words) - len(expected)) <= 1 and list(ended.words) == text.split()[:len(ended.words)]
    # the words well before the cancel were heard, the rest of the sentence was not; how soon after the
    # cancel the speaker stopped is `sayso bench`'s to measure
    assert 6 <= len(ended.words) < len(r.words) and played >= target


def test_the_speaker_reports_when_the_first_word_was_heard():
    rate, words = 16000, (WordSpan("one", 0, 4000), WordSpan("two", 4000, 8000), WordSpan("three", 8000, 12000))
    audio = np.full(12000, 1000, np.int16)
    sink, reports = FakeSpeakerSink(rate_hz=rate, buffer_ms=40), []
    ended, _ = play(sink, Segment(1, 0, "one two three", audio, rate, words), reports=reports)
    first_audio = next(m for m in reports if isinstance(m, FirstAudio))
    first_word = [m for m in reports if isinstance(m, FirstWordHeard)]
    assert ended.completed and len(first_word) == 1 and reports.index(first_word[0]) < reports.index(ended)
    # "one" is 250 ms of audio after the first sample, and "two three" 500 ms more before the quiet; a
    # stall of the speaker's thread only moves the word later, so these bounds hold on a busy machine too
    heard_ms = (first_word[0].t_ns - first_audio.t_ns) / 1e6
    assert 249 <= heard_ms and first_word[0].t_ns <= ended.silence_ns - 499_000_000, heard_ms


def test_a_pause_between_segments_plays_the_unheard_end_on_resume():
    """Paused after the last segment was written but before the end of the answer came: the device's
    unheard tail is dropped, and on resume it plays from there and the answer completes."""
    rate, words = 16000, (WordSpan("one", 0, 3200), WordSpan("two", 3200, 6400))
    audio = np.arange(6400, dtype=np.int16)
    sink = FakeSpeakerSink(rate_hz=rate, buffer_ms=2000)  # holds the whole segment: nothing blocks
    scopes, segments, reports = Scopes(), Channel("segments", 4), []
    scope = scopes.open(1)
    heard, paused, ended = threading.Event(), threading.Event(), threading.Event()

    def report(msg):
        reports.append(msg)
        {Heard: heard, Paused: paused, PlaybackEnded: ended}.get(type(msg), threading.Event()).set()

    speaker = Speaker(sink, segments, report, scopes, clock=__import__("time").monotonic_ns)
    speaker.start()
    try:
        segments.put(Segment(1, 0, "one two", audio, rate, words))
        assert heard.wait(5)  # all of it written, most of it still in the device
        scope.paused.set()
        assert paused.wait(5)
        segments.put(EndOfAnswer(1))
        scope.paused.clear()
        assert ended.wait(5), "the resumed answer never finished"
    finally:
        speaker.stopping.set()
        speaker.join(5)
    end = next(m for m in reports if isinstance(m, PlaybackEnded))
    assert end.completed and end.words == ("one", "two")
    played = sink.audible()
    assert sink.aborts == 1 and np.array_equal(played[-len(audio) // 2:], audio[-len(audio) // 2:])


@pytest.mark.slow
def test_speaker_plays_through_portaudio_and_completes(alsa_devices, voice):
    home = alsa_devices(np.zeros(16000, np.int16))
    text = "Paris is the capital of France."
    r = voice.render(text)
    sink = PyAudioSink("saysospeaker", rate_hz=r.rate_hz)
    try:
        ended, _ = play(sink, Segment(1, 0, text, r.audio, r.rate_hz, r.words))
    finally:
        sink.close()
    assert ended.completed and " ".join(ended.words) == text
    written = np.fromfile(home / "speaker.raw", dtype=np.int16)
    assert sink.rate_hz == r.rate_hz
    assert np.array_equal(written[:len(r.audio)], r.audio)


@pytest.mark.slow
def test_time_to_first_audio_with_the_default_models(store, tmp_path, voice):
    import time

    from sayso.answering.llm import LlamaLLM
    from sayso.config import Settings
    from sayso.engine import Engine
    from sayso.pipeline.messages import State, Utterance
    from sayso.pipeline.turnlog import TurnLog

    settings = Settings()
    llm = LlamaLLM.from_settings(store.path(settings.llm.model, role="llm"), settings.llm)
    engine = Engine(llm=llm, tts=voice, sink=FakeSpeakerSink(rate_hz=voice.rate_hz),
                    turnlog=TurnLog(tmp_path / "turns.db"), settings=settings).start()
    try:
        engine.conductor.post(Utterance("what is the capital of france", time.monotonic_ns()))
        assert engine.conductor.wait_state(State.SPEAKING, 60)
        assert engine.conductor.wait_state(State.IDLE, 60)
    finally:
        engine.stop()
    row = engine.turnlog.rows()[-1]
    m = row["metrics"]
    print(f"\nend of speech -> first token {m['eos_to_first_token_ms']:.0f} ms, "
          f"-> first played sample {m['eos_to_first_audio_ms']:.0f} ms")
    assert row["status"] == "complete" and "paris" in row["text"].lower()
    assert 0 < m["eos_to_first_token_ms"] < m["eos_to_first_audio_ms"]
