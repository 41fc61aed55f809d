"""The bench's stage timings: each stage on its own, one call at a time, idle CPU, and a CPU limit.

Wall-clock figures, unlike the scenarios' latencies on the room's audio clock: what
one VAD frame, one echo-cancelled frame, a second of speech recognised or spoken, a
token and an end-of-turn call cost on this machine, and what listening to a quiet
room costs all day.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from sayso.audio import FRAME_SAMPLES, RATE_HZ
from sayso.config import Settings
from sayso.sim.report import percentiles
from sayso.sim.simulate import Kit

_LINES = ("Tell me about the history of France.", "What is the capital of Germany?",
          "Turn on the light in the kitchen.")


def stage_timings(kit: Kit, settings: Settings) -> dict:
    """VAD and echo canceller ms per frame, STT and TTS real-time factors, the STT final's ms (what an answer
    started at a pause waits for), LLM tokens per second."""
    lines = [kit.person.say(t) for t in _LINES]
    speech = np.concatenate(lines)
    frames = [speech[i:i + FRAME_SAMPLES] for i in range(0, len(speech) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
    kit.vad.reset()
    vad_ms = _ms_each(kit.vad.probability, ((f,) for f in frames))
    aec_ms = _aec_ms(speech)
    stt_rtf, stt_final_ms = [], []
    for audio in lines:
        t = time.perf_counter()
        for i in range(0, len(audio), FRAME_SAMPLES):
            kit.recognizer.accept(audio[i:i + FRAME_SAMPLES].tobytes())
        ended = time.perf_counter()
        kit.recognizer.end()
        stt_rtf.append((time.perf_counter() - t) / (len(audio) / RATE_HZ))
        stt_final_ms.append((time.perf_counter() - ended) * 1000)
    tts_rtf = []
    for line in _LINES:
        t = time.perf_counter()
        r = kit.tts.render(line)
        tts_rtf.append((time.perf_counter() - t) / (len(r.audio) / r.rate_hz))
    messages = [{"role": "system", "content": settings.llm.system_prompt},
                {"role": "user", "content": "Tell me about the history of Rome."}]
    stamps = [time.perf_counter() for _ in kit.llm.stream(messages, lambda: False)]
    tps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else 0.0
    def p(values: list[float]) -> list[float | None]:
        return [None if v is None else round(v, 3) for v in percentiles(values)]

    out = {"vad_ms_per_frame": p(vad_ms), "aec_ms_per_frame": p(aec_ms), "stt_rtf": p(stt_rtf),
           "stt_final_ms": p(stt_final_ms), "tts_rtf": p(tts_rtf), "llm_tokens_per_s": round(tps, 1),
           "turn_detector": settings.turn.detector if kit.turn is not None else "silence"}
    if kit.turn is not None:
        out["turn_ms_per_call"] = p(_ms_each(kit.turn.probability, ((a,) for a in lines for _ in range(3))))
    if kit.wake is not None:
        detector = kit.wake.detector()
        out["wake_word"] = kit.wake.word
        out["wake_ms_per_frame"] = p(_ms_each(detector.process, ((f, i * FRAME_SAMPLES) for i, f in enumerate(frames))))
    return out


def _aec_ms(speech: np.ndarray) -> list[float]:
    """The echo canceller's cost per 32 ms frame, delay measurement included, on speech echoed at -6 dB."""
    from sayso.hearing.echo import EchoCanceller
    from sayso.pipeline.echo_reference import EchoReference

    reference = EchoReference(keep_s=len(speech) / RATE_HZ + 2)
    for i in range(0, len(speech), 320):
        reference.played(speech[i:i + 320], int(i * 1e9 / RATE_HZ))
    mic = np.concatenate([np.zeros(480, np.int16), speech // 2])
    canceller = EchoCanceller(reference)
    try:
        return _ms_each(canceller.process, ((mic[i:i + FRAME_SAMPLES], i)
                                            for i in range(0, len(speech) - FRAME_SAMPLES + 1, FRAME_SAMPLES)))
    finally:
        canceller.close()


def _ms_each(call: Callable[..., object], args: Iterable[tuple]) -> list[float]:
    """Wall-clock ms of `call(*a)` for each `a` in `args`, one at a time."""
    ms = []
    for a in args:
        t = time.perf_counter()
        call(*a)
        ms.append((time.perf_counter() - t) * 1000)
    return ms


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def idle_cpu(kit: Kit, settings: Settings, seconds: float) -> dict:
    """CPU the appliance spends listening to a quiet room, in % of one core, the room's own cost taken out.

    This is what a Pi pays all day: capture, VAD on every 32 ms frame, the
    conductor's and the watchdog's rounds.
    """
    from sayso.pipeline.turnlog import TurnLog
    from sayso.service.appliance import Appliance
    from sayso.service.notify import Notifier
    from sayso.sim.room import Room

    quiet = dataclasses.replace(settings, gpio=dataclasses.replace(settings.gpio, pin_factory="none"))
    room = Room(kit.tts.rate_hz, noise_dbfs=-60).start()
    try:
        t0 = _cpu_s()
        time.sleep(seconds)
        room_only = _cpu_s() - t0
        with tempfile.TemporaryDirectory(prefix="sayso-idle-") as tmp:
            kit.vad.reset()
            app = Appliance(quiet, kit, room.mic, room.speaker, TurnLog(Path(tmp) / "idle.db"), notifier=Notifier({}),
                            clock=room.clock).start()
            try:
                app.wait_listening(10.0)
                time.sleep(1.0)
                t0 = _cpu_s()
                time.sleep(seconds)
                both = _cpu_s() - t0
            finally:
                app.stop()
                app.engine.turnlog.close()
    finally:
        room.stop()
    return {"percent_of_one_core": round(max(0.0, both - room_only) / seconds * 100, 1), "seconds": seconds}


def limit_cpu(cores: int) -> list[int]:
    """Pin this process, every thread it has and every one it starts, to `cores` of its cores; returns them.

    A stand-in for a slower board: the pipeline, the LLM and the room share
    what is left. (A cgroup quota is the other way: `systemd-run --scope -p
    CPUQuota=50% sayso bench`.)
    """
    allowed = sorted(os.sched_getaffinity(0))[:max(1, cores)]
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), allowed)
        except ProcessLookupError:
            pass  # a thread that ended meanwhile
    return allowed
