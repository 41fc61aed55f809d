"""`sayso bench`: the packaged bench scenarios N times, and the stages timed on their own.

Scenario latencies are on the simulated room's audio clock (see report.py);
the stage numbers are wall-clock timings of one call at a time on this machine.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sayso import scenario
from sayso.capture import FRAME_SAMPLES, RATE_HZ
from sayso.config import Settings
from sayso.manifest import ModelStore
from sayso.report import SUMMARY_KEYS, percentiles
from sayso.simulate import Kit, Simulation

SCENARIOS = ("bench-answer", "bench-barge-in", "bench-button")

#: (metric, statistic, limit): the targets on the 2-core x86 CI machine with the default models.
TARGETS = (("barge_in_latency_ms", "p95", 250.0), ("button_latency_ms", "p95", 60.0),
           ("llm_stop_ms", "p95", 150.0), ("eos_to_first_audio_ms", "p50", 1500.0),
           ("self_interruptions", "total", 0), ("peak_rss_mb", "max", 1200.0))

_LINES = ("Tell me about the history of France.", "What is the capital of Germany?",
          "Turn on the light in the kitchen.")


def _stages(kit: Kit, settings: Settings) -> dict:
    """VAD ms per frame, STT and TTS real-time factors, LLM tokens per second."""
    lines = [kit.person.say(t) for t in _LINES]
    speech = np.concatenate(lines)
    frames = [speech[i:i + FRAME_SAMPLES] for i in range(0, len(speech) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
    kit.vad.reset()
    vad_ms = []
    for f in frames:
        t = time.perf_counter()
        kit.vad.probability(f)
        vad_ms.append((time.perf_counter() - t) * 1000)
    stt_rtf = []
    for audio in lines:
        t = time.perf_counter()
        for i in range(0, len(audio), FRAME_SAMPLES):
            kit.recognizer.accept(audio[i:i + FRAME_SAMPLES].tobytes())
        kit.recognizer.end()
        stt_rtf.append((time.perf_counter() - t) / (len(audio) / RATE_HZ))
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
        return [_round(v, 3) for v in percentiles(values)]

    return {"vad_ms_per_frame": p(vad_ms), "stt_rtf": p(stt_rtf), "tts_rtf": p(tts_rtf),
            "llm_tokens_per_s": round(tps, 1)}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _idle_cpu(kit: Kit, settings: Settings, seconds: float) -> dict:
    """CPU the appliance spends listening to a quiet room, in % of one core, the room's own cost taken out.

    This is what a Pi pays all day: capture, VAD on every 32 ms frame, the
    conductor's and the watchdog's rounds.
    """
    from sayso.appliance import Appliance
    from sayso.notify import Notifier
    from sayso.sim import Room
    from sayso.turnlog import TurnLog

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


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def run_bench(settings: Settings, store: ModelStore, runs: int,
              progress: Callable[[str], None] = lambda _: None, idle_s: float = 20.0) -> dict:
    kit = Kit.load(settings, store)
    samples: dict[str, list[float]] = {k: [] for k in SUMMARY_KEYS}
    selfs = false = 0
    with tempfile.TemporaryDirectory(prefix="sayso-bench-") as tmp:
        for run in range(runs):
            for name in SCENARIOS:
                t = time.monotonic()
                sc = scenario.load(scenario.PACKAGED / f"{name}.toml")
                result = Simulation(sc, kit, settings, Path(tmp) / f"{name}-{run}.db").run()
                s = result.report["summary"]
                for k in SUMMARY_KEYS:
                    samples[k] += s[k]
                selfs += s["self_interruptions"]
                false += s["false_barge_ins"]
                progress(f"run {run + 1}/{runs} {name}: {time.monotonic() - t:.0f}s "
                         + " ".join(f"{k}={s[k]}" for k in SUMMARY_KEYS if s[k]))
    out: dict = {"runs": runs, "scenarios": list(SCENARIOS), "machine": machine()}
    for k in SUMMARY_KEYS:
        p50, p95 = percentiles(samples[k])
        out[k] = {"p50": _round(p50, 1), "p95": _round(p95, 1), "n": len(samples[k])}
    out["self_interruptions"] = {"total": selfs}
    out["false_barge_ins"] = {"total": false}
    out.update(_stages(kit, settings))
    if idle_s > 0:
        progress(f"idle: {idle_s:g} s of a quiet room, then {idle_s:g} s of the appliance listening to it")
        out["idle_cpu"] = _idle_cpu(kit, settings, idle_s)
    out["peak_rss_mb"] = {"max": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    out["targets"] = [_verdict(out, metric, stat, limit) for metric, stat, limit in TARGETS]
    return out


def machine() -> str:
    """CPU model, cores and memory: the line every published number needs beside it."""
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem_gb:.0f} GiB, Python {platform.python_version()}"


def _verdict(out: dict, metric: str, stat: str, limit: float) -> dict:
    value = out[metric][stat]
    met = value is not None and value <= limit
    return {"metric": metric, "stat": stat, "limit": limit, "value": value, "met": met}


def table(out: dict) -> str:
    lines = [f"sayso bench: {out['runs']} run(s) of {', '.join(out['scenarios'])}", f"machine: {out['machine']}", "",
             f"{'metric':26} {'p50':>9} {'p95':>9} {'n':>4}"]
    for k in SUMMARY_KEYS:
        p50, p95 = ("-" if x is None else f"{x:.0f}" for x in (out[k]["p50"], out[k]["p95"]))
        lines.append(f"{k:26} {p50:>9} {p95:>9} {out[k]['n']:>4}")
    for k in ("vad_ms_per_frame", "stt_rtf", "tts_rtf"):
        p50, p95 = out[k]
        lines.append(f"{k:26} {p50:>9.3f} {p95:>9.3f}")
    lines.append(f"{'llm_tokens_per_s':26} {out['llm_tokens_per_s']:>9.1f}")
    lines.append(f"{'self_interruptions':26} {out['self_interruptions']['total']:>9}")
    lines.append(f"{'false_barge_ins':26} {out['false_barge_ins']['total']:>9}")
    lines.append(f"{'peak_rss_mb':26} {out['peak_rss_mb']['max']:>9.0f}")
    if "idle_cpu" in out:
        lines.append(f"{'idle_cpu_%_of_one_core':26} {out['idle_cpu']['percent_of_one_core']:>9.1f}")
    lines.append("\ntargets:")
    for t in out["targets"]:
        lines.append(f"  {'met   ' if t['met'] else 'MISSED'} {t['metric']} {t['stat']} {t['value']} "
                     f"(limit {t['limit']:g})")
    return "\n".join(lines)

