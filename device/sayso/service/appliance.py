"""`sayso run`: the pipeline on the configured sound devices, with the button, the LED and systemd.

Start-up checks the sound devices before loading any model, so a missing mic
fails in a second with the names of the devices that do exist (systemd then
retries). READY=1 goes out only once the mic delivers audio: "ready" means
listening. SIGTERM interrupts what is in flight (full, shutdown), stops every
stage and leaves the turn log consistent.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sayso.answering.audio_out import PyAudioSink
from sayso.answering.speaker import AudioSink
from sayso.audio import find_device
from sayso.config import Settings
from sayso.engine import Engine
from sayso.errors import DeviceFailed
from sayso.hearing.capture import Mic, PyAudioMic
from sayso.models.manifest import ModelStore
from sayso.pipeline.messages import Event, State
from sayso.pipeline.turnlog import TurnLog
from sayso.service.gpio import Controls, Mode, open_controls
from sayso.service.modelset import Models
from sayso.service.notify import Notifier
from sayso.service.watchdog import Watchdog

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 4.0
"""How long stopping the stages may take: SIGTERM must end the process within 5 s in all."""


class Appliance:
    """The engine with a mic, plus what makes it an appliance: button, LED, mute, health, systemd status.

    Devices and the pin factory are passed in (PortAudio on a Pi, the simulated
    room and gpiozero's MockFactory in tests); None for `pin_factory` picks the
    board's own from config.
    """

    def __init__(self, settings: Settings, models: Models, mic: Mic, sink: AudioSink, turnlog: TurnLog, *,
                 notifier: Notifier | None = None, pin_factory=None,
                 clock: Callable[[], int] = time.monotonic_ns):
        self.settings, self.clock = settings, clock
        self.notifier = notifier or Notifier()
        self.engine = Engine(llm=models.llm, tts=models.tts, sink=sink, turnlog=turnlog, settings=settings,
                             clock=clock, observers=[self._on_event], mic=mic, vad=models.vad,
                             recognizer=models.recognizer, turn_model=models.turn,
                             wake=models.wake)
        self.pin_factory = pin_factory
        self.controls: Controls | None = None
        self.watchdog = Watchdog(self.notifier, self.health, self._on_health, Watchdog.interval_for(self.notifier))
        self.mode: Mode | None = None
        self._status = ""
        self._lock = threading.Lock()
        self._problems: list[str] = []
        self._failed_turn: int | None = None
        self._unwritable: str | None = None
        """Why the turn log takes no writes, while it does not."""

    # ---- life cycle

    def start(self) -> Appliance:
        self.engine.start()
        self.controls = open_controls(self.settings.gpio, self.engine.conductor.button, self.toggle_mute,
                                      self.pin_factory)
        self._refresh()
        self.watchdog.start()
        return self

    def wait_listening(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Until the mic has delivered its first frame; False on timeout or when `stop` is set first."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout_s
        while self.engine.capture.index == 0:
            if stop.wait(0.02) or time.monotonic() > deadline:
                return False
        return True

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """STOPPING=1, interrupt(full, shutdown), every stage stopped; the turn log is left consistent."""
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        self.watchdog.stopping.set()
        try:
            self.engine.stop(timeout_s)
        finally:
            if self.controls is not None:
                self.controls.close()
            self.watchdog.join(1.0)

    def serve(self, stop: threading.Event, t0: float | None = None) -> None:
        """Start, send READY=1 once the mic delivers audio, run until `stop` is set, then stop cleanly."""
        t0 = time.monotonic() if t0 is None else t0
        self.start()
        try:
            if not self.wait_listening(self.settings.service.hang_s, stop) and not stop.is_set():
                raise DeviceFailed(f"the mic opened but gave no audio in {self.settings.service.hang_s:g} s; "
                                   "run `sayso doctor` to check it")
            if not stop.is_set():
                self.notifier.send("READY=1", "STATUS=listening")
                log.info("ready in %.1f s: listening", time.monotonic() - t0)
            while not stop.wait(1.0):
                self._refresh()  # a listening window closes with no event
            log.info("stopping")
        finally:
            self.stop()

    # ---- mute, health, status

    @property
    def muted(self) -> bool:
        return self.engine.capture.muted.is_set()

    def toggle_mute(self) -> bool:
        """Mute or unmute the mic (the button held); returns the new muted state."""
        muted = self.engine.capture.muted
        if muted.is_set():
            muted.clear()
            log.info("mic unmuted: listening again")
        else:
            muted.set()
            log.info("mic muted (privacy): nothing is heard until the button is held again")
        self.engine.bus.emit(Event("mute", self.clock(), {"muted": muted.is_set()}))
        self._refresh()
        return muted.is_set()

    def health(self) -> list[str]:
        """Problems that make the appliance useless now: no mic audio, a stage that stopped or hangs."""
        now, hang_s = time.monotonic(), self.settings.service.hang_s
        problems = []
        silent = now - self.engine.capture.last_audio
        if silent > hang_s:
            problems.append(f"no audio from the mic for {silent:.0f} s")
        for stage in [*self.engine.stages, self.engine.bus]:
            if not stage.alive:
                problems.append(f"stage {stage.name} has stopped")
            elif now - stage.heartbeat > hang_s:
                problems.append(f"stage {stage.name} has been stuck for {now - stage.heartbeat:.0f} s")
        return problems

    def _on_health(self, problems: list[str]) -> None:
        with self._lock:
            self._problems = problems
        self._refresh()

    def _on_event(self, event: Event) -> None:
        """Observer (on the event bus's thread): journal lines, and the LED and STATUS= follow the state."""
        d = event.data
        if event.type == "user_turn":
            log.info("turn %s, the person said: %r", d["turn"], d["text"])
        elif event.type == "turn_started":
            with self._lock:
                self._failed_turn = None
        elif event.type == "speech_interrupted":
            log.info("turn %s interrupted (%s, %s)", d["turn"], d["kind"], d["reason"])
        elif event.type == "turn_log":
            with self._lock:
                self._unwritable = None if d["writable"] else d["why"]
        elif event.type == "turn_finished":
            if d["status"] == "complete":
                log.info("turn %s answered: %r", d["turn"], d["text"])
            else:
                log.info("turn %s cut (%s); the person heard %r of %r", d["turn"], d["reason"], d["heard_text"],
                         d["text"])
            if d["reason"] == "error":
                with self._lock:
                    self._failed_turn = d["turn"]
        self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            if self._problems or self._failed_turn is not None:
                mode = Mode.ERROR
                detail = "; ".join(self._problems) or f"turn {self._failed_turn} failed, see the log"
                status = f"error: {detail}"
            elif self.muted:
                mode, status = Mode.MUTED, "muted (hold the button to unmute)"
            elif self.engine.conductor.awaiting_wake:
                mode, status = Mode.STANDBY, "waiting for the wake word"
            else:
                mode = {State.SPEAKING: Mode.SPEAKING, State.THINKING: Mode.THINKING}.get(
                    self.engine.conductor.state, Mode.LISTENING)
                status = mode.value
            if self._unwritable is not None:
                status += f" (not remembering: {self._unwritable}; turns are kept in memory, see `sayso doctor`)"
            if (mode, status) == (self.mode, self._status):
                return
            self.mode, self._status = mode, status
            # under the lock: the LED and STATUS= must end on the last mode, whichever thread got here first
            if self.controls is not None:
                self.controls.show(mode)
            self.notifier.send(f"STATUS={status}")


def open_devices(settings: Settings) -> tuple[PyAudioMic, PyAudioSink]:
    """The configured mic and speaker; DeviceNotFound names the devices that do exist."""
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        _, info = find_device(pa, settings.audio.input_device, "input")
    finally:
        pa.terminate()
    sink = PyAudioSink(settings.audio.output_device)
    log.info("mic %r, speaker %r", info["name"], sink.device_name)
    return PyAudioMic(settings.audio.input_device), sink


def run(settings: Settings, store: ModelStore, notifier: Notifier | None = None) -> int:
    """The appliance until SIGTERM or Ctrl-C; 0 after a clean stop."""
    notifier = notifier or Notifier()
    t0 = time.monotonic()
    notifier.send("STATUS=checking the sound devices")
    mic, sink = open_devices(settings)
    try:
        notifier.send("STATUS=loading models")
        models = Models.load(settings, store)
        notifier.send("STATUS=warming the models")
        models.warm(settings)
        db = Path(settings.log.db)
        turnlog = TurnLog(db)
        log.info("turn log: %s", db.resolve())
        # until here SIGTERM's default (exit at once) loses nothing; from here on it stops the appliance
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.set())
        try:
            Appliance(settings, models, mic, sink, turnlog, notifier=notifier).serve(stop, t0)
        finally:
            turnlog.close()
    finally:
        sink.close()
    log.info("stopped")
    return 0
