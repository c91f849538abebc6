"""Codec adapters: the contract, discovery and loading.

An adapter is a Python module (or any object) with these attributes::

    NAME        = "jpeg"                        # unique codec name
    FAMILY      = "conventional"                # or "learned"
    DESCRIPTION = "JPEG via Pillow 13.0.0 ..."  # names the library and its version
    VERSION     = "Pillow 13.0.0, libjpeg-turbo 3.1"  # part of every result's cache key
    OPTIONS     = {"subsampling": "4:2:0"}      # option -> default value (strings); may be {}
    QUALITIES   = [5, 10, ..., 95]              # default quality sweep
    QUALITY_RANGE = (1, 100, 1)                 # optional: (lowest, highest, step; 0 = continuous)
                                                # searched for target bpp; default: QUALITIES only

    def encode(rgb, quality, **options) -> bytes   # rgb: numpy uint8 array H x W x 3
    def decode(data, **options) -> numpy uint8 H x W x 3

    def setup(**options) -> dict     # optional: {"version", "qualities", "info"} for these
                                     # options (e.g. which weights); raising = unavailable
    def prepare(quality, **options)  # optional, untimed before each encode (e.g. load a model)

Options are passed only when the adapter declares some. An option named ``device`` receives the
harness's ``--device`` (``auto`` becomes ``cuda`` when torch sees a GPU, else ``cpu``). A module may instead define
``ADAPTERS = [obj, ...]`` to provide several codecs, each obj having the attributes above.
The harness does all timing, size and quality measurement; adapters only encode and decode.

Adapters are discovered in ``codecs/`` of this project, in extra folders (``--codecs-dir``)
and in the ``bench.codecs`` entry-point group of installed packages. A module that fails to
import (e.g. its library is missing) is listed as unavailable with the reason.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

FAMILIES = ("conventional", "learned")
ENTRY_POINT_GROUP = "bench.codecs"
BUILTIN_CODECS_DIR = Path(__file__).resolve().parent.parent / "codecs"
REQUIRED = ("NAME", "FAMILY", "DESCRIPTION", "VERSION", "QUALITIES", "encode", "decode")


class AdapterError(Exception):
    """An adapter cannot be loaded or used, or a codec spec is invalid."""


@dataclass(frozen=True)
class Adapter:
    """A loaded codec adapter (see the module docstring for the contract)."""

    name: str
    family: str
    description: str
    version: str
    options: dict[str, str]
    qualities: tuple[float, ...]
    encode: Callable[..., bytes] = field(repr=False, compare=False)
    decode: Callable[..., Any] = field(repr=False, compare=False)
    origin: str = ""
    setup: Callable[..., dict] | None = field(default=None, repr=False, compare=False)
    prepare: Callable[..., Any] | None = field(default=None, repr=False, compare=False)
    quality_range: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Unavailable:
    """A codec module that could not be loaded, with the reason."""

    name: str
    origin: str
    reason: str


class SetupError(AdapterError):
    """An adapter's ``setup`` refused a configuration (e.g. no weights): the codec is unavailable."""


@dataclass(frozen=True)
class CodecConfig:
    """One adapter with resolved option values: what a result row belongs to.

    ``version``, ``qualities`` and ``info`` come from the adapter's ``setup`` when it has one.
    """

    adapter: Adapter
    options: dict[str, str]
    version: str = ""
    qualities: tuple[float, ...] = ()
    info: dict = field(default_factory=dict)
    device_from_auto: bool = False  # device chosen by "auto": not part of the label

    def __post_init__(self) -> None:
        if not self.version:
            object.__setattr__(self, "version", self.adapter.version)
        if not self.qualities:
            object.__setattr__(self, "qualities", self.adapter.qualities)

    @property
    def device(self) -> str:
        return self.options.get("device", "cpu")

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def options_key(self) -> str:
        """Canonical JSON of the resolved options (part of the cache key)."""
        return json.dumps(self.options, sort_keys=True, separators=(",", ":"))

    @property
    def label(self) -> str:
        """Codec name, plus the options that differ from the defaults, e.g. ``hevc_chroma=420``."""
        changed = [f"{k}={v}" for k, v in sorted(self.options.items())
                   if self.adapter.options.get(k) != v and not (k == "device" and self.device_from_auto)]
        return "_".join([self.name, *changed])

    def prepare(self, quality: float) -> None:
        """Untimed set-up before an encode (e.g. loading that quality's model), if the adapter has it."""
        if self.adapter.prepare is not None:
            self.adapter.prepare(native_quality(quality), **self.options)

    def encode(self, rgb, quality: float) -> bytes:
        return self.adapter.encode(rgb, native_quality(quality), **self.options)

    def decode(self, data: bytes):
        return self.adapter.decode(data, **self.options)


def native_quality(quality: float) -> int | float:
    """Qualities are stored as floats; integral ones go to adapters as ints."""
    return int(quality) if float(quality).is_integer() else float(quality)


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        missing = getattr(exc, "name", None)
        return f"missing library '{missing}': {exc}" if missing else f"import error: {exc}"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def adapter_from_object(obj: Any, origin: str) -> Adapter:
    """Validate an adapter namespace (module or object) and wrap it."""
    missing = [a for a in REQUIRED if not hasattr(obj, a)]
    if missing:
        raise AdapterError(f"not a codec adapter: missing {', '.join(missing)}")
    family = str(obj.FAMILY)
    if family not in FAMILIES:
        raise AdapterError(f"FAMILY must be one of {FAMILIES}, got {family!r}")
    if not callable(obj.encode) or not callable(obj.decode):
        raise AdapterError("encode and decode must be callables")
    qualities = tuple(float(q) for q in obj.QUALITIES)
    if not qualities:
        raise AdapterError("QUALITIES is empty")
    options = {str(k): str(v) for k, v in dict(getattr(obj, "OPTIONS", {}) or {}).items()}
    return Adapter(
        name=str(obj.NAME),
        family=family,
        description=str(obj.DESCRIPTION),
        version=str(obj.VERSION),
        options=options,
        qualities=qualities,
        encode=obj.encode,
        decode=obj.decode,
        origin=origin,
        setup=getattr(obj, "setup", None),
        prepare=getattr(obj, "prepare", None),
        quality_range=_quality_range(getattr(obj, "QUALITY_RANGE", None)),
    )


def _quality_range(value) -> tuple[float, float, float] | None:
    if value is None:
        return None
    lo, hi, step = (float(v) for v in value)
    if not (lo < hi and step >= 0):
        raise AdapterError(f"QUALITY_RANGE must be (lowest, highest, step >= 0), got {value!r}")
    return lo, hi, step


def _module_name_for(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"bench_codec_{path.stem}_{digest}"


def import_file(path: Path):
    """Import a codec module from its file (once per process)."""
    name = _module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AdapterError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _adapters_in(obj: Any, origin: str) -> list[Adapter]:
    items = getattr(obj, "ADAPTERS", None)
    if items is None:
        return [adapter_from_object(obj, origin)]
    return [adapter_from_object(item, f"{origin}#{item.NAME}") for item in items]


def _load_file(path: Path) -> list[Adapter | Unavailable]:
    origin = f"file:{path.resolve()}"
    try:
        return list(_adapters_in(import_file(path), origin))
    except Exception as exc:  # an adapter's import must never break discovery
        return [Unavailable(name=path.stem, origin=origin, reason=_short_reason(exc))]


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> list[Adapter | Unavailable]:
    origin = f"entrypoint:{ep.name}"
    try:
        return list(_adapters_in(ep.load(), origin))
    except Exception as exc:
        return [Unavailable(name=ep.name, origin=origin, reason=_short_reason(exc))]


def codec_files(folder: Path) -> list[Path]:
    """Adapter modules in a folder: every ``*.py`` not starting with ``_``."""
    return sorted(p for p in Path(folder).glob("*.py") if not p.name.startswith("_"))


def discover(extra_dirs: Iterable[str | Path] = (), builtin: bool = True) -> list[Adapter | Unavailable]:
    """All codecs from ``codecs/``, ``extra_dirs`` and the entry-point group, in that order.

    A later codec with the same name as an earlier one is reported as unavailable (duplicate).
    """
    found: list[Adapter | Unavailable] = []
    folders = ([BUILTIN_CODECS_DIR] if builtin else []) + [Path(d) for d in extra_dirs]
    for folder in folders:
        if not folder.is_dir():
            raise AdapterError(f"codecs folder not found: {folder}")
        for path in codec_files(folder):
            found.extend(_load_file(path))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.extend(_load_entry_point(ep))
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


def load_origin(origin: str) -> Adapter:
    """Re-load one adapter from its origin string (used by worker processes)."""
    kind, _, rest = origin.partition(":")
    target, _, member = rest.partition("#")
    if kind == "file":
        obj = import_file(Path(target))
    elif kind == "entrypoint":
        eps = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == target]
        if not eps:
            raise AdapterError(f"entry point {target!r} not found in group {ENTRY_POINT_GROUP}")
        obj = eps[0].load()
    else:
        raise AdapterError(f"unknown adapter origin {origin!r}")
    for adapter in _adapters_in(obj, f"{kind}:{target}"):
        if not member or adapter.name == member:
            return adapter
    raise AdapterError(f"adapter {member!r} not found in {target}")


def parse_codec_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"hevc:chroma=420:preset=slow"`` -> ``("hevc", {"chroma": "420", "preset": "slow"})``.

    A part without ``=`` continues the previous value, so ``jpeg:subsampling=4:4:4`` works.
    """
    name, *parts = spec.strip().split(":")
    options: dict[str, str] = {}
    key = None
    for part in parts:
        if "=" in part:
            key, value = (x.strip() for x in part.split("=", 1))
            if not key:
                raise AdapterError(f"bad codec option {part!r} in {spec!r}; expected key=value")
            options[key] = value
        elif key is not None:
            options[key] += ":" + part.strip()
        else:
            raise AdapterError(f"bad codec option {part!r} in {spec!r}; expected key=value")
    return name.strip(), options


def auto_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def configure(adapter: Adapter, overrides: dict[str, str], device: str | None = None) -> CodecConfig:
    """Resolve option overrides against an adapter's declared options and run its ``setup``."""
    unknown = sorted(set(overrides) - set(adapter.options))
    if unknown:
        known = ", ".join(sorted(adapter.options)) or "none"
        raise AdapterError(f"codec {adapter.name!r} has no option {', '.join(unknown)} (options: {known})")
    options = {**adapter.options, **overrides}
    from_auto = False
    if "device" in options:
        if device and "device" not in overrides:
            options["device"] = device
        if options["device"] == "auto":
            options["device"], from_auto = auto_device(), True
    if adapter.setup is None:
        return CodecConfig(adapter, options, device_from_auto=from_auto)
    try:
        extra = adapter.setup(**options) or {}
    except Exception as exc:
        raise SetupError(f"{type(exc).__name__}: {exc}") from None
    qualities = tuple(float(q) for q in extra.get("qualities", ()))
    return CodecConfig(adapter, options, str(extra.get("version", "")), qualities, dict(extra.get("info", {})),
                       from_auto)


def select(available: list[Adapter | Unavailable], specs: list[str] | None,
           device: str | None = None) -> tuple[list[CodecConfig], list[Unavailable]]:
    """Pick codecs by spec (``None`` = every available codec with default options).

    Returns the configurations to run and the codecs that are unavailable (import failed, or
    ``setup`` refused). Unknown names and options raise AdapterError.
    """
    adapters = {a.name: a for a in available if isinstance(a, Adapter)}
    broken = {u.name: u for u in available if isinstance(u, Unavailable)}
    if specs is None:
        wanted = [(name, {}) for name in adapters]
        skipped = list(broken.values())
    else:
        wanted, skipped = [], []
        for spec in specs:
            name, overrides = parse_codec_spec(spec)
            if name in adapters:
                wanted.append((name, overrides))
            elif name in broken:
                skipped.append(broken[name])
            else:
                known = ", ".join(sorted(set(adapters) | set(broken)))
                raise AdapterError(f"unknown codec {name!r} (known: {known})")
    configs = []
    for name, overrides in wanted:
        try:
            configs.append(configure(adapters[name], overrides, device))
        except SetupError as exc:
            skipped.append(Unavailable(name, adapters[name].origin, str(exc)))
    return configs, skipped
