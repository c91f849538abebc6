"""From codec specs (``NAME:key=value,...``) to codec configurations: parsing specs and qualities,
validating options, ``configure`` (the adapter's ``setup``) and ``select``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

from ..errors import did_you_mean
from .contract import (
    FAMILIES,
    MAX_QUALITIES,
    QUALITY_KEY,
    Adapter,
    CodecConfig,
    SetupError,
    Unavailable,
    native_quality,
    with_code,
)
from .discovery import Catalog
from .options import AdapterError


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
