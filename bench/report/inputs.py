"""What the report is built from, as typed records.

``Request``: the anchor, interpolation method, bootstrap resamples and published reference curves
asked for (``read_request`` checks them). ``Stored``: what the result store holds for the report,
read once by ``load_stored`` (which also exports per_image.csv, summary.csv and the JSONs).
``Basis``: both, plus what every later step needs: the curve labels, each codec's options, the BD
table against the anchor, the measured bpp ranges, the host line and the fair-comparison warnings
known before the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..analysis import METHODS, bd_metrics, load_reference
from ..analysis.fairness import bpp_ranges, reference_warning
from ..errors import BenchError
from ..model import Curve, ImageRecord, StoredCodec
from ..store import open_results
from ..store.export import export_results
from .bd import add_notes, anchored_bd_table
from .sections import mixed_host_warnings, target_warnings
from .summary import hosts_text, options_text


class ReportError(BenchError):
    pass


@dataclass(frozen=True)
class Request:
    """The report asked for: anchor, interpolation method, bootstrap resamples, reference files and their curves."""

    anchor: str
    method: str
    bootstrap: int
    references: list[str]
    refs: list[dict[str, Curve]]  # per reference file: metric -> published curve

    @property
    def ref_labels(self) -> list[str]:
        return [next(iter(r.values())).label for r in self.refs if r]


@dataclass(frozen=True)
class Stored:
    """The store's data for the report (one dataset), read in one transaction."""

    out: Path
    dataset: str
    per_image: pd.DataFrame
    summary: pd.DataFrame
    targets: pd.DataFrame  # mean achieved bpp and metrics per codec and target bpp (empty without --target-bpp)
    n_images: int
    codecs: list[StoredCodec]  # the codecs with measurements
    families: dict[str, str]  # label -> family, every stored codec
    images: list[ImageRecord]  # by name: name, pixel hash, size, stored path of the original
    run: dict  # the latest run's machine and software
    cross_device: list[dict]  # Store.cross_device_rows
    exported: list[Path]  # per_image.csv, summary.csv, <codec>.json, ...


@dataclass(frozen=True)
class Basis:
    """Request and stored data, and what follows from them before any figure is drawn."""

    stored: Stored
    request: Request
    labels: list[str]  # measured codecs (sorted), then the published curves
    options: dict[str, str]  # label -> options as text
    metrics: list[str]
    table: pd.DataFrame  # the BD table against the anchor, reference warnings in its notes
    ref_notes: dict[str, str]  # published curve label -> its dataset warning
    ranges: dict[str, tuple[float, float]]  # label -> measured bpp range
    host: str
    warnings: list[str]  # reference, target-bpp and mixed-host warnings

    @property
    def scope(self) -> str:
        return f"{self.stored.dataset}, {self.stored.n_images} images"


def read_request(anchor: str, references: list[str] | None, method: str, bootstrap: int) -> Request:
    """Check the options and read the published reference curves."""
    if bootstrap < 0:
        raise ReportError(f"--bootstrap must be 0 (no intervals) or a positive number of resamples, not {bootstrap}")
    if method not in METHODS:
        raise ReportError(f"unknown interpolation method {method!r} (choose from {', '.join(METHODS)})")
    paths = [str(p) for p in references or []]
    try:
        refs = [load_reference(p) for p in paths]
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    return Request(anchor, method, bootstrap, paths, refs)


def load_stored(out: Path) -> Stored:
    """Read the store in ``out`` (and export its CSV/JSON files); an error when nothing is measured."""
    with open_results(out, ReportError) as (store, dataset):
        exported = export_results(store, dataset, out)
        codecs = store.codecs()
        images = store.images(dataset)
        run = store.get_meta("run", {})
        cross_device = store.cross_device_rows(dataset)
    if exported.per_image.empty:
        raise ReportError(f"{out}: no measurements stored for dataset {dataset!r}")
    measured = set(exported.per_image["codec"])
    return Stored(out, dataset, exported.per_image, exported.summary, exported.targets, exported.n_images,
                  [c for c in codecs if c.label in measured], {c.label: c.family for c in codecs},
                  images, run, cross_device, list(exported.paths))


def _reference_notes(stored: Stored, request: Request) -> tuple[dict[str, str], list[str]]:
    """Published curve label -> its dataset warning (for the BD notes), and the warnings themselves."""
    notes, warnings = {}, []
    for path, ref in zip(request.references, request.refs, strict=True):
        if ref:
            label = next(iter(ref.values())).label
            warning = reference_warning(path, label, stored.dataset, stored.n_images)
            if warning:
                warnings.append(warning)
                notes[label] = warning.split(": ", 1)[1]
    return notes, warnings


def _measured_ranges(stored: Stored) -> dict[str, tuple[float, float]]:
    """label -> bpp range of its complete sweep and target-bpp points."""
    complete = stored.summary[stored.summary["n_images"] == stored.n_images][["codec", "bpp"]]
    targets = (stored.targets.rename(columns={"mean_bpp": "bpp"})[["codec", "bpp"]] if not stored.targets.empty
               else pd.DataFrame(columns=["codec", "bpp"]))
    return bpp_ranges(pd.concat([complete, targets]))


def make_basis(stored: Stored, request: Request) -> Basis:
    """Labels, options, the BD table against the anchor and the warnings known before the figures."""
    labels = sorted(set(stored.per_image["codec"])) + request.ref_labels
    if request.anchor not in labels:
        raise ReportError(f"anchor {request.anchor!r} not among the curves ({', '.join(labels)})")
    ref_notes, warnings = _reference_notes(stored, request)
    table = add_notes(anchored_bd_table(stored.per_image, stored.summary, stored.n_images, request.anchor,
                                        request.refs, request.bootstrap), ref_notes)
    ranges = _measured_ranges(stored)
    if not stored.targets.empty:
        warnings += target_warnings(stored.targets, ranges)
    warnings += mixed_host_warnings(stored.per_image)
    run = stored.run
    host = hosts_text(stored.per_image) or (f"{run.get('cpu', '?')} ({run.get('cores', '?')} cores), "
                                            f"GPU: {run.get('cuda', '?')}")
    return Basis(stored, request, labels, {c.label: options_text(c.options) for c in stored.codecs},
                 bd_metrics(stored.per_image.columns), table, ref_notes, ranges, host, warnings)
