"""`sayso turns` on a log the engine wrote."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sayso import cli
from sayso.engine import Engine
from sayso.pipeline.messages import State, Utterance
from sayso.pipeline.turnlog import COLUMNS, TurnLog
from sayso.sim.fakes import FakeLLM, FakeSpeakerSink, FakeTTS
from waits import wait_until

ANSWER = "Paris is the capital of France. It sits on the Seine and has many bridges and museums to see."


@dataclass(frozen=True)
class Written:
    path: Path
    press_to_idle_ms: float
    """From just before the button was pressed to the appliance back to idle: the answer went quiet within."""


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Written:
    path = tmp_path_factory.mktemp("turns") / "turns.db"
    events = []
    engine = Engine(llm=FakeLLM([ANSWER, "Berlin."]), tts=FakeTTS(), sink=FakeSpeakerSink(),
                    turnlog=TurnLog(path), observers=[events.append]).start()
    c = engine.conductor
    c.post(Utterance("capital of france", time.monotonic_ns()))
    assert c.wait_state(State.SPEAKING, 10)
    assert wait_until(lambda: engine.turnlog.rows()[-1]["heard_text"]), "nothing was heard before the button"
    pressed_ns = time.monotonic_ns()
    assert c.button()
    assert c.wait_state(State.IDLE, 10)
    idle_ns = time.monotonic_ns()
    c.post(Utterance("and germany", time.monotonic_ns()))
    assert c.wait_state(State.THINKING, 10) and c.wait_state(State.IDLE, 10)
    engine.stop()
    return Written(path, (idle_ns - pressed_ns) / 1e6)


@pytest.fixture(scope="module")
def db(written) -> Path:
    return written.path


def test_table_shows_said_and_heard_for_interrupted_turns(db, capsys):
    assert cli.main(["turns", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["id", "role", "status", "reason", "text"]
    assert any("interrupted button" in " ".join(line.split()) for line in lines)
    heard = next(line for line in lines if "heard:" in line)
    assert heard.split("heard:")[1].strip() and ANSWER.startswith(heard.split("heard:")[1].strip().rstrip("\u2026"))
    assert "4 turn(s)" in out


def test_json_rows_use_the_contract_columns(written, capsys):
    assert cli.main(["turns", "--db", str(written.path), "--json", "--interrupted"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and tuple(rows[0]) == COLUMNS
    assert rows[0]["interrupt_reason"] == "button" and rows[0]["text"] == ANSWER
    # the speaker went quiet after the press, and before the conductor, told so, went back to idle
    assert 0 < rows[0]["metrics"]["interrupt_to_silence_ms"] <= written.press_to_idle_ms


def test_show_one_turn_and_last_n(db, capsys):
    assert cli.main(["turns", "show", "2", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "interrupt_reason: button" in out and "heard_text:" in out
    assert cli.main(["turns", "--db", str(db), "--last", "2", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [3, 4]


def test_missing_log_says_where_it_looked(tmp_path, capsys):
    assert cli.main(["turns", "--db", str(tmp_path / "none.db")]) == 2
    assert "no turn log at" in capsys.readouterr().err
