"""`sayso demo`: the mission on the real models, with no sound card.

A question, an answer cut off by the person speaking, a follow-up answered with
the cut in mind, and an answer stopped by the button (real gpiozero, on its
MockFactory pin). The person's questions are spoken by Piper and heard through
the real recogniser; the real LLM answers and Piper speaks through the engine.
Playback runs in real time on a simulated sound card and is recorded to a WAV.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sayso.capture import FRAME_SAMPLES
from sayso.config import Settings
from sayso.engine import Engine
from sayso.exchange import to_mic_rate, write_wav
from sayso.fakes import FakeSpeakerSink
from sayso.llm import LlamaLLM
from sayso.manifest import ModelStore
from sayso.messages import SpeechStarted, State, Utterance
from sayso.stt import open_recognizer
from sayso.tts import PiperTTS
from sayso.turnlog import TurnLog

log = logging.getLogger(__name__)
WAIT_S = 60.0


@dataclass(frozen=True)
class Step:
    say: str
    cut_after_s: float | None = None
    """Seconds of the answer's audio before the next step cuts in (None: let it finish)."""
    press: bool = False
    """Cut it with the stop button rather than by speaking."""


SCRIPT = (
    Step("What is the capital of France?"),
    Step("Tell me about the history of France.", cut_after_s=2.5),
    Step("Wait. Tell me about Berlin and its history.", cut_after_s=2.5, press=True),
)


class Demo:
    def __init__(self, settings: Settings, store: ModelStore, out_dir: Path):
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.db = out_dir / "turns.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        self.tts = PiperTTS(store.path(settings.voice.model, role="voice"), settings.voice.length_scale)
        # the person: the same voice, a little slower, so it is told apart in the recording
        self.person = PiperTTS(store.path(settings.voice.model, role="voice"), 1.1)
        self.rec = open_recognizer(store, settings.stt.engine, settings.stt.vosk_model)
        llm = LlamaLLM.from_settings(store.path(settings.llm.model, role="llm"), settings.llm)
        self.sink = FakeSpeakerSink(rate_hz=self.tts.rate_hz)
        self.engine = Engine(llm=llm, tts=self.tts, sink=self.sink, turnlog=TurnLog(self.db), settings=settings)

    def hear(self, text: str) -> str:
        """Speak `text` as the person and run it through the streaming recogniser."""
        audio = np.concatenate([s.audio for s in self.person.speak(text)])
        mic = to_mic_rate(audio, self.person.rate_hz)
        for i in range(0, len(mic), FRAME_SAMPLES):
            self.rec.accept(mic[i:i + FRAME_SAMPLES].tobytes())
        return self.rec.end().text

    def run(self) -> list[dict]:
        from gpiozero import Button
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
        button = Button(17, pin_factory=factory, bounce_time=None)
        c = self.engine.conductor
        button.when_pressed = lambda: c.button()
        self.engine.start()
        pause = threading.Event()
        try:
            heard_next = self.hear(SCRIPT[0].say)
            for i, step in enumerate(SCRIPT):
                print(f"\nperson: {step.say!r}\n  (recogniser heard: {heard_next!r})", flush=True)
                c.post(SpeechStarted(time.monotonic_ns()))
                c.post(Utterance(heard_next, time.monotonic_ns()))
                if not c.wait_state(State.SPEAKING, WAIT_S):
                    raise TimeoutError("the answer did not start within a minute")
                nxt = SCRIPT[i + 1] if i + 1 < len(SCRIPT) else None
                if nxt:
                    heard_next = self.hear(nxt.say)
                if step.cut_after_s is None:
                    c.wait_state(State.IDLE, WAIT_S)
                    continue
                pause.wait(step.cut_after_s)
                if step.press:
                    print("  ** the person presses the stop button **", flush=True)
                    factory.pin(17).drive_low()
                    pause.wait(0.05)
                    factory.pin(17).drive_high()
                else:
                    # the listener's barge-in on speech onset; the transcript follows as the next step
                    print("  ** the person starts talking over the answer **", flush=True)
                    c.interrupt("full", "user_speaking", onset_ns=time.monotonic_ns())
                c.wait_state(State.IDLE, WAIT_S)
        finally:
            self.engine.stop()
            button.close()
        write_wav(self.out_dir / "conversation.wav", self.sink.audible(), self.sink.rate_hz)
        return self.engine.turnlog.rows()


def print_transcript(rows: list[dict]) -> None:
    print("\n=== what happened (from the turn log) ===")
    for r in rows:
        if r["role"] == "user":
            print(f"\n[{r['id']}] person : {r['text']}")
            continue
        m = r["metrics"]
        print(f"[{r['id']}] sayso  : {r['text']}")
        if r["status"] == "interrupted":
            print(f"      heard  : {r['heard_text'] or '(nothing)'}")
            llm = (f"LLM stopped {m['interrupt_to_llm_stop_ms']:.0f} ms after it"
                   if "interrupt_to_llm_stop_ms" in m else "the LLM had already finished")
            silence = (f"silent {m['interrupt_to_silence_ms']:.0f} ms after the interrupt"
                       if "interrupt_to_silence_ms" in m else "nothing had been played yet")
            print(f"      cut by : {r['interrupt_reason']} ({r['interrupt_kind']}); {silence}; {llm}")
        else:
            print("      heard  : all of it")
        if "eos_to_first_audio_ms" in m:
            print(f"      end of question -> first token {m.get('eos_to_first_token_ms', 0):.0f} ms, "
                  f"-> first audio {m['eos_to_first_audio_ms']:.0f} ms")


def run_demo(settings: Settings, store: ModelStore, out_dir: Path) -> list[dict]:
    demo = Demo(settings, store, out_dir)
    rows = demo.run()
    print_transcript(rows)
    print(f"\nturn log : {demo.db}   (try: sayso turns --db {demo.db})")
    print(f"recording: {out_dir / 'conversation.wav'} (what the speaker played)")
    return rows
