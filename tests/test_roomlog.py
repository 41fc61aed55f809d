"""The room's ground truth for barge-ins: when the speaker sounded, which lines over it it never stopped for,
and which interrupts no one caused."""

from __future__ import annotations

from sayso.audio import RATE_HZ
from sayso.pipeline.messages import Event
from sayso.sim.report import UNHEARD_MS, build_report
from sayso.sim.roomlog import Injection, RoomLog

MS = RATE_HZ // 1000


def line(onset_ms: int, end_ms: int) -> Injection:
    return Injection("say", "Stop.", onset_ms * MS - 4800, onset_ms * MS, end_ms * MS, end_ms * MS)


def test_ticks_in_a_row_are_one_stretch_and_a_silent_tick_starts_another():
    log = RoomLog()
    for first in (0, 160, 320, 640, 800):
        log.sounded(first, first + 160)
    assert log.sounding == [[0, 480], [640, 960]]
    assert log.sounding_at(479) and not log.sounding_at(480) and log.sounding_at(640)


def test_a_line_begun_over_the_answer_is_unheard_until_the_speaker_goes_quiet_in_time():
    log = RoomLog()
    log.sounded(0, 10_000 * MS)  # an answer sounding for 10 s
    log.injections = [line(1_000, 2_000), line(4_000, 5_000), line(12_000, 13_000)]
    log.aborts = [(1_000 * MS + 100 * MS, 1_000 * MS + 90 * MS)]  # the first line paused it in 100 ms
    summary = build_report("t", [], [], log)[0]["summary"]
    assert summary["barge_ins_unheard"] == 1  # the second never did; the third came after the answer

    late = RoomLog(sounding=[[0, 10_000 * MS]], injections=[line(1_000, 2_000)],
                   aborts=[((1_000 + int(UNHEARD_MS) + 500) * MS, (1_000 + int(UNHEARD_MS) + 490) * MS)])
    assert build_report("t", [], [], late)[0]["summary"]["barge_ins_unheard"] == 1  # seconds late is unheard

    ended = RoomLog(sounding=[[0, 1_500 * MS]], injections=[line(1_000, 2_000)])
    assert build_report("t", [], [], ended)[0]["summary"]["barge_ins_unheard"] == 0  # the answer ended first

    noise = RoomLog(sounding=[[0, 10_000 * MS]],
                    injections=[Injection("noise", "cough", 1_000 * MS, 1_000 * MS, 1_500 * MS, 1_500 * MS)])
    assert build_report("t", [], [], noise)[0]["summary"]["barge_ins_unheard"] == 0  # a cough is not a barge-in


def test_an_interrupt_committed_long_after_the_pause_is_the_person_s_not_its_own():
    # On one core the recogniser's words for a reader who went on for 10 s came after they stopped: the
    # answer was quiet from the pause at their first word, and the interrupt only committed it.
    room = RoomLog(sounding=[[0, 6_000 * MS]], injections=[line(5_000, 15_000)])
    paused = Event("speech_paused", 5_100 * 1_000_000, {"turn": 2})
    cut = Event("speech_interrupted", 18_000 * 1_000_000, {"turn": 2, "reason": "user_speaking", "kind": "full"})
    assert build_report("t", [], [paused, cut], room)[0]["summary"]["self_interruptions"] == 0
    # ...but an answer that resumed after the pause, then was cut with nobody talking, cut itself
    resumed = Event("false_interruption", 6_000 * 1_000_000, {"turn": 2})
    assert build_report("t", [], [paused, resumed, cut], room)[0]["summary"]["self_interruptions"] == 1


def test_a_pause_at_a_real_person_s_breath_before_their_words_is_theirs():
    # A recording of a real person starts with room tone and a breath before the words. Over a loud echo
    # that breath paused the answer 215 ms before the words' onset, and the words then committed the cut.
    room = RoomLog(sounding=[[0, 8_000 * MS]], injections=[line(5_000, 9_000)])  # its first sample at 4,700 ms
    cut = Event("speech_interrupted", 10_000 * 1_000_000, {"turn": 2, "reason": "user_speaking", "kind": "full"})
    for paused_ms, selfs in ((4_785, 0), (4_600, 1)):
        paused = Event("speech_paused", paused_ms * 1_000_000, {"turn": 2})
        summary = build_report("t", [], [paused, cut], room)[0]["summary"]
        assert summary["self_interruptions"] == selfs, f"paused at {paused_ms} ms"
