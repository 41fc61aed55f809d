"""`sayso demo`: the mission on the real models in a simulated room, no sound card needed.

It runs the packaged `demo` scenario: talk without the wake word ignored, a
question with it answered in full, a follow-up without it cut off by the person
speaking, and the answer to what they said stopped by the button (real gpiozero
on its MockFactory). Then it prints what was said and what was heard, why each
answer stopped and how fast.
"""

from __future__ import annotations

import json
from pathlib import Path

from sayso.config import Settings
from sayso.models.manifest import ModelStore
from sayso.sim import scenario
from sayso.sim.report import transcript
from sayso.sim.simulate import Result, simulate


def run_demo(settings: Settings, store: ModelStore, out_dir: Path) -> Result:
    out_dir.mkdir(parents=True, exist_ok=True)
    db = out_dir / "turns.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    wav, report = out_dir / "conversation.wav", out_dir / "report.json"
    result = simulate(scenario.load(scenario.PACKAGED / "demo.toml"), settings, store, db, record=wav)
    report.write_text(json.dumps(result.report, indent=2))
    print(transcript(result.report, result.per_turn))
    print(f"\nturn log : {db}   (try: sayso turns --db {db})")
    print(f"recording: {wav} (stereo: the mic on the left, the speaker on the right)")
    print(f"report   : {report}")
    return result
