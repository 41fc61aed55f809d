"""The appliance as systemd sees it: READY=1, watchdog pings only while healthy, STATUS=, STOPPING=1.

A datagram socket owned by the test stands in for systemd's NOTIFY_SOCKET. The
appliance runs on the simulated room's mic and speaker (paced in real time) with
a gpiozero MockFactory for the button and LED; `sayso run` itself runs as a
child process on ALSA file-plugin devices and is stopped with SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from sayso.config import GpioSettings, ServiceSettings, Settings
from sayso.hearing.stt import open_recognizer
from sayso.hearing.vad import VAD_MODEL, SileroVAD
from sayso.pipeline.messages import State, Utterance
from sayso.pipeline.turnlog import TurnLog
from sayso.service.appliance import Appliance
from sayso.service.gpio import Mode
from sayso.service.modelset import Models
from sayso.service.notify import Notifier
from sayso.sim.fakes import FakeLLM, FakeTTS
from sayso.sim.room import Room
from waits import lasts, wait_until

pytestmark = pytest.mark.slow

WAIT_S = 20.0
STOP_TIMEOUT_S = 10.0
"""The unit's TimeoutStopSec: systemd kills a service that has not stopped by then."""


class NotifySocket:
    """The test's systemd: a bound datagram socket that keeps every message with its arrival time."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def env(self, watchdog_s: float) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._cond:
                self.messages.extend((time.monotonic(), line) for line in data.decode().splitlines())
                self._cond.notify_all()

    def wait_for(self, line: str, timeout_s: float = WAIT_S, after: float = 0.0) -> float:
        """Until `line` (or a line starting with it) arrives after `after`; its arrival time."""
        def found():
            return next((t for t, m in self.messages if t > after and m.startswith(line)), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout_s)
            t = found()
        assert t is not None, f"no {line!r} within {timeout_s}s; got {[m for _, m in self.messages]}"
        return t

    def times(self, line: str) -> list[float]:
        with self._cond:
            return [t for t, m in self.messages if m == line]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def systemd(tmp_path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


class StuckVAD:
    """A fake VAD for hanging the listener: the real Silero VAD until `stuck` is set, then it blocks."""

    def __init__(self, vad: SileroVAD):
        self.vad = vad
        self.stuck, self.released = threading.Event(), threading.Event()

    def probability(self, samples) -> float:
        if self.stuck.is_set():
            self.released.wait(60)
        return self.vad.probability(samples)

    def __getattr__(self, name):
        return getattr(self.vad, name)


@pytest.fixture(scope="module")
def vad(store):
    return SileroVAD(store.path(VAD_MODEL, role="vad"))


@pytest.fixture(scope="module")
def recognizer(store):
    return open_recognizer(store, "pocketsphinx", "")


def appliance(systemd, tmp_path, vad, recognizer, watchdog_s=0.4, **gpio):
    settings = Settings(service=ServiceSettings(hang_s=1.0), gpio=GpioSettings(mute_hold_s=0.5, **gpio))
    tts = FakeTTS()
    room = Room(tts.rate_hz, noise_dbfs=-60).start()
    models = Models(llm=FakeLLM(["One, two, three, four, five, six, seven, eight, nine, ten."], token_delay_s=0.1),
                    tts=tts, vad=vad, recognizer=recognizer)
    factory = MockFactory()
    app = Appliance(settings, models, room.mic, room.speaker, TurnLog(tmp_path / "turns.db"),
                    notifier=Notifier(systemd.env(watchdog_s)), pin_factory=factory, clock=room.clock)
    stop = threading.Event()
    serving = threading.Thread(target=app.serve, args=(stop,), name="serve", daemon=True)
    serving.start()
    return app, room, factory, stop, serving


def shut(app, room, stop, serving) -> None:
    stop.set()
    serving.join(10)
    room.stop()
    assert not serving.is_alive(), "the appliance did not stop"


def test_ready_pings_and_a_clean_stop_that_cuts_the_answer_in_flight(systemd, tmp_path, vad, recognizer):
    app, room, _, stop, serving = appliance(systemd, tmp_path, vad, recognizer)
    try:
        ping = systemd.wait_for("READY=1")
        for _ in range(3):  # pings go on while it is healthy
            ping = systemd.wait_for("WATCHDOG=1", after=ping)
        # a question as the transcriber posts it; the answer is in flight when the service stops
        app.engine.conductor.post(Utterance("count to ten", room.clock(), 0))
        assert app.engine.conductor.wait_state(State.SPEAKING, WAIT_S)
        systemd.wait_for("STATUS=speaking")
    finally:
        shut(app, room, stop, serving)
    stopping = systemd.wait_for("STOPPING=1")
    assert systemd.times("READY=1")[0] < stopping
    turnlog = TurnLog(tmp_path / "turns.db")
    user, answer = turnlog.rows()
    assert (user["role"], user["text"]) == ("user", "count to ten")
    assert (answer["status"], answer["interrupt_reason"]) == ("interrupted", "shutdown")
    assert answer["text"].startswith(answer["heard_text"])


def test_pings_stop_while_a_stage_hangs_and_resume_when_it_recovers(systemd, tmp_path, vad, recognizer):
    stuck = StuckVAD(vad)
    app, room, _, stop, serving = appliance(systemd, tmp_path, stuck, recognizer)
    try:
        systemd.wait_for("WATCHDOG=1", after=systemd.wait_for("READY=1"))
        stuck.stuck.set()
        error = systemd.wait_for("STATUS=error: stage listener has been stuck", timeout_s=10)
        quiet_from = max(t for t in systemd.times("WATCHDOG=1"))
        lasts(1.5)  # the listener stays hung for seven ping periods
        assert not [t for t in systemd.times("WATCHDOG=1") if t > error], "pinged while the listener hung"
        assert quiet_from < error
        assert app.mode is Mode.ERROR and app.controls.mode is Mode.ERROR
        stuck.released.set()
        stuck.stuck.clear()
        systemd.wait_for("WATCHDOG=1", after=error + 1.5)
        systemd.wait_for("STATUS=listening", after=error)
    finally:
        stuck.released.set()
        shut(app, room, stop, serving)


def test_holding_the_button_mutes_and_unmutes_the_mic_and_the_led_shows_it(systemd, tmp_path, vad, recognizer,
                                                                            caplog):
    caplog.set_level(logging.INFO, logger="sayso")
    app, room, factory, stop, serving = appliance(systemd, tmp_path, vad, recognizer)
    button, led = factory.pin(17), factory.pin(27)
    try:
        systemd.wait_for("READY=1")
        assert app.controls.mode is Mode.LISTENING and led.state
        t0 = time.monotonic()
        button.drive_low()  # held past mute_hold_s (0.5 s here)
        muted_at = systemd.wait_for("STATUS=muted", after=t0)
        seen = len(led.states)
        button.drive_high()
        assert app.muted and app.engine.capture.muted.is_set() and app.controls.mode is Mode.MUTED
        # the muted pattern: a blip every 2 s
        assert wait_until(lambda: {s.state for s in led.states[seen:]} == {True, False}, 5), \
            "the LED did not blink while muted"
        assert app.muted, "releasing the button must not unmute"
        button.drive_low()
        systemd.wait_for("STATUS=listening", after=muted_at)
        button.drive_high()
        assert not app.muted and app.controls.mode is Mode.LISTENING
        said = [r.getMessage() for r in caplog.records
                if r.name == "sayso.service.appliance" and "mic" in r.getMessage()]
        assert said[-2:] == ["mic muted (privacy): nothing is heard until the button is held again",
                             "mic unmuted: listening again"]
    finally:
        shut(app, room, stop, serving)


def test_the_appliance_runs_without_gpio_and_says_so_once(tmp_path, vad, recognizer, caplog):
    if any(Path("/dev").glob("gpiochip*")):
        pytest.skip("this machine has GPIO")
    settings = Settings(gpio=GpioSettings(pin_factory="auto"))
    tts = FakeTTS()
    room = Room(tts.rate_hz).start()
    app = Appliance(settings, Models(FakeLLM(["Hi."]), tts, vad, recognizer), room.mic, room.speaker,
                    TurnLog(tmp_path / "turns.db"), notifier=Notifier({}), clock=room.clock)
    try:
        app.start()
        assert app.controls is None
        assert app.wait_listening(WAIT_S)
        warnings = [r.getMessage() for r in caplog.records if "no GPIO here" in r.getMessage()]
        assert len(warnings) == 1 and "gpio.pin_factory" in warnings[0]
    finally:
        app.stop()
        room.stop()


def test_sayso_run_stops_on_sigterm_before_systemd_would_kill_it(systemd, tmp_path, store):
    home = tmp_path / "alsa-home"
    home.mkdir()
    from conftest import ASOUNDRC

    np.zeros(16000, np.int16).tofile(home / "mic-in.raw")
    (home / ".asoundrc").write_text(ASOUNDRC.format(out=home, infile=home / "mic-in.raw"))
    config = tmp_path / "config.toml"
    config.write_text(f'[audio]\ninput_device = "saysomic"\noutput_device = "saysospeaker"\n'
                      f'[log]\ndb = "{tmp_path / "turns.db"}"\n[models]\ndir = "{store.root}"\n'
                      f'[gpio]\npin_factory = "none"\n')
    env = {**os.environ, "HOME": str(home), **systemd.env(2.0)}
    sayso = Path(sys.executable).with_name("sayso")
    proc = subprocess.Popen([str(sayso), "--config", str(config), "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        ready = systemd.wait_for("READY=1", timeout_s=120)
        systemd.wait_for("WATCHDOG=1", after=ready, timeout_s=5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    systemd.wait_for("STOPPING=1", after=sent, timeout_s=1)
    lines = out.splitlines()
    assert any(line.startswith("MainThread INFO sayso.service.appliance: ready in") for line in lines), out
    assert any(line.startswith("capture INFO sayso.hearing.capture: mic 'saysomic' open") for line in lines), out
    assert lines[-1].endswith("stopped"), out
    assert TurnLog(tmp_path / "turns.db").rows() == []
