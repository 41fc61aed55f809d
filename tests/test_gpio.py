"""The button and LED on gpiozero's MockFactory, and the choice of pin factory per board."""

from __future__ import annotations

import threading

import pytest
from gpiozero.pins.mock import MockFactory

from sayso import config
from sayso.config import GpioSettings
from sayso.errors import ConfigError
from sayso.service.gpio import PATTERNS, Controls, Mode, factory_name, gpio_hint
from waits import wait_until


@pytest.mark.parametrize(("choice", "model", "name"), [
    ("auto", "Raspberry Pi 5 Model B Rev 1.0", "lgpio"),
    ("auto", "Raspberry Pi 4 Model B Rev 1.5", ""),
    ("auto", "", ""),
    ("rpigpio", "Raspberry Pi 5 Model B Rev 1.0", "rpigpio"),
    ("lgpio", "Raspberry Pi 4 Model B Rev 1.5", "lgpio"),
])
def test_the_pi_5_gets_lgpio_and_other_boards_gpiozeros_own_choice(choice, model, name):
    assert factory_name(choice, model) == name


def test_the_hint_fits_the_board():
    assert "lgpio" in gpio_hint("Raspberry Pi 5 Model B Rev 1.0")
    assert "gpio group" in gpio_hint("Raspberry Pi 4 Model B Rev 1.5")
    assert 'pin_factory = "none"' in gpio_hint("")


def test_a_press_stops_and_a_hold_toggles_mute_once():
    factory = MockFactory()
    presses, holds = [], threading.Event()
    controls = Controls(GpioSettings(bounce_ms=0, mute_hold_s=0.5), lambda: presses.append("press"), holds.set,
                        factory)
    pin = factory.pin(17)
    try:
        pin.drive_low()  # a short press: released long before mute_hold_s
        pin.drive_high()
        assert wait_until(lambda: presses, 3), "the press was not reported"
        assert len(presses) == 1 and not holds.is_set(), "a short press is a stop, not a mute"
        pin.drive_low()
        assert holds.wait(3), "holding did not toggle mute"
        pin.drive_high()
        assert len(presses) == 2
    finally:
        controls.close()


def test_the_button_is_debounced_once_on_its_pin_by_gpiozero():
    factory = MockFactory()
    controls = Controls(GpioSettings(bounce_ms=30), lambda: None, None, factory)
    try:
        assert factory.pin(17).bounce == 0.03
    finally:
        controls.close()
    factory = MockFactory()
    controls = Controls(GpioSettings(bounce_ms=0), lambda: None, None, factory)
    try:
        assert factory.pin(17).bounce is None
    finally:
        controls.close()


def test_each_mode_has_its_own_led_pattern():
    assert len(set(PATTERNS.values())) == len(Mode)
    factory = MockFactory()
    controls = Controls(GpioSettings(), lambda: None, None, factory)
    led = factory.pin(27)
    try:
        controls.show(Mode.LISTENING)
        assert led.state and controls.mode is Mode.LISTENING, "listening is steady on"
        seen = len(led.states)
        controls.show(Mode.THINKING)
        assert wait_until(lambda: len(led.states) - seen >= 4, 5), "thinking should flicker"
    finally:
        controls.close()


def test_button_and_led_on_one_pin_is_a_config_error():
    with pytest.raises(ConfigError, match="give the LED its own pin"):
        config.parse({"gpio": {"button_pin": 22, "led_pin": 22}})
    assert config.parse({"gpio": {"button_pin": -1, "led_pin": -1}}).gpio.led_pin == -1
