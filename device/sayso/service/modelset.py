"""The models the pipeline runs on: loaded from the store, then warmed before the appliance says it is ready.

Loading checks each model against the manifest first; warming runs each once,
so the first answer after start is as fast as later ones, and drops an
end-of-turn model this board cannot afford.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sayso.answering.backends import open_llm
from sayso.answering.thinker import LLM
from sayso.answering.tts import PiperTTS
from sayso.answering.voice import TTS
from sayso.audio import FRAME_SAMPLES, RATE_HZ
from sayso.config import Settings, TurnSettings, WakeSettings
from sayso.errors import ModelCorrupt, ModelMissing
from sayso.hearing.stt import Recognizer, open_recognizer
from sayso.hearing.turn import TURN_MODEL, SmartTurn
from sayso.hearing.vad import VAD_MODEL, SileroVAD
from sayso.hearing.wake import WakeModel
from sayso.models.manifest import ModelStore

log = logging.getLogger(__name__)


@dataclass
class Models:
    """The loaded models the pipeline runs on."""

    llm: LLM
    tts: TTS
    vad: SileroVAD
    recognizer: Recognizer
    turn: SmartTurn | None = None
    """The end-of-turn model; None decides the end of a turn by silence alone."""
    wake: WakeModel | None = None
    """The wake word; None takes every utterance as a request."""

    @classmethod
    def load(cls, settings: Settings, store: ModelStore) -> Models:
        return cls(llm=open_llm(settings, store),
                   tts=PiperTTS(store.path(settings.voice.model, role="voice"), settings.voice.length_scale),
                   vad=SileroVAD(store.path(VAD_MODEL, role="vad")),
                   recognizer=open_recognizer(store, settings.stt.engine, settings.stt.vosk_model),
                   turn=open_turn_model(settings.turn, store),
                   wake=open_wake_model(settings.wake))

    def warm(self, settings: Settings) -> dict[str, float]:
        """Run every model once so the first answer after start is as fast as later ones; ms each.

        The LLM reads its weights through once and prefills the system prompt,
        which llama.cpp keeps as the cached prefix of every later prompt. An
        end-of-turn model slower than `turn.max_cost_ms` on this board is
        dropped for silence alone.
        """
        took: dict[str, float] = {}

        def timed(name: str, call: Callable[[], object]) -> None:
            t = time.perf_counter()
            call()
            took[name] = round((time.perf_counter() - t) * 1000, 1)

        warm_llm = getattr(self.llm, "warm", None)
        if warm_llm is not None:
            timed("llm", lambda: warm_llm(settings.llm.system_prompt))
        timed("voice", lambda: self.tts.render("Ready."))
        timed("vad", lambda: self.vad.probability(np.zeros(FRAME_SAMPLES, np.int16)))
        self.vad.reset()
        timed("stt", lambda: (self.recognizer.accept(bytes(2 * RATE_HZ // 10)), self.recognizer.end()))
        turn = self.turn
        if turn is not None:
            quiet = np.zeros(RATE_HZ, np.int16)
            timed("turn", lambda: turn.probability(quiet))  # the first run allocates: time the second
            timed("turn", lambda: turn.probability(quiet))
            if took["turn"] > settings.turn.max_cost_ms:
                log.warning("the end-of-turn model takes %.0f ms here (turn.max_cost_ms = %g): ending turns on "
                            "silence alone", took["turn"], settings.turn.max_cost_ms)
                self.turn = None
        log.info("models warmed in %.0f ms (%s)", sum(took.values()),
                 ", ".join(f"{k} {v:.0f} ms" for k, v in took.items()))
        return took


def open_wake_model(settings: WakeSettings) -> WakeModel | None:
    """The wake word the config names, or None when it is off."""
    return None if settings.word == "off" else WakeModel(settings.word, settings.sensitivity)


def open_turn_model(settings: TurnSettings, store: ModelStore) -> SmartTurn | None:
    """Smart Turn when the config asks for it, else None (silence alone ends a turn)."""
    if settings.detector != "smart-turn":
        return None
    try:
        return SmartTurn(store.path(TURN_MODEL, role="turn"), settings.threads)
    except (ModelMissing, ModelCorrupt) as e:  # an appliance upgraded without fetching keeps answering
        log.warning("%s; until then turns end on silence alone", e)
        return None
