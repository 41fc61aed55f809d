"""Voices in the simulated room besides Piper's: espeak-ng, recordings of real people, and a talker in the background.

espeak-ng is a formant synthesiser, as far from Piper's neural voice as a
second synthetic speaker gets; its voices are named as espeak-ng names them
(`espeak-ng --voices=en`), e.g. `espeak:en-us` or `espeak:en-gb+f3`. A
recording (`recording:NAME`, a `recording` in the model manifest) is a real
person: room tone, breaths, their own level and pace, but only their own words.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
import wave
from collections.abc import Callable

import numpy as np

from sayso.audio import RATE_HZ, read_wav_at_mic_rate, to_mic_rate
from sayso.errors import ModelCorrupt, ModelMissing, SaysoError, UnknownModel
from sayso.models.manifest import ModelStore
from sayso.sim.onset import onset_of

PIPER = "piper"
"""The default person: the appliance's own Piper voice, slower and higher (simulate.PersonVoice)."""
ESPEAK = "espeak:"
RECORDING = "recording:"
VOICE_NAME = re.compile(r"^(piper|espeak:[A-Za-z0-9][A-Za-z0-9_+-]*|recording:[a-z0-9][a-z0-9.-]*)$")
"""A voice as a scenario or the bench names it."""
VOICES_ALLOWED = ("piper, or espeak:NAME with an espeak-ng voice name (espeak-ng --voices=en lists them), "
                  "or recording:NAME with a recording from the model manifest (sayso models list)")

BABBLE_VOICE = "en-gb+f3"
"""The background talker: a voice no default person uses."""
BABBLE_TEXT = (
    "Good evening. Here is the news at nine. Heavy rain is expected across the north tonight, with winds "
    "strong enough to bring down branches near the coast. In the city, the council met again to discuss the "
    "new bus routes, which will start in the spring. Shoppers were out early for the winter sales, and some "
    "shops opened before dawn. In sport, the home side won their third game in a row, with a late goal from "
    "the captain. And finally, a cat that went missing two years ago has found its way home, four hundred "
    "miles from where it was lost. Its owners say it looks well fed.")


class VoiceUnavailable(SaysoError, FileNotFoundError):
    """A voice the scenario names cannot be made on this machine."""


def espeak(text: str, voice: str, words_per_minute: int = 160) -> np.ndarray:
    """`text` spoken by espeak-ng voice `voice`, int16 at the mic's 16 kHz."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise VoiceUnavailable("espeak-ng is not installed: `sudo apt-get install espeak-ng` (make setup does it)")
    run = subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "--stdout", text],
                         capture_output=True, timeout=60)
    if run.returncode != 0 or not run.stdout.startswith(b"RIFF"):
        raise VoiceUnavailable(f"espeak-ng has no voice {voice!r} ({run.stderr.decode(errors='replace').strip()}); "
                               "`espeak-ng --voices=en` lists them")
    # espeak-ng streams its WAV with unknown lengths in the header: read the samples after it ourselves
    with wave.open(io.BytesIO(run.stdout)) as w:
        rate = w.getframerate()
    data = run.stdout.find(b"data") + 8
    return to_mic_rate(np.frombuffer(run.stdout[data:len(run.stdout) - (len(run.stdout) - data) % 2], np.int16),
                       rate)


@functools.lru_cache(maxsize=1)
def babble() -> np.ndarray:
    """About 30 s of a newsreader that nobody in the room is talking to, int16 at 16 kHz, to be looped."""
    return espeak(BABBLE_TEXT, BABBLE_VOICE)


def with_pauses(say: Callable[[str], np.ndarray], parts: tuple[str, ...], gap_s: float) -> np.ndarray:
    """The parts spoken one after another, `gap_s` of silence between the end of one's sound and the next."""
    pieces = []
    for i, part in enumerate(parts):
        audio = say(part)
        if i:
            audio = audio[onset_of(audio):]
            pieces.append(np.zeros(int(gap_s * RATE_HZ), np.int16))
        if i < len(parts) - 1:
            audio = audio[:len(audio) - onset_of(audio[::-1])]
        pieces.append(audio)
    return np.concatenate(pieces)


class EspeakVoice:
    """The person as espeak-ng speaks: a formant voice, nothing like the appliance's own."""

    def __init__(self, name: str, words_per_minute: int = 150):
        self.name, self.words_per_minute = name, words_per_minute
        espeak("test", name)  # an unknown voice fails here, before a scenario starts

    def say(self, text: str) -> np.ndarray:
        """`text` spoken, as int16 at the mic's 16 kHz."""
        return espeak(text, self.name, self.words_per_minute)

    def say_with_pauses(self, parts: tuple[str, ...], gap_s: float) -> np.ndarray:
        return with_pauses(self.say, parts, gap_s)


class RecordingVoice:
    """The person as a recording of a real person: whatever the line, they say the recording's words.

    The recording plays as it was made, leading room tone and all, so the
    room's ground truth (sim/onset.py) and the recogniser meet real speech.
    """

    def __init__(self, name: str, store: ModelStore):
        self.name = name
        fetch = f"`sayso models fetch --recording {name}` fetches it"
        try:
            model = store.manifest.get(name, "recording")
            path = store.path(name, "recording")
        except UnknownModel as e:
            raise VoiceUnavailable(str(e)) from None
        except ModelMissing:
            raise VoiceUnavailable(f"recording {name!r} is not fetched: {fetch}") from None
        except ModelCorrupt:
            raise VoiceUnavailable(f"recording {name!r} is damaged: {fetch} again") from None
        self.transcript = model.transcript
        self.audio = read_wav_at_mic_rate(path)

    @property
    def label(self) -> str:
        """What the report's ground truth says was said: the words where known, else the recording's name."""
        return self.transcript or f"(recording {self.name})"

    def say(self, text: str) -> np.ndarray:
        """The recording, as int16 at the mic's 16 kHz; `text` is the scenario's line, which it does not say."""
        return self.audio

    def say_with_pauses(self, parts: tuple[str, ...], gap_s: float) -> np.ndarray:
        """The recording as it is: its own pauses stand for the line's."""
        return self.audio
