"""The scenario format: a simulated room and the steps of a conversation, in TOML.

This is a contract (scenarios are written elsewhere too): top-level `name`, an
optional `[room]` (echo_gain_db, echo_delay_ms, noise_dbfs, and the harder room's
rt60_s, drr_db, drift_ppm, speaker_clip_db, babble_dbfs) and `[[step]]`s,
each with an optional `wait` (idle | listening | thinking | speaking), an
optional `after_s`, and at most one action: `say` (a string, or a list of
strings spoken with `gap_s` of silence between them, as a person pausing
mid-sentence), `wav`, `noise_s`, `cough` (how many) or `press` (with `hold_s`).
The person's `voice` (piper, espeak:NAME, or recording:NAME: a real person, who
says the recording's words whatever the line) is set for the scenario and may be
changed for one `say`, as may its level (`gain_db`). `wake` names the wake word the lines are written for
(okay_nabu, hey_jarvis, alexa, hey_mycroft); without it the appliance runs with
the wake word off and every utterance is a request.
Every problem is reported with the file, the step and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sayso.config import WAKE_WORDS
from sayso.errors import ScenarioError
from sayso.pipeline.messages import State
from sayso.sim.voices import PIPER, VOICE_NAME, VOICES_ALLOWED

#: The scenarios that ship in the package (`sayso demo`, `sayso bench`).
PACKAGED = Path(__file__).parent / "scenarios"

_ACTIONS = ("say", "wav", "noise_s", "cough", "press")
_ROOM_RANGES = {"rt60_s": (0.05, 3.0), "drr_db": (-20.0, 30.0), "drift_ppm": (-1000.0, 1000.0),
                "speaker_clip_db": (-40.0, 0.0), "babble_dbfs": (-90.0, -3.0)}


@dataclass(frozen=True)
class RoomSpec:
    echo_gain_db: float | None = None
    """Speaker -> mic coupling; None = no echo."""
    echo_delay_ms: float = 0.0
    noise_dbfs: float | None = None
    """Background noise floor; None = silence."""
    rt60_s: float | None = None
    """Reverberation time of the room (speaker and person both reach the mic through it); None = dry."""
    drr_db: float = 3.0
    """Direct-to-reverberant energy ratio, only with rt60_s."""
    drift_ppm: float | None = None
    """How much faster (negative: slower) the speaker's clock runs than the mic's."""
    speaker_clip_db: float | None = None
    """The level (dBFS of what is played) a small speaker cannot exceed: soft clipping toward it."""
    babble_dbfs: float | None = None
    """A second voice talking all the time at this level, like a television; None = none."""


@dataclass(frozen=True)
class Step:
    number: int
    """1-based, as a person counts the [[step]] tables."""
    wait: State | None = None
    after_s: float = 0.0
    say: str | None = None
    say_parts: tuple[str, ...] = ()
    """When `say` was a list: its pieces, spoken with `gap_s` of silence between them."""
    gap_s: float = 0.7
    wav: Path | None = None
    noise_s: float | None = None
    cough: int | None = None
    """How many synthetic coughs, one after another."""
    press: bool = False
    hold_s: float = 0.1
    voice: str | None = None
    """Who says `say`: `piper`, `espeak:NAME` or `recording:NAME`; None = the scenario's voice."""
    gain_db: float = 0.0
    """The line's level against the voice's own: a television across the room is quieter than the person."""

    @property
    def action(self) -> str | None:
        return next((a for a in _ACTIONS if getattr(self, a) not in (None, False)), None)

    def describe(self) -> str:
        parts = [f"step {self.number}"]
        if self.wait:
            parts.append(f"wait={self.wait.value}")
        if self.action == "say":
            parts.append(f"say={self.say!r}")
        elif self.action:
            parts.append(f"{self.action}={getattr(self, self.action)}")
        return " ".join(parts)


@dataclass(frozen=True)
class Scenario:
    name: str
    room: RoomSpec
    steps: tuple[Step, ...]
    source: str = "<string>"
    voice: str = PIPER
    """The person's voice for every `say` that names none."""
    wake: str = "off"
    """The wake word the lines are written for; off = every utterance is a request."""


def _number(where: str, key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: {key} = {value!r} must be a number")
    if not lo <= value <= hi:
        raise ScenarioError(f"{where}: {key} = {value!r} must be between {lo:g} and {hi:g}")
    return float(value)


def _keys(where: str, table: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(table, dict):
        raise ScenarioError(f"{where} must be a table, not {table!r}")
    for key in table:
        if key not in allowed:
            raise ScenarioError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")
    return table


def _room(where: str, raw: Any) -> RoomSpec:
    w = f"{where} [room]"
    t = _keys(w, raw, ("echo_gain_db", "echo_delay_ms", "noise_dbfs", *_ROOM_RANGES))
    if "drr_db" in t and "rt60_s" not in t:
        raise ScenarioError(f"{w}: drr_db belongs to a reverberant room; give rt60_s too")
    optional = {k: _number(w, k, t[k], lo, hi) for k, (lo, hi) in _ROOM_RANGES.items() if k in t}
    return RoomSpec(
        echo_gain_db=_number(w, "echo_gain_db", t["echo_gain_db"], -90, 20) if "echo_gain_db" in t else None,
        echo_delay_ms=_number(w, "echo_delay_ms", t.get("echo_delay_ms", 0), 0, 1000),
        noise_dbfs=_number(w, "noise_dbfs", t["noise_dbfs"], -120, -3) if "noise_dbfs" in t else None,
        **optional)


def _voice(where: str, value: Any) -> str:
    if not isinstance(value, str) or not VOICE_NAME.match(value):
        raise ScenarioError(f"{where}: voice = {value!r}; allowed: {VOICES_ALLOWED}")
    return value


def _step(where: str, number: int, raw: Any, base: Path | None) -> Step:
    w = f"{where} step {number}"
    t = _keys(w, raw, ("wait", "after_s", "say", "gap_s", "wav", "noise_s", "cough", "press", "hold_s", "voice",
                       "gain_db"))
    values: dict[str, Any] = {"number": number}
    if "wait" in t:
        try:
            values["wait"] = State(t["wait"])
        except ValueError:
            raise ScenarioError(f"{w}: wait = {t['wait']!r}; allowed: "
                                f"{', '.join(s.value for s in State)}") from None
    if "after_s" in t:
        values["after_s"] = _number(w, "after_s", t["after_s"], 0, 600)
    if "say" in t:
        say = t["say"]
        parts = say if isinstance(say, list) else [say]
        if not parts or not all(isinstance(p, str) and p.strip() for p in parts):
            raise ScenarioError(f"{w}: say must be a non-empty string or a list of them, not {say!r}")
        values["say"] = " ... ".join(parts)
        if isinstance(say, list):
            values["say_parts"] = tuple(parts)
    if "gap_s" in t:
        if "say" not in t or not isinstance(t["say"], list):
            raise ScenarioError(f"{w}: gap_s belongs to a step whose say is a list of strings")
        values["gap_s"] = _number(w, "gap_s", t["gap_s"], 0.05, 10)
    if "voice" in t:
        if "say" not in t:
            raise ScenarioError(f"{w}: voice belongs to a step that says something")
        values["voice"] = _voice(w, t["voice"])
    if "gain_db" in t:
        if "say" not in t:
            raise ScenarioError(f"{w}: gain_db belongs to a step that says something")
        values["gain_db"] = _number(w, "gain_db", t["gain_db"], -40, 10)
    if "wav" in t:
        if not isinstance(t["wav"], str):
            raise ScenarioError(f"{w}: wav must be a file path string, not {t['wav']!r}")
        path = Path(t["wav"])
        path = path if path.is_absolute() or base is None else base / path
        if not path.is_file():
            raise ScenarioError(f"{w}: wav file {path} does not exist (relative paths are from the scenario's folder)")
        values["wav"] = path
    if "noise_s" in t:
        values["noise_s"] = _number(w, "noise_s", t["noise_s"], 0.01, 30)
    if "cough" in t:
        if isinstance(t["cough"], bool) or not isinstance(t["cough"], int) or not 1 <= t["cough"] <= 10:
            raise ScenarioError(f"{w}: cough = {t['cough']!r} must be a whole number of coughs from 1 to 10")
        values["cough"] = t["cough"]
    if "press" in t:
        if not isinstance(t["press"], bool):
            raise ScenarioError(f"{w}: press must be true or false, not {t['press']!r}")
        values["press"] = t["press"]
    if "hold_s" in t:
        if not t.get("press"):
            raise ScenarioError(f"{w}: hold_s belongs to a step with press = true")
        values["hold_s"] = _number(w, "hold_s", t["hold_s"], 0.01, 30)
    step = Step(**values)
    actions = [a for a in _ACTIONS if a in t and t[a] is not False]
    if len(actions) > 1:
        raise ScenarioError(f"{w}: one action per step, found {', '.join(actions)}; split it into two steps")
    if step.wait is None and step.action is None and not step.after_s:
        raise ScenarioError(f"{w} does nothing: give it a wait, an after_s or an action ({', '.join(_ACTIONS)})")
    return step


def parse(data: dict, source: str = "<string>", base: Path | None = None) -> Scenario:
    """Validate a parsed TOML document into a Scenario; ScenarioError names the first problem."""
    _keys(source, data, ("name", "voice", "wake", "room", "step"))
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str):
        raise ScenarioError(f"{source}: name must be a string, not {name!r}")
    steps = data.get("step")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{source}: no steps; add at least one [[step]] table")
    room = _room(source, data["room"]) if "room" in data else RoomSpec()
    voice = _voice(source, data["voice"]) if "voice" in data else PIPER
    wake = data.get("wake", "off")
    if wake not in (*WAKE_WORDS, "off"):
        raise ScenarioError(f"{source}: wake = {wake!r} must be one of {', '.join(WAKE_WORDS)} or off")
    return Scenario(name, room, tuple(_step(source, i, s, base) for i, s in enumerate(steps, 1)), source, voice,
                    wake)


def load(path: str | Path) -> Scenario:
    """Read a scenario file; a bare name (`demo`) is looked up among the packaged scenarios."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and (PACKAGED / f"{path}.toml").exists():
        path = PACKAGED / f"{path}.toml"
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        shipped = ", ".join(sorted(p.stem for p in PACKAGED.glob("*.toml")))
        raise ScenarioError(f"scenario file {path} does not exist (packaged scenarios: {shipped})") from None
    except IsADirectoryError:
        raise ScenarioError(f"{path} is a directory; give a scenario .toml file (or a packaged name like demo)"
                            ) from None
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ScenarioError(f"cannot read the scenario {path}: {e.strerror or e}") from None
    return parse(data, str(path), path.parent)
