import dataclasses
import re

import pytest

from sayso import cli, config
from sayso.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "absent.toml")
    assert config.load() == config.Settings()


def test_values_are_read_and_ints_widen_to_floats(tmp_path):
    s = config.load(write(tmp_path, '[llm]\nmax_tokens = 64\nmax_seconds = 5\n[stt]\nengine = "pocketsphinx"\n'))
    assert s.llm.max_tokens == 64 and s.llm.max_seconds == 5.0 and s.stt.engine == "pocketsphinx"
    assert s.voice == config.VoiceSettings()


@pytest.mark.parametrize("text, expected", [
    ("[llm]\nmax_token = 64\n", ["llm.max_token", "Did you mean 'max_tokens'", "Allowed here"]),
    ("[lmm]\nmodel = 'x'\n", ["'lmm'", "Did you mean 'llm'"]),
    ("[llm]\nmax_tokens = 'many'\n", ["llm.max_tokens = 'many'", "expected an integer"]),
    ("[llm]\nmax_tokens = true\n", ["llm.max_tokens = True", "expected an integer"]),
    ("[llm]\nmax_tokens = 1\n", ["llm.max_tokens = 1", "between 8 and 4096"]),
    ("[stt]\nengine = 'whisper'\n", ["stt.engine = 'whisper'", "'auto', 'vosk', 'pocketsphinx'"]),
    ("llm = 3\n", ["[llm] must be a table"]),
    ("[llm\n", ["not valid TOML"]),
])
def test_bad_config_names_key_value_and_what_is_allowed(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    message = str(e.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_bad_key_stops_start_up_with_a_helpful_message(tmp_path, capsys):
    path = write(tmp_path, "[voice]\nspeed = 2\n")
    assert cli.main(["--config", str(path), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'voice.speed'" in err and "length_scale" in err


def test_missing_config_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_template_lists_every_key_and_parses_back_to_the_defaults(tmp_path):
    text = config.template()
    keys = [line[2:] for line in text.splitlines() if re.match(r"# \w+ = ", line)]
    assert len(keys) == sum(len(dataclasses.fields(f.default_factory())) for f in dataclasses.fields(config.Settings))
    uncommented = "\n".join(re.sub(r"^# (?=\w+ = )", "", line) for line in text.splitlines())
    assert config.load(write(tmp_path, uncommented)) == config.Settings()


def test_an_installed_template_puts_models_and_the_turn_log_in_the_state_dir(tmp_path):
    text = config.template("/var/lib/sayso")
    assert 'dir = "/var/lib/sayso/models"' in text.splitlines()
    settings = config.load(write(tmp_path, text))
    assert (settings.models.dir, settings.log.db) == ("/var/lib/sayso/models", "/var/lib/sayso/turns.db")
    assert dataclasses.replace(settings, models=config.Settings().models, log=config.Settings().log) == \
        config.Settings()
