"""`sayso bench`: the packaged bench scenarios N times at room levels, and the stages timed on their own.

Every scenario runs with the speaker leaking into the mic at -20 dB (a speaker
an arm's length away), at -6 dB (a loud one close to the mic), and in the hard
room: -6 dB of echo through a reverberant kitchen, a drifting speaker clock, a
television talking and a louder noise floor. Each level may be run per voice of
the person. Scenario latencies are on the simulated room's audio clock (see
report.py); the stage numbers are wall-clock timings of one call at a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sayso.answering.llm import generation_threads
from sayso.config import Settings
from sayso.errors import SaysoError, ScenarioFailed
from sayso.models.manifest import ModelStore
from sayso.sim import scenario
from sayso.sim.report import COUNT_KEYS, SUMMARY_KEYS, percentiles
from sayso.sim.simulate import Kit, Simulation
from sayso.sim.stagetimes import idle_cpu, limit_cpu, stage_timings
from sayso.sim.voices import PIPER

SCENARIOS = ("bench-answer", "bench-barge-in", "bench-button", "bench-coughs", "bench-questions", "bench-pauses",
             "bench-reading", "bench-wake", "bench-quiet-barge-in")
QUIET = "bench-quiet-barge-in"
"""Its barge-ins are a quiet real voice's: reported apart (`quiet_barge_in_latency_ms`), not mixed with the
loud ones."""
LEVELS: dict[str, dict] = {
    "-20": {"echo_gain_db": -20.0},
    "-6": {"echo_gain_db": -6.0},
    "hard": {"echo_gain_db": -6.0, "rt60_s": 0.5, "drr_db": 3.0, "drift_ppm": 100.0, "babble_dbfs": -35.0,
             "noise_dbfs": -50.0},
}
"""Room levels by name: what each changes in the bench scenarios' [room] (scenario.RoomSpec's fields)."""
DEFAULT_LEVELS = ("-20", "-6", "hard")
"""What `sayso bench` runs unless told: every level."""
COUNTS = COUNT_KEYS
LATENCIES = (*SUMMARY_KEYS, "quiet_barge_in_latency_ms")

#: (level or None for the whole bench, metric, statistic, limit): the targets on the 2-core x86 CI
#: machine with the default models and voice.
TARGETS = (("-20", "barge_in_latency_ms", "p95", 250.0), ("-6", "barge_in_latency_ms", "p95", 300.0),
           ("-20", "quiet_barge_in_latency_ms", "p95", 300.0), ("-20", "quiet_barge_ins_unheard", "total", 0),
           ("-20", "button_latency_ms", "p95", 60.0), ("-20", "llm_stop_ms", "p95", 150.0),
           ("-6", "llm_stop_ms", "p95", 150.0),
           ("-20", "speech_end_to_first_audio_ms", "p50", 1000.0),
           ("-20", "speech_end_to_first_audio_ms", "p95", 1500.0),
           ("-6", "speech_end_to_first_audio_ms", "p50", 1000.0),
           ("-6", "speech_end_to_first_audio_ms", "p95", 1500.0),
           ("-20", "pause_cut_off_rate", "total", 0.1), ("-6", "pause_cut_off_rate", "total", 0.1),
           ("-20", "reading_runs_not_one_turn", "total", 0), ("-6", "reading_runs_not_one_turn", "total", 0),
           ("-20", "preemptive_discard_rate", "total", 0.3), ("-6", "preemptive_discard_rate", "total", 0.3),
           ("-20", "self_interruptions", "total", 0),
           ("-6", "self_interruptions", "total", 0), ("-6", "noise_runs_not_completed", "total", 0),
           ("-20", "scenario_failures", "total", 0), ("-6", "scenario_failures", "total", 0),
           ("hard", "scenario_failures", "total", 0), ("hard", "self_interruptions", "total", 0),
           ("hard", "noise_runs_not_completed", "total", 0), ("hard", "self_pauses_per_10_min", "total", 1.0),
           ("hard", "barge_in_latency_ms", "p95", 300.0),
           ("-20", "false_activations", "total", 0), ("-6", "false_activations", "total", 0),
           ("-20", "wake_requests_missed_rate", "total", 0.05), ("-6", "wake_requests_missed_rate", "total", 0.05),
           ("-20", "wake_to_listening_ms", "p95", 300.0), ("-6", "wake_to_listening_ms", "p95", 300.0),
           (None, "idle_cpu", "percent_of_one_core", 8.0), (None, "wake_ms_per_frame", "p95", 1.0),
           (None, "aec_ms_per_frame", "p95", 1.0), (None, "peak_rss_mb", "max", 1120.0))

def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def keep_report(report: dict, path: Path, progress: Callable[[str], None]) -> None:
    """Write one run's report where `--reports` asked. A full disk costs that file, said plainly, not the bench."""
    try:
        path.write_text(json.dumps(report, indent=2))
    except OSError as e:
        progress(f"could not keep the report {path}: {e.strerror}; the bench goes on without it")


def run_bench(settings: Settings, store: ModelStore, runs: int,
              progress: Callable[[str], None] = lambda _: None, idle_s: float = 20.0,
              plot_dir: Path | None = None, scenarios: tuple[str, ...] = SCENARIOS,
              levels: tuple[str, ...] = DEFAULT_LEVELS, voices: tuple[str, ...] = (PIPER,),
              cpu_limit: int | None = None, reports_dir: Path | None = None) -> dict:
    if reports_dir is not None:
        try:
            reports_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SaysoError(f"cannot make the reports directory {reports_dir}: {e.strerror}; "
                             f"choose another with --reports") from None
    pinned = limit_cpu(cpu_limit) if cpu_limit else None  # before any model starts its threads
    t = time.monotonic()
    kit = Kit.load(settings, store)
    out: dict = {"runs": runs, "scenarios": list(scenarios), "machine": machine(), "levels": {},
                 "rooms": {name: LEVELS[name] for name in levels}, "voices": list(voices),
                 "llm_threads": settings.llm.threads or generation_threads(), "cpu_pinned_to": pinned,
                 "start_to_warm_s": round(time.monotonic() - t, 2)}
    with tempfile.TemporaryDirectory(prefix="sayso-bench-") as tmp:
        for level, voice in ((lv, v) for v in voices for lv in levels):
            key = level if voice == PIPER else f"{level} {voice}"
            samples: dict[str, list[float]] = {k: [] for k in LATENCIES}
            counts = dict.fromkeys(COUNTS, 0)
            noise_runs = completed = pause_questions = pause_cut_offs = reading_split = failed = 0
            wake_requests = wake_answered = quiet_runs = quiet_unheard = 0
            for run in range(runs):
                for name in scenarios:
                    t = time.monotonic()
                    sc = scenario.load(scenario.PACKAGED / f"{name}.toml")
                    sc = dataclasses.replace(sc, room=dataclasses.replace(sc.room, **LEVELS[level]), voice=voice)
                    plot = plot_dir is not None and run == 0
                    stem = f"{name}-{key.replace(' ', '-').replace(':', '-')}"
                    try:
                        result = Simulation(sc, kit, settings, Path(tmp) / f"{stem}-{run}.db",
                                            keep_tracks=plot).run()
                    except ScenarioFailed as e:  # a room the appliance cannot get through is a result too
                        failed += 1
                        if reports_dir is not None and e.report is not None:
                            keep_report(e.report, reports_dir / f"{stem}-{run + 1}-failed.json", progress)
                        progress(f"{key}, run {run + 1}/{runs} {name}: FAILED after {time.monotonic() - t:.0f}s: {e}")
                        continue
                    if reports_dir is not None:  # to look into one run's outlier afterwards
                        keep_report(result.report, reports_dir / f"{stem}-{run + 1}.json", progress)
                    if plot and plot_dir is not None:
                        from sayso.sim.plot import waterfall

                        waterfall(result.report, plot_dir / f"{stem}.png", result.tracks)
                    s = result.report["summary"]
                    for k in SUMMARY_KEYS:
                        samples["quiet_" + k if name == QUIET and k == "barge_in_latency_ms" else k] += s[k]
                    if name == QUIET:
                        quiet_runs += 1
                        quiet_unheard += s["barge_ins_unheard"]
                    for k in COUNTS:
                        counts[k] += s[k]
                    if name == "bench-coughs":
                        noise_runs += 1
                        completed += all(r["status"] == "complete" and r["heard_text"] == r["text"]
                                         for r in result.report["turns"] if r["role"] == "assistant")
                    elif name == "bench-pauses":
                        pause_questions += sum(step.action == "say" for step in sc.steps)
                        pause_cut_offs += s["cut_offs"]
                    elif name == "bench-reading":
                        reading_split += (s["user_turns"], s["answers"], s["cut_offs"]) != (1, 1, 0)
                    elif name == "bench-wake":
                        wake_requests += s["wake_lines"]  # "Okay Nabu." alone and the request after it: one
                        wake_answered += sum(r["role"] == "user" and r["metrics"].get("wake") == "word"
                                             for r in result.report["turns"])
                    progress(f"{key}, run {run + 1}/{runs} {name}: {time.monotonic() - t:.0f}s "
                             + " ".join(f"{k}={s[k]}" for k in (*SUMMARY_KEYS, *COUNTS) if s[k]))
            at: dict = {}
            for k in LATENCIES:
                p50, p95 = percentiles(samples[k])
                at[k] = {"p50": _round(p50, 1), "p95": _round(p95, 1), "n": len(samples[k])}
            for k in COUNTS:
                at[k] = {"total": counts[k]}
            at["noise_runs"] = {"total": noise_runs}
            at["scenario_failures"] = {"total": failed}
            at["noise_runs_not_completed"] = {"total": noise_runs - completed}
            at["pause_cut_off_rate"] = {"total": round(pause_cut_offs / pause_questions, 3) if pause_questions
                                        else None}
            at["reading_runs_not_one_turn"] = {"total": reading_split}
            at["quiet_barge_ins_unheard"] = {"total": quiet_unheard if quiet_runs else None}
            at["speaker_s"] = {"total": round(counts["speaker_s"], 1)}
            at["self_pauses_per_10_min"] = {"total": round(counts["self_pauses"] * 600 / counts["speaker_s"], 2)
                                            if counts["speaker_s"] else None}
            at["wake_requests_missed_rate"] = {"total": round(1 - wake_answered / wake_requests, 3) if wake_requests
                                               else None}
            started = counts["preemptive_used"] + counts["preemptive_discarded"]
            at["preemptive_discard_rate"] = {"total": round(counts["preemptive_discarded"] / started, 3)
                                             if started else None}
            out["levels"][key] = at
    out.update(stage_timings(kit, settings))
    if idle_s > 0:
        progress(f"idle: {idle_s:g} s of a quiet room, then {idle_s:g} s of the appliance listening to it")
        out["idle_cpu"] = idle_cpu(kit, settings, idle_s)
    out["peak_rss_mb"] = {"max": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    out["targets"] = verdicts(out)
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


def verdicts(out: dict) -> list[dict]:
    """Each target the run measured, met or not: levels, scenarios and figures it skipped (`--idle-s 0`) give none."""
    given = [_verdict(out, *t) for t in TARGETS]
    return [v for v in given if v["value"] is not None]


def _verdict(out: dict, level: str | None, metric: str, stat: str, limit: float) -> dict:
    if level is None:
        value = out.get(metric)
        value = value[1] if isinstance(value, list) else (value or {}).get(stat)  # stage timings are [p50, p95]
    else:
        value = out["levels"].get(level, {}).get(metric, {}).get(stat)
    met = value is not None and value <= limit
    return {"level": level, "metric": metric, "stat": stat, "limit": limit, "value": value, "met": met}


def _room(changes: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in changes.items()) or "not run"


def table(out: dict) -> str:
    levels = list(out["levels"])
    width = max(9, *(len(lv) + 5 for lv in levels))
    lines = [f"sayso bench: {out['runs']} run(s) of {', '.join(out['scenarios'])} at "
             + ", ".join(levels) + " (-20 and -6: echo dB; hard: " + _room(out["rooms"].get("hard", {})) + ")",
             f"machine: {out['machine']}"
             + (f"; pinned to core(s) {out['cpu_pinned_to']}" if out.get("cpu_pinned_to") else ""), "",
             f"{'metric':26}" + "".join(f" {'p50 @' + lv:>{width}} {'p95 @' + lv:>{width}} {'n':>4}" for lv in levels)]
    for k in LATENCIES:
        row = f"{k:26}"
        for lv in levels:
            m = out["levels"][lv][k]
            p50, p95 = ("-" if x is None else f"{x:.0f}" for x in (m["p50"], m["p95"]))
            row += f" {p50:>{width}} {p95:>{width}} {m['n']:>4}"
        lines.append(row)
    for k in (*COUNTS, "scenario_failures", "noise_runs", "noise_runs_not_completed", "pause_cut_off_rate",
              "reading_runs_not_one_turn", "quiet_barge_ins_unheard", "preemptive_discard_rate",
              "wake_requests_missed_rate", "self_pauses_per_10_min"):
        lines.append(f"{k:26}" + "".join(f" {str(out['levels'][lv][k]['total']):>{width}} {'':>{width}} {'':>4}"
                                         for lv in levels))
    lines.append("")
    for k in ("vad_ms_per_frame", "aec_ms_per_frame", "stt_rtf", "stt_final_ms", "tts_rtf", "turn_ms_per_call",
              "wake_ms_per_frame"):
        if k in out:
            p50, p95 = out[k]
            lines.append(f"{k:26} {p50:>9.3f} {p95:>9.3f}")
    lines.append(f"{'turn_detector':26} {out['turn_detector']:>9}")
    lines.append(f"{'llm_tokens_per_s':26} {out['llm_tokens_per_s']:>9.1f}   ({out['llm_threads']} LLM threads)")
    lines.append(f"{'start_to_warm_s':26} {out['start_to_warm_s']:>9.2f}")
    lines.append(f"{'peak_rss_mb':26} {out['peak_rss_mb']['max']:>9.0f}")
    if "idle_cpu" in out:
        lines.append(f"{'idle_cpu_%_of_one_core':26} {out['idle_cpu']['percent_of_one_core']:>9.1f}")
    lines.append("\ntargets:")
    for t in out["targets"]:
        at = "" if t["level"] is None else f" at {t['level']}"
        lines.append(f"  {'met   ' if t['met'] else 'MISSED'} {t['metric']} {t['stat']}{at} {t['value']} "
                     f"(limit {t['limit']:g})")
    return "\n".join(lines)
