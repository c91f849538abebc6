"""Codec adapters: the contract, discovery (lazy) and loading.

The adapters layer; its modules: this one (the contract, options, discovery, selection), ``codec_tools``
(helpers for adapters that drive external binaries), ``reference_software`` (the VTM/HM driver) and
``tools`` (building vvenc/vvdec and Cool-chic's decoder from source into the per-user tool folder).

An adapter is a Python module (or any object) with these attributes::

    NAME        = "jpeg"                        # unique codec name
    FAMILY      = "conventional"                # or "learned"
    DESCRIPTION = "JPEG via Pillow 13.0.0 ..."  # names the library and its version
    VERSION     = "Pillow 13.0.0, libjpeg-turbo 3.1"  # part of every result's cache key
    OPTIONS     = {"subsampling": Option("4:2:0", choices=("4:2:0", "4:2:2", "4:4:4"))}
                                                # or plain {"subsampling": "4:2:0"} (a str option); may be {}
    QUALITIES   = [5, 10, ..., 95]              # default quality sweep
    QUALITY_RANGE = (1, 100, 1)                 # optional: (lowest, highest, step; 0 = continuous):
                                                # qualities are validated against it and searched for target bpp
    CODE_FILES  = ["helper.py"]                 # optional: more files (relative to the module, or module
                                                # names) whose content is part of the cache key

    def encode(rgb, quality, **options) -> bytes   # rgb: numpy uint8 array H x W x 3
    def decode(data, **options) -> numpy uint8 H x W x 3

    def setup(**options) -> dict     # optional: {"version", "qualities", "info", "options", "family"} for
                                     # these options (e.g. which weights, which binary); raising = unavailable;
                                     # info["chroma"] (e.g. "420") names the chroma format it codes
    def prepare(quality, **options)  # optional, untimed before each encode (e.g. load a model)

Optional hooks for codecs that do not encode here (e.g. published bitstreams, ``codecs/published.py``)::

    def encode(rgb, quality, image_name, **options)  # an encode that names a parameter ``image_name``
                                     # receives the image's name in the dataset (e.g. to pick its file)
    def untimed(**options) -> ("encode", "decode")  # stages whose wall time means nothing for these
                                     # options: stored as not measured (NaN, shown "not measured"), never 0
    def check_decoded(data, rec, **options)  # untimed, after each decode; raising = a decode failure
    def check_images(images, **options)  # untimed, once per run before any job: {name: read-only uint8
                                     # H x W x 3} of the run's originals; raising AdapterError = refused

Options are validated once, when a codec is selected, against their declaration (type, choices,
validator) and passed to ``encode``/``decode`` converted to their declared type; the declaration
is checked against the signatures when the adapter loads. An option declared with ``key=False``
(e.g. a binary's path, resolved by ``setup``, which returns it under ``"options"``) is passed to
the adapter but is not part of the cache key or the label: ``setup`` puts the identity of what it
names (version, content hash) into the version instead. The cache key's version always includes a
hash of the adapter's own code (its module file plus ``CODE_FILES``), so editing an adapter
recomputes its results. An option named ``device`` receives the harness's ``--device`` (``auto``
becomes ``cuda`` when torch sees a GPU, else ``cpu``). A module may instead define ``ADAPTERS =
[obj, ...]`` (and, to be found without importing it, ``CODEC_NAMES = ("a", "b")``) to provide
several codecs. The harness does all timing, size and quality measurement; adapters only encode
and decode.

Adapters are discovered in the built-in codecs folder (``codecs/`` of the checkout, installed as
``bench/codecs_builtin/``), in extra folders (``--codecs-dir``) and in the ``bench.codecs``
entry-point group of installed packages. Codec names are read from the source (``NAME``,
``CODEC_NAMES``) without importing it, so only the selected codecs' modules (and their libraries)
are imported. A module that fails to import (e.g. its library is missing, or it exits) is listed
as unavailable with the reason.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from ..code_identity import digest
from ..errors import BenchError, did_you_mean
from ..model import Files

FAMILIES = ("conventional", "learned")
ENTRY_POINT_GROUP = "bench.codecs"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # bench/
INSTALLED_CODECS_DIR = PACKAGE_DIR / "codecs_builtin"  # the built-ins inside an installed package
BUILTIN_CODECS_DIR = INSTALLED_CODECS_DIR if INSTALLED_CODECS_DIR.is_dir() else PACKAGE_DIR.parent / "codecs"
REQUIRED = ("NAME", "FAMILY", "DESCRIPTION", "VERSION", "QUALITIES", "encode", "decode")
QUALITY_KEY = "q"  # NAME:q=... in a codec spec sets that codec's qualities
IMAGE_NAME = "image_name"  # an encode() parameter of this name receives the image's name
STAGES = ("encode", "decode")  # timed stages (``untimed`` may name them)
MAX_QUALITIES = 1000  # points one quality range may expand to


class AdapterError(BenchError):
    """An adapter cannot be loaded or used, or a codec spec is invalid."""


class SetupError(AdapterError):
    """An adapter's ``setup`` refused a configuration (e.g. no weights): the codec is unavailable."""


# --- the run's working directory ----------------------------------------------------------------
_RUN_DIRECTORIES: list[str] = []  # pushed by bench.pipeline.measure while a stage runs in a fresh directory


def run_directory() -> Path:
    """The run's working directory. ``encode`` and ``decode`` run in fresh, empty working directories
    (``bench.pipeline.measure``), so an adapter resolves a relative path given in an option against this."""
    return Path(_RUN_DIRECTORIES[-1] if _RUN_DIRECTORIES else os.getcwd())


def in_run_directory(path: str | Path) -> Path:
    """``path`` (``~`` expanded) against the run's working directory when it is relative."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else run_directory() / path


# --- declared options --------------------------------------------------------------------------
def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("must be an integer") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


_PARSERS: dict[type, Callable[[str], Any]] = {str: str, int: _parse_int, float: _parse_float, bool: _parse_bool}


@dataclass(frozen=True)
class Option:
    """One declared adapter option.

    ``default`` and every value given on the command line are strings parsed by ``type`` (``str``,
    ``int``, ``float`` or ``bool``); ``choices`` lists the allowed values, ``minimum``/``maximum``
    bound numbers, and ``validate(value)`` may raise ``ValueError`` with what is wrong. ``key=False``
    marks a machine-local value (a binary's path) that is not part of the cache key or label.
    """

    default: Any
    type: builtins.type = str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    validate: Callable[[Any], Any] | None = field(default=None, compare=False)
    help: str = ""
    key: bool = True

    def __post_init__(self) -> None:
        if self.type not in _PARSERS:
            raise AdapterError(f"option type must be one of str, int, float, bool, got {self.type!r}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self._convert(c) for c in self.choices))

    def _convert(self, value: Any) -> Any:
        if isinstance(value, self.type) and not (self.type is int and isinstance(value, bool)):
            return value
        return _PARSERS[self.type](str(value))

    def parse(self, text: Any) -> Any:
        """The typed value of ``text``; raises ValueError with what is wrong (without the name)."""
        value = self._convert(text)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.format(c) for c in self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.format(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.format(self.maximum)}")
        if self.validate is not None:
            self.validate(value)
        return value

    def format(self, value: Any) -> str:
        """Canonical text of a value (what the cache key and labels hold)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        return repr(value) if isinstance(value, float) else str(value)

    def canonical(self, text: Any) -> str:
        return self.format(self.parse(text))

    def describe(self) -> str:
        """Short text for listings: allowed values or type."""
        if self.choices is not None:
            return " | ".join(self.format(c) for c in self.choices)
        bounds = ""
        if self.minimum is not None or self.maximum is not None:
            lo = self.format(self.minimum) if self.minimum is not None else ""
            hi = self.format(self.maximum) if self.maximum is not None else ""
            bounds = f" {lo}..{hi}"
        return f"{self.type.__name__}{bounds}"


def option_specs(declared: Any) -> dict[str, Option]:
    """Normalise an ``OPTIONS`` declaration: plain values become ``str`` options."""
    specs: dict[str, Option] = {}
    for name, value in dict(declared or {}).items():
        specs[str(name)] = value if isinstance(value, Option) else Option(str(value))
    return specs


# --- adapters and configurations ---------------------------------------------------------------
@dataclass(frozen=True)
class Adapter:
    """A loaded codec adapter (see the module docstring for the contract)."""

    name: str
    family: str
    description: str
    version: str
    options: dict[str, str]  # option -> canonical default text
    qualities: tuple[float, ...]
    encode: Callable[..., bytes] = field(repr=False, compare=False)
    decode: Callable[..., Any] = field(repr=False, compare=False)
    origin: str = ""
    setup: Callable[..., dict] | None = field(default=None, repr=False, compare=False)
    prepare: Callable[..., Any] | None = field(default=None, repr=False, compare=False)
    quality_range: tuple[float, float, float] | None = None
    option_specs: dict[str, Option] = field(default_factory=dict, repr=False, compare=False)
    code: str = ""  # hash of the adapter's code (module file + CODE_FILES)
    code_files: Files = field(default=(), repr=False, compare=False)  # the same, file by file
    timeout_s: float | None = None  # TIMEOUT_S: seconds per job unless --timeout says otherwise
    takes_image_name: bool = False  # encode() names a parameter ``image_name``
    untimed: Callable[..., Iterable[str]] | None = field(default=None, repr=False, compare=False)
    check_decoded: Callable[..., Any] | None = field(default=None, repr=False, compare=False)
    check_images: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def spec(self, option: str) -> Option:
        return self.option_specs.get(option) or Option(self.options[option])

    @property
    def key_options(self) -> tuple[str, ...]:
        """Options that are part of the cache key and label (all but ``key=False`` ones)."""
        return tuple(k for k in self.options if self.spec(k).key)


@dataclass(frozen=True)
class Unavailable:
    """A codec module that could not be loaded, with the reason."""

    name: str
    origin: str
    reason: str


def with_code(version: str, code: str) -> str:
    """The version text that enters the cache key: library version plus the adapter's code hash."""
    return f"{version}; adapter {code}" if code else version


@dataclass(frozen=True)
class CodecConfig:
    """One adapter with resolved option values: what a result row belongs to.

    ``version``, ``qualities`` and ``info`` come from the adapter's ``setup`` when it has one;
    ``version`` includes the adapter's code hash (see ``configure``).
    """

    adapter: Adapter
    options: dict[str, str]
    version: str = ""
    qualities: tuple[float, ...] = ()
    info: dict = field(default_factory=dict)
    device_from_auto: bool = False  # device chosen by "auto": not part of the label

    def __post_init__(self) -> None:
        if not self.version:
            object.__setattr__(self, "version", with_code(self.adapter.version, self.adapter.code))
        if not self.qualities:
            object.__setattr__(self, "qualities", self.adapter.qualities)

    @property
    def device(self) -> str:
        return self.options.get("device", "cpu")

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def key_options(self) -> dict[str, str]:
        """The options that identify results (machine-local ``key=False`` options left out)."""
        keyed = set(self.adapter.key_options)
        return {k: v for k, v in self.options.items() if k in keyed or k not in self.adapter.options}

    @property
    def options_key(self) -> str:
        """Canonical JSON of the resolved options (part of the cache key)."""
        return json.dumps(self.key_options, sort_keys=True, separators=(",", ":"))

    @property
    def label(self) -> str:
        """Codec name, plus the options that differ from the defaults, e.g. ``hevc_chroma=420``; or option ``name``."""
        if self.options.get("name"):
            return str(self.options["name"])
        changed = [f"{k}={v}" for k, v in sorted(self.key_options.items())
                   if self.adapter.options.get(k) != v and not (k == "device" and self.device_from_auto)]
        return "_".join([self.name, *changed])

    def typed_options(self) -> dict[str, Any]:
        """The options as the adapter receives them: converted to their declared types."""
        typed = {}
        for key, value in self.options.items():
            spec = self.adapter.option_specs.get(key)
            typed[key] = _PARSERS[spec.type](value) if spec is not None and spec.type is not str else value
        return typed

    def prepare(self, quality: float) -> None:
        """Untimed set-up before an encode (e.g. loading that quality's model), if the adapter has it."""
        if self.adapter.prepare is not None:
            self.adapter.prepare(native_quality(quality), **self.typed_options())

    def encode(self, rgb, quality: float, image_name: str = "") -> bytes:
        named = {IMAGE_NAME: image_name} if self.adapter.takes_image_name else {}
        return self.adapter.encode(rgb, native_quality(quality), **named, **self.typed_options())

    def decode(self, data: bytes):
        return self.adapter.decode(data, **self.typed_options())

    @property
    def untimed(self) -> frozenset[str]:
        """Stages (``encode``, ``decode``) whose time is not measured for these options (adapter's ``untimed``)."""
        if self.adapter.untimed is None:
            return frozenset()
        return frozenset(self.adapter.untimed(**self.typed_options())) & set(STAGES)

    def check_decoded(self, data: bytes, rec) -> None:
        """The adapter's untimed check of one decoded image, if it has one (raises when it fails)."""
        if self.adapter.check_decoded is not None:
            self.adapter.check_decoded(data, rec, **self.typed_options())

    def check_images(self, images: dict) -> None:
        """The adapter's check of a run's originals ({name: uint8 array}) before any job, if it has one."""
        if self.adapter.check_images is not None:
            self.adapter.check_images(images, **self.typed_options())


def native_quality(quality: float) -> int | float:
    """Qualities are stored as floats; integral ones go to adapters as ints."""
    return int(quality) if float(quality).is_integer() else float(quality)


# --- validating and wrapping an adapter object ---------------------------------------------------
def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, AdapterError):  # the contract's own checks: the message says it all
        return str(exc)
    if isinstance(exc, ImportError):
        missing = getattr(exc, "name", None)
        return f"missing library '{missing}': {exc}" if missing else f"import error: {exc}"
    if isinstance(exc, SystemExit):
        return f"the module exited while being imported (SystemExit: {exc.code!r})"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def check_signature(fn: Callable, what: str, leading: int, options: Sequence[str]) -> str | None:
    """None if ``fn`` accepts ``leading`` positional arguments plus ``options`` as keywords, else why not."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: cannot check
        return None
    kinds = inspect.Parameter
    positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    if len(positional) < leading and not any(p.kind == kinds.VAR_POSITIONAL for p in params):
        return f"{what}() takes {len(positional)} positional argument(s), the harness passes {leading}"
    named = {p.name for p in params[leading:] if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)}
    if not any(p.kind == kinds.VAR_KEYWORD for p in params):
        extra = [o for o in options if o not in named]
        if extra:
            return f"{what}() does not accept option {', '.join(extra)} that OPTIONS declares"
    required = [p.name for p in positional[leading:] + [p for p in params if p.kind == kinds.KEYWORD_ONLY]
                if p.default is inspect.Parameter.empty and p.name not in options]
    if required:
        return f"{what}() requires {', '.join(required)}, which OPTIONS does not declare"
    return None


def takes_image_name(fn: Callable) -> bool:
    """Whether ``fn`` names a parameter ``image_name`` (then the harness passes the image's name)."""
    try:
        param = inspect.signature(fn).parameters.get(IMAGE_NAME)
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                inspect.Parameter.KEYWORD_ONLY)


def _check_signatures(obj: Any, options: Sequence[str]) -> None:
    checks = [("encode", 2), ("decode", 1), ("setup", 0), ("prepare", 1), ("untimed", 0), ("check_decoded", 2),
              ("check_images", 1)]
    for what, leading in checks:
        fn = getattr(obj, what, None)
        if fn is None:
            continue
        if not callable(fn):
            raise AdapterError(f"{what} must be callable")
        named = [*options, IMAGE_NAME] if what == "encode" and takes_image_name(fn) else options
        problem = check_signature(fn, what, leading, named)
        if problem:
            raise AdapterError(problem)


def adapter_from_object(obj: Any, origin: str, code: str = "", code_files: Files = ()) -> Adapter:
    """Validate an adapter namespace (module or object) and wrap it."""
    missing = [a for a in REQUIRED if not hasattr(obj, a)]
    if missing:
        raise AdapterError(f"not a codec adapter: missing {', '.join(missing)}")
    family = str(obj.FAMILY)
    if family not in FAMILIES:
        raise AdapterError(f"FAMILY must be one of {FAMILIES}, got {family!r}")
    qualities = tuple(float(q) for q in obj.QUALITIES)
    if not qualities:
        raise AdapterError("QUALITIES is empty")
    specs = option_specs(getattr(obj, "OPTIONS", {}))
    if QUALITY_KEY in specs:
        raise AdapterError(f"option name {QUALITY_KEY!r} is reserved (NAME:{QUALITY_KEY}=... sets qualities)")
    if IMAGE_NAME in specs:
        raise AdapterError(f"option name {IMAGE_NAME!r} is reserved (encode() receives the image's name under it)")
    defaults = {}
    for key, spec in specs.items():
        try:
            defaults[key] = spec.canonical(spec.default)
        except ValueError as exc:
            raise AdapterError(f"default of option {key} ({spec.default!r}) {exc}") from None
    _check_signatures(obj, list(specs))
    return Adapter(
        name=str(obj.NAME),
        family=family,
        description=str(obj.DESCRIPTION),
        version=str(obj.VERSION),
        options=defaults,
        qualities=qualities,
        encode=obj.encode,
        decode=obj.decode,
        origin=origin,
        setup=getattr(obj, "setup", None),
        prepare=getattr(obj, "prepare", None),
        quality_range=_quality_range(getattr(obj, "QUALITY_RANGE", None)),
        option_specs=specs,
        code=code,
        code_files=code_files,
        timeout_s=_timeout(getattr(obj, "TIMEOUT_S", None)),
        takes_image_name=takes_image_name(obj.encode),
        untimed=getattr(obj, "untimed", None),
        check_decoded=getattr(obj, "check_decoded", None),
        check_images=getattr(obj, "check_images", None),
    )


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    seconds = float(value)
    if not seconds > 0:
        raise AdapterError(f"TIMEOUT_S must be a positive number of seconds, got {value!r}")
    return seconds


def _quality_range(value) -> tuple[float, float, float] | None:
    if value is None:
        return None
    lo, hi, step = (float(v) for v in value)
    if not (lo < hi and step >= 0):
        raise AdapterError(f"QUALITY_RANGE must be (lowest, highest, step >= 0), got {value!r}")
    return lo, hi, step


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
        reason = _short_reason(exc)
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


# --- codec specs and qualities ------------------------------------------------------------------
def parse_codec_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"hevc:chroma=420:preset=slow"`` -> ``("hevc", {"chroma": "420", "preset": "slow"})``.

    A part without ``=`` continues the previous value, so ``jpeg:subsampling=4:4:4`` works.
    ``q=...`` (qualities) is returned among the options; ``select`` takes it out.
    """
    name, *parts = spec.strip().split(":")
    options: dict[str, str] = {}
    key = None
    for part in parts:
        if "=" in part:
            key, value = (x.strip() for x in part.split("=", 1))
            if not key:
                raise AdapterError(f"bad codec option {part!r} in {spec!r}; expected key=value")
            if key in options:
                raise AdapterError(f"option {key} given twice in {spec!r}")
            options[key] = value
        elif key is not None:
            options[key] += ":" + part.strip()
        else:
            raise AdapterError(f"bad codec option {part!r} in {spec!r}; expected key=value")
    if not name.strip():
        raise AdapterError(f"empty codec name in {spec!r}")
    return name.strip(), options


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AdapterError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise AdapterError(f"{where}: quality {text} is not a finite number")
    return value


def parse_qualities(text: str, where: str = "qualities") -> list[float]:
    """Quality values: ``10..90/10`` (from, to inclusive, step; step 1 if omitted), ``10/50/90`` or one number."""
    text = text.strip()
    if not text:
        raise AdapterError(f"{where}: no quality given")
    if ".." in text:
        span, _, step_text = text.partition("/")
        lo_text, _, hi_text = span.partition("..")
        lo, hi = _number(lo_text, where), _number(hi_text, where)
        step = _number(step_text, where) if step_text else 1.0
        if step <= 0 or hi < lo:
            raise AdapterError(f"{where}: {text!r} needs from <= to and a step > 0 (e.g. 10..90/10)")
        count = math.floor((hi - lo) / step + 1e-9) + 1
        if count > MAX_QUALITIES:
            raise AdapterError(f"{where}: {text!r} gives {count} qualities (at most {MAX_QUALITIES})")
        return [round(lo + i * step, 9) for i in range(count)]
    return [_number(part, where) for part in text.split("/")]


def check_qualities(config: CodecConfig, qualities: Iterable[float]) -> tuple[float, ...]:
    """Qualities validated against the codec's ``QUALITY_RANGE`` (and, for learned codecs, its models)."""
    name, checked = config.name, []
    for q in qualities:
        q = float(q)
        if not math.isfinite(q):
            raise AdapterError(f"{name}: quality {q} is not a finite number")
        if config.adapter.quality_range is not None:
            lo, hi, step = config.adapter.quality_range
            span = f"{native_quality(lo)}..{native_quality(hi)}"
            if not lo <= q <= hi:
                raise AdapterError(f"{name}: quality {native_quality(q)} is outside its range {span}")
            if step > 0 and abs((q - lo) / step - round((q - lo) / step)) > 1e-9:
                raise AdapterError(f"{name}: quality {native_quality(q)} is not on its grid {span} in steps of "
                                   f"{native_quality(step)}")
        if config.adapter.family == "learned" and q not in config.qualities:
            have = ", ".join(str(native_quality(v)) for v in config.qualities)
            raise AdapterError(f"{name}: no model for quality {native_quality(q)} (qualities: {have})")
        if q not in checked:
            checked.append(q)
    return tuple(checked)


# --- configuring --------------------------------------------------------------------------------
def auto_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def validate_options(adapter: Adapter, overrides: dict[str, str]) -> dict[str, str]:
    """Overrides checked against the declaration, as canonical text; AdapterError says what is wrong."""
    unknown = sorted(set(overrides) - set(adapter.options))
    if unknown:
        known = ", ".join(sorted(adapter.options)) or "none"
        hint = did_you_mean(unknown[0], adapter.options) if len(unknown) == 1 else ""
        raise AdapterError(f"codec {adapter.name!r} has no option {', '.join(unknown)} (options: {known}){hint}")
    checked = {}
    for key, value in overrides.items():
        try:
            checked[key] = adapter.spec(key).canonical(value)
        except ValueError as exc:
            raise AdapterError(f"{adapter.name}: {key} {exc}, got {value}") from None
    return checked


def configure(adapter: Adapter, overrides: dict[str, str], device: str | None = None) -> CodecConfig:
    """Resolve option overrides against an adapter's declared options and run its ``setup``."""
    options = {**adapter.options, **validate_options(adapter, overrides)}
    from_auto = False
    if "device" in options:
        if device and "device" not in overrides:
            options["device"] = device
        if options["device"] == "auto":
            options["device"], from_auto = auto_device(), True
    config = CodecConfig(adapter, options, device_from_auto=from_auto)
    if adapter.setup is None:
        return config
    try:
        extra = adapter.setup(**config.typed_options()) or {}
    except Exception as exc:
        raise SetupError(f"{type(exc).__name__}: {exc}") from None
    resolved = dict(extra.get("options", {}))
    keyed = [k for k in resolved if k not in adapter.options or adapter.spec(k).key]
    if keyed:
        raise SetupError(f"setup() may only resolve options declared with key=False, not {', '.join(keyed)}")
    options.update({k: str(v) for k, v in resolved.items()})
    qualities = tuple(float(q) for q in extra.get("qualities", ()))
    version = with_code(str(extra["version"]), adapter.code) if extra.get("version") else ""
    if extra.get("family"):  # e.g. published bitstreams: the family of the codec that made them
        if extra["family"] not in FAMILIES:
            raise SetupError(f"setup() returned family {extra['family']!r}, not one of {', '.join(FAMILIES)}")
        adapter = replace(adapter, family=str(extra["family"]))
    return CodecConfig(adapter, options, version, qualities, dict(extra.get("info", {})), from_auto)


def _lookup(available: list[Adapter | Unavailable] | Catalog, names: list[str] | None):
    if isinstance(available, Catalog):
        items = available.load(names)
        if names is not None and not set(names) <= {i.name for i in items}:
            items = available.load()  # a module whose source misled the static reading
        return items
    return available


def select(available: list[Adapter | Unavailable] | Catalog, specs: list[str] | None,
           device: str | None = None, qualities: Sequence[float] | None = None,
           ) -> tuple[list[CodecConfig], list[Unavailable]]:
    """Pick codecs by spec (``None`` = every available codec with default options).

    ``available`` is a ``discover()`` list or a ``Catalog`` (which imports only the named codecs).
    A spec's ``q=...`` sets that codec's qualities, ``qualities`` those of the others; both are
    validated against each codec's range. Returns the configurations to run and the codecs that
    are unavailable (import failed, or ``setup`` refused). Unknown names, invalid options and
    qualities raise AdapterError, before anything runs.
    """
    parsed = [parse_codec_spec(s) for s in specs] if specs is not None else None
    names = [n for n, _ in parsed] if parsed is not None else None
    if names is not None and isinstance(available, Catalog):
        known = set(available.names())
        for name in names:
            if name not in known:
                raise AdapterError(f"unknown codec {name!r} (known: {', '.join(sorted(known))})"
                                   f"{did_you_mean(name, known)}")
    items = _lookup(available, names)
    adapters = {a.name: a for a in items if isinstance(a, Adapter)}
    broken = {u.name: u for u in items if isinstance(u, Unavailable)}
    wanted: list[tuple[str, dict[str, str]]] = []
    skipped: list[Unavailable] = []
    if parsed is None:
        wanted = [(name, {}) for name in adapters]
        skipped = list(broken.values())
    else:
        for name, overrides in parsed:
            if name in adapters:
                wanted.append((name, overrides))
            elif name in broken:
                skipped.append(broken[name])
            else:
                known_names = set(adapters) | set(broken)
                raise AdapterError(f"unknown codec {name!r} (known: {', '.join(sorted(known_names))})"
                                   f"{did_you_mean(name, known_names)}")
    for name, overrides in wanted:  # validate every spec before any setup runs
        validate_options(adapters[name], {k: v for k, v in overrides.items() if k != QUALITY_KEY})
    configs = []
    for name, overrides in wanted:
        sweep = overrides.pop(QUALITY_KEY, None)
        try:
            config = configure(adapters[name], overrides, device)
        except SetupError as exc:
            skipped.append(Unavailable(name, adapters[name].origin, str(exc)))
            continue
        if sweep is not None:
            config = replace(config, qualities=check_qualities(config, parse_qualities(sweep, f"{name}: q")))
        elif qualities is not None:
            try:
                config = replace(config, qualities=check_qualities(config, qualities))
            except AdapterError as exc:
                raise AdapterError(f"{exc}; give this codec its own qualities with {name}:q=FROM..TO/STEP") from None
        configs.append(config)
    return merge_duplicates(configs), skipped


def merge_duplicates(configs: list[CodecConfig]) -> list[CodecConfig]:
    """One configuration per label: a codec named twice (``jpeg,jpeg:q=5``) runs once, with the union of
    the qualities; two different configurations under one label (``name=``) are refused."""
    by_label: dict[str, CodecConfig] = {}
    for config in configs:
        first = by_label.get(config.label)
        if first is None:
            by_label[config.label] = config
        elif (first.name, first.options_key) != (config.name, config.options_key):
            raise AdapterError(f"two different codec configurations are labelled {config.label!r}: give them "
                               "distinct names")
        else:
            by_label[config.label] = replace(first, qualities=tuple(dict.fromkeys(first.qualities + config.qualities)))
    return list(by_label.values())
