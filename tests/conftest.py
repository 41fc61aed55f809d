"""Shared fixtures: the checkout's real models and small helpers for tests."""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import numpy as np
import pytest

from sayso.models.manifest import ModelStore

MODEL_LOADERS = (("onnxruntime", "InferenceSession"), ("llama_cpp", "Llama"), ("pocketsphinx", "Decoder"),
                 ("vosk", "Model"))
"""What every real model loads through: Silero, Smart Turn and Piper, the LLM, the two recognisers."""

_running: list[pytest.Item] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running.append(item)
    yield
    _running.pop()


def _watched(cls: type, what: str) -> type:
    class Watched(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            item = _running[-1] if _running else None
            if item is not None and item.get_closest_marker("slow") is None:
                pytest.fail(f"{item.nodeid} loads a real model ({what}): mark it slow, so that "
                            "`make test-fast` runs without models", pytrace=False)

    Watched.__name__ = Watched.__qualname__ = cls.__name__
    return Watched


@pytest.fixture(scope="session", autouse=True)
def real_models_only_in_slow_tests():
    """Fail a test that loads a real model (in a fixture too) without the `slow` mark."""
    with pytest.MonkeyPatch.context() as patch:
        for module, name in MODEL_LOADERS:
            mod = importlib.import_module(module)
            patch.setattr(mod, name, _watched(getattr(mod, name), f"{module}.{name}"))
        yield


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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_file_manifest(name: str, data: bytes, sources: str, **extra: str) -> str:
    """A manifest of one model with one file, for the fetcher's tests."""
    more = "".join(f"{k} = {v!r}\n" for k, v in extra.items())
    return (f'[[model]]\nname = "tiny"\nrole = "llm"\ndefault = true\nlicence = "test"\nabout = "test"\n'
            f'[[model.file]]\nname = "{name}"\nsize = {len(data)}\nsha256 = "{sha(data)}"\n{more}'
            f'sources = [{sources}]\n')


@pytest.fixture
def payload(tmp_path) -> tuple[bytes, Path]:
    """A model file to fetch: 300 kB of noise, served from a folder of its own."""
    data = os.urandom(300_000)
    src = tmp_path / "served" / "model.bin"
    src.parent.mkdir()
    src.write_bytes(data)
    return data, src
