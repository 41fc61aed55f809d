"""Scenarios in the simulated room on the real pipeline and default models (`tests/scenarios/*.toml`).

Expectations are on what the turn log says (statuses, reasons, heard text),
never on wall-clock speed; latencies are only checked to be measured.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

from sayso.config import Settings
from sayso.errors import ScenarioFailed
from sayso.pipeline.turnlog import COLUMNS
from sayso.sim import scenario
from sayso.sim.fakes import FakeLLM, FakeTTS
from sayso.sim.simulate import Kit, Simulation

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent / "scenarios"

U, A = "user", "assistant"
EXPECTED = {
    "barge_in_then_button": [(U, "complete", None), (A, "interrupted", "user_speaking"),
                             (U, "complete", None), (A, "interrupted", "button")],
    "cough_then_answer": [(U, "complete", None), (A, "complete", None)],
    "button_while_thinking": [(U, "complete", None), (A, "interrupted", "button")],
    "own_voice_at_minus_6_db": [(U, "complete", None), (A, "complete", None)],
    "coughs_during_an_answer": [(U, "complete", None), (A, "complete", None)],
    "barge_in_at_minus_6_db": [(U, "complete", None), (A, "interrupted", "user_speaking"),
                               (U, "complete", None), (A, "complete", None)],
    "wake_word": [(U, "complete", None), (A, "complete", None)] * 4,
    "television_in_the_room": [(U, "complete", None), (A, "complete", None)] * 2,
}


@pytest.fixture(scope="module")
def kit(store) -> Kit:
    return Kit.load(Settings(), store)


def run(kit: Kit, tmp_path: Path, name: str, **kw):
    # waits are generous: a long answer at echo -6 dB on a loaded shared machine, with a pause or two
    # in it, once took longer than the simulator's default 30 s to come back to idle
    kw.setdefault("wait_timeout_s", 90.0)
    return Simulation(scenario.load(HERE / f"{name}.toml"), kit, Settings(), tmp_path / "turns.db", **kw).run()


def as_heard(turns: list[dict]) -> list[dict]:
    """The rows as the person lived them. An answer the person went on over before hearing a word of it
    ("Stop." then "Tell me about Germany instead") is logged as superseded, and their words join their last
    turn: it is kept for the record, and is not part of the conversation. A listener behind on a loaded
    machine may report them going on only after its first words played over them: those are still logged."""
    dropped = [r for r in turns if r["interrupt_reason"] == "superseded"]
    assert all(r["role"] == A for r in dropped), dropped
    return [r for r in turns if r not in dropped]


def assert_heard_is_a_word_prefix(turns: list[dict]) -> None:
    for r in turns:
        if r["role"] != A:
            continue
        heard, said = r["heard_text"].split(), r["text"].split()
        if r["status"] == "complete":
            assert heard == said, r
        else:
            # a proper prefix; cut in the LLM's prefill, nothing was said and nothing heard
            assert heard == said[:len(heard)] and (len(heard) < len(said) or not said), r


def latencies_on_the_timeline(events: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Each audible answer cut by the person or the button, as the room's timeline tells it: (latency, when the
    cut was committed). The latency runs from the cause (the person's last onset, or the press, before the
    cut) to the last sample played when the speaker next went quiet; 0 when it was quiet already."""
    first_audio = {e["turn"]: e["t_ms"] for e in events if e["type"] == "first_audio"}
    out: dict[str, list[tuple[float, float]]] = {"barge_in_latency_ms": [], "button_latency_ms": []}
    cuts = {}
    for e in events:
        if e["type"] == "speech_interrupted":
            cuts.setdefault(e["turn"], e)  # an escalation repeats the first cut
    for turn, cut in cuts.items():
        if cut["reason"] == "user_speaking":
            key, causes = "barge_in_latency_ms", [e["onset_ms"] for e in events if e["type"] in ("say", "wav")]
        elif cut["reason"] == "button":
            key, causes = "button_latency_ms", [e["t_ms"] for e in events if e["type"] == "button_press"]
        else:
            continue
        causes = [c for c in causes if c <= cut["t_ms"]]
        if not causes or turn not in first_audio or first_audio[turn] > max(causes):
            continue  # it was not audible yet: nothing to go quiet
        cause = max(causes)
        quiet = next(e["last_played_ms"] for e in events if e["type"] == "speaker_abort" and e["t_ms"] >= cause)
        out[key].append((max(0.0, quiet - cause), cut["t_ms"] - cause))
    return out


def test_every_scenario_here_has_expectations():
    assert sorted(p.stem for p in HERE.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scenario(kit, tmp_path, name):
    result = run(kit, tmp_path, name, record=tmp_path / "rec.wav")
    turns, summary = as_heard(result.report["turns"]), result.report["summary"]
    assert [(r["role"], r["status"], r["interrupt_reason"]) for r in turns] == EXPECTED[name]
    assert_heard_is_a_word_prefix(turns)
    assert summary["self_interruptions"] == 0 and summary["false_barge_ins"] == 0
    # Pausing for its own voice is not interrupting itself (no self-interruption, asserted above), but
    # it is a stutter, which the bench counts (self_pauses). Here every such pause must have resumed. A
    # bound on how many does not hold on a shared 2-core machine at echo -6 dB: 2 of 8 runs of the cough
    # scenario paused twice or more for its own voice, deep in a 25 s answer, for a cause not yet found.
    print(f"{summary['self_pauses']} pause(s) for its own voice")
    assert summary["self_pauses"] <= summary["false_interruptions"], "a pause for its own voice did not resume"
    if name == "coughs_during_an_answer":
        # Every pause resumed, and the answer was heard whole. Whether a cough pauses it at all is up to
        # Silero: with the echo cancelled it takes the synthetic cough for speech for two frames at some
        # phases of the frame grid and not at others (5 of 8 measured), so CI once saw none of the three
        # sounds pause it. The pause -> let-go path is pinned down where the frames are fixed:
        # tests/test_listener.py (a sound too short to be speech) and tests/test_engine.py (no words come).
        paused = [e for e in result.report["events"] if e["type"] == "speech_paused"]
        print(f"{len(paused)} pause(s) over the coughs and the noise, all resumed")
        assert summary["false_interruptions"] == len(paused)
        assert turns[1]["metrics"].get("false_interruptions", 0) == len(paused)  # absent when none paused
        assert turns[1]["heard_text"] == turns[1]["text"]
    if name == "wake_word":
        # the two lines without the wake word, outside any window, are never turns, nor transcribed
        ignored = [(e["text"], e["transcribed"]) for e in result.report["events"] if e["type"] == "ignored"]
        assert ignored == [("", False)] * 2, ignored
        assert [r["metrics"]["wake"] for r in turns if r["role"] == U] == ["word", "follow_up", "word", "button"]
        assert not any(w in r["text"] for r in turns if r["role"] == U for w in ("okay", "nabu"))
        assert summary["wake_words"] == 2 and summary["false_activations"] == 0 and summary["ignored"] == 2
        assert summary["wake_lines"] == 2
    cut = [r for r in turns if r["status"] == "interrupted"]
    audible = [r for r in cut if "first_audio" in {e["type"] for e in result.report["events"]
                                                    if e.get("turn") == r["id"]}]
    n_speech = sum(r["interrupt_reason"] == "user_speaking" for r in audible)
    n_button = sum(r["interrupt_reason"] == "button" for r in audible)
    assert len(summary["barge_in_latency_ms"]) == n_speech
    assert len(summary["button_latency_ms"]) == n_button
    # the summary's latencies are the room's: from the cause to the last sample the person heard
    timeline = latencies_on_the_timeline(result.report["events"])
    for key in ("barge_in_latency_ms", "button_latency_ms"):
        assert summary[key] == [pytest.approx(v, abs=0.2) for v, _ in timeline[key]], key
    # pause mode: the person's speech silences the answer at once, before their words commit the cut
    assert all(v <= committed for v, committed in timeline["barge_in_latency_ms"])
    if name == "button_while_thinking":
        assert turns[1]["heard_text"] == "" and not summary["button_latency_ms"]
    with wave.open(str(tmp_path / "rec.wav")) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 16000 and w.getnframes() > 16000


def test_the_report_keeps_its_contract(kit, tmp_path):
    report = run(kit, tmp_path, "barge_in_then_button").report
    json.dumps(report)  # it is JSON
    assert set(report) == {"scenario", "turns", "events", "summary"}
    assert report["scenario"] == "barge-in then button"
    assert all(tuple(r) == COLUMNS for r in report["turns"])
    times = [e["t_ms"] for e in report["events"]]
    assert times == sorted(times) and all("type" in e for e in report["events"])
    types = [e["type"] for e in report["events"]]
    # the timeline holds the room's ground truth beside the pipeline's own events, in order
    # pause mode: quiet at once (the abort), then the words commit the interrupt
    assert types.index("say") < types.index("speech_paused") < types.index("speaker_abort") \
        < types.index("speech_interrupted")
    assert types.index("button_press") < types.index("button_release")
    assert set(report["summary"]) == {"barge_in_latency_ms", "button_latency_ms", "speech_end_to_first_audio_ms",
                                      "eos_to_first_audio_ms", "llm_stop_ms", "self_interruptions",
                                      "false_barge_ins", "false_interruptions", "self_pauses", "cut_offs",
                                      "barge_ins_unheard", "preemptive_used", "preemptive_discarded", "user_turns",
                                      "answers", "underruns", "late_ticks", "wake_words", "false_activations",
                                      "ignored", "wake_to_listening_ms", "wake_lines", "speaker_s"}
    s = report["summary"]
    assert s["user_turns"] == sum(r["role"] == "user" for r in report["turns"])
    assert s["barge_ins_unheard"] == 0  # "Stop." over the answer silenced it
    # a scenario without a wake word
    assert (s["wake_words"], s["false_activations"], s["ignored"], s["wake_lines"]) == (0, 0, 0, 0)
    # an answer superseded by the person going on ("Stop." ... "Tell me about Germany") is not an answer
    assert s["answers"] == sum(r["role"] == "assistant" and r["interrupt_reason"] != "superseded"
                               for r in report["turns"]) and s["cut_offs"] == 0
    # every answer that was heard has its latency from the end of the person's words, on the audio clock
    # (to the precision of the three 0.1 ms roundings and the summary's 1/16 ms sample: 0.22 ms at most)
    says = [e for e in report["events"] if e["type"] == "say"]
    first_audio = [e["t_ms"] for e in report["events"] if e["type"] == "first_audio"]
    assert s["speech_end_to_first_audio_ms"] == [
        pytest.approx(t - max(e["sound_end_ms"] for e in says if e["onset_ms"] <= t), abs=0.22) for t in first_audio]
    onset = next(e["onset_ms"] for e in report["events"] if e["type"] == "say" and e["what"].startswith("Stop"))
    abort = next(e for e in report["events"] if e["type"] == "speaker_abort" and e["t_ms"] >= onset)
    assert report["summary"]["barge_in_latency_ms"] == [pytest.approx(abort["last_played_ms"] - onset, abs=0.2)]
    # the speaker sounded only from the first answer's first audio on, and not for nothing
    assert 1.0 < s["speaker_s"] <= (report["events"][-1]["t_ms"] - first_audio[0]) / 1000 + 0.02


def test_a_wait_that_is_never_met_fails_the_scenario_naming_the_step(kit, tmp_path):
    fast = Kit(llm=FakeLLM(["Fine."]), tts=FakeTTS(), person=kit.person, vad=kit.vad, recognizer=kit.recognizer,
               store=kit.store)
    sc = scenario.parse({"name": "stuck", "step": [{"wait": "idle", "cough": 1}, {"wait": "speaking", "after_s": 0.1}]},
                        "stuck.toml")
    with pytest.raises(ScenarioFailed, match=r"stuck.toml, step 2 wait=speaking: the appliance was not "
                                             r"speaking within 1s \(it was idle\)") as failed:
        Simulation(sc, fast, Settings(), tmp_path / "turns.db", wait_timeout_s=1.0).run()
    # the failure carries the report up to it: the run that failed is the one worth reading
    report = failed.value.report
    assert report is not None and report["scenario"] == "stuck" and report["turns"] == []
    assert [e["what"] for e in report["events"] if e["type"] == "noise"] == ["1 cough(s)"]


def test_sayso_simulate_writes_the_turn_log_report_and_recording(tmp_path, capsys):
    from sayso import cli

    db, report, wav = tmp_path / "t.db", tmp_path / "r.json", tmp_path / "r.wav"
    args = ["simulate", str(HERE / "button_while_thinking.toml"), "--db", str(db), "--report", str(report),
            "--record", str(wav)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "the button while thinking" in out and "cut by button" in out
    assert json.loads(report.read_text())["scenario"] == "the button while thinking"
    assert db.exists() and wav.stat().st_size > 16000 * 4
    assert cli.main(["simulate", "no-such-scenario"]) == 2
    assert "packaged scenarios: " in capsys.readouterr().err


def test_sayso_simulate_with_a_real_person_reading_quietly_over_the_answer(tmp_path, capsys):
    """The quiet reading (about -33 dBFS, room tone first) cuts into an answer at -20 dB of echo, and is a turn."""
    from sayso import cli
    from sayso.models.manifest import load_manifest

    transcript = load_manifest().get("beckett-reading").transcript
    toml, report = tmp_path / "real.toml", tmp_path / "r.json"
    toml.write_text('name = "a real person cuts in"\n[room]\necho_gain_db = -20\necho_delay_ms = 30\nnoise_dbfs = -60\n'
                    '[[step]]\nwait = "idle"\nafter_s = 0.5\nsay = "Tell me about the history of France."\n'
                    '[[step]]\nwait = "speaking"\nafter_s = 1.5\nsay = "Ever tried."\n'
                    'voice = "recording:beckett-reading"\n[[step]]\nwait = "idle"\n')
    assert cli.main(["simulate", str(toml), "--report", str(report)]) == 0
    out = json.loads(report.read_text())
    said = [e for e in out["events"] if e["type"] == "say" and e["what"] == transcript]
    assert len(said) == 1 and 300 <= said[0]["onset_ms"] - said[0]["t_ms"] <= 345  # its words, after its tone
    turns = as_heard(out["turns"])
    assert [(r["role"], r["status"], r["interrupt_reason"]) for r in turns[:2]] == [
        (U, "complete", None), (A, "interrupted", "user_speaking")]
    assert any(r["role"] == U and r["text"] for r in turns[2:])  # what they read became a turn
    assert out["summary"]["barge_in_latency_ms"] and out["summary"]["self_interruptions"] == 0
    assert "a real person cuts in" in capsys.readouterr().out
