"""`sayso demo` end to end on the real models: the mission, as a person would see it."""

import json

import pytest

from sayso import cli
from sayso.pipeline.turnlog import TurnLog

pytestmark = pytest.mark.slow


def test_demo_shows_an_exchange_an_interruption_and_what_was_heard(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "what happened" in text and "heard  :" in text and "cut by button" in text
    assert "(with the wake word)" in text and "(no wake word: a follow-up)" in text
    assert "not requests: 1 utterance(s) without the wake word" in text
    assert "speech onset -> silence" in text and "press -> silence" in text
    rows = TurnLog(out / "turns.db").rows()
    # "Wait." may end a turn of its own; the words after it then join it, and the answer begun on "wait"
    # alone is dropped (superseded)
    dropped = [r for r in rows if r["interrupt_reason"] == "superseded"]
    assert all(r["role"] == "assistant" for r in dropped) and len(dropped) <= 1
    assert ("dropped: the person went on" in text) == bool(dropped)
    gone = {r["id"] for r in dropped}
    rows = [r for r in rows if r["id"] not in gone]
    assert [(r["role"], r["status"], r["interrupt_reason"]) for r in rows] == [
        ("user", "complete", None), ("assistant", "complete", None),
        ("user", "complete", None), ("assistant", "interrupted", "user_speaking"),
        ("user", "complete", None), ("assistant", "interrupted", "button")]
    for r in rows:
        if r["role"] == "assistant":
            heard, said = r["heard_text"].split(), r["text"].split()
            assert heard == said[:len(heard)] and "cut in" not in r["text"]
    assert rows[1]["heard_text"] == rows[1]["text"]
    report = json.loads((out / "report.json").read_text())
    assert [r["id"] for r in report["turns"] if r["id"] not in gone] == [r["id"] for r in rows]
    assert report["summary"]["self_interruptions"] == 0
    assert len(report["summary"]["barge_in_latency_ms"]) == 1 and len(report["summary"]["button_latency_ms"]) == 1
    assert (out / "conversation.wav").stat().st_size > 16000 * 4
