"""Bad and hostile input: a message that says what to do, never a traceback, never a changed file.

Real files, real processes, the real CLI. Where a file must be unreadable and
the tests run as root, the child runs without root's permission override
(setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so file modes bind it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import one_file_manifest, sha
from sayso import config
from sayso.audio import read_wav_at_mic_rate
from sayso.errors import ConfigError, ModelCorrupt, SaysoError, ScenarioError
from sayso.models.fetch import Fetcher
from sayso.models.manifest import CHECKOUT_MODELS, ModelStore, load_manifest
from sayso.pipeline.turnlog import TurnLog
from sayso.sim.scenario import load as load_scenario

REPO = Path(__file__).resolve().parents[1]


def sayso(*args: str, plain_user: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sayso", *args]
    if plain_user and os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("setpriv is needed to run without root's permission override")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line(done: subprocess.CompletedProcess, code: int = 2) -> str:
    """The command failed with `code` and said so in one line, without a traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("sayso:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def files_of(folder: Path) -> dict[str, str]:
    return {p.name: sha(p.read_bytes()) for p in sorted(folder.iterdir())}


def manifest_text(name: str, data: bytes, source: str) -> str:
    return one_file_manifest(name, data, f'{{ url = "{source}" }}')


# ---- 3. the fetcher stays in its folder


@pytest.mark.parametrize("name", ["../outside.bin", "/ABS/outside.bin", "sub/model.bin", "..", ".verified.json"])
def test_a_manifest_name_that_leaves_the_models_folder_is_refused(tmp_path, payload, name):
    data, src = payload
    name = name.replace("/ABS", str(tmp_path))
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(manifest_text(name, data, src.as_uri()))
    models = tmp_path / "models"
    done = sayso("models", "fetch", "--manifest", str(manifest), "--dir", str(models))
    assert "is not allowed" in one_line(done)
    assert not (tmp_path / "outside.bin").exists()
    assert not models.exists() or not any(models.iterdir())


def test_a_symlink_planted_at_the_part_file_is_not_followed(tmp_path, payload):
    data, src = payload
    (tmp_path / "manifest.toml").write_text(manifest_text("model.bin", data, src.as_uri()))
    store = ModelStore(tmp_path / "models", load_manifest(tmp_path / "manifest.toml"))
    store.root.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    (store.root / "model.bin.part").symlink_to(victim)
    Fetcher(store).fetch(store.manifest.get("tiny"))
    assert victim.read_text() == "not yours"
    assert (store.root / "model.bin").read_bytes() == data and not (store.root / "model.bin").is_symlink()


def test_install_fetches_models_as_the_service_user_not_root():
    script = (REPO / "systemd" / "install.sh").read_text()
    lines = script.replace("\\\n", " ").splitlines()  # continuation lines joined
    fetches = [ln.strip() for ln in lines if "models fetch" in ln and not ln.strip().startswith("#")]
    assert fetches and all(ln.startswith("runuser -u sayso") for ln in fetches), fetches
    assert script.index('chown -R sayso:sayso "$STATE"') < script.index("models fetch")


# ---- 4. bit rot never reaches a loader as a traceback


@pytest.fixture
def tiny_store(tmp_path, payload) -> ModelStore:
    data, src = payload
    (tmp_path / "manifest.toml").write_text(manifest_text("model.bin", data, src.as_uri()))
    store = ModelStore(tmp_path / "models", load_manifest(tmp_path / "manifest.toml"))
    Fetcher(store).fetch(store.manifest.get("tiny"))
    store.check(store.manifest.get("tiny"))  # remembered as verified
    return store


def rot(path: Path, offset: int, length: int = 1) -> None:
    """Flip bytes in place and put the mtime back, as bit rot (or a careful hand) would leave it."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        old = f.read(length)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in old))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_header_rotten_in_place_with_its_mtime_kept_is_caught_on_every_check(tiny_store):
    rot(tiny_store.root / "model.bin", 10)
    with pytest.raises(ModelCorrupt, match="sayso models fetch"):
        tiny_store.check(tiny_store.manifest.get("tiny"))


def test_a_file_of_another_identity_is_hashed_again(tiny_store, tmp_path):
    path = tiny_store.root / "model.bin"
    st = path.stat()
    copy = tmp_path / "copy.bin"
    shutil.copyfile(path, copy)
    rot(copy, 150_000)
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(copy, path)  # same size and mtime, a new inode
    with pytest.raises(ModelCorrupt):
        tiny_store.check(tiny_store.manifest.get("tiny"))


def test_every_model_is_hashed_again_after_a_reboot(tiny_store):
    model = tiny_store.manifest.get("tiny")
    rot(tiny_store.root / "model.bin", 150_000)  # the middle: the quick check does not read it
    tiny_store.check(model)
    cache_file = tiny_store.root / ".verified.json"
    cache = json.loads(cache_file.read_text())
    stamp = cache["model.bin"]
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert boot in stamp, "the cache must note the boot it hashed in"
    stamp[stamp.index(boot)] = "a-boot-before-this-one"
    cache_file.write_text(json.dumps(cache))
    with pytest.raises(ModelCorrupt):
        tiny_store.check(model)


@pytest.mark.parametrize("cache", ["[1, 2]", "{not json", '{"model.bin": 3}'])
def test_a_damaged_verified_cache_means_hashing_again(tiny_store, cache):
    (tiny_store.root / ".verified.json").write_text(cache)
    tiny_store.check(tiny_store.manifest.get("tiny"))
    assert "model.bin" in json.loads((tiny_store.root / ".verified.json").read_text())


def models_dir_with(tmp_path: Path, copied: str) -> Path:
    """A models folder of symlinks to the checkout's models, with `copied` a real copy to damage."""
    folder = tmp_path / "models"
    folder.mkdir()
    for p in CHECKOUT_MODELS.iterdir():
        if p.name == copied:
            shutil.copyfile(p, folder / p.name)
        elif p.is_file() and p.name not in (".verified.json", "manifest.toml"):
            (folder / p.name).symlink_to(p)
    return folder


# Slow: the child process loads the real models (conftest's guard only sees this process's loaders).
@pytest.mark.slow
def test_a_model_rotten_past_the_quick_check_is_named_when_its_loader_fails(tmp_path, store):
    llm = store.manifest.get(config.Settings().llm.model, "llm")
    folder = models_dir_with(tmp_path, llm.files[0].name)
    copy = ModelStore(folder, store.manifest)
    for m in copy.manifest.models:
        if m.default and not m.bundled and copy.installed(m):
            copy.check(m)  # as a first run leaves it: every model remembered
    rot(folder / llm.files[0].name, 1 << 20, 64)  # the tokenizer's strings: llama.cpp cannot parse them
    try:
        done = sayso("simulate", "demo", "--dir", str(folder), "--db", str(tmp_path / "turns.db"))
    finally:
        (folder / llm.files[0].name).unlink()  # pytest keeps the last runs' folders: not 0.5 GB each
    line = one_line(done)
    assert f"model {llm.name} is damaged" in line and "sayso models fetch" in line


# Slow: the child `simulate` loads the LLM and Piper before it reaches the unreadable VAD.
@pytest.mark.slow
def test_an_unreadable_model_is_a_message_and_doctor_goes_on(tmp_path):
    folder = models_dir_with(tmp_path, "silero_vad.onnx")
    os.chmod(folder / "silero_vad.onnx", 0)
    verify = sayso("models", "verify", "--dir", str(folder), plain_user=True)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr, verify.stderr
    assert any(ln.startswith("UNREADABLE") and "silero_vad.onnx" in ln and "Permission denied" in ln
               for ln in verify.stdout.splitlines()), verify.stdout
    sim = sayso("simulate", "demo", "--dir", str(folder), "--db", str(tmp_path / "turns.db"), plain_user=True)
    assert "cannot read" in one_line(sim)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[log]\ndb = "{tmp_path / "turns.db"}"\n[gpio]\npin_factory = "none"\n')
    doctor = sayso("--config", str(cfg), "doctor", "--dir", str(folder), "--meter-s", "0.2", plain_user=True)
    assert "Traceback" not in doctor.stderr, doctor.stderr
    out = doctor.stdout
    assert "FAIL  models:" in out and "cannot read" in out
    for later in ("turn log:", "disk:", "cpu and memory:"):
        assert later in out, f"doctor stopped before {later}\n{out}"


# ---- 5. messages, not tracebacks


def test_a_config_that_is_a_directory_unreadable_or_not_utf8_is_one_line(tmp_path):
    folder = tmp_path / "conf.d"
    folder.mkdir()
    assert "is a directory" in one_line(sayso("--config", str(folder), "config", "check"))
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[llm]\nsystem_prompt = "caf\xe9"\n'.encode("latin-1"))
    assert "not UTF-8" in one_line(sayso("--config", str(latin), "config", "check"))
    secret = tmp_path / "secret.toml"
    secret.write_text("[llm]\n")
    os.chmod(secret, 0)
    assert "permission denied" in one_line(sayso("--config", str(secret), "config", "check", plain_user=True))


FLOAT_KEYS = [f"{section.name}.{f.name}" for section in dataclasses.fields(config.Settings)
              for f in dataclasses.fields(section.default_factory()) if f.type == "float"]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_float_is_refused_for_every_float_key(tmp_path, key, value):
    section, name = key.split(".")
    path = tmp_path / "config.toml"
    path.write_text(f"[{section}]\n{name} = {value}\n")
    with pytest.raises(ConfigError, match=f"{key} = .*(finite|between)"):
        config.load(path)


@pytest.mark.parametrize("text, says", [
    ("[[model]\n", "cannot be read"),
    ("model = 3\n", "list of [[model]]"),
    ('[[model]]\nname = "x"\nrole = "llm"\nabout = "a"\nlicence = "l"\n[[model.file]]\nname = "x.bin"\n'
     'size = "big"\nsha256 = "00"\nsources = []\n', "size = 'big' must be int"),
    ('[[model]]\nname = "x"\nrole = "llm"\nabout = "a"\nlicence = "l"\n[[model.file]]\nname = "x.bin"\n'
     'size = 3\n', "missing ['sha256']"),
    ('[[model]]\nname = "x"\nrole = "llm"\nabout = "a"\nlicence = "l"\nfile = "x.bin"\n', "list of [[model.file]]"),
    ('[[model]]\nname = "x"\nrole = "llm"\nabout = "a"\nlicence = "l"\nflavour = 1\n', "unknown key"),
    ('[[model]]\nrole = "llm"\n', "missing"),
])
def test_a_bad_manifest_is_one_line_naming_it(tmp_path, text, says):
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(text)
    line = one_line(sayso("models", "list", "--manifest", str(manifest)))
    assert str(manifest) in line and says in line


def test_a_db_path_under_a_regular_file_is_one_line(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("a file, not a folder")
    db = plain / "turns.db"
    with pytest.raises(SaysoError, match="is a file, not a folder"):
        TurnLog(db)
    assert "is a file, not a folder" in one_line(sayso("simulate", "demo", "--db", str(db)))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[log]\ndb = "{db}"\n')
    assert "is a file, not a folder" in one_line(sayso("--config", str(cfg), "run"))
    assert "no turn log at" in one_line(sayso("turns", "--db", str(db)))


def a_log(path: Path, turns: int = 200) -> None:
    t = TurnLog(path)
    for i in range(turns):
        u = t.add_user("c", f"question {i} " + "words " * 20)
        a = t.begin_assistant("c", u)
        t.finish(a, text="an answer " * 10, heard_text="an answer", status="complete")
    t.close()


def test_damaged_pages_in_the_log_are_one_line_from_turns(tmp_path):
    db = tmp_path / "turns.db"
    a_log(db)
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(8192))
    line = one_line(sayso("turns", "--db", str(db)))
    assert "is damaged" in line and "move it aside" in line


def test_damaged_rows_are_shown_not_a_traceback(tmp_path):
    db = tmp_path / "turns.db"
    a_log(db, 2)
    con = sqlite3.connect(db)
    con.execute("UPDATE turns SET text = CAST(x'ff6f6b' AS TEXT), metrics = '{not json' WHERE id = 2")
    con.commit()
    con.close()
    done = sayso("turns", "--db", str(db), "--json")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    row = json.loads(done.stdout)[1]
    assert row["text"] == "\ufffdok" and row["metrics"] == {"unreadable": "{not json"}
    assert sayso("turns", "--db", str(db)).returncode == 0


def test_an_odd_length_stereo_wav_is_read_and_a_scenario_folder_is_one_line(tmp_path):
    wav = tmp_path / "odd.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.arange(4000, dtype=np.int16).tobytes())
    wav.write_bytes(wav.read_bytes()[:-3])  # cut off mid-frame
    audio = read_wav_at_mic_rate(wav)
    assert len(audio) == 1999
    scenario = tmp_path / "odd.toml"
    scenario.write_text('[[step]]\nwav = "odd.wav"\n')
    assert load_scenario(scenario).steps[0].wav == wav
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)
    assert "is a directory" in one_line(sayso("simulate", str(tmp_path)))


def test_an_unexpected_error_is_one_line_pointing_at_verbose(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("")
    done = sayso("models", "fetch", "--dir", str(plain / "models"))
    line = one_line(done, code=1)
    assert line.startswith("sayso: unexpected error:") and "sayso -v" in line
    verbose = sayso("-v", "models", "fetch", "--dir", str(plain / "models"))
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


# ---- 6. reading changes no file


def foreign_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE recipes (name TEXT)")
    con.execute("INSERT INTO recipes VALUES ('bread')")
    con.commit()
    con.close()


def test_reading_or_opening_another_programs_sqlite_file_changes_nothing(tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    db = folder / "app.db"
    foreign_db(db)
    before = files_of(folder)
    assert "not a sayso turn log" in one_line(sayso("turns", "--db", str(db)))
    with pytest.raises(SaysoError, match="another program's SQLite file"):
        TurnLog(db)
    after = files_of(folder)
    after.pop("app.db.lock", None)  # the writer's lock, beside the file: the file itself is untouched
    assert after == before


def test_a_log_from_a_newer_sayso_is_refused_before_anything_changes(tmp_path):
    folder = tmp_path / "newer"
    folder.mkdir()
    db = folder / "turns.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE turns (id INTEGER PRIMARY KEY)")
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    before = files_of(folder)
    assert "newer sayso" in one_line(sayso("turns", "--db", str(db)))
    with pytest.raises(SaysoError, match="newer sayso"):
        TurnLog(db)
    after = files_of(folder)
    after.pop("turns.db.lock", None)
    assert after == before
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.mark.parametrize("crashed", [False, True])
def test_turns_reads_a_log_it_may_not_write(tmp_path, crashed):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "turns.db"
    if crashed:  # a writer killed mid-run leaves -wal and -shm beside the log
        code = (f"from sayso.pipeline.turnlog import TurnLog; t = TurnLog({str(db)!r}); "
                "t.add_user('c', 'kept in the wal'); import os; os._exit(0)")
        subprocess.run([sys.executable, "-c", code], check=True)
    else:
        a_log(db, 1)
    for p in folder.iterdir():
        os.chmod(p, 0o444)
    os.chmod(folder, 0o555)
    before = files_of(folder)
    done = sayso("turns", "--db", str(db), "--json", plain_user=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["role"] == "user"
    assert files_of(folder) == before
