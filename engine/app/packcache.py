"""The parsed rule pack kept on disk between commands, keyed by the content it was parsed from.

Why: every `dondoc` command parses and cross-checks the whole pack (YAML, pydantic, every due date
over the check horizon), about 0.1 s on the seed pack and more on a large one, although the files
rarely change between two commands. A pickle of the validated :class:`RulePack` loads in a few ms.

When a cached pack is used, and why that is safe:

- the key is a SHA-256 over everything the parse depends on: the bytes and names of every rule and
  calendar file (:func:`engine.rules_loader.input_files`), the folders as given and the working
  directory (error lists and ``pack.files`` name files relative to it), the source of the core
  modules that parse a pack (:data:`PARSER_MODULES`: the loader, the models, the calendar …), and the
  versions of Python, pydantic, PyYAML and holidays. A cache written by other code, or for other files, is never read;
- only valid packs are stored: an invalid one is parsed every time, so its errors are always fresh;
- the key is computed again after parsing and the pack is stored only if the files did not change
  meanwhile;
- a pickle is only read from a folder and a file that belong to this user and that nobody else can
  write (``0700`` folder, ``0600`` file, no symlink); otherwise, or when the file is unreadable,
  truncated or from another format, it is ignored and the pack is parsed as if there were no cache;
- writes are atomic (a temporary file renamed into place); only the newest :data:`KEEP` are kept.

The folder is ``$XDG_CACHE_HOME/dondoc/packs`` (``~/.cache/dondoc/packs``); when there is no home
or it cannot be written, nothing is cached.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import RulePackInvalid
from engine.rules_loader import RulePack, input_files, load_pack

FORMAT = b"dondoc-pack-cache 1\n"
KEEP = 8
_CORE = Path(__file__).resolve().parent.parent          # engine/
# The core modules a pack is parsed by: engine.rules_loader and what it imports, at any depth
# (tests/test_packcache.py recomputes this closure from the source and fails when it changes).
PARSER_MODULES = ("duedates", "errors", "limits", "packload", "periods", "rules_loader", "rules_model", "vi_messages",
                  "workcalendar", "yamlsource")


def cache_dir() -> Path | None:
    """The folder for cached packs, or None when there is no usable home."""
    base = os.environ.get("XDG_CACHE_HOME")
    try:
        root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    except (RuntimeError, KeyError):      # no HOME and no passwd entry
        return None
    return root / "dondoc" / "packs"


def _code_fingerprint() -> bytes:
    """What the parse is done by: the source of PARSER_MODULES, Python, and the libraries that build
    the models (a new release of any of them is a new key)."""
    import importlib.util

    import pydantic
    import yaml

    h = hashlib.sha256()
    for lib in (sys.version, pydantic.VERSION, getattr(yaml, "__version__", "?")):
        h.update(str(lib).encode() + b"\0")
    # holidays' release without importing it (~60 ms): the name of its installed dist-info folder.
    spec = importlib.util.find_spec("holidays")
    site = Path(spec.origin).parent.parent if spec is not None and spec.origin else None
    h.update(" ".join(sorted(p.name for p in site.glob("holidays-*.dist-info"))).encode() if site else b"?")
    for name in PARSER_MODULES:
        h.update(name.encode() + b"\0")
        h.update((_CORE / f"{name}.py").read_bytes())
    return h.digest()


def pack_key(directory: Path, calendar_dir: Path | None) -> str:
    """The cache key of the pack in `directory` (raises RulePackInvalid/OSError as the loader would)."""
    h = hashlib.sha256(FORMAT)
    h.update(_code_fingerprint())
    for part in (str(directory), str(calendar_dir), os.getcwd()):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for p in input_files(directory, calendar_dir):
        data = p.read_bytes()
        h.update(str(p).encode("utf-8", "surrogateescape") + b"\0" + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def _private_dir(d: Path) -> bool:
    """Ours, a real folder, and nobody else can write into it."""
    try:
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _read(path: Path, key: str) -> RulePack | None:
    """The cached pack for `key`, or None (absent, not ours, writable by others, damaged, another key)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    head = FORMAT + key.encode() + b"\n"
    if not data.startswith(head):
        return None
    try:
        pack = pickle.loads(memoryview(data)[len(head):])
    except Exception:  # noqa: BLE001 - a damaged cache is ignored, the pack is parsed again
        return None
    return pack if isinstance(pack, RulePack) else None


class LazyHolidays:
    """The calendar's `holidays` object, built again (by the same call) the first time it is asked.

    Why: unpickling the object itself imports ``holidays.countries``, all 200-odd countries (50-90 ms,
    more than the rest of the cached pack), while a command usually needs only days the calendar
    already answered during the pack's checks (its own per-day cache is in the pickle)."""

    __slots__ = ("_args", "_real")

    def __init__(self, country: str, kwargs: dict[str, Any]):
        self._args = (country, kwargs)
        self._real: Any = None

    def _load(self) -> Any:
        if self._real is None:
            import holidays

            country, kwargs = self._args
            self._real = holidays.country_holidays(country, **kwargs)
        return self._real

    def __getattr__(self, name: str) -> Any:
        if name in LazyHolidays.__slots__:
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def __getitem__(self, key: Any) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __reduce__(self) -> tuple[Any, ...]:
        return LazyHolidays, self._args


def _holidays_args(obj: Any) -> tuple[str, dict[str, Any]] | None:
    """How `obj` can be built again, if the rebuilt object is provably the same (same class, same
    days and names for every year `obj` has computed); None otherwise (then it is pickled as is)."""
    import holidays

    try:
        kwargs = {"subdiv": obj.subdiv, "observed": obj.observed, "expand": obj.expand,
                  "language": obj.language, "categories": obj.categories}
        country = obj.country
        again = holidays.country_holidays(country, years=sorted(obj.years), **kwargs)
        if type(again) is not type(obj) or dict(again) != dict(obj):
            return None
    except Exception:  # noqa: BLE001 - another holidays API: no stand-in, the object is pickled
        return None
    return country, kwargs


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        import holidays

        if isinstance(obj, holidays.HolidayBase):
            args = _holidays_args(obj)
            if args is not None:
                return LazyHolidays, args
        return NotImplemented


def _write(d: Path, path: Path, key: str, pack: RulePack) -> None:
    """Atomically store `pack` (fresh: nothing derived yet) and keep only the newest KEEP files."""
    buf = io.BytesIO()
    buf.write(FORMAT + key.encode() + b"\n")
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(replace(pack, _derived={}))
    data = buf.getvalue()
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".pickle")   # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    entries = sorted(d.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)


def load_pack_cached(directory: Path, calendar_dir: Path | None = None, folder: Path | None = None) -> RulePack:
    """:func:`engine.rules_loader.load_pack`, through the on-disk cache when it can be used safely.

    Raises exactly what load_pack raises (RulePackInvalid with every error); the cache never
    changes what a command sees, only how long it takes to see it."""
    directory = Path(directory)
    d = folder if folder is not None else cache_dir()
    if d is None or not hasattr(os, "getuid"):
        return load_pack(directory, calendar_dir)
    try:
        key = pack_key(directory, calendar_dir)
    except (RulePackInvalid, OSError):
        return load_pack(directory, calendar_dir)     # the loader reports the missing folder or file
    path = d / f"{key[:40]}.pickle"
    if _private_dir(d):
        hit = _read(path, key)
        if hit is not None:
            return hit
    pack = load_pack(directory, calendar_dir)
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _private_dir(d) and pack_key(directory, calendar_dir) == key:
            _write(d, path, key, pack)
    except Exception:  # noqa: BLE001 - a read-only home, a full disk: the command goes on without a cache
        pass
    return pack
