"""The adapter contract: what an adapter declares (``Adapter``), a resolved codec configuration
(``CodecConfig``), the checks of an adapter object, and the run directory adapters resolve
relative paths against (``run_directory``)."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import Files
from .options import _PARSERS, AdapterError, Option, option_specs

FAMILIES = ("conventional", "learned")
REQUIRED = ("NAME", "FAMILY", "DESCRIPTION", "VERSION", "QUALITIES", "encode", "decode")
QUALITY_KEY = "q"  # NAME:q=... in a codec spec sets that codec's qualities
IMAGE_NAME = "image_name"  # an encode() parameter of this name receives the image's name
STAGES = ("encode", "decode")  # timed stages (``untimed`` may name them)
MAX_QUALITIES = 1000  # points one quality range may expand to


class SetupError(AdapterError):
    """An adapter's ``setup`` refused a configuration (e.g. no weights): the codec is unavailable."""


# --- the run's working directory ----------------------------------------------------------------
_RUN_DIRECTORIES: list[str] = []  # the run's directories while stages run in fresh ones (``stage_directory``)


@contextlib.contextmanager
def stage_directory(run_dir: str) -> Iterator[None]:
    """While a stage runs in a fresh working directory (``bench.pipeline.measure``): ``run_directory()``
    answers ``run_dir``, the run's own."""
    _RUN_DIRECTORIES.append(run_dir)
    try:
        yield
    finally:
        _RUN_DIRECTORIES.pop()


def run_directory() -> Path:
    """The run's working directory. ``encode`` and ``decode`` run in fresh, empty working directories
    (``bench.pipeline.measure``), so an adapter resolves a relative path given in an option against this."""
    return Path(_RUN_DIRECTORIES[-1] if _RUN_DIRECTORIES else os.getcwd())


def in_run_directory(path: str | Path) -> Path:
    """``path`` (``~`` expanded) against the run's working directory when it is relative."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else run_directory() / path


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
def short_reason(exc: BaseException) -> str:
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


