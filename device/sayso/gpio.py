"""The stop button through gpiozero: the same code path on a Pi and on gpiozero's MockFactory."""

from __future__ import annotations

from sayso.config import GpioSettings


def stop_button(conductor, settings: GpioSettings, pin_factory=None):
    """A gpiozero Button on `settings.button_pin` (to ground, internal pull-up); a press is `conductor.button()`.

    `pin_factory` is passed in (MockFactory in the simulator and tests), never patched;
    None lets gpiozero pick the board's own.
    """
    from gpiozero import Button

    bounce = settings.bounce_ms / 1000 or None
    button = Button(settings.button_pin, pull_up=True, bounce_time=bounce, pin_factory=pin_factory)
    button.when_pressed = lambda: conductor.button()
    return button
