"""The scenario format (a contract): what it accepts, and a clear message for everything it does not."""

from __future__ import annotations

import tomllib

import pytest

from sayso.errors import ScenarioError
from sayso.pipeline.messages import State
from sayso.sim import scenario

DOCUMENTED_EXAMPLE = """
name = "barge-in then button"
[room]
echo_gain_db = -20
echo_delay_ms = 30
noise_dbfs = -60
[[step]]
wait = "idle"
after_s = 0.5
say = "What is the capital of France?"
[[step]]
wait = "speaking"
after_s = 1.5
say = "Stop. Tell me about Germany instead."
[[step]]
wait = "speaking"
after_s = 1.0
press = true
[[step]]
wait = "idle"
"""


def parse(text: str, base=None) -> scenario.Scenario:
    return scenario.parse(tomllib.loads(text), "s.toml", base)


def test_the_documented_example_parses():
    sc = parse(DOCUMENTED_EXAMPLE)
    assert sc.name == "barge-in then button"
    assert sc.room == scenario.RoomSpec(-20.0, 30.0, -60.0)
    assert [(s.number, s.wait, s.action) for s in sc.steps] == [
        (1, State.IDLE, "say"), (2, State.SPEAKING, "say"), (3, State.SPEAKING, "press"), (4, State.IDLE, None)]
    assert sc.steps[2].hold_s == 0.1


def test_room_is_optional_and_wav_and_noise_are_actions(tmp_path):
    (tmp_path / "cough.wav").write_bytes(b"")
    sc = parse('[[step]]\nwav = "cough.wav"\n[[step]]\nnoise_s = 0.4\n[[step]]\ncough = 2\n', base=tmp_path)
    assert sc.room == scenario.RoomSpec() and sc.name == "s"
    assert sc.steps[0].wav == tmp_path / "cough.wav" and sc.steps[1].noise_s == 0.4
    assert sc.steps[2].action == "cough" and sc.steps[2].cough == 2


@pytest.mark.parametrize("text, message", [
    ('nmae = "x"\n[[step]]\nwait = "idle"', "unknown key 'nmae'"),
    ('name = "x"', "no steps"),
    ('[room]\necho_gain = -20\n[[step]]\nwait = "idle"', "[room]: unknown key 'echo_gain'"),
    ('[room]\nnoise_dbfs = 10\n[[step]]\nwait = "idle"', "noise_dbfs = 10 must be between"),
    ('[[step]]\nwait = "idle"\n[[step]]\nwait = "talking"', "step 2: wait = 'talking'; allowed: idle, listening"),
    ('[[step]]\nsay = "hi"\npress = true', "step 1: one action per step, found say, press"),
    ('[[step]]\nsay = ""', "step 1: say must be a non-empty string"),
    ('[[step]]\nwav = "nowhere.wav"', "wav file nowhere.wav does not exist"),
    ('[[step]]\nsay = "hi"\nhold_s = 1', "hold_s belongs to a step with press = true"),
    ('[[step]]\nafter_s = "1"', "after_s = '1' must be a number"),
    ('[[step]]\npress = false', "step 1 does nothing"),
    ('[[step]]\nwiat = "idle"', "step 1: unknown key 'wiat'"),
    ('[[step]]\ncough = 0.5', "cough = 0.5 must be a whole number of coughs from 1 to 10"),
])
def test_a_bad_scenario_names_the_step_and_the_key(text, message):
    with pytest.raises(ScenarioError, match=None) as e:
        parse(text)
    assert message in str(e.value) and "s.toml" in str(e.value)


def test_packaged_scenarios_load_by_name_and_a_missing_one_lists_them():
    names = sorted(p.stem for p in scenario.PACKAGED.glob("*.toml"))
    assert {"demo", "bench-answer", "bench-barge-in", "bench-button"} <= set(names)
    for name in names:
        assert scenario.load(name).steps
    with pytest.raises(ScenarioError, match="packaged scenarios: bench-answer"):
        scenario.load("no-such-scenario")


def test_a_file_that_is_not_toml_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[step]\n")
    with pytest.raises(ScenarioError, match="bad.toml is not valid TOML"):
        scenario.load(bad)


def test_the_harder_rooms_keys_parse_and_are_checked():
    sc = parse('[room]\necho_gain_db = -6\nrt60_s = 0.5\ndrr_db = 3\ndrift_ppm = 100\nspeaker_clip_db = -3\n'
               'babble_dbfs = -35\n[[step]]\nwait = "idle"')
    assert sc.room == scenario.RoomSpec(-6.0, 0.0, None, rt60_s=0.5, drr_db=3.0, drift_ppm=100.0,
                                        speaker_clip_db=-3.0, babble_dbfs=-35.0)
    with pytest.raises(ScenarioError, match="drr_db belongs to a reverberant room"):
        parse('[room]\ndrr_db = 3\n[[step]]\nwait = "idle"')
    with pytest.raises(ScenarioError, match="rt60_s = 9 must be between 0.05 and 3"):
        parse('[room]\nrt60_s = 9\n[[step]]\nwait = "idle"')


def test_the_persons_voice_is_set_for_the_scenario_and_may_change_for_a_line():
    sc = parse('voice = "espeak:en-us"\n[[step]]\nsay = "hi"\n[[step]]\nsay = "there"\nvoice = "piper"')
    assert sc.voice == "espeak:en-us" and [s.voice for s in sc.steps] == [None, "piper"]
    assert parse('[[step]]\nsay = "hi"').voice == "piper"
    with pytest.raises(ScenarioError, match="voice = 'bark'; allowed: piper, or espeak:NAME"):
        parse('voice = "bark"\n[[step]]\nsay = "hi"')
    with pytest.raises(ScenarioError, match="step 1: voice belongs to a step that says something"):
        parse('[[step]]\ncough = 1\nvoice = "piper"')
