"""`sayso models fetch | list | verify`: the model store as a person sees it, one line per model.

Each command prints as it goes and returns the process's exit status.
"""

from __future__ import annotations

import argparse
import sys

from sayso.errors import FetchFailed, ModelCorrupt, ModelMissing, SaysoError
from sayso.models.fetch import Fetcher
from sayso.models.manifest import Model, ModelStore


def fetch(args: argparse.Namespace, store: ModelStore) -> int:
    """The manifest's default models, and any named with --llm, --voice, --stt or --recording (`all`: every one)."""
    wanted = store.manifest.defaults()
    named = [(role, name) for role in ("llm", "voice", "stt") if (name := getattr(args, role, None))]
    for name in getattr(args, "recording", None) or ():
        named += ([("recording", m.name) for m in store.manifest.models if m.role == "recording"] if name == "all"
                  else [("recording", name)])
    for role, name in named:
        model = store.manifest.get(name, role)
        if model not in wanted:
            wanted.append(model)
    fetcher = Fetcher(store)
    failed = 0
    for model in wanted:
        print(f"{model.name} ({model.role}, {model.size / 1e6:.1f} MB)", flush=True)
        try:
            fetcher.fetch(model)
        except FetchFailed as e:
            if model.required:
                print(f"error: {e}", file=sys.stderr)
                failed += 1
            else:
                tried = "\n".join(str(e).splitlines()[1:])
                print(f"  not available here; tried:\n{tried}\n"
                      f"  -> speech recognition will use {model.fallback} instead. "
                      "Run `sayso models fetch` again where a source is reachable.", flush=True)
            continue
        print("  ok", flush=True)
    print(f"models in {store.root}")
    return 1 if failed else 0


def _status(store: ModelStore, model: Model) -> str:
    try:
        store.check(model)
        return "bundled" if model.bundled else "ok"
    except ModelMissing:
        return "missing"
    except ModelCorrupt:
        return "corrupt"
    except SaysoError:
        return "unreadable"


def list_all(args: argparse.Namespace, store: ModelStore) -> int:
    """Every model in the manifest, with its size, licence and whether it is here and whole."""
    print(f"{'name':34} {'role':9} {'kind':9} {'MB':>7}  {'status':8} licence")
    for m in store.manifest.models:
        kind = "default" if m.default else "optional"
        print(f"{m.name:34} {m.role:9} {kind:9} {m.size / 1e6:7.1f}  {_status(store, m):8} {m.licence}")
    print(f"models directory: {store.root}")
    return 0


def verify(args: argparse.Namespace, store: ModelStore) -> int:
    """Re-hash every installed model; 1 if a default one is missing or any is damaged."""
    bad = 0
    for m in store.manifest.models:
        if m.bundled:
            print(f"OK       {m.name}: bundled at {store.path(m.name)}")
            continue
        try:
            store.check(m, full=True)
        except ModelMissing as e:
            if m.default and m.required:
                bad += 1
                print(f"MISSING  {e}")
            elif m.default:
                print(f"ABSENT   {m.name}: optional here, {m.fallback} is used instead")
            continue
        except ModelCorrupt as e:
            bad += 1
            print(f"CORRUPT  {e}")
            continue
        except SaysoError as e:
            bad += 1
            print(f"UNREADABLE {e}")
            continue
        for f in m.files:
            print(f"OK       {m.name}: {f.name} sha256 {f.sha256}")
    return 1 if bad else 0


COMMANDS = {"fetch": fetch, "list": list_all, "verify": verify}
