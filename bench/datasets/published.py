"""Published bitstreams: the manifest of a folder of someone else's bitstreams and decoded images.

A published folder holds a codec's real bitstreams and the images its own decoder made from
them, described by a manifest (UTF-8 TSV; see docs/published-bitstreams.md)::

    # family: learned                  optional header lines "# key: value": family, codec,
    # decoder: coolchic                decoder, publisher, licence, rate, ...
    image  rate    bitstream                decoded                 bpp   psnr-rgb  bitstream_sha256  decoded_sha256
    kodim01 0.0001 bitstreams/kodim01-...cool decoded/kodim01-...png 2.12 40.487    9ac2...           d3bb...

(columns separated by one tab). ``image`` is the image's name in the dataset (file name
without extension), ``rate`` the publisher's rate parameter (a number; it is the codec's
quality), ``bitstream``/``decoded`` paths relative to the folder; ``bpp`` and ``psnr-rgb``
(dB) are the publisher's values, used to check the originals and by ``verify``; the
checksums, when given, are checked before a run.

A folder without ``manifest.tsv`` may still be known: the project ships manifests for published
folders it knows (``datasets/published/<folder name>.tsv``, installed as
``bench/manifests/published/``); a run refuses the folder unless every checksum matches.
``coolchic_manifest`` makes such a manifest from a folder's ``published.tsv`` (Cool-chic's table).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..code_identity import file_digest
from ..errors import BenchError
from . import MANIFEST_DIR

MANIFEST_NAME = "manifest.tsv"
SHIPPED_DIR = MANIFEST_DIR / "published"
REQUIRED_COLUMNS = ("image", "rate", "bitstream", "decoded")
OPTIONAL_COLUMNS = ("bpp", "psnr-rgb", "bitstream_sha256", "decoded_sha256")
BPP_TOLERANCE = 1e-4  # |measured - published| bpp that verify accepts
PSNR_TOLERANCE_DB = 0.01  # |measured - published| PSNR-RGB (dB) that verify and the originals' check accept


class PublishedError(BenchError):
    """A published folder or its manifest cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class Entry:
    """One published bitstream: an image at one rate."""

    image: str
    rate: float
    bitstream: Path  # absolute
    decoded: Path  # absolute
    bpp: float = math.nan  # published, bits per pixel
    psnr_rgb: float = math.nan  # published, dB
    bitstream_sha256: str = ""
    decoded_sha256: str = ""


@dataclass(frozen=True)
class Manifest:
    path: Path
    folder: Path
    header: dict[str, str]
    entries: tuple[Entry, ...]
    sha256: str  # of the manifest file's bytes
    by_key: dict[tuple[str, float], Entry] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.by_key.update({(e.image, e.rate): e for e in self.entries})

    @property
    def images(self) -> list[str]:
        return sorted({e.image for e in self.entries})

    @property
    def rates(self) -> list[float]:
        return sorted({e.rate for e in self.entries})

    def entry(self, image: str, rate: float) -> Entry:
        found = self.by_key.get((image, float(rate)))
        if found is None:
            if image not in self.images:
                raise PublishedError(f"no published bitstream for image {image!r} in {self.folder} "
                                     f"(its manifest covers {len(self.images)} images: {short_list(self.images)})")
            have = ", ".join(f"{e.rate:g}" for e in self.entries if e.image == image)
            raise PublishedError(f"no published bitstream for image {image!r} at rate {rate:g} in {self.folder} "
                                 f"(rates of this image: {have})")
        return found


def short_list(names: list[str], limit: int = 12) -> str:
    """``a, b, c`` or ``a, b, ... and 9 more``."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PublishedError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise PublishedError(f"{where}: {what} {text!r} is not a finite number")
    return value


def parse_manifest(text: str, path: Path, folder: Path) -> Manifest:
    """A manifest's header and rows; PublishedError names the line that is wrong."""
    header: dict[str, str] = {}
    lines = text.splitlines()
    body_start = 0
    for body_start, line in enumerate(lines):  # noqa: B007 (the index is used after the loop)
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].partition(":")
        if sep and key.strip():
            header[key.strip().lower()] = value.strip()
    else:
        body_start = len(lines)
    rows = list(csv.reader(io.StringIO("\n".join(lines[body_start:])), delimiter="\t"))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise PublishedError(f"{path}: no column header (expected {', '.join(REQUIRED_COLUMNS)} separated by tabs)")
    columns = [c.strip() for c in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise PublishedError(f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(columns)}; "
                             "separate them with tabs)")
    entries, seen = [], set()
    for number, row in enumerate(rows[1:], start=body_start + 2):
        where = f"{path}, line {number}"
        if len(row) != len(columns):
            raise PublishedError(f"{where}: {len(row)} fields, the header has {len(columns)}")
        cell = dict(zip(columns, (c.strip() for c in row), strict=True))
        rate = _number(cell["rate"], "rate", where)
        if (cell["image"], rate) in seen:
            raise PublishedError(f"{where}: image {cell['image']!r} at rate {rate:g} is listed twice")
        seen.add((cell["image"], rate))
        entries.append(Entry(
            image=cell["image"], rate=rate, bitstream=folder / cell["bitstream"], decoded=folder / cell["decoded"],
            bpp=_number(cell["bpp"], "bpp", where) if cell.get("bpp") else math.nan,
            psnr_rgb=_number(cell["psnr-rgb"], "psnr-rgb", where) if cell.get("psnr-rgb") else math.nan,
            bitstream_sha256=cell.get("bitstream_sha256", "").lower(),
            decoded_sha256=cell.get("decoded_sha256", "").lower()))
    if not entries:
        raise PublishedError(f"{path}: no bitstream listed")
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Manifest(path, folder, header, tuple(entries), digest)


def read_manifest(path: Path, folder: Path) -> Manifest:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishedError(f"cannot read manifest {path}: {exc}") from None
    return parse_manifest(text, path, folder)


def check_files(manifest: Manifest) -> list[str]:
    """Problems with the files a manifest lists (missing, or another checksum), as lines."""
    problems = []
    for e in manifest.entries:
        for path, expected in ((e.bitstream, e.bitstream_sha256), (e.decoded, e.decoded_sha256)):
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif expected and file_digest(path) != expected:
                problems.append(f"{path} has another SHA-256 than the manifest lists")
    return problems


def find_manifest(folder: Path, given: str = "") -> Manifest:
    """The manifest of a published folder: ``given``, ``<folder>/manifest.tsv``, else a shipped one for it."""
    if not folder.is_dir():
        raise PublishedError(f"published folder {folder} not found")
    if given:
        return read_manifest(Path(given).expanduser().resolve(), folder)
    if (folder / MANIFEST_NAME).is_file():
        return read_manifest(folder / MANIFEST_NAME, folder)
    shipped = SHIPPED_DIR / f"{folder.name}.tsv"
    if shipped.is_file():
        return read_manifest(shipped, folder)
    raise PublishedError(f"{folder} has no {MANIFEST_NAME} and the project ships none for a folder named "
                         f"{folder.name!r} (known: {', '.join(sorted(p.stem for p in SHIPPED_DIR.glob('*.tsv')))}); "
                         "write one as in docs/published-bitstreams.md, or give manifest=PATH")


# --- checks of the originals and of the measured values --------------------------------------------
def psnr_rgb(original: np.ndarray, decoded: np.ndarray) -> float:
    """10·log10(255² / MSE) in dB, MSE over every R, G and B sample (float64); inf when identical."""
    diff = original.astype(np.float64) - decoded.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def read_rgb(path: Path) -> np.ndarray:
    """A decoded image file as uint8 H x W x 3."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode != "RGB":
            raise PublishedError(f"{path}: decoded image is {img.mode}, expected 8-bit RGB")
        return np.asarray(img)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image file's header."""
    from PIL import Image

    with Image.open(path) as img:
        return img.size


def missing_images(manifest: Manifest, names: list[str]) -> list[str]:
    """Images of a run that the manifest has no bitstream for."""
    have = set(manifest.images)
    return sorted(n for n in names if n not in have)


def original_problems(manifest: Manifest, originals: dict[str, np.ndarray]) -> list[str]:
    """Why originals differ from the publisher's: another size than its decoded image, or a PSNR-RGB
    more than 0.01 dB from the published table (at any rate with a published PSNR)."""
    problems = []
    for name in sorted(originals):
        rgb = originals[name]
        for e in (x for x in manifest.entries if x.image == name):
            width, height = image_size(e.decoded)
            if (rgb.shape[0], rgb.shape[1]) != (height, width):
                problems.append(f"{name} is {rgb.shape[1]}x{rgb.shape[0]}, the publisher's decoded image "
                                f"{e.decoded.name} is {width}x{height}")
                break
            if math.isnan(e.psnr_rgb):
                continue
            measured = psnr_rgb(rgb, read_rgb(e.decoded))
            if not abs(measured - e.psnr_rgb) <= PSNR_TOLERANCE_DB:
                problems.append(f"{name}: PSNR-RGB of {e.decoded.name} against this original is {measured:.4f} dB, "
                                f"the publisher's table says {e.psnr_rgb:.4f} dB (more than {PSNR_TOLERANCE_DB} dB "
                                "off): not the publisher's original")
                break
    return problems


@dataclass(frozen=True)
class Check:
    """A measured row against the publisher's value."""

    codec: str
    image: str
    rate: float
    bpp: float
    published_bpp: float
    psnr: float
    published_psnr: float

    @property
    def d_bpp(self) -> float:
        return self.bpp - self.published_bpp

    @property
    def d_psnr(self) -> float:
        return self.psnr - self.published_psnr

    @property
    def ok(self) -> bool:
        bpp_ok = math.isnan(self.published_bpp) or abs(self.d_bpp) < BPP_TOLERANCE
        psnr_ok = math.isnan(self.published_psnr) or abs(self.d_psnr) < PSNR_TOLERANCE_DB
        return bpp_ok and psnr_ok


def compare_rows(codec: str, manifest: Manifest, rows: list[dict]) -> tuple[list[Check], list[str]]:
    """Measured rows (``image``, ``quality``, ``bpp``, ``psnr-rgb``) against the manifest's published values;
    also the published entries of the measured images that have no measured row."""
    checks, measured = [], set()
    for row in rows:
        e = manifest.by_key.get((row["image"], float(row["quality"])))
        if e is None:
            continue
        measured.add((e.image, e.rate))
        checks.append(Check(codec, e.image, e.rate, float(row["bpp"]), e.bpp, float(row.get("psnr-rgb", math.nan)),
                            e.psnr_rgb))
    images = {row["image"] for row in rows}
    unmeasured = [f"{e.image} at rate {e.rate:g}" for e in manifest.entries
                  if e.image in images and (e.image, e.rate) not in measured]
    return checks, unmeasured


# --- making a manifest ----------------------------------------------------------------------------
def write_manifest(entries: list[Entry], folder: Path, header: dict[str, str]) -> str:
    """Manifest text for ``entries`` (paths written relative to ``folder``)."""
    lines = [f"# {k}: {v}" for k, v in header.items()]
    lines.append("\t".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS))
    for e in entries:
        lines.append("\t".join([e.image, repr(e.rate), e.bitstream.relative_to(folder).as_posix(),
                                e.decoded.relative_to(folder).as_posix(),
                                "" if math.isnan(e.bpp) else repr(e.bpp),
                                "" if math.isnan(e.psnr_rgb) else repr(e.psnr_rgb),
                                e.bitstream_sha256, e.decoded_sha256]))
    return "\n".join(lines) + "\n"


def lambda_token(rate: float) -> str:
    """Cool-chic's file-name token of a λ: the decimal without its point (0.0001 -> ``00001``)."""
    return format(rate, "f").rstrip("0").replace(".", "")


def coolchic_manifest(folder: Path, header: dict[str, str]) -> str:
    """The manifest of a Cool-chic results folder from its ``published.tsv`` (``seq_name``, ``lmbda``,
    ``rate_bpp``, ``psnr_db``): ``bitstreams/<seq>-lmbda-<token>.cool``, ``decoded/<same>.png``."""
    entries = []
    with open(folder / "published.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            stem = f"{row['seq_name']}-lmbda-{lambda_token(float(row['lmbda']))}"
            bitstream, decoded = folder / "bitstreams" / f"{stem}.cool", folder / "decoded" / f"{stem}.png"
            entries.append(Entry(row["seq_name"], float(row["lmbda"]), bitstream, decoded, float(row["rate_bpp"]),
                                 float(row["psnr_db"]), file_digest(bitstream), file_digest(decoded)))
    return write_manifest(entries, folder, header)
