"""Settings: one TOML file, read with tomllib and validated once, at start.

Every key has a built-in default, so no file is needed. An unknown key, a wrong
type or a value out of range stops start-up with a message that names the key,
the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from sayso.errors import ConfigError
from sayso.options import build_section, opt, unknown

#: Where the appliance looks for its config when no --config is given.
SYSTEM_CONFIG = Path("/etc/sayso/config.toml")


@dataclass(frozen=True)
class ModelSettings:
    dir: str = opt("", "Models directory; empty = the checkout's models/ (a Pi uses /var/lib/sayso/models).")


@dataclass(frozen=True)
class AudioSettings:
    input_device: str = opt("", "Microphone: a substring of its PortAudio name; empty = the default input.")
    output_device: str = opt("", "Speaker: a substring of its PortAudio name; empty = the default output.")
    stall_s: float = opt(2.0, "Seconds without mic frames before capture is reopened (unplugged USB mic).",
                         lo=0.5, hi=60)


@dataclass(frozen=True)
class VADSettings:
    start_threshold: float = opt(0.5, "Speech probability at which speech may start.", lo=0.05, hi=0.99)
    stop_threshold: float = opt(0.35, "Probability below which speech may stop (hysteresis).", lo=0.01, hi=0.95)
    min_speech_ms: int = opt(200, "Shortest speech that counts as an utterance.", lo=32, hi=2000)
    end_silence_ms: int = opt(550, "Silence that ends an utterance.", lo=150, hi=3000)
    preroll_ms: int = opt(320, "Audio kept from before the onset so the first word reaches the STT.",
                          lo=0, hi=2000)
    foreground_margin_db: float = opt(12.0, "Speech counts as the person's only this far above the room's "
                                      "background (its median level over the last 6 s), so a television "
                                      "across the room is not taken for someone talking to it; 0 = off.",
                                      lo=0, hi=40)


@dataclass(frozen=True)
class TurnSettings:
    detector: str = opt("smart-turn", "What decides that the person has finished: smart-turn (a model hears "
                        "whether a pause ends the sentence) or silence (vad.end_silence_ms of quiet).",
                        choices=("smart-turn", "silence"))
    pause_ms: int = opt(200, "Silence after which the end-of-turn model is asked and the answer may start "
                        "preemptively.", lo=64, hi=1500)
    max_silence_ms: int = opt(1100, "With smart-turn: silence that ends a turn the model called incomplete.",
                              lo=300, hi=5000)
    trailing_silence_ms: int = opt(2000, "With smart-turn: silence that ends a turn whose words stop where a "
                                   "sentence cannot end (\"the capital of\"), whatever the model says.",
                                   lo=300, hi=8000)
    learn_pauses: bool = opt(True, "With smart-turn: once the person has gone on after a pause mid-sentence, "
                             "a turn the model calls complete waits as long as their recent such pauses "
                             "(up to max_silence_ms) before it ends.")
    threshold: float = opt(0.5, "With smart-turn: probability at or above which a pause ends the turn.",
                           lo=0.05, hi=0.99)
    threads: int = opt(1, "CPU threads for the end-of-turn model.", lo=1, hi=16)
    max_cost_ms: float = opt(400.0, "If the end-of-turn model takes longer than this at start-up, this board "
                             "cannot afford it: fall back to silence alone.", lo=10, hi=5000)
    preemptive: bool = opt(True, "Start the answer at the pause, before the end of the turn is certain; it is "
                           "dropped unheard if the person goes on.")
    join_window_s: float = opt(4.0, "Speech this soon after the person's last turn, before any word of its "
                               "answer was heard, joins that turn instead of starting a new one; 0 = never.",
                               lo=0, hi=30)
    not_caught_reply: str = opt("Sorry, I didn't catch that.", "Said when the person spoke but the recogniser "
                                "found no words in it; empty = stay silent.")
    not_caught_speech_ms: int = opt(640, "How long a run of sure speech, passed by the echo guard and the "
                                    "foreground gate, counts as the person speaking: a cough has far less.",
                                    lo=160, hi=5000)


@dataclass(frozen=True)
class BargeInSettings:
    mode: str = opt("pause", "What speech over an answer does: pause (go quiet at once, interrupt when words "
                    "follow, resume when none do), immediate (interrupt at once), off (only the button stops it).",
                    choices=("pause", "immediate", "off"))
    commit_window_s: float = opt(1.5, "In pause mode, how long a pause waits for words before the answer resumes.",
                                 lo=0.3, hi=10)
    min_words: int = opt(1, "In pause mode, words needed to commit the interrupt; 2 lets a lone \"okay\" "
                         "or \"uh-huh\" pass.", lo=1, hi=10)
    echo_canceller: str = opt("speex", "Acoustic echo canceller before the VAD: speex (libspeexdsp) or off.",
                              choices=("speex", "off"))
    echo_tail_ms: int = opt(200, "How long an echo the canceller models after the measured delay "
                            "(the room's reverberation).", lo=32, hi=1000)
    min_speech_ms: int = opt(64, "Speech over an answer must last this long to interrupt it (two 32 ms frames).",
                             lo=32, hi=2000)
    echo_margin_db: float = opt(10.0, "While speaking, the mic must exceed the expected echo by this much.",
                                lo=0, hi=40)


@dataclass(frozen=True)
class LLMSettings:
    model: str = opt("qwen2.5-coder-0.5b-instruct-q4", "Manifest name of the GGUF model.")
    max_tokens: int = opt(160, "Most tokens in one answer.", lo=8, hi=4096)
    max_seconds: float = opt(20.0, "Most seconds one answer may take before it is cut (timeout).", lo=1, hi=600)
    context_tokens: int = opt(2048, "llama.cpp context window in tokens.", lo=256, hi=32768)
    threads: int = opt(0, "CPU threads for generation; 0 = all cores but one, which the audio path keeps.",
                       lo=0, hi=64)
    temperature: float = opt(0.3, "Sampling temperature.", lo=0.0, hi=2.0)
    seed: int = opt(42, "Sampling seed, so the same question gets the same answer; -1 = random.", lo=-1, hi=2**31 - 1)
    system_prompt: str = opt(
        "You are a voice assistant on a small home device. Answer in one to three short, "
        "plain spoken sentences. No lists, no markdown, no emoji, no code.",
        "System prompt for spoken answers.",
    )
    backend: str = opt("local", "Where answers come from: local (llama.cpp on this board) or server (an "
                       "OpenAI-compatible server on the LAN; the local model answers when it cannot, if installed). "
                       "See docs/llm-server.md.", choices=("local", "server"))
    server_url: str = opt("", "The server's OpenAI-compatible base URL, ending in /v1: http://192.168.1.20:8080/v1 "
                          "(llama-server), http://192.168.1.20:11434/v1 (Ollama). Use an IP address or an "
                          "/etc/hosts name: the service may not reach DNS.")
    server_model: str = opt("", "Model name asked of the server; Ollama needs one (qwen2.5:3b), llama-server "
                            "serves the one it loaded.")
    server_api_key_file: str = opt("", "File holding the server's API key, readable by sayso only; the key is "
                                   "never logged nor printed. Empty = no key.")
    server_api_key_env: str = opt("", "Or: the environment variable holding the API key (SAYSO_LLM_API_KEY).")
    server_connect_timeout_s: float = opt(2.0, "Seconds to connect to the server before the local model answers.",
                                          lo=0.1, hi=30)
    server_first_token_s: float = opt(6.0, "Seconds from asking to the server's first token before the local model "
                                      "answers.", lo=0.5, hi=120)
    server_idle_timeout_s: float = opt(5.0, "Seconds between the server's tokens before the answer counts as "
                                       "stalled.", lo=0.5, hi=120)

    def check_server(self) -> None:
        """The server settings agree with each other (checked once, at start)."""
        from urllib.parse import urlsplit

        url = urlsplit(self.server_url)
        if self.backend == "server" and (url.scheme not in ("http", "https") or not url.hostname):
            raise ConfigError(f"llm.server_url = {self.server_url!r}: llm.backend = \"server\" needs the server's "
                              "base URL, like \"http://192.168.1.20:8080/v1\".")
        if self.server_api_key_file and self.server_api_key_env:
            raise ConfigError("llm.server_api_key_file and llm.server_api_key_env are both set: keep one.")


@dataclass(frozen=True)
class VoiceSettings:
    model: str = opt("en_US-joe-medium", "Manifest name of the Piper voice.")
    length_scale: float = opt(1.0, "Speaking pace; above 1 is slower.", lo=0.5, hi=2.0)


@dataclass(frozen=True)
class STTSettings:
    engine: str = opt("auto", "Recogniser; auto takes Vosk when its model is installed.",
                      choices=("auto", "vosk", "pocketsphinx"))
    vosk_model: str = opt("vosk-model-small-en-us-0.15", "Manifest name of the Vosk model.")


@dataclass(frozen=True)
class ConversationSettings:
    idle_timeout_s: float = opt(120.0, "Seconds of quiet after which a new conversation starts.", lo=5, hi=86400)
    history_turns: int = opt(8, "Most earlier turns given to the LLM; the window moves half its length at a "
                             "time, so the prompt prefix the LLM keeps evaluated survives most turns.", lo=0, hi=64)


@dataclass(frozen=True)
class GpioSettings:
    pin_factory: str = opt("auto", "gpiozero pin factory: auto (lgpio on a Pi 5, else gpiozero's own choice), "
                           "or none to run without the button and LED.",
                           choices=("auto", "lgpio", "rpigpio", "native", "none"))
    button_pin: int = opt(17, "BCM pin of the stop button, wired to ground (internal pull-up); -1 = no button.",
                          lo=-1, hi=27)
    bounce_ms: int = opt(30, "Button debounce time.", lo=0, hi=500)
    mute_hold_s: float = opt(1.5, "Holding the button this long toggles mic mute (privacy).", lo=0.5, hi=10)
    led_pin: int = opt(27, "BCM pin of the status LED (through a 330 ohm resistor to ground); -1 = no LED.",
                       lo=-1, hi=27)


WAKE_WORDS = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft")
"""The microWakeWord models pymicro-wakeword ships."""


@dataclass(frozen=True)
class WakeSettings:
    word: str = opt("okay_nabu", "Wake word that must start a request (\"Okay Nabu, ...\"), so the appliance does not "
                    "answer the television; off = every utterance is a request.", choices=(*WAKE_WORDS, "off"))
    sensitivity: float = opt(0.6, "How easily the wake word is heard: 0.5 = the model's own threshold, higher "
                             "wakes on less (and on more that was not it), lower needs a clearer phrase.",
                             lo=0.0, hi=1.0)
    listen_s: float = opt(6.0, "After the wake word alone or a button press while idle: seconds in which the "
                          "person may start the request.", lo=1, hi=60)
    follow_up_s: float = opt(5.0, "After an answer ends or is cut: seconds in which the person may go on without "
                             "the wake word; 0 = always say it.", lo=0, hi=120)
    earcon: bool = opt(True, "Play a short tone when a button press while idle starts listening for a request.")


@dataclass(frozen=True)
class ServiceSettings:
    hang_s: float = opt(60.0, "A stage stuck this long, or a mic silent this long, counts as hung: the "
                        "systemd watchdog pings stop and systemd restarts sayso.", lo=1, hi=600)


@dataclass(frozen=True)
class LogSettings:
    db: str = opt("turns.db", "SQLite turn log (a Pi uses /var/lib/sayso/turns.db).")


@dataclass(frozen=True)
class Settings:
    """All of sayso's settings; one section per TOML table."""

    models: ModelSettings = field(default_factory=ModelSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    vad: VADSettings = field(default_factory=VADSettings)
    turn: TurnSettings = field(default_factory=TurnSettings)
    barge_in: BargeInSettings = field(default_factory=BargeInSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    stt: STTSettings = field(default_factory=STTSettings)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    wake: WakeSettings = field(default_factory=WakeSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    log: LogSettings = field(default_factory=LogSettings)


def parse(data: dict[str, Any]) -> Settings:
    """Validate a parsed TOML document into Settings; raise ConfigError on the first problem."""
    hints = get_type_hints(Settings)
    sections = {}
    for name, raw in data.items():
        if name not in hints:
            raise unknown(name, sorted(hints))
        sections[name] = build_section(name, hints[name], raw)
    settings = Settings(**sections)
    gpio = settings.gpio
    if gpio.button_pin >= 0 and gpio.button_pin == gpio.led_pin:
        raise ConfigError(f"gpio.button_pin and gpio.led_pin are both {gpio.button_pin}: give the LED its own pin "
                          "(or -1 for none).")
    if settings.vad.stop_threshold >= settings.vad.start_threshold:
        raise ConfigError(f"vad.stop_threshold = {settings.vad.stop_threshold:g} must be below "
                          f"vad.start_threshold = {settings.vad.start_threshold:g} (hysteresis).")
    settings.llm.check_server()
    return settings


def load(path: str | Path | None = None) -> Settings:
    """Read settings from `path`, else /etc/sayso/config.toml if present, else defaults."""
    if path is None:
        if not SYSTEM_CONFIG.exists():
            return Settings()
        path = SYSTEM_CONFIG
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; create it or drop --config "
                          "to run on built-in defaults.") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; give the config file's path (e.g. {path}/config.toml).") from None
    except PermissionError:
        raise ConfigError(f"cannot read {path}: permission denied; make it readable by the user that runs sayso "
                          f"(`sudo chmod 644 {path}`).") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}.") from None
    try:
        return parse(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def template(state_dir: str | Path | None = None) -> str:
    """A commented config file listing every key with its default, for /etc/sayso.

    With `state_dir` (an installed appliance's /var/lib/sayso), the models
    folder and the turn log are set there, uncommented.
    """
    placed = {}
    if state_dir is not None:
        placed = {("models", "dir"): f"{state_dir}/models", ("log", "db"): f"{state_dir}/turns.db"}
    lines = ["# sayso configuration. Every key is optional; shown values are the defaults.",
             "# After a change: `sayso config check`, then `sudo systemctl restart sayso`.", ""]
    defaults = Settings()
    for section in dataclasses.fields(defaults):
        lines.append(f"[{section.name}]")
        for f in dataclasses.fields(getattr(defaults, section.name)):
            value = placed.get((section.name, f.name), f.default)
            shown = (json.dumps(value) if isinstance(value, str) else
                     str(value).lower() if isinstance(value, bool) else repr(value))
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{'' if (section.name, f.name) in placed else '# '}{f.name} = {shown}")
        lines.append("")
    return "\n".join(lines)
