"""The `sayso` command: argparse subcommands over the package's modules."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sayso import __version__, config
from sayso.errors import ModelCorrupt, ModelMissing, SaysoError, ScenarioFailed
from sayso.pipeline.writelock import check_free
from sayso.service.journal import setup_logging
from sayso.service.malloc import limit_arenas, map_large_blocks

log = logging.getLogger("sayso")


def _store(args: argparse.Namespace, settings: config.Settings):
    """The models folder from --dir or config; its own manifest.toml when it has one (an installed appliance)."""
    from sayso.models.manifest import ModelStore, load_manifest

    root = args.dir or settings.models.dir or None
    manifest = args.manifest
    if manifest is None and root and (Path(root) / "manifest.toml").exists():
        manifest = Path(root) / "manifest.toml"
    return ModelStore(root, load_manifest(manifest))


def cmd_models(args, settings) -> int:
    from sayso.models.commands import COMMANDS

    return COMMANDS[args.action](args, _store(args, settings))


def _config_source(args) -> str:
    return args.config or (str(config.SYSTEM_CONFIG) if config.SYSTEM_CONFIG.exists() else "built-in defaults")


def _loading_models(settings, store, work):
    """Run `work`; a raw error from a model loader (llama.cpp, onnxruntime) becomes "model X is damaged".

    The quick check before loading reads only a model's first and last bytes, so
    a model rotten in the middle reaches its loader; the full hash here says which.
    """
    try:
        return work()
    except (SaysoError, KeyboardInterrupt):
        raise
    except Exception as e:
        for m in store.manifest.models:
            try:
                store.check(m, full=True)
            except ModelMissing:
                continue
            except SaysoError as damage:
                raise ModelCorrupt(f"model {m.name} is damaged ({damage}); run `sayso models fetch`") from e
        raise


def cmd_run(args, settings) -> int:
    from sayso.service.appliance import run

    check_free(Path(settings.log.db))  # before devices and models: a second appliance fails at once
    store = _store(args, settings)
    return _loading_models(settings, store, lambda: run(settings, store))


def cmd_doctor(args, settings) -> int:
    from sayso.service.doctor import Doctor

    print(f"sayso doctor (config: {_config_source(args)})", flush=True)
    doctor = Doctor(settings, _store(args, settings), print=lambda line: print(line, flush=True),
                    meter_s=args.meter_s)
    doctor.run()
    failed = doctor.failed
    if failed:
        print(f"{len(failed)} check(s) failed: {', '.join(c.name for c in failed)}")
        return 1
    print("all checks passed")
    return 0


def cmd_demo(args, settings) -> int:
    from sayso.sim.demo import run_demo

    check_free(Path(args.out) / "turns.db")
    print("sayso demo: talk without the wake word, a question with it, a follow-up, an answer cut off by the "
          "person speaking, and the stop button.\nNo sound card needed: a simulated room plays it in real time "
          "and records it.", flush=True)
    store = _store(args, settings)
    _loading_models(settings, store, lambda: run_demo(settings, store, Path(args.out)))
    return 0


def cmd_simulate(args, settings) -> int:
    import json
    import tempfile

    from sayso.sim import scenario
    from sayso.sim.report import transcript
    from sayso.sim.simulate import check_voices, simulate

    sc = scenario.load(args.scenario)
    if args.db:
        check_free(Path(args.db))
    print(f"scenario: {sc.name} ({sc.source})", flush=True)
    store = _store(args, settings)
    check_voices(sc, store)
    with tempfile.TemporaryDirectory(prefix="sayso-sim-") as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "turns.db"
        record = Path(args.record) if args.record else None
        try:
            result = _loading_models(settings, store, lambda: simulate(sc, settings, store, db, record,
                                                                        keep_tracks=bool(args.plot)))
        except ScenarioFailed as e:
            if args.report and e.report is not None:  # what it did up to the step that failed
                Path(args.report).write_text(json.dumps(e.report, indent=2))
                print(f"report, up to the failed step: {args.report}", flush=True)
            raise
    if args.report:
        Path(args.report).write_text(json.dumps(result.report, indent=2))
    print(transcript(result.report, result.per_turn))
    if args.plot:
        from sayso.sim.plot import waterfall

        waterfall(result.report, Path(args.plot), result.tracks)
    for label, path in (("turn log", args.db), ("recording", args.record), ("report", args.report),
                        ("plot", args.plot)):
        if path:
            print(f"{label}: {path}")
    return 0


def cmd_bench(args, settings) -> int:
    import json

    from sayso.sim import scenario
    from sayso.sim.bench import DEFAULT_LEVELS, LEVELS, SCENARIOS, run_bench, table
    from sayso.sim.simulate import check_recordings, check_voices
    from sayso.sim.voices import VOICE_NAME, VOICES_ALLOWED

    if unknown := set(args.only or ()) - set(SCENARIOS):
        raise SaysoError(f"no bench scenario {', '.join(sorted(unknown))}; the bench has {', '.join(SCENARIOS)}")
    if unknown := set(args.levels or ()) - set(LEVELS):
        raise SaysoError(f"no bench level {', '.join(sorted(unknown))}; the levels are {', '.join(LEVELS)}")
    if bad := [v for v in args.voices or () if not VOICE_NAME.match(v)]:
        raise SaysoError(f"no voice {', '.join(bad)}: name {VOICES_ALLOWED}")

    store = _store(args, settings)
    check_recordings(args.voices or (), store)
    scenarios = tuple(args.only or SCENARIOS)
    for name in scenarios:  # a scenario's own real voice (bench-quiet-barge-in's)
        check_voices(scenario.load(scenario.PACKAGED / f"{name}.toml"), store)
    out = run_bench(settings, store, args.runs,
                    progress=lambda line: print(line, file=sys.stderr, flush=True), idle_s=args.idle_s,
                    plot_dir=Path(args.plot) if args.plot else None, scenarios=scenarios,
                    levels=tuple(args.levels or DEFAULT_LEVELS), voices=tuple(args.voices or ("piper",)),
                    cpu_limit=args.cpu_limit, reports_dir=Path(args.reports) if args.reports else None)
    print(json.dumps(out, indent=2) if args.json else table(out))
    return 0


def _clip(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def cmd_turns(args, settings) -> int:
    import json

    from sayso.pipeline.turnlog import TurnReader

    # read-only: works while the appliance writes, never changes the file nor makes one
    turnlog = TurnReader(Path(args.db or settings.log.db))
    if args.turns_action == "show":
        row = turnlog.get(args.id)
        if row is None:
            print(f"sayso: no turn {args.id} in {turnlog.path}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(row, indent=2))
        else:
            for key, value in row.items():
                print(f"{key:>17}: {json.dumps(value) if key == 'metrics' else value}")
        return 0
    rows = turnlog.rows(last=args.last, interrupted_only=args.interrupted)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':>5} {'role':9} {'status':11} {'reason':13} text")
    for r in rows:
        print(f"{r['id']:>5} {r['role']:9} {r['status']:11} {r['interrupt_reason'] or '':13} {_clip(r['text'], 70)}")
        if r["status"] == "interrupted":
            print(f"{'':>40} heard: {_clip(r['heard_text'], 70) or '(nothing)'}")
    print(f"{len(rows)} turn(s) from {turnlog.path}")
    return 0


def cmd_config(args, settings) -> int:
    if args.action == "template":
        print(config.template(args.state_dir))
    else:
        print(f"config OK: {_config_source(args)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sayso", description="Offline voice appliance you can interrupt.")
    p.add_argument("--config", help="TOML config file (default: /etc/sayso/config.toml if present)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"sayso {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="fetch, list and verify models").add_subparsers(dest="action", required=True)
    for name, text in (("fetch", "download the default models (and any named)"),
                       ("list", "show every model in the manifest and its status"),
                       ("verify", "re-hash every installed model")):
        m = models.add_parser(name, help=text)
        m.add_argument("--dir", help="models directory (default: config models.dir or the checkout's models/)")
        m.add_argument("--manifest", help="manifest file (default: models/manifest.toml)")
        if name == "fetch":
            m.add_argument("--llm", help="also fetch this LLM")
            m.add_argument("--voice", help="also fetch this voice")
            m.add_argument("--stt", help="also fetch this STT model")
            m.add_argument("--recording", action="append", metavar="NAME",
                           help="also fetch this recording of a real person, for the simulator (repeatable; all)")
        m.set_defaults(func=cmd_models)

    r = sub.add_parser("run", help="the appliance: listen, answer, be interrupted (what the systemd service runs)")
    r.set_defaults(func=cmd_run)

    doc = sub.add_parser("doctor", help="check devices, mic level, speaker, models, wake word, GPIO, turn log, disk, "
                         "memory")
    doc.add_argument("--meter-s", type=float, default=3.0, help="seconds of mic level meter (default 3)")
    doc.set_defaults(func=cmd_doctor)

    d = sub.add_parser("demo", help="the mission on the real models: an exchange, interruptions, what was heard")
    d.add_argument("--out", default="demo-out", help="folder for the turn log, the recording and the report")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("simulate", help="run a scenario in a simulated room on the real pipeline")
    s.add_argument("scenario", help="scenario TOML file, or the name of a packaged one (demo, bench-barge-in, ...)")
    s.add_argument("--db", help="turn log to write (default: a temporary one)")
    s.add_argument("--report", metavar="PATH", help="write the report JSON here")
    s.add_argument("--record", metavar="PATH.wav", help="write a stereo WAV: mic left, speaker right")
    s.add_argument("--plot", metavar="PATH.png", help="draw each answer's waterfall over the mic and speaker tracks")
    s.set_defaults(func=cmd_simulate)

    b = sub.add_parser("bench", help="latency and throughput on the bench scenarios, p50/p95")
    b.add_argument("--runs", type=int, default=5, help="times to run each scenario (default 5)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--idle-s", type=float, default=20.0,
                   help="seconds of listening to a quiet room for the idle CPU figure (0 skips it)")
    b.add_argument("--plot", metavar="DIR", help="draw the first run of each scenario as a waterfall PNG in DIR")
    b.add_argument("--reports", metavar="DIR", help="keep every run's report JSON in DIR, as `sayso simulate "
                   "--report` writes it (to look into one run's outlier)")
    b.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these bench scenarios (default: all)")
    b.add_argument("--levels", nargs="+", metavar="LEVEL",
                   help="room levels to run: -20, -6 (echo dB) and hard (default: all three)")
    b.add_argument("--voices", nargs="+", metavar="VOICE",
                   help="the person's voices, each at every level: piper, espeak:NAME, recording:NAME "
                        "(default: piper)")
    b.add_argument("--cpu-limit", type=int, nargs="?", const=1, metavar="CORES",
                   help="pin the whole run to this many cores (default 1): a stand-in for a slower board")
    b.set_defaults(func=cmd_bench)

    for q in (r, doc, d, s, b):
        q.add_argument("--dir", help=argparse.SUPPRESS)
        q.add_argument("--manifest", help=argparse.SUPPRESS)

    t = sub.add_parser("turns", help="show the turn log: what was said, and what was heard")
    turns_sub = t.add_subparsers(dest="turns_action")
    show = turns_sub.add_parser("show", help="one turn, every column")
    show.add_argument("id", type=int)
    for q in (t, show):
        q.add_argument("--db", help="turn log (default: config [log] db)")
        q.add_argument("--json", action="store_true", help="rows as JSON objects with the contract's column names")
    t.add_argument("--last", type=int, metavar="N", help="only the last N turns")
    t.add_argument("--interrupted", action="store_true", help="only interrupted turns")
    t.set_defaults(func=cmd_turns)

    c = sub.add_parser("config", help="check the config, or print a commented template")
    c.add_argument("action", choices=("check", "template"))
    c.add_argument("--state-dir", metavar="DIR", help="template: put the models and the turn log under DIR "
                   "(an installed appliance uses /var/lib/sayso)")
    c.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, service=args.command == "run")
    limit_arenas()
    map_large_blocks()
    try:
        settings = config.load(args.config)
        return args.func(args, settings)
    except SaysoError as e:
        print(f"sayso: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the last net: one line for a person, the traceback for -v
        log.debug("the traceback of the unexpected error:", exc_info=True)
        what = " ".join(str(e).split()) or "(no message)"
        hint = "the traceback is above" if args.verbose else "run again with `sayso -v ...` to see where it happened"
        print(f"sayso: unexpected error: {type(e).__name__}: {what} ({hint})", file=sys.stderr)
        return 1
