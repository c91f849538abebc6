"""Published bitstreams as a codec: ``published:dir=PATH`` (see docs/published-bitstreams.md).

A folder of another codec's real bitstreams, the images its own decoder made from them and a
manifest (``bench.datasets.published``) is measured like a codec that ran here, except that nothing is
encoded here: ``encode`` returns the published bitstream of the image (matched by name) at the
rate asked for, so bpp comes from its bytes. Quality = the publisher's rate parameter, as a
number (Cool-chic: λ, larger = fewer bits). The harness computes every metric on the decoded
image against the run's own originals, refused first when they are not the publisher's (another
size, or PSNR-RGB more than 0.01 dB from the published table).

Decoding: with the publisher's decoder available here (``decoder:`` in the manifest: ``coolchic``
once ``make coolchic`` has built Cool-chic's decoder; ``pillow`` for formats Pillow reads), each
bitstream is decoded from its bytes inside the harness's timed decode, and the result must be
pixel-identical to the publisher's decoded image (else the job fails). Otherwise the supplied
decoded image of those bytes (found by their SHA-256) is returned and decode time is not
measured. Encode time is never measured. Option ``decode=supplied`` forces the supplied images,
``decode=here`` requires the decoder.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bench.adapters import Option, tools
from bench.datasets.published import (
    Entry,
    Manifest,
    PublishedError,
    check_files,
    find_manifest,
    image_size,
    missing_images,
    original_problems,
    read_rgb,
    short_list,
)

NAME = "published"
FAMILY = "learned"  # default; a manifest's "# family:" line sets it
VERSION = "published bitstreams"  # setup() names the manifest and how the bitstreams are decoded
DESCRIPTION = ("Published bitstreams of another codec (a folder with a manifest): bpp from the real bitstream "
               "bytes, metrics on the publisher's decoder's images; decoded here when its decoder is built")
QUALITIES = [0]  # setup() returns the manifest's rates
DECODE_MODES = ("auto", "here", "supplied")
OPTIONS = {
    "dir": Option("", help="the published folder (bitstreams, decoded images, manifest)", key=False),
    "name": Option("", help="label of the rows (default: the folder's name)", key=False),
    "manifest": Option("", help="manifest file (default: <dir>/manifest.tsv, else the one the project ships)",
                       key=False),
    "decode": Option("auto", choices=DECODE_MODES, key=False,
                     help="here = with the publisher's decoder (must be built), supplied = the published decoded "
                          "images, auto = here when the decoder is available"),
    "decoder": Option("", help="resolved by setup: the decoder used here (empty: supplied images)", key=False),
}
SUPPLIED = "supplied images (times not measured)"
CODE_FILES = ["bench.datasets.published"]


# --- decoders ----------------------------------------------------------------------------------
def _has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def coolchic_extension() -> Path | None:
    """Cool-chic's built decoder extension (AVX2 when this CPU has it, else the portable one), or None."""
    folder = tools.built("coolchic")
    if folder is None:
        return None
    for flavour in (["avx2"] if _has_avx2() else []) + ["cpu"]:
        found = sorted((folder / "bin").glob(f"ccdecapi_{flavour}.*.so"))
        if found:
            return found[0]
    return None


@functools.lru_cache(maxsize=4)
def _load_extension(path: str) -> Callable[..., object]:
    """``cc_decode_<flavour>`` of a ccdecapi extension module file."""
    module_name = Path(path).name.split(".")[0]  # ccdecapi_avx2
    loader = importlib.machinery.ExtensionFileLoader(module_name, path)
    spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return getattr(module, "cc_decode_" + module_name.rsplit("_", 1)[1])


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """File descriptor 1 to /dev/null meanwhile (C and C++ output included)."""
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def decode_coolchic(data: bytes, extension: str) -> np.ndarray:
    """Cool-chic's own C++ decoder on the bytes (through files, as its API takes paths): 8-bit RGB."""
    decode = _load_extension(extension)
    with tempfile.TemporaryDirectory(prefix="bench-coolchic-") as tmp:
        bitstream, ppm = Path(tmp) / "in.cool", Path(tmp) / "out.ppm"
        bitstream.write_bytes(data)
        with _stdout_silenced():  # it prints "<path> created" even when quiet
            decode(str(bitstream), str(ppm), 0, 0, 0)  # bit depth and chroma from the header
        if not ppm.is_file():
            raise RuntimeError("Cool-chic's decoder wrote no image")
        return read_rgb(ppm)


def decode_pillow(data: bytes) -> np.ndarray:
    """Pillow's decoder (JPEG, WebP, ... bitstreams) as 8-bit RGB."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def available_decoder(kind: str) -> tuple[str, str]:
    """(decoder option value, description) of a manifest's ``decoder:`` when usable here, else ("", why not)."""
    if kind == "coolchic":
        found = coolchic_extension()
        if found is None:
            return "", "Cool-chic's decoder is not built (make coolchic)"
        return str(found), f"Cool-chic's decoder {found.name.split('.')[0]} (built in {found.parent.parent.name})"
    if kind == "pillow":
        import PIL

        return "pillow", f"Pillow {PIL.__version__}"
    return "", f"no decoder named {kind!r} is known here" if kind else "the manifest names no decoder"


def run_decoder(decoder: str, data: bytes) -> np.ndarray:
    if decoder == "pillow":
        return decode_pillow(data)
    return decode_coolchic(data, decoder)


def decoder_identity(decoder: str) -> str:
    """What enters the version for a decoder: its name and, for a built extension, its content hash."""
    if decoder == "pillow":
        import PIL

        return f"Pillow {PIL.__version__}"
    digest = hashlib.sha256(Path(decoder).read_bytes()).hexdigest()[:12]
    return f"{Path(decoder).name.split('.')[0]} sha256 {digest}"


# --- the manifest, once per process ---------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _manifest(folder: str, manifest: str) -> Manifest:
    return find_manifest(Path(folder), manifest)


@functools.lru_cache(maxsize=8)
def _by_sha256(folder: str, manifest: str) -> dict[str, Entry]:
    """Bitstream SHA-256 -> its entry (checksums from the manifest, else hashed once)."""
    m = _manifest(folder, manifest)
    return {e.bitstream_sha256 or hashlib.sha256(e.bitstream.read_bytes()).hexdigest(): e for e in m.entries}


def entry_of(data: bytes, folder: str, manifest: str) -> Entry:
    found = _by_sha256(folder, manifest).get(hashlib.sha256(data).hexdigest())
    if found is None:
        raise PublishedError(f"these {len(data)} bytes are none of the published bitstreams of {folder}")
    return found


# --- the adapter ---------------------------------------------------------------------------------
def setup(dir: str = "", name: str = "", manifest: str = "", decode: str = "auto", decoder: str = "") -> dict:
    """Read and check the folder's manifest (every file present, checksums equal); choose how to decode."""
    if not dir:
        raise PublishedError("give the published folder: published:dir=PATH (see docs/published-bitstreams.md)")
    folder = Path(dir).expanduser().resolve()
    m = find_manifest(folder, manifest)
    problems = check_files(m)
    if problems:
        raise PublishedError(f"{len(problems)} file(s) of {m.path} do not match {folder}: "
                             f"{short_list(problems, 3)}")
    label = name or folder.name
    found, how = available_decoder(m.header.get("decoder", ""))
    if decode == "here" and not found:
        raise PublishedError(f"decode=here, but {how}")
    here = bool(found) and decode != "supplied"
    codec = m.header.get("codec", label)
    decoded = f"here ({how}; decode time measured)" if here else SUPPLIED
    info = {"source": "published bitstreams", "decoded": decoded, "folder": str(folder), "manifest": str(m.path),
            "bitstreams": len(m.entries), "images": len(m.images)}
    info.update({k: v for k, v in m.header.items() if k in ("codec", "publisher", "licence", "rate")})
    if not here and decode != "supplied":
        info["decoder"] = how
    decoding = f"decoded here by {decoder_identity(found)}" if here else "supplied decoded images"
    return {
        "version": f"{label}: {codec} published bitstreams, manifest sha256 {m.sha256[:12]}, {decoding}",
        "qualities": m.rates,
        "family": m.header.get("family", FAMILY),
        "info": info,
        "options": {"dir": str(folder), "name": label, "manifest": str(m.path),
                    "decode": "here" if here else "supplied", "decoder": found if here else ""},
    }


def encode(rgb: np.ndarray, quality: float, image_name: str, dir: str = "", name: str = "", manifest: str = "",
           decode: str = "auto", decoder: str = "") -> bytes:
    """The published bitstream of ``image_name`` at rate ``quality`` (nothing is encoded here)."""
    e = _manifest(dir, manifest).entry(image_name, quality)
    width, height = image_size(e.decoded)
    if rgb.shape[:2] != (height, width):
        raise PublishedError(f"{image_name} is {rgb.shape[1]}x{rgb.shape[0]}, the publisher's decoded image is "
                             f"{width}x{height}")
    return e.bitstream.read_bytes()


def decode(data: bytes, dir: str = "", name: str = "", manifest: str = "", decode: str = "auto",
           decoder: str = "") -> np.ndarray:
    """The publisher's decoder run here on the bytes, else the supplied decoded image of these bytes."""
    if decode == "here" and decoder:
        return run_decoder(decoder, data)
    return read_rgb(entry_of(data, dir, manifest).decoded)


def check_decoded(data: bytes, rec: np.ndarray, dir: str = "", name: str = "", manifest: str = "",
                  decode: str = "auto", decoder: str = "") -> None:
    """Decoded here: the image must be pixel-identical to the publisher's decoded image of the same bytes."""
    if decode != "here":
        return
    e = entry_of(data, dir, manifest)
    supplied = read_rgb(e.decoded)
    if supplied.shape != rec.shape:
        raise PublishedError(f"decoding {e.bitstream.name} here gave {rec.shape[1]}x{rec.shape[0]}, the publisher's "
                             f"{e.decoded.name} is {supplied.shape[1]}x{supplied.shape[0]}")
    differ = rec != supplied
    if differ.any():
        worst = int(np.abs(rec.astype(np.int16) - supplied).max())
        raise PublishedError(f"decoding {e.bitstream.name} here differs from the publisher's decoded image "
                             f"{e.decoded.name}: {int(differ.sum())} of {differ.size} samples, max |diff| {worst}")


def untimed(dir: str = "", name: str = "", manifest: str = "", decode: str = "auto",
            decoder: str = "") -> tuple[str, ...]:
    """Encode time is never measured (nothing is encoded); decode time only when decoding here."""
    return ("encode",) if decode == "here" and decoder else ("encode", "decode")


def check_images(images: dict[str, np.ndarray], dir: str = "", name: str = "", manifest: str = "",
                 decode: str = "auto", decoder: str = "") -> None:
    """Refuse a run whose images the folder does not cover, or whose originals are not the publisher's."""
    m = _manifest(dir, manifest)
    missing = missing_images(m, list(images))
    if missing:
        raise PublishedError(f"{dir} has no bitstreams for {len(missing)} of the run's {len(images)} images: "
                             f"{short_list(missing)} (it covers {len(m.images)}: {short_list(m.images, 6)})")
    problems = original_problems(m, images)
    if problems:
        raise PublishedError(f"{len(problems)} original(s) differ from the publisher's: {'; '.join(problems[:5])}"
                             + (f"; and {len(problems) - 5} more" if len(problems) > 5 else ""))
