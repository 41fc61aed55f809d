"""An answer's metrics and timeline from the conductor's record of it: plain values in, a dict out."""

from __future__ import annotations

from sayso.pipeline.answer import Answer
from sayso.pipeline.cancel import Cancellation, Scope
from sayso.pipeline.messages import Kind, Reason
from sayso.pipeline.metrics import timeline, turn_metrics
from sayso.pipeline.pause import Pause

MS = 1_000_000


def answer(**fields) -> Answer:
    """An answer to speech that ended at 500 ms and was endpointed at 1000 ms."""
    return Answer(id=1, row=2, reply_to=1, scope=Scope(1), eos_ns=1000 * MS, **fields)


def played_whole(a: Answer) -> Answer:
    a.playback_completed, a.gen_outcome = True, "done"
    return a


def cut(a: Answer, kind: Kind, reason: Reason, at_ms: float, onset_ms: float | None = None) -> Answer:
    a.scope.cancel(Cancellation(kind, reason, int(at_ms * MS), None if onset_ms is None else int(onset_ms * MS)))
    a.gen_outcome = "cancelled"
    return a


def test_a_complete_answer_has_its_latencies_and_no_interrupt_figures():
    a = played_whole(answer(speech_end_ns=500 * MS, endpoint="smart-turn", turn_probability=0.87654,
                            first_token_ns=1300 * MS, first_audio_ns=1612_500_000))
    a.silence_ns = 4000 * MS
    assert turn_metrics(a) == {"eos_to_first_token_ms": 300.0, "eos_to_first_audio_ms": 612.5,
                               "speech_end_to_first_audio_ms": 1112.5, "endpoint_ms": 500.0,
                               "endpoint": "smart-turn", "turn_probability": 0.877}


def test_an_interrupt_that_lost_the_race_with_the_end_leaves_the_answer_complete():
    a = played_whole(answer(first_token_ns=1300 * MS, first_audio_ns=1600 * MS, silence_ns=3000 * MS,
                            llm_stop_ns=2000 * MS))
    a.scope.cancel(Cancellation(Kind.FULL, Reason.BUTTON, 3001 * MS))
    assert turn_metrics(a) == {"eos_to_first_token_ms": 300.0, "eos_to_first_audio_ms": 600.0}


def test_the_button_during_speech_times_the_silence_and_the_llm_stop():
    a = cut(answer(first_token_ns=1300 * MS, first_audio_ns=1600 * MS), Kind.FULL, Reason.BUTTON, 3000)
    a.silence_ns, a.llm_stop_ns = 3012_500_000, 3040 * MS
    assert turn_metrics(a) == {"eos_to_first_token_ms": 300.0, "eos_to_first_audio_ms": 600.0,
                               "interrupt_to_silence_ms": 12.5, "interrupt_to_llm_stop_ms": 40.0}


def test_speech_over_the_answer_times_silence_from_the_onset():
    a = cut(answer(first_audio_ns=1600 * MS), Kind.FULL, Reason.USER_SPEAKING, 3000, onset_ms=2900)
    a.silence_ns, a.llm_stop_ns = 3020 * MS, 3030 * MS
    m = turn_metrics(a)
    assert (m["interrupt_to_silence_ms"], m["speech_onset_to_silence_ms"], m["interrupt_to_llm_stop_ms"]) == \
        (20.0, 120.0, 30.0)
    assert "pause_to_commit_ms" not in m


def test_a_committed_pause_counts_the_silence_from_the_pause_not_the_commit():
    a = cut(answer(first_audio_ns=1600 * MS), Kind.FULL, Reason.USER_SPEAKING, 3800, onset_ms=2900)
    a.committed = Pause(requested_ns=3000 * MS, onset_ns=2900 * MS, deadline_ns=4500 * MS, silence_ns=3010 * MS)
    a.silence_ns, a.llm_stop_ns = 3805 * MS, 3820 * MS
    m = turn_metrics(a)
    assert m["pause_to_commit_ms"] == 800.0
    assert m["interrupt_to_silence_ms"] == 10.0  # the person heard quiet from the pause on
    assert m["speech_onset_to_silence_ms"] == 110.0
    assert m["interrupt_to_llm_stop_ms"] == 20.0


def test_words_that_join_the_last_turn_count_like_words_over_the_answer():
    a = cut(answer(first_audio_ns=1600 * MS), Kind.FULL, Reason.SUPERSEDED, 3800, onset_ms=2900)
    a.committed = Pause(requested_ns=3000 * MS, onset_ns=2900 * MS, deadline_ns=4500 * MS, silence_ns=3010 * MS)
    a.silence_ns = 3805 * MS
    m = turn_metrics(a)
    assert (m["pause_to_commit_ms"], m["interrupt_to_silence_ms"]) == (800.0, 10.0)


def test_a_cut_before_any_audio_has_no_silence_figures():
    a = cut(answer(first_token_ns=1300 * MS), Kind.FULL, Reason.USER_SPEAKING, 1400, onset_ms=1350)
    a.silence_ns, a.llm_stop_ns = 1401 * MS, 1410 * MS
    assert turn_metrics(a) == {"eos_to_first_token_ms": 300.0, "interrupt_to_llm_stop_ms": 10.0}


def test_the_llm_stop_counts_only_for_a_full_interrupt_it_followed():
    speech_only = cut(answer(first_audio_ns=1600 * MS), Kind.SPEECH, Reason.USER_SPEAKING, 3000)
    speech_only.silence_ns, speech_only.llm_stop_ns = 3010 * MS, 3500 * MS
    assert "interrupt_to_llm_stop_ms" not in turn_metrics(speech_only)
    done_before = cut(answer(first_audio_ns=1600 * MS), Kind.FULL, Reason.BUTTON, 3000)
    done_before.silence_ns, done_before.llm_stop_ns = 3010 * MS, 2500 * MS
    assert "interrupt_to_llm_stop_ms" not in turn_metrics(done_before)


def test_a_speaker_already_quiet_at_the_interrupt_reads_zero_not_negative():
    a = cut(answer(first_audio_ns=1600 * MS), Kind.FULL, Reason.BUTTON, 3000)
    a.silence_ns = 2990 * MS
    assert turn_metrics(a)["interrupt_to_silence_ms"] == 0.0


def test_what_else_happened_to_the_answer_is_counted():
    a = played_whole(answer(preemptive=True, underruns=2, false_interruptions=[412.5, 80.0],
                            backend={"backend": "local", "fell_back": "server refused"}))
    m = turn_metrics(a)
    assert (m["preemptive"], m["underruns"], m["llm_backend"], m["llm_fell_back"]) == \
        ("used", 2, "local", "server refused")
    assert (m["false_interruptions"], m["false_interruption_paused_ms"]) == (2, [412.5, 80.0])
    assert "llm_busy_ms" not in m and "endpoint" not in m


def test_the_llm_busy_time_is_kept_for_an_answer_cut_by_its_time_limit():
    a = answer(llm_busy_ms=20003.44, play_ended=True, playback_completed=True)
    a.gen_outcome = "timeout"
    assert turn_metrics(a)["llm_busy_ms"] == 20003.4
    a.gen_outcome = "done"
    assert "llm_busy_ms" not in turn_metrics(a)


def test_the_timeline_has_each_milestone_known_in_ms():
    a = answer(speech_end_ns=500 * MS, final_ns=1100_040_000, started_ns=1100_100_000, first_token_ns=1300 * MS)
    assert timeline(a) == {"speech_end_ms": 500.0, "endpoint_ms": 1000.0, "final_ms": 1100.0,
                           "llm_asked_ms": 1100.1, "first_token_ms": 1300.0}
