"""The bench's room levels: each is a valid [room] of the scenario format, and the table shows every one."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from sayso.config import Settings
from sayso.errors import SaysoError
from sayso.models.manifest import ModelStore
from sayso.pipeline.messages import State
from sayso.sim import scenario
from sayso.sim.bench import LATENCIES, LEVELS, QUIET, SCENARIOS, TARGETS, keep_report, run_bench, table, verdicts
from sayso.sim.report import COUNT_KEYS


@pytest.mark.parametrize("level", list(LEVELS))
def test_each_level_is_a_room_the_scenario_format_accepts(level):
    base = scenario.load(scenario.PACKAGED / f"{SCENARIOS[0]}.toml")
    room = {k: v for k, v in dataclasses.asdict(dataclasses.replace(base.room, **LEVELS[level])).items()
            if v is not None and (k != "drr_db" or "rt60_s" in LEVELS[level])}
    parsed = scenario.parse({"room": room, "step": [{"wait": "idle"}]})
    assert dataclasses.replace(base.room, **LEVELS[level]) == parsed.room


def test_the_hard_level_is_the_kitchen_with_a_television():
    assert LEVELS["hard"] == {"echo_gain_db": -6.0, "rt60_s": 0.5, "drr_db": 3.0, "drift_ppm": 100.0,
                              "babble_dbfs": -35.0, "noise_dbfs": -50.0}
    assert {t[0] for t in TARGETS} <= {None, *LEVELS}


def test_a_figure_the_run_skipped_has_no_verdict():
    out = {"levels": {"-20": {"cut_offs": {"total": 0}, "barge_in_latency_ms": {"p95": 120.0}}},
           "peak_rss_mb": {"max": 1500.0}}
    given = {(v["level"], v["metric"]): v["met"] for v in verdicts(out)
             if v["metric"] in ("barge_in_latency_ms", "peak_rss_mb", "idle_cpu")}
    assert given == {("-20", "barge_in_latency_ms"): True, (None, "peak_rss_mb"): False}


def test_the_table_has_a_column_per_level_and_voice():
    metric = {"p50": 100.0, "p95": 200.0, "n": 3}
    at = {k: metric for k in LATENCIES}
    at.update({k: {"total": 0} for k in (*COUNT_KEYS, "noise_runs", "noise_runs_not_completed", "pause_cut_off_rate",
                                          "reading_runs_not_one_turn", "quiet_barge_ins_unheard",
                                          "preemptive_discard_rate", "scenario_failures",
                                          "wake_requests_missed_rate", "self_pauses_per_10_min")})
    out = {"runs": 1, "scenarios": ["bench-answer"], "machine": "m", "rooms": {"hard": LEVELS["hard"]},
           "levels": {"hard": at, "hard espeak:en-us": at}, "turn_detector": "smart-turn", "llm_tokens_per_s": 1.0,
           "llm_threads": 1, "start_to_warm_s": 1.0, "peak_rss_mb": {"max": 1.0},
           "targets": [{"level": "hard", "metric": "self_interruptions", "stat": "total", "limit": 0, "value": 0,
                        "met": True}]}
    text = table(out)
    assert "p95 @hard espeak:en-us" in text and "hard: echo_gain_db -6, rt60_s 0.5" in text
    assert "met    self_interruptions total at hard 0" in text
    assert "quiet_barge_in_latency_ms" in text and "quiet_barge_ins_unheard" in text


def test_a_kept_report_reads_back_and_a_full_disk_is_one_line_not_the_end_of_the_bench(tmp_path):
    report = {"scenario": "bench: barge-in twice", "summary": {"barge_in_latency_ms": [212.5, 791.0]}}
    said: list[str] = []
    keep_report(report, tmp_path / "bench-barge-in-hard-4.json", said.append)
    assert json.loads((tmp_path / "bench-barge-in-hard-4.json").read_text()) == report and said == []
    keep_report(report, Path("/dev/full"), said.append)  # every write there fails as a full disk does
    assert len(said) == 1 and "/dev/full" in said[0] and "No space left" in said[0] and "\n" not in said[0]


def test_a_reports_directory_that_cannot_be_made_stops_the_bench_before_any_model_loads(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SaysoError, match="cannot make the reports directory .*choose another with --reports"):
        run_bench(Settings(), cast(ModelStore, None), 1, reports_dir=tmp_path / "a-file" / "reports")


def test_the_quiet_voice_barges_in_twice_over_answers_the_usual_person_asked_for():
    sc = scenario.load(scenario.PACKAGED / f"{QUIET}.toml")
    over = [s for s in sc.steps if s.wait is State.SPEAKING]
    assert [s.voice for s in over] == ["recording:beckett-reading"] * 2
    asked = [s for s in sc.steps if s.wait is State.IDLE and s.action == "say"]
    assert [s.voice for s in asked] == [None, None] and sc.voice == "piper"
    assert sc.room.echo_gain_db == -20


def test_the_cpu_limit_pins_every_thread_of_a_child_to_one_core():
    code = ("import os, threading; from pathlib import Path; from sayso.sim.stagetimes import limit_cpu\n"
            "ready, done = threading.Event(), threading.Event()\n"
            "t = threading.Thread(target=lambda: (ready.set(), done.wait(10))); t.start(); ready.wait(10)\n"
            "pinned = limit_cpu(1)\n"
            "print(sorted({len(os.sched_getaffinity(int(p.name))) for p in Path('/proc/self/task').iterdir()}), "
            "len(pinned)); done.set(); t.join(10)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "device")})
    assert run.stdout.split() == ["[1]", "1"], run.stderr
