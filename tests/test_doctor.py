"""`sayso doctor` on simulated devices: ALSA file-plugin mic and speaker, gpiozero's MockFactory."""

from __future__ import annotations

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from sayso import cli, config
from sayso.audio import RATE_HZ, resample
from sayso.config import WakeSettings
from sayso.hearing.wake import WakeModel
from sayso.pipeline.turnlog import TurnLog
from sayso.service.doctor import FAIL, OK, WARN, Doctor
from sayso.service.soundcheck import WakeMeter
from sayso.sim.voices import espeak


def settings_for(tmp_path, **sections):
    raw = {"audio": {"input_device": "saysomic", "output_device": "saysospeaker"},
           "log": {"db": str(tmp_path / "log" / "turns.db")},
           "stt": {"engine": "pocketsphinx"}}  # the Vosk model cannot be fetched on every machine
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return config.parse(raw)


def run(settings, store, **kw) -> tuple[dict, list[str]]:
    lines: list[str] = []
    doctor = Doctor(settings, store, print=lines.append, **kw)
    return {c.name: c for c in doctor.run()}, lines


def tone(seconds=4.0, dbfs=-12.0):
    t = np.arange(int(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * 300 * t) * 32768 * 10 ** (dbfs / 20)).astype(np.int16)


def test_every_check_passes_on_working_devices(alsa_devices, tmp_path, store):
    home = alsa_devices(tone(dbfs=-12.0))
    TurnLog(tmp_path / "log" / "turns.db").close()
    checks, lines = run(settings_for(tmp_path), store, pin_factory=MockFactory())
    assert [c.status for c in checks.values() if c.name != "cpu and memory"] == [OK] * 9, lines
    assert checks["echo canceller"].detail == "libspeexdsp, 200 ms tail; barge-in mode pause"
    assert "mic 'saysomic'" in checks["audio devices"].detail and "speaker 'saysospeaker'" in checks[
        "audio devices"].detail
    assert "peak -12 dBFS" in checks["mic level"].detail
    bars = [line for line in lines if "dBFS |#" in line]
    assert len(bars) >= 12, "the meter shows a bar per quarter second"
    assert all(len(line) <= 80 and " wake 0." in line for line in bars), bars
    assert "wake word okay_nabu peak 0." in checks["mic level"].detail and "(not heard;" in checks[
        "mic level"].detail, "a tone is not the wake word"
    played = np.fromfile(home / "speaker.raw", np.int16)
    assert len(played) > 0.5 * 22050 and np.abs(played).max() > 8000, "the test tone did not reach the speaker"
    assert checks["gpio"].detail.startswith("pin factory MockFactory, button on GPIO17")
    assert "writable (0 turns logged)" in checks["turn log"].detail


def test_a_missing_sound_card_fails_with_the_devices_that_exist(alsa_devices, tmp_path, store):
    alsa_devices(tone())
    settings = settings_for(tmp_path, audio={"input_device": "respeaker"})
    checks, lines = run(settings, store, pin_factory=MockFactory())
    assert checks["audio devices"].status == FAIL
    assert "no input device matching 'respeaker'" in checks["audio devices"].detail
    assert "'saysomic'" in checks["audio devices"].detail
    assert checks["mic level"].status == checks["speaker"].status == FAIL
    assert any(line.startswith("      fix: plug in the mic") for line in lines)


def test_a_silent_mic_is_a_warning_with_the_mixer_to_fix_it(alsa_devices, tmp_path, store):
    alsa_devices(np.zeros(16000 * 4, np.int16))
    checks, _ = run(settings_for(tmp_path), store, pin_factory=MockFactory())
    assert checks["mic level"].status == WARN and "digital silence" in checks["mic level"].detail
    assert "alsamixer" in checks["mic level"].fix


def test_an_unwritable_or_damaged_turn_log_fails(alsa_devices, tmp_path, store):
    alsa_devices(tone())
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    checks, _ = run(settings_for(tmp_path, log={"db": str(blocker / "turns.db")}), store,
                    pin_factory=MockFactory(), meter_s=0.5)
    assert checks["turn log"].status == FAIL and "cannot be created" in checks["turn log"].detail
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    checks, _ = run(settings_for(tmp_path, log={"db": str(damaged)}), store, pin_factory=MockFactory(), meter_s=0.5)
    assert checks["turn log"].status == FAIL


def test_too_little_memory_for_the_models_fails(alsa_devices, tmp_path, store):
    alsa_devices(tone())
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:         524288 kB\nMemFree:  100000 kB\nMemAvailable:     400000 kB\n")
    checks, _ = run(settings_for(tmp_path), store, pin_factory=MockFactory(), meter_s=0.5, meminfo=meminfo)
    assert checks["cpu and memory"].status == FAIL and "smaller LLM" in checks["cpu and memory"].fix


def test_here_without_sound_card_or_gpio_it_says_so_and_exits_non_zero(tmp_path, capsys, monkeypatch):
    if list(__import__("pathlib").Path("/dev").glob("gpiochip*")):
        pytest.skip("this machine has GPIO")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.asoundrc: only the machine's own (absent) cards
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[log]\ndb = "{tmp_path / "turns.db"}"\n')
    assert cli.main(["--config", str(cfg), "doctor", "--meter-s", "0.5"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  audio devices: no input devices at all / no output devices at all" in out
    assert "FAIL  gpio: no usable GPIO" in out
    assert "check(s) failed: audio devices, mic level, speaker, gpio" in out
    assert not (tmp_path / "turns.db").exists(), "the doctor must not create a turn log"


def test_missing_models_fail_with_the_fetch_command(tmp_path, store):
    from sayso.models.manifest import ModelStore

    empty = ModelStore(tmp_path / "models", store.manifest)
    (tmp_path / "models").mkdir()
    check = Doctor(settings_for(tmp_path), empty, print=lambda line: None).models()
    assert check.status == FAIL and "sayso models fetch" in check.fix
    assert "qwen2.5-coder-0.5b-instruct-q4" in check.detail and "is missing" in check.detail


def test_the_wake_word_model_loads_with_its_threshold(tmp_path, store):
    check = Doctor(settings_for(tmp_path), store, print=lambda line: None).wake_word()
    assert check.status == OK and check.detail.startswith("okay_nabu ('Okay Nabu') loads"), check
    sensitivity = WakeSettings().sensitivity
    assert f">= {WakeModel('okay_nabu', sensitivity).threshold:.2f} (sensitivity {sensitivity:g})" in check.detail
    off = Doctor(settings_for(tmp_path, wake={"word": "off"}), store, print=lambda line: None).wake_word()
    assert off.status == WARN and "every utterance is answered" in off.detail and "okay_nabu" in off.fix


def test_a_wake_word_model_that_does_not_load_fails_on_one_line(alsa_devices, tmp_path, store):
    alsa_devices(tone())
    checks, lines = run(settings_for(tmp_path), store, pin_factory=MockFactory(), meter_s=0.5,
                        load_wake=lambda word, sensitivity: WakeModel("okay_nabo", sensitivity))
    wake = checks["wake word"]
    assert wake.status == FAIL and "no wake-word model 'okay_nabo'" in wake.detail and "off" in wake.detail
    (line,) = [line for line in lines if "wake word:" in line]
    assert line.startswith("FAIL  wake word: no wake-word model") and "\n" not in line
    assert not lines[lines.index(line) + 1].startswith("      fix:"), "the message says the fix itself"
    assert checks["mic level"].status == OK and "wake" not in checks["mic level"].detail


def test_the_meter_shows_the_wake_word_when_the_mic_hears_it(alsa_devices, tmp_path, store):
    quiet = np.zeros(RATE_HZ // 2, np.int16)
    phrase = espeak("Okay Nabu, what time is it?", "en-us")
    alsa_devices(np.concatenate([quiet, phrase, np.zeros(4 * RATE_HZ, np.int16)]))
    checks, lines = run(settings_for(tmp_path), store, pin_factory=MockFactory())
    threshold = WakeModel("okay_nabu").threshold
    shown = [float(line.rsplit("wake ", 1)[1]) for line in lines if "dBFS |" in line]
    assert max(shown) >= threshold and shown[0] < 0.5, shown
    assert checks["mic level"].status == OK and "(heard; needs" in checks["mic level"].detail, checks["mic level"]


def test_the_wake_meter_hears_the_phrase_from_a_48_khz_mic():
    model = WakeModel("okay_nabu")
    audio = resample(np.concatenate([espeak("Okay Nabu, what time is it?", "en-us"), np.zeros(RATE_HZ, np.int16)]),
                     RATE_HZ, 48000)
    meter = WakeMeter(model, 48000)
    shown = [meter.feed(audio[i:i + 12000]) for i in range(0, len(audio), 12000)]
    assert max(shown) == meter.peak >= model.threshold and shown[0] < 0.5, shown
    assert meter.summary().endswith(f"(heard; needs {model.threshold:.2f})")
