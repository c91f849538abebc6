"""Finding adapters without importing them: built-ins (``codecs/``), ``--codecs-dir`` folders and
entry points (``bench.codecs``); names are read from the source (``ast``) and a module is imported
only when one of its codecs is selected. Also the code identity of an adapter (its files' digests)."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..code_identity import digest
from ..model import Files
from .contract import Adapter, Unavailable, adapter_from_object, short_reason
from .options import AdapterError

ENTRY_POINT_GROUP = "bench.codecs"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # bench/
INSTALLED_CODECS_DIR = PACKAGE_DIR / "codecs_builtin"  # the built-ins inside an installed package
BUILTIN_CODECS_DIR = INSTALLED_CODECS_DIR if INSTALLED_CODECS_DIR.is_dir() else PACKAGE_DIR.parent / "codecs"


# --- code identity ------------------------------------------------------------------------------
def _code_file(entry: str | Path, base: Path) -> Path:
    path = Path(entry)
    candidate = path if path.is_absolute() else base / path
    if candidate.is_file():
        return candidate
    if isinstance(entry, str) and "/" not in entry and not entry.endswith(".py"):
        try:
            spec = importlib.util.find_spec(entry)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            return Path(spec.origin)
    raise AdapterError(f"CODE_FILES entry {str(entry)!r} not found (relative to {base}, or as a module)")


def code_identity(module: ModuleType) -> tuple[str, Files]:
    """SHA-256 (12 hex digits) of an adapter module's source file and its declared ``CODE_FILES``,
    and the digest of each of those files."""
    source = getattr(module, "__file__", None)
    if not source:
        return "", ()
    path = Path(source)
    files = [path] + [_code_file(e, path.parent) for e in getattr(module, "CODE_FILES", ())]
    combined = hashlib.sha256()
    each = []
    for file in files:
        data = file.read_bytes()
        combined.update(file.name.encode() + b"\0" + data + b"\0")
        each.append((file.name, digest(data)))
    return combined.hexdigest()[:12], tuple(sorted(each))


# --- importing modules --------------------------------------------------------------------------
def _module_name_for(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"bench_codec_{path.stem}_{digest}"


def import_file(path: Path):
    """Import a codec module from its file: once per process and content (an edited file is imported
    again, so a process never runs an older version of the code than the one its results are keyed by)."""
    name = _module_name_for(path)
    source = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__bench_source__", source) == source:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AdapterError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    module.__bench_source__ = source  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _adapters_in(obj: Any, origin: str, module: ModuleType | None = None) -> list[Adapter]:
    module = module or (obj if isinstance(obj, ModuleType) else sys.modules.get(getattr(obj, "__module__", "")))
    code, files = code_identity(module) if module is not None else ("", ())
    items = getattr(obj, "ADAPTERS", None)
    if items is None:
        return [adapter_from_object(obj, origin, code, files)]
    return [adapter_from_object(item, f"{origin}#{item.NAME}", code, files) for item in items]


def _guarded(load: Callable[[], list[Adapter]], names: Sequence[str], origin: str) -> list[Adapter | Unavailable]:
    """Run a module load; any failure (even SystemExit) makes its codecs unavailable, never ends the command."""
    try:
        return list(load())
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # an adapter's import must never break discovery
        reason = short_reason(exc)
        return [Unavailable(name=n, origin=origin, reason=reason) for n in names]


# --- static declarations ------------------------------------------------------------------------
def declared_names(path: Path) -> tuple[str, ...] | None:
    """Codec names a module declares, read from its source without importing it.

    ``NAME = "literal"`` (and no ``ADAPTERS``), or ``CODEC_NAMES = (...)`` beside ``ADAPTERS``,
    assigned once at the top level. None when the source does not say (the module must be imported).
    """
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    values: dict[str, list[ast.expr | None]] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for inner in ast.walk(node):  # a conditional assignment: only an import knows
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store) and inner.id in (
                        "NAME", "ADAPTERS", "CODEC_NAMES"):
                    values.setdefault(inner.id, []).append(None)
            continue
        for target in targets:
            for name_node in ast.walk(target):
                if isinstance(name_node, ast.Name) and name_node.id in ("NAME", "ADAPTERS", "CODEC_NAMES"):
                    values.setdefault(name_node.id, []).append(value if target is name_node else None)

    def literal(key: str) -> Any:
        found = values.get(key, [])
        if len(found) != 1 or found[0] is None:
            return None
        try:
            return ast.literal_eval(found[0])
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None

    if "ADAPTERS" in values:
        names = literal("CODEC_NAMES")
        ok = isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names)
        return tuple(names) if ok else None
    name = literal("NAME")
    return (name,) if isinstance(name, str) else None


@dataclass
class Module:
    """One adapter module (a file or an entry point), imported only when one of its codecs is needed."""

    origin: str
    stem: str
    names: tuple[str, ...] | None  # read statically; None = known only after importing
    entry_point: importlib.metadata.EntryPoint | None = None
    _loaded: list[Adapter | Unavailable] | None = field(default=None, repr=False)

    def load(self) -> list[Adapter | Unavailable]:
        if self._loaded is None:
            names = self.names or (self.stem,)
            if self.entry_point is not None:
                ep = self.entry_point
                self._loaded = _guarded(lambda: _adapters_in(ep.load(), self.origin, _ep_module(ep)), names,
                                        self.origin)
            else:
                path = Path(self.origin.split(":", 1)[1])
                self._loaded = _guarded(lambda: _adapters_in(import_file(path), self.origin), names, self.origin)
        return self._loaded

    def provides(self) -> tuple[str, ...]:
        """Codec names of this module (imports it when its source does not declare them)."""
        if self._loaded is not None or self.names is None:
            return tuple(item.name for item in self.load())
        return self.names


def _ep_module(ep: importlib.metadata.EntryPoint) -> ModuleType | None:
    return sys.modules.get(ep.module)


def _ep_names(ep: importlib.metadata.EntryPoint) -> tuple[str, ...] | None:
    if ep.attr:
        return None
    try:
        spec = importlib.util.find_spec(ep.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return declared_names(Path(spec.origin))


def codec_files(folder: Path) -> list[Path]:
    """Adapter modules in a folder: every ``*.py`` not starting with ``_``."""
    return sorted(p for p in Path(folder).glob("*.py") if not p.name.startswith("_"))


def scan(extra_dirs: Iterable[str | Path] = (), builtin: bool = True) -> list[Module]:
    """Every adapter module (built-in folder, ``extra_dirs``, entry points), none imported."""
    modules: list[Module] = []
    folders = ([BUILTIN_CODECS_DIR] if builtin else []) + [Path(d) for d in extra_dirs]
    for folder in folders:
        if not folder.is_dir():
            raise AdapterError(f"codecs folder not found: {folder}")
        for path in codec_files(folder):
            modules.append(Module(f"file:{path.resolve()}", path.stem, declared_names(path)))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        modules.append(Module(f"entrypoint:{ep.name}", ep.name, _ep_names(ep), ep))
    return modules


def _dedupe(found: list[Adapter | Unavailable]) -> list[Adapter | Unavailable]:
    """A later codec with the same name as an earlier one becomes unavailable (duplicate)."""
    seen: dict[str, str] = {}
    unique: list[Adapter | Unavailable] = []
    for item in found:
        if isinstance(item, Adapter) and item.name in seen:
            unique.append(Unavailable(item.name, item.origin, f"duplicate name; already provided by {seen[item.name]}"))
            continue
        if isinstance(item, Adapter):
            seen[item.name] = item.origin
        unique.append(item)
    return unique


class Catalog:
    """The codecs that can be selected, importing only the modules of the codecs asked for."""

    def __init__(self, extra_dirs: Iterable[str | Path] = (), builtin: bool = True):
        self.modules = scan(extra_dirs, builtin)

    def names(self) -> list[str]:
        """Every codec name (modules that do not declare theirs statically are imported)."""
        return sorted({n for m in self.modules for n in m.provides()})

    def load(self, names: Iterable[str] | None = None) -> list[Adapter | Unavailable]:
        """The adapters of ``names`` (None = all), imported now; duplicates and failures as Unavailable."""
        if names is None:
            return _dedupe([item for m in self.modules for item in m.load()])
        wanted = set(names)
        found = [item for m in self.modules if wanted & set(m.provides()) for item in m.load()]
        return [item for item in _dedupe(found) if item.name in wanted]


def discover(extra_dirs: Iterable[str | Path] = (), builtin: bool = True) -> list[Adapter | Unavailable]:
    """All codecs from the built-in folder, ``extra_dirs`` and the entry-point group, in that order, imported.

    A later codec with the same name as an earlier one is reported as unavailable (duplicate).
    """
    return Catalog(extra_dirs, builtin).load()


def load_origin(origin: str) -> Adapter:
    """Re-load one adapter from its origin string (used by worker processes)."""
    kind, _, rest = origin.partition(":")
    target, _, member = rest.partition("#")
    if kind == "file":
        obj, module = import_file(Path(target)), None
    elif kind == "entrypoint":
        eps = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == target]
        if not eps:
            raise AdapterError(f"entry point {target!r} not found in group {ENTRY_POINT_GROUP}")
        obj = eps[0].load()
        module = _ep_module(eps[0])
    else:
        raise AdapterError(f"unknown adapter origin {origin!r}")
    for adapter in _adapters_in(obj, f"{kind}:{target}", module):
        if not member or adapter.name == member:
            return adapter
    raise AdapterError(f"adapter {member!r} not found in {target}")


