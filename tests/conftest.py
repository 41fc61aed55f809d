"""Shared fixtures: the checkout's real models and small helpers for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sayso.manifest import ModelStore


@pytest.fixture(scope="session")
def store() -> ModelStore:
    """The default models that `make test` fetched before running the suite."""
    return ModelStore()


ASOUNDRC = """
pcm.saysomic {{
    type file
    slave.pcm "null"
    file "{out}/mic-out.raw"
    infile "{infile}"
    format "raw"
    hint {{ show on description "sayso test mic (ALSA file plugin)" }}
}}
pcm.saysospeaker {{
    type file
    slave.pcm "null"
    file "{out}/speaker.raw"
    format "raw"
    hint {{ show on description "sayso test speaker (ALSA file plugin)" }}
}}
"""


@pytest.fixture
def alsa_devices(tmp_path, monkeypatch):
    """Real PortAudio/ALSA devices with no sound card: ALSA's `file` plugin on a `null` slave.

    Call it with the mic's raw 16 kHz int16 input; it returns the folder where the
    speaker's output lands. The null slave is not paced in real time: reads return
    at once, so tests take the frames they need and stop.
    """

    def make(mic_input: np.ndarray) -> Path:
        home = tmp_path / "alsa-home"
        home.mkdir(exist_ok=True)
        infile = home / "mic-in.raw"
        np.asarray(mic_input, dtype=np.int16).tofile(infile)
        (home / ".asoundrc").write_text(ASOUNDRC.format(out=home, infile=infile))
        monkeypatch.setenv("HOME", str(home))  # ALSA reads ~/.asoundrc at each PortAudio start
        return home

    return make
