"""The stop button and the status LED through gpiozero: the same code on a Pi and on gpiozero's MockFactory.

A short press is a hard `interrupt(full, button)`; holding the button toggles
mic mute. The LED shows one pattern per mode. A machine without GPIO (or a
user without access to it) gets one clear log line and no button or LED: the
appliance itself never fails for lack of GPIO.
"""

from __future__ import annotations

import enum
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sayso.config import GpioSettings
from sayso.errors import SaysoError

log = logging.getLogger(__name__)

MODEL_FILES = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))


class Mode(enum.Enum):
    """What the LED shows, most urgent first when several apply."""

    ERROR = "error"
    MUTED = "muted"
    SPEAKING = "speaking"
    THINKING = "thinking"
    LISTENING = "listening"
    STANDBY = "standby"


@dataclass(frozen=True)
class Pattern:
    """An LED pattern: on for `on_s`, off for `off_s`, repeated; off_s = 0 is steady on."""

    on_s: float
    off_s: float


PATTERNS = {
    Mode.LISTENING: Pattern(1.0, 0.0),   # steady: ready, listening
    Mode.STANDBY: Pattern(0.1, 4.9),     # a blink every 5 s: alive, waiting for the wake word
    Mode.THINKING: Pattern(0.15, 0.15),  # quick flicker: working on an answer
    Mode.SPEAKING: Pattern(0.8, 0.2),    # mostly on, a short dip each second
    Mode.MUTED: Pattern(0.05, 1.95),     # a brief blip every 2 s: asleep, hears nothing
    Mode.ERROR: Pattern(0.05, 0.05),     # frantic: look at `journalctl -u sayso`
}


def board_model(files: tuple[Path, ...] = MODEL_FILES) -> str:
    """The board's model string from the device tree ("Raspberry Pi 5 Model B Rev 1.0"), or ""."""
    for f in files:
        try:
            return f.read_text(errors="replace").rstrip("\0\n")
        except OSError:
            continue
    return ""


def factory_name(choice: str, model: str) -> str:
    """Which pin factory config `gpio.pin_factory` means on this board; "" lets gpiozero choose.

    The Pi 5 moved GPIO to the RP1 chip, which only lgpio drives; gpiozero's own
    fallback order is not trusted there.
    """
    if choice == "auto":
        return "lgpio" if "Raspberry Pi 5" in model else ""
    return choice


def make_pin_factory(choice: str, model: str | None = None):
    """The gpiozero pin factory for config `gpio.pin_factory`; None lets gpiozero choose."""
    name = factory_name(choice, board_model() if model is None else model)
    if not name:
        return None
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    from gpiozero.pins.native import NativeFactory

    return NativeFactory()


class Controls:
    """The button (press: stop, hold: mute) and the optional status LED.

    Args:
        on_press: called on gpiozero's thread at each press (the conductor's `button`); gpiozero
            debounces it by `settings.bounce_ms`, the one debounce a press gets.
        on_hold: called once the button has been held `mute_hold_s` (toggle mute), or None.
        pin_factory: passed in (MockFactory in the simulator and tests), never patched.
    """

    def __init__(self, settings: GpioSettings, on_press: Callable[[], object],
                 on_hold: Callable[[], object] | None, pin_factory):
        from gpiozero import LED, Button

        self.settings, self.factory = settings, pin_factory
        self.button = self.led = None
        self.mode: Mode | None = None
        try:
            if settings.button_pin >= 0:
                self.button = Button(settings.button_pin, pull_up=True, bounce_time=settings.bounce_ms / 1000 or None,
                                     hold_time=settings.mute_hold_s, pin_factory=pin_factory)
                self.button.when_pressed = lambda: on_press()
                if on_hold is not None:
                    self.button.when_held = lambda: on_hold()
            if settings.led_pin >= 0:
                self.led = LED(settings.led_pin, pin_factory=pin_factory)
        except BaseException:
            self.close()
            raise

    def show(self, mode: Mode) -> None:
        """Switch the LED to `mode`'s pattern (no-op without an LED or when it already shows it)."""
        if self.led is None or mode is self.mode:
            return
        self.mode = mode
        p = PATTERNS[mode]
        if p.off_s == 0:
            self.led.on()
        else:
            self.led.blink(on_time=p.on_s, off_time=p.off_s, background=True)

    def describe(self) -> str:
        name = type(self.factory).__name__ if self.factory is not None else "gpiozero default"
        parts = [f"pin factory {name}"]
        if self.button is not None:
            parts.append(f"button on GPIO{self.settings.button_pin} (hold {self.settings.mute_hold_s:g} s: mute)")
        if self.led is not None:
            parts.append(f"LED on GPIO{self.settings.led_pin}")
        return ", ".join(parts)

    def close(self) -> None:
        for dev in (self.button, self.led):
            if dev is not None:
                dev.close()


def open_controls(settings: GpioSettings, on_press: Callable[[], object], on_hold: Callable[[], object] | None,
                  pin_factory=None) -> Controls | None:
    """The button and LED, or None (said once in the log) when this machine has no usable GPIO.

    `pin_factory` None picks one from `settings.pin_factory`.
    """
    if settings.pin_factory == "none" and pin_factory is None:
        log.info("GPIO is off (gpio.pin_factory = \"none\"): no stop button, no status LED")
        return None
    if settings.button_pin < 0 and settings.led_pin < 0:
        log.info("no GPIO pins configured (gpio.button_pin and gpio.led_pin are -1)")
        return None
    try:
        controls = build_controls(settings, on_press, on_hold, pin_factory)
    except GpioUnavailable as e:  # no GPIO is a supported setup: say so and run without it
        tried = f"; tried: {e.tried}" if e.tried else ""
        log.warning("no GPIO here (%s%s); running without the stop button and status LED. %s", e, tried, gpio_hint())
        return None
    log.info("GPIO: %s", controls.describe())
    return controls


class GpioUnavailable(SaysoError, OSError):
    """No usable GPIO: the message is gpiozero's error; `tried` lists the pin factories it fell back from."""

    def __init__(self, message: str, tried: str = ""):
        super().__init__(message)
        self.tried = tried


def build_controls(settings: GpioSettings, on_press: Callable[[], object], on_hold: Callable[[], object] | None,
                   pin_factory=None) -> Controls:
    """The button and LED on `pin_factory` (None: the one `settings.pin_factory` names); GpioUnavailable if not."""
    with warnings.catch_warnings(record=True) as fallbacks:
        warnings.simplefilter("always")
        try:
            factory = pin_factory if pin_factory is not None else make_pin_factory(settings.pin_factory)
            return Controls(settings, on_press, on_hold, factory)
        except Exception as e:
            raise GpioUnavailable(f"{type(e).__name__}: {e}", "; ".join(str(w.message) for w in fallbacks)) from e


def gpio_hint(model: str | None = None) -> str:
    """What to do about GPIO that does not work, for this board."""
    model = board_model() if model is None else model
    if not model.startswith("Raspberry Pi"):
        return 'Not a Raspberry Pi: set gpio.pin_factory = "none" in the config to say so.'
    hint = "Check that the user is in the gpio group (`sudo usermod -aG gpio $USER`)"
    if "Raspberry Pi 5" in model:
        hint += " and that lgpio is installed (`pip install lgpio`, or `sudo apt install python3-lgpio`)"
    return hint + "."
