"""`sayso demo` end to end on the real models: the mission, as a person would see it."""

from sayso import cli


def test_demo_shows_an_exchange_an_interruption_and_what_was_heard(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "=== what happened" in text and "heard  :" in text and "cut by : button" in text
    from sayso.turnlog import TurnLog

    rows = TurnLog(out / "turns.db").rows()
    assert [(r["role"], r["status"], r["interrupt_reason"]) for r in rows] == [
        ("user", "complete", None), ("assistant", "complete", None),
        ("user", "complete", None), ("assistant", "interrupted", "user_speaking"),
        ("user", "complete", None), ("assistant", "interrupted", "button")]
    for r in rows:
        if r["role"] == "assistant":
            heard, said = r["heard_text"].split(), r["text"].split()
            assert heard and heard == said[:len(heard)]
    assert rows[1]["heard_text"] == rows[1]["text"]
    assert (out / "conversation.wav").stat().st_size > 44100
