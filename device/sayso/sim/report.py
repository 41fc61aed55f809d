"""The simulator's report: the turn log, a timeline on the audio clock, and the latencies that matter.

Latencies are measured from ground truth to the last sample the speaker played,
both on the room's sample clock: barge-in from the first sample of injected
speech (not the WAV's leading silence), the button from the press.
"""

from __future__ import annotations

import statistics

from sayso.audio import RATE_HZ
from sayso.config import WAKE_WORDS
from sayso.pipeline.messages import Event, Reason
from sayso.sim.roomlog import Injection, RoomLog

SUMMARY_KEYS = ("barge_in_latency_ms", "button_latency_ms", "speech_end_to_first_audio_ms", "eos_to_first_audio_ms",
                "llm_stop_ms", "wake_to_listening_ms")
"""Latencies in the summary, lists of ms: speech_end_to_first_audio_ms is from the last sample of the
person's words (ground truth) to the answer's first audible sample; eos_to_first_audio_ms from when the
appliance decided they had finished; wake_to_listening_ms from the end of a line that is the wake phrase
alone to the wake word's detection."""
COUNT_KEYS = ("self_interruptions", "false_barge_ins", "false_interruptions", "self_pauses", "barge_ins_unheard",
              "cut_offs", "preemptive_used", "preemptive_discarded", "user_turns", "answers", "underruns",
              "late_ticks", "wake_words", "false_activations", "ignored", "wake_lines", "speaker_s")

SPEECH_TAIL_S = 2.0
"""An interrupt up to this long after injected speech ends is still the person's (end of speech + STT)."""
NOISE_TAIL_S = 0.5


def _sample(t_ns: int) -> int:
    return t_ns * RATE_HZ // 1_000_000_000


def _ms(samples: int) -> float:
    return round(samples * 1000 / RATE_HZ, 1)


def _first_cuts(events: list[Event]) -> dict[int, Event]:
    """Each turn's first speech_interrupted event (an escalation repeats it with the same reason)."""
    cuts: dict[int, Event] = {}
    for e in events:
        if e.type == "speech_interrupted":
            cuts.setdefault(e.data["turn"], e)
    return cuts


def turn_latencies(events: list[Event], room: RoomLog) -> dict[int, dict]:
    """Per interrupted turn that was audible at its cause: ms from the cause to the last sample played."""
    first_audio = {e.data["turn"]: _sample(e.t_ns) for e in events if e.type == "first_audio"}
    out: dict[int, dict] = {}
    for turn, cut in _first_cuts(events).items():
        t = _sample(cut.t_ns)
        reason = cut.data["reason"]
        if reason == Reason.USER_SPEAKING:
            causes = [i.onset_sample for i in room.injections if i.is_speech and i.onset_sample <= t]
            key = "barge_in_latency_ms"
        elif reason == Reason.BUTTON:
            causes = [p for p, _ in room.presses if p <= t]
            key = "button_latency_ms"
        else:
            continue
        if not causes or turn not in first_audio or first_audio[turn] > causes[-1]:
            continue  # nothing to go quiet: the answer was not audible yet
        cause = causes[-1]
        silent = [last for at, last in room.aborts if at >= cause]
        if silent:
            out[turn] = {key: _ms(max(0, silent[0] - cause))}
    return out


def _acted_on(cut: Event, events: list[Event]) -> int:
    """When the appliance acted on the speech that cut an answer: the pause it went quiet at, if the answer
    stayed paused until the cut (on a slow board the words that commit it may come seconds after the person
    stopped), else the cut itself."""
    turn = cut.data["turn"]
    paused = [e.t_ns for e in events if e.type == "speech_paused" and e.data.get("turn") == turn
              and e.t_ns <= cut.t_ns]
    if paused and not any(e.type == "false_interruption" and e.data.get("turn") == turn
                          and paused[-1] <= e.t_ns <= cut.t_ns for e in events):
        return paused[-1]
    return cut.t_ns


def _unprompted(events: list[Event], room: RoomLog) -> tuple[int, int]:
    """(self_interruptions, false_barge_ins): user_speaking interrupts with no user speech being injected;
    the second counts those of them that came during a noise burst.

    A line counts from its first sample, as for `self_pauses`: a real person's breath before their words (in
    a recording's lead-in) can pause the answer, and the words that follow commit that pause."""
    selfs = noise = 0
    for cut in _first_cuts(events).values():
        if cut.data["reason"] != Reason.USER_SPEAKING:
            continue
        t = _sample(_acted_on(cut, events))
        if any(i.is_speech and i.start_sample <= t <= i.end_sample + SPEECH_TAIL_S * RATE_HZ
               for i in room.injections):
            continue
        selfs += 1
        if any(not i.is_speech and i.start_sample <= t <= i.end_sample + NOISE_TAIL_S * RATE_HZ
               for i in room.injections):
            noise += 1
    return selfs, noise


def _wake_lines(room: RoomLog) -> list[Injection]:
    """The lines the person said with a wake phrase in them."""
    return [i for i in room.injections
            if i.kind == "say" and any(w.replace("_", " ") in _plain(i.label) for w in WAKE_WORDS)]


def _wake_words(events: list[Event], room: RoomLog) -> tuple[int, list[float]]:
    """(false activations, wake_to_listening_ms): wake words heard while no line with a wake phrase in it was
    being said (or had just ended); and for lines that are the phrase alone, its end to the detection."""
    said = _wake_lines(room)
    false, latencies = 0, []
    for e in events:
        if e.type != "wake_word":
            continue
        t = _sample(e.t_ns)
        line = next((i for i in said if i.onset_sample <= t <= i.end_sample + SPEECH_TAIL_S * RATE_HZ), None)
        if line is None:
            false += 1
        elif _plain(line.label) in {w.replace("_", " ") for w in WAKE_WORDS}:
            latencies.append(_ms(t - line.sound_end_sample))
    return false, latencies


def _plain(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def _pauses(events: list[Event], room: RoomLog) -> tuple[int, int]:
    """(false_interruptions, self_pauses): answers paused then resumed, and pauses with nothing
    injected into the room at all (the appliance paused for its own voice)."""
    resumed = sum(e.type == "false_interruption" for e in events)
    selfs = 0
    for e in events:
        if e.type != "speech_paused":
            continue
        t = _sample(e.t_ns)
        tail = SPEECH_TAIL_S * RATE_HZ
        if not any(i.start_sample <= t <= i.end_sample + tail for i in room.injections):
            selfs += 1
    return resumed, selfs


UNHEARD_MS = 1000.0
"""Speech that starts over an answer which is still sounding this long after, not paused or stopped, went
unheard."""


def _unheard(room: RoomLog) -> int:
    """Lines the person began while the speaker sounded, which it went on sounding over for UNHEARD_MS,
    never paused or stopped: a barge-in the appliance missed, or heard seconds late. An answer that ended
    on its own within that second talked over them only until it ended, and is not counted."""
    later = int(UNHEARD_MS * RATE_HZ / 1000)
    return sum(room.sounding_at(i.onset_sample) and room.sounding_at(i.onset_sample + later)
               and not any(i.onset_sample <= at <= i.onset_sample + later for at, _ in room.aborts)
               for i in room.injections if i.is_speech)


CUT_OFF_MS = 150.0
"""An answer that sounds this long while the person is still talking has cut them off (about a syllable);
a shorter blip, stopped as they went on, has not."""


def _answers_heard(events: list[Event], room: RoomLog) -> tuple[list[float], int]:
    """(ms from the end of the person's words to each answer's first audio, answers that cut the person off).

    An answer whose first sample played while the person was still speaking
    (in a pause mid-sentence, say) has no latency; it cut them off if it
    sounded for CUT_OFF_MS before it was paused or stopped, or they finished.
    """
    latencies, cut_offs = [], 0
    speech = [i for i in room.injections if i.is_speech]
    for e in events:
        if e.type != "first_audio":
            continue
        t = _sample(e.t_ns)
        began = [i for i in speech if i.onset_sample <= t]
        if not began:
            continue
        if t >= began[-1].sound_end_sample:
            latencies.append(_ms(t - began[-1].sound_end_sample))
            continue
        stops = [_sample(x.t_ns) for x in events if x.t_ns > e.t_ns and x.data.get("turn") == e.data["turn"]
                 and x.type in ("speech_paused", "speech_interrupted", "turn_finished")]
        stops += [at for at, _ in room.aborts if at > t]
        cut_offs += _ms(min([began[-1].sound_end_sample, *stops]) - t) >= CUT_OFF_MS
    return latencies, cut_offs


def _timeline(events: list[Event], room: RoomLog) -> list[dict]:
    rows = [{"t_ms": round(e.t_ns / 1e6, 1), "type": e.type, **e.data} for e in events]
    for i in room.injections:
        rows.append({"t_ms": _ms(i.start_sample), "type": i.kind, "what": i.label, "onset_ms": _ms(i.onset_sample),
                     "end_ms": _ms(i.end_sample), "sound_end_ms": _ms(i.sound_end_sample)})
    for pressed, released in room.presses:
        rows.append({"t_ms": _ms(pressed), "type": "button_press"})
        rows.append({"t_ms": _ms(released), "type": "button_release"})
    for at, last in room.aborts:
        rows.append({"t_ms": _ms(at), "type": "speaker_abort", "last_played_ms": _ms(last)})
    return sorted(rows, key=lambda r: r["t_ms"])


def build_report(name: str, turns: list[dict], events: list[Event], room: RoomLog) -> tuple[dict, dict[int, dict]]:
    """The report JSON (a contract) and the per-turn latencies behind its summary."""
    per_turn = turn_latencies(events, room)
    summary: dict = {k: [] for k in SUMMARY_KEYS}
    for r in turns:
        if r["role"] != "assistant":
            continue
        m = r["metrics"]
        for key, value in per_turn.get(r["id"], {}).items():
            summary[key].append(value)
        if "eos_to_first_audio_ms" in m:
            summary["eos_to_first_audio_ms"].append(round(m["eos_to_first_audio_ms"], 1))
        if "interrupt_to_llm_stop_ms" in m:
            summary["llm_stop_ms"].append(round(m["interrupt_to_llm_stop_ms"], 1))
    summary["speech_end_to_first_audio_ms"], summary["cut_offs"] = _answers_heard(events, room)
    summary["self_interruptions"], summary["false_barge_ins"] = _unprompted(events, room)
    summary["false_interruptions"], summary["self_pauses"] = _pauses(events, room)
    summary["barge_ins_unheard"] = _unheard(room)
    answers = [r for r in turns if r["role"] == "assistant"]
    summary["preemptive_used"] = sum(r["metrics"].get("preemptive") == "used" for r in answers)
    summary["preemptive_discarded"] = sum(e.type == "preemptive_discarded" for e in events)
    summary["user_turns"] = sum(r["role"] == "user" for r in turns)
    summary["answers"] = sum(r["interrupt_reason"] != "superseded" for r in answers)
    summary["underruns"] = sum(r["metrics"].get("underruns", 0) for r in answers)
    summary["late_ticks"] = room.late_ticks
    summary["speaker_s"] = round(room.speaker_s, 2)
    summary["wake_words"] = sum(e.type == "wake_word" for e in events)
    summary["false_activations"], summary["wake_to_listening_ms"] = _wake_words(events, room)
    summary["ignored"] = sum(e.type == "ignored" for e in events)
    summary["wake_lines"] = len(_wake_lines(room))
    report = {"scenario": name, "turns": turns, "events": _timeline(events, room), "summary": summary}
    return report, per_turn


def percentiles(values: list[float]) -> tuple[float | None, float | None]:
    """(p50, p95) by linear interpolation between samples; None for no values."""
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    return statistics.median(values), statistics.quantiles(values, n=20, method="inclusive")[18]


WAKE_VIA = {"word": "with the wake word", "follow_up": "no wake word: a follow-up", "button": "push-to-talk"}
"""How a user turn came to be a request, by its `wake` metric, for the demo's transcript."""


def transcript(report: dict, per_turn: dict[int, dict]) -> str:
    """What a person reading the demo wants: who said what, what was heard, why it stopped, how fast."""
    lines = [f"=== {report['scenario']}: what happened (from the turn log) ==="]
    for r in report["turns"]:
        if r["role"] == "user":
            via = WAKE_VIA.get(r["metrics"].get("wake", ""), "")
            lines.append(f"\n[{r['id']}] person : {r['text']}" + (f"   ({via})" if via else ""))
            continue
        m = r["metrics"]
        lines.append(f"[{r['id']}] sayso  : {r['text']}")
        if r["interrupt_reason"] == "superseded":
            lines.append("      dropped: the person went on before hearing it, and their words joined the turn before")
            continue
        if r["status"] == "interrupted":
            lines.append(f"      heard  : {r['heard_text'] or '(nothing)'}")
            how = [f"cut by {r['interrupt_reason']} ({r['interrupt_kind']})"]
            for key, label in (("barge_in_latency_ms", "speech onset -> silence"),
                               ("button_latency_ms", "press -> silence")):
                if key in per_turn.get(r["id"], {}):
                    how.append(f"{label} {per_turn[r['id']][key]:.0f} ms")
            if "interrupt_to_llm_stop_ms" in m:
                how.append(f"LLM stopped {m['interrupt_to_llm_stop_ms']:.0f} ms after the interrupt")
            lines.append("      " + "; ".join(how))
        else:
            lines.append("      heard  : all of it")
        if m.get("false_interruptions"):
            paused = ", ".join(f"{v:.0f}" for v in m["false_interruption_paused_ms"])
            lines.append(f"      paused for a sound with no words {m['false_interruptions']}x ({paused} ms), "
                         "then resumed where it stopped")
        if "speech_end_to_first_audio_ms" in m:
            lines.append(f"      end of question -> first audio {m['speech_end_to_first_audio_ms']:.0f} ms "
                         f"(turn over after {m['endpoint_ms']:.0f} ms, by {m['endpoint']}; first token "
                         f"{m.get('eos_to_first_token_ms', 0):+.0f} ms from there"
                         f"{', started at the pause' if m.get('preemptive') else ''})")
        elif "eos_to_first_audio_ms" in m:
            lines.append(f"      end of question -> first token {m.get('eos_to_first_token_ms', 0):.0f} ms, "
                         f"-> first audio {m['eos_to_first_audio_ms']:.0f} ms")
    s = report["summary"]
    if s["ignored"]:
        lines.append(f"\nnot requests: {s['ignored']} utterance(s) without the wake word, ignored and never "
                     "transcribed")
    lines.append(f"\nself-interruptions: {s['self_interruptions']}, false barge-ins: {s['false_barge_ins']}, "
                 f"pauses resumed (false interruptions): {s['false_interruptions']}, "
                 f"pauses for its own voice: {s['self_pauses']}")
    return "\n".join(lines)
