"""`sayso doctor`: is this machine ready to be the appliance? One line per check, a fix for each problem.

It uses the same code the appliance runs (device lookup by name, the PortAudio
mic and sink, the model store's hashes, the gpiozero controls, the turn log), so
a check that passes here means that part will work under `sayso run`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from sayso.config import Settings
from sayso.errors import SaysoError
from sayso.hearing.turn import TURN_MODEL
from sayso.hearing.vad import VAD_MODEL
from sayso.hearing.wake import WakeModel, WakeWordUnavailable
from sayso.models.manifest import ModelStore
from sayso.service import soundcheck
from sayso.service.check import FAIL, OK, WARN, Check

RUNTIME_MB = 550
"""Memory the running appliance needs on top of its model files (from `sayso bench`'s peak; hardware.md)."""


class Doctor:
    """Runs every check in order; `print` receives each line as it is known (the meter is live).

    Args:
        pin_factory: for the GPIO check (MockFactory in tests); None picks the board's own from config.
        meter_s: how much mic audio the level meter takes.
        load_wake: opens the wake-word model from (word, sensitivity), as `sayso run` does.
    """

    def __init__(self, settings: Settings, store: ModelStore, print: Callable[[str], None] = print,
                 pin_factory=None, meter_s: float = 3.0, meminfo: Path = Path("/proc/meminfo"),
                 load_wake: Callable[[str, float], WakeModel] = WakeModel):
        self.settings, self.store, self.print = settings, store, print
        self.pin_factory, self.meter_s, self.meminfo = pin_factory, meter_s, meminfo
        self.load_wake = load_wake
        self.wake_model: WakeModel | None = None
        """The wake word once `wake_word` loaded it; the mic meter shows its probability."""
        self.checks: list[Check] = []

    def run(self) -> list[Check]:
        wake = self.wake_word()  # before the meter, which runs the model; reported beside the other models
        found = self._record(soundcheck.audio_devices(self.settings.audio, self.print))
        if found.status == FAIL:
            self._record(Check("mic level", FAIL, "skipped: no mic to listen to"))
            self._record(Check("speaker", FAIL, "skipped: no speaker to play to"))
        else:
            self._record(soundcheck.mic_level(self.settings.audio, self.meter_s, self.print, self.wake_model))
            self._record(soundcheck.speaker(self.settings.audio))
        server = (self.llm_server,) if self.settings.llm.backend == "server" else ()
        for check in (self.models, lambda: wake, *server, self.echo_canceller, self.gpio, self.turn_log,
                      self.disk, self.cpu_and_memory):
            self._record(check())
        return self.checks

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def _record(self, check: Check) -> Check:
        self.checks.append(check)
        self.print(f"{check.status:4}  {check.name}: {check.detail}")
        if check.fix and check.status != OK:
            self.print(f"      fix: {check.fix}")
        return check

    # ---- the checks

    def models(self) -> Check:
        s = self.settings
        stt = "pocketsphinx-en-us" if s.stt.engine == "pocketsphinx" else s.stt.vosk_model
        ok, bad, notes = [], [], []
        wanted = [(s.llm.model, "llm"), (s.voice.model, "voice"), (VAD_MODEL, "vad"), (stt, "stt")]
        if s.turn.detector == "smart-turn":
            wanted.append((TURN_MODEL, "turn"))
        for name, role in wanted:
            try:
                self.store.check(self.store.manifest.get(name, role), full=True)
                ok.append(name)
            except SaysoError as e:
                if role == "stt" and s.stt.engine == "auto":  # auto falls back to pocketsphinx
                    notes.append(f"{name} absent, pocketsphinx is used instead")
                elif role == "turn":  # turns then end on silence alone
                    notes.append(f"{name} absent or damaged, turns end on silence alone")
                else:
                    bad.append(str(e))
        where = f"in {self.store.root}"
        if bad:
            return Check("models", FAIL, " / ".join(bad),
                         f"run `sayso models fetch` (as the sayso user on a Pi: "
                         f"`sudo -u sayso /opt/sayso/bin/sayso models fetch`); models go {where}")
        detail = f"{', '.join(ok)} verified (sha256) {where}"
        return Check("models", WARN if notes else OK, "; ".join([detail, *notes]),
                     "`sayso models fetch` brings the missing models (where the Vosk model's source is "
                     "reachable it gives better recognition)")

    def wake_word(self) -> Check:
        """The configured wake-word model loads, and the probability a detection needs."""
        w = self.settings.wake
        if w.word == "off":
            return Check("wake word", WARN, 'off in the config (wake.word = "off"): every utterance is answered, '
                         "the television's too", 'in a room with other voices set wake.word = "okay_nabu"')
        try:
            model = self.wake_model = self.load_wake(w.word, w.sensitivity)
        except WakeWordUnavailable as e:
            return Check("wake word", FAIL, str(e))
        return Check("wake word", OK, f"{model.word} ({model.phrase!r}) loads; heard at probability "
                     f">= {model.threshold:.2f} (sensitivity {w.sensitivity:g})")

    def llm_server(self) -> Check:
        """With [llm] backend = "server": it is reachable, lists the model and answers "Say OK" in time."""
        from sayso.answering.backends import server_llm
        from sayso.errors import LLMServerFailed

        s = self.settings.llm
        if s.backend != "server":
            return Check("llm server", OK, 'none: answers come from the local model (llm.backend = "local")')
        fixes = {
            "refused": "start the server, and make it listen on the LAN address (llama-server --host 0.0.0.0, "
                       "OLLAMA_HOST=0.0.0.0), on the port in llm.server_url",
            "unreachable": "check llm.server_url's address and that this board and the server share a LAN",
            "connect_timeout": "check llm.server_url's address, and that no firewall on the server drops the port",
            "http_401": "the server wants another API key: check llm.server_api_key_file / llm.server_api_key_env",
            "http_404": "llm.server_url must be the OpenAI-compatible base URL, ending in /v1",
            "no_first_token": "the server is busy or its model too big for it: a smaller model, or a larger "
                              "llm.server_first_token_s",
        }
        try:
            server = server_llm(s)
        except SaysoError as e:
            return Check("llm server", FAIL, str(e), "see docs/llm-server.md")
        try:
            listed = server.models()
            if s.server_model and s.server_model not in listed:
                return Check("llm server", FAIL, f"{s.server_url} serves {', '.join(listed) or 'no model'}, not "
                             f"{s.server_model!r}", "set llm.server_model to one of those (with Ollama: "
                             f"`ollama pull {s.server_model}` on the server)")
            t0 = time.monotonic()
            answer = "".join(server.stream([{"role": "user", "content": "Say OK"}], max_tokens=8)).strip()
            took_ms = (time.monotonic() - t0) * 1000
        except LLMServerFailed as e:
            return Check("llm server", FAIL, str(e), fixes.get(e.why, "see docs/llm-server.md"))
        finally:
            server.close()
        return Check("llm server", OK, f"{s.server_url} lists {', '.join(listed)}; answered {answer!r} to "
                     f"\"Say OK\" in {took_ms:.0f} ms")

    def echo_canceller(self) -> Check:
        from sayso.hearing.aec import EchoCancellerUnavailable, SpeexAEC

        b = self.settings.barge_in
        if b.echo_canceller == "off":
            return Check("echo canceller", WARN, 'off in the config (barge_in.echo_canceller = "off")',
                         "with the speaker near the mic, barge-in needs the person louder than the echo; "
                         'set it to "speex"')
        try:
            SpeexAEC(tail_ms=b.echo_tail_ms).close()
        except EchoCancellerUnavailable as e:
            return Check("echo canceller", FAIL, str(e), "sudo apt install libspeexdsp1")
        return Check("echo canceller", OK, f"libspeexdsp, {b.echo_tail_ms} ms tail; barge-in mode {b.mode}")

    def gpio(self) -> Check:
        from sayso.service.gpio import GpioUnavailable, build_controls, gpio_hint

        g = self.settings.gpio
        if g.pin_factory == "none" and self.pin_factory is None:
            return Check("gpio", OK, 'off in the config (gpio.pin_factory = "none"): no stop button, no LED')
        try:
            controls = build_controls(g, lambda: None, None, self.pin_factory)
        except GpioUnavailable as e:
            return Check("gpio", FAIL, f"no usable GPIO ({e}); the appliance runs without the stop button and "
                         "status LED", gpio_hint())
        try:
            return Check("gpio", OK, controls.describe())
        finally:
            controls.close()

    def turn_log(self) -> Check:
        """The log opens, is sayso's, is whole, and takes a write lock; nothing is created or changed here."""
        from sayso.pipeline.writelock import holder

        db = Path(self.settings.log.db)
        fix = (f"make {db.parent} a writable directory for the user that runs sayso, or set [log] db in the "
               "config")
        mute = ("until then sayso still answers, keeps the turns in memory and says it cannot remember right now")
        if not db.exists():
            folder = next((p for p in (db.parent, *db.parent.parents) if p.exists()), Path("/"))
            if not folder.is_dir():
                return Check("turn log", FAIL, f"{db} cannot be created: {folder} is a file, not a folder", fix)
            if not os.access(folder, os.W_OK | os.X_OK):
                return Check("turn log", FAIL, f"{db} cannot be created: {folder} is not writable", fix)
            return Check("turn log", OK, f"{db.resolve()} does not exist yet; it can be created in {folder}")
        pid = holder(db)
        writer = f"; sayso (pid {pid}) is writing it" if pid else ""
        if shutil.disk_usage(db.parent).free < 1_000_000:
            return Check("turn log", FAIL, f"the disk holding {db} is full{writer}; {mute}",
                         "free some space; the waiting turns are written once the log can grow")
        try:
            conn = sqlite3.connect(f"file:{db.resolve()}?mode=rw", uri=True, timeout=2)
            try:
                problem = conn.execute("PRAGMA quick_check").fetchone()[0]
                turns = conn.execute("SELECT count(*) FROM turns").fetchone()[0] if problem == "ok" else 0
                conn.execute("BEGIN IMMEDIATE")  # takes the write lock, writes nothing
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                return Check("turn log", FAIL, f"another program holds a write lock on {db} for over 2 s; {mute}",
                             f"find it with `fuser -v {db}` and end it (an open `sqlite3` shell in a transaction)")
            return Check("turn log", FAIL, f"{db}: {e}", fix)
        except sqlite3.DatabaseError as e:
            return Check("turn log", FAIL, f"{db} is damaged or not a turn log: {e}",
                         f"stop sayso, move {db} aside (a new log starts), keep the old one for its turns")
        if problem != "ok":
            return Check("turn log", FAIL, f"{db} is damaged: {problem}",
                         f"stop sayso, move {db} aside (a new log starts), keep the old one for its turns")
        return Check("turn log", OK, f"{db.resolve()} is writable ({turns} turns logged){writer}")

    def disk(self) -> Check:
        places = {Path(self.settings.log.db).resolve().parent, self.store.root.resolve()}
        worst = min(((shutil.disk_usage(p).free, p) for p in places if p.exists()), default=None)
        if worst is None:
            return Check("disk", FAIL, "neither the turn log's folder nor the models folder exists", "")
        free_mb, where = worst[0] / 1e6, worst[1]
        detail = f"{free_mb:,.0f} MB free at {where}"
        if free_mb < 100:
            return Check("disk", FAIL, detail, "free some space: the turn log stops growing when the disk is full")
        if free_mb < 1000:
            return Check("disk", WARN, detail, "less than 1 GB free: a bigger model will not fit, the log may fill it")
        return Check("disk", OK, detail)

    def cpu_and_memory(self) -> Check:
        cores = os.cpu_count() or 1
        s = self.settings
        model_mb = 0.0
        for name, role in ((s.llm.model, "llm"), (s.voice.model, "voice")):
            try:
                model_mb += self.store.manifest.get(name, role).size / 1e6
            except SaysoError:
                pass
        need_mb = model_mb + RUNTIME_MB
        mem = _meminfo(self.meminfo)
        total_mb, avail_mb = mem.get("MemTotal", 0) / 1e3, mem.get("MemAvailable", 0) / 1e3
        detail = (f"{cores} cores, {total_mb:,.0f} MB memory ({avail_mb:,.0f} MB available); the configured models "
                  f"need about {need_mb:,.0f} MB")
        if total_mb and total_mb < need_mb:
            return Check("cpu and memory", FAIL, detail,
                         "choose a smaller LLM (llm.model) or a board with more memory (a Pi 4 with 2 GB or more)")
        if avail_mb and avail_mb < need_mb:
            return Check("cpu and memory", WARN, detail, "other programs use the memory sayso needs; stop them")
        if cores < 4:
            return Check("cpu and memory", WARN, detail, "fewer than 4 cores: answers will start slowly")
        return Check("cpu and memory", OK, detail)


def _meminfo(path: Path) -> dict[str, int]:
    """/proc/meminfo in kB."""
    out = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out
