"""Datasets: manifests in ``datasets/``, verified downloads to a cache, folders, and ``sample``.

The datasets layer; its modules: this one, ``images`` (loading and checking image files, pixel hashes)
and ``published`` (manifests of published bitstreams).

* A manifest (``datasets/<name>.json`` of the checkout, installed as ``bench/manifests/``) lists
  either single files (``files``: path, url, and ``pixel_sha256`` or ``sha256``) or one archive
  (``archive``: url, optional md5, ``member_prefix``) with an ``image_count``.
* Files live in ``$BENCH_DATA/<name>/`` (default ``datasets/cache/<name>/`` in a checkout,
  ``$XDG_CACHE_HOME/codec-bench/datasets/<name>/`` when installed); missing files are downloaded
  and verified: by decoded-pixel hash (``pixel_sha256``: Kodak, since lossless re-encodes of its
  PNGs circulate) or by file hash (``sha256``: JPEGs, whose bytes are their identity).
* ``sample`` needs no download: colour photos shipped inside scikit-image's package data.
* Any other value is a folder, searched recursively for images.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..code_identity import file_digest
from ..errors import BenchError, did_you_mean
from .images import IMAGE_EXTENSIONS, ImageError, load_image, pixel_sha256

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # bench/
INSTALLED_MANIFEST_DIR = PACKAGE_DIR / "manifests"  # inside an installed package
INSTALLED = INSTALLED_MANIFEST_DIR.is_dir()
MANIFEST_DIR = INSTALLED_MANIFEST_DIR if INSTALLED else PACKAGE_DIR.parent / "datasets"
SAMPLE_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
DOWNLOAD_TIMEOUT_S = 30.0


class DatasetError(BenchError):
    """A dataset cannot be resolved; the message says what is missing and what to do."""


@dataclass(frozen=True)
class ImageSource:
    name: str
    path: Path


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    sources: list[ImageSource]


def data_root() -> Path:
    """Where downloaded datasets live: ``$BENCH_DATA``, else ``datasets/cache`` of the checkout, else
    (installed package) ``$XDG_CACHE_HOME/codec-bench/datasets`` (default ``~/.cache/...``)."""
    env = os.environ.get("BENCH_DATA")
    if env:
        return Path(env).expanduser()
    if not INSTALLED:
        return MANIFEST_DIR / "cache"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "codec-bench" / "datasets"


def manifest_names() -> list[str]:
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.json"))


def load_manifest(name: str) -> dict:
    path = MANIFEST_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read dataset manifest {path}: {exc}") from None


def folder_sources(folder: Path) -> list[ImageSource]:
    """Images under a folder (recursive), named by their relative path without extension."""
    paths = sorted(
        p for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink())  # broken links are kept, to be reported by name
        and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        and "__MACOSX" not in p.parts
    )
    names = unique_names([p.relative_to(folder).as_posix() for p in paths])
    return [ImageSource(name, p) for name, p in zip(names, paths, strict=True)]


def unique_names(files: list[str]) -> list[str]:
    """Image names: relative paths without extension, except where that clashes (``x.png``, ``x.jpg``,
    ``x.png.jpg``): those keep their whole relative path, which is unique."""
    names = [Path(f).with_suffix("").as_posix() for f in files]
    while True:
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        clashing = [i for i, name in enumerate(names) if seen[name] > 1 and name != files[i]]
        if not clashing:
            return names
        for i in clashing:
            names[i] = files[i]


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download ``url`` to ``dest`` atomically (via a ``.part`` file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason or exc}"


def verify_file(path: Path, entry: dict) -> str | None:
    """None if ``path`` matches its manifest entry (file ``sha256``, else decoded ``pixel_sha256``),
    else a message naming the problem."""
    if "sha256" in entry:
        expected, kind = entry["sha256"], "file bytes"
        try:
            got = file_digest(path)
        except OSError as exc:
            return f"{path}: cannot read ({exc.strerror or exc})"
    else:
        expected, kind = entry["pixel_sha256"], "decoded pixels"
        try:
            got = pixel_sha256(load_image(path).rgb)
        except ImageError as exc:
            return str(exc)
    if got != expected:
        return f"{path}: {kind} do not match the manifest (sha256 {got[:16]}..., expected {expected[:16]}...)"
    return None


def _resolve_files(manifest: dict, folder: Path, allow_download: bool) -> Dataset:
    files = manifest["files"]
    missing = [f for f in files if not (folder / f["path"]).is_file()]
    failure = None
    if missing and allow_download:
        for entry in list(missing):
            dest = folder / entry["path"]
            try:
                download(entry["url"], dest)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                failure = _describe(exc)
                break
            problem = verify_file(dest, entry)
            if problem:
                dest.unlink(missing_ok=True)
                raise DatasetError(f"downloaded file rejected: {problem}")
            missing.remove(entry)
    if missing:
        names = ", ".join(f["path"] for f in missing)
        why = f"and the download failed ({failure})" if failure else "(downloads disabled)"
        raise DatasetError(
            f"dataset '{manifest['name']}': {len(missing)} of {len(files)} files are missing in {folder} {why}.\n"
            f"Missing: {names}\n"
            f"Get them from {manifest.get('homepage') or missing[0]['url']} (e.g. {missing[0]['url']}) "
            f"and put them in {folder}/, or set BENCH_DATA to a folder that holds {manifest['name']}/."
        )
    problems = [p for f in files if (p := verify_file(folder / f["path"], f))]
    if problems:
        raise DatasetError(
            f"dataset '{manifest['name']}': {len(problems)} file(s) failed verification:\n  " + "\n  ".join(problems)
            + "\nReplace them with the original images (or delete them to re-download)."
        )
    sources = [ImageSource(Path(f["path"]).stem, folder / f["path"]) for f in files]
    return Dataset(manifest["name"], manifest.get("description", ""), sources)


def extract_images(archive: Path, prefix: str, folder: Path) -> int:
    """Extract the image members under ``prefix`` of a zip into ``folder``; returns the count."""
    count = 0
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            rel = member.filename[len(prefix):] if member.filename.startswith(prefix) else None
            if not rel or member.is_dir() or "__MACOSX" in member.filename or Path(rel).name.startswith("."):
                continue
            if Path(rel).suffix.lower() not in IMAGE_EXTENSIONS or ".." in Path(rel).parts:
                continue
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, atomic_path(dest) as tmp, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            count += 1
    return count


def _resolve_archive(manifest: dict, folder: Path, allow_download: bool) -> Dataset:
    spec, count = manifest["archive"], int(manifest["image_count"])
    sources = folder_sources(folder) if folder.is_dir() else []
    if len(sources) < count and allow_download:
        archive = folder / Path(spec["url"]).name
        try:
            download(spec["url"], archive)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise DatasetError(
                f"dataset '{manifest['name']}': {len(sources)} of {count} images in {folder} and the download "
                f"failed ({_describe(exc)}).\nDownload {spec['url']}, unzip the images of its "
                f"'{spec['member_prefix']}' folder into {folder}/, or set BENCH_DATA to a folder that holds "
                f"{manifest['name']}/."
            ) from None
        if spec.get("md5") and (got := file_digest(archive, "md5")) != spec["md5"]:
            archive.unlink(missing_ok=True)
            raise DatasetError(f"{spec['url']}: checksum mismatch (md5 {got}, expected {spec['md5']}); "
                               "download rejected")
        extract_images(archive, spec["member_prefix"], folder)
        archive.unlink(missing_ok=True)
        sources = folder_sources(folder)
    if len(sources) != count:
        raise DatasetError(
            f"dataset '{manifest['name']}': expected {count} images in {folder}, found {len(sources)}. "
            f"Unzip the '{spec['member_prefix']}' folder of {spec['url']} there."
        )
    return Dataset(manifest["name"], manifest.get("description", ""), sources)


def sample_folder() -> Path | None:
    """scikit-image's data folder, found without importing scikit-image (None if not installed)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sample_dataset() -> Dataset:
    """Colour photos shipped with scikit-image (no download)."""
    folder = sample_folder()
    if folder is None:
        raise DatasetError("the sample dataset needs scikit-image (pip install scikit-image)")
    sources = [ImageSource(Path(f).stem, folder / f) for f in SAMPLE_FILES if (folder / f).is_file()]
    if not sources:
        raise DatasetError(f"scikit-image's sample images are not installed in {folder}")
    return Dataset("sample", "Colour photos shipped with scikit-image (astronaut, chelsea, coffee, ...)", sources)


def resolve_dataset(spec: str, allow_download: bool = True) -> Dataset:
    """Resolve a dataset name (manifest or ``sample``) or a folder path to its image files."""
    if spec == "sample":
        return sample_dataset()
    if spec in manifest_names():
        manifest = load_manifest(spec)
        folder = data_root() / manifest["name"]
        if "files" in manifest:
            return _resolve_files(manifest, folder, allow_download)
        return _resolve_archive(manifest, folder, allow_download)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        sources = folder_sources(folder)
        if not sources:
            raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}")
        return Dataset(folder.resolve().name, f"images under {folder.resolve()}", sources)
    names = ["sample", *manifest_names()]
    raise DatasetError(f"unknown dataset {spec!r}: not one of {', '.join(names)}, and not a folder"
                       f"{did_you_mean(spec, names)}")


def local_status(name: str) -> str:
    """Whether a dataset is on this machine, without verifying or downloading, e.g. ``present (24 files)``."""
    if name == "sample":
        folder = sample_folder()
        count = sum((folder / f).is_file() for f in SAMPLE_FILES) if folder else 0
        return f"present ({count} images)" if count else "missing (install scikit-image)"
    manifest = load_manifest(name)
    folder = data_root() / manifest["name"]
    if "files" in manifest:
        have, total = sum((folder / f["path"]).is_file() for f in manifest["files"]), len(manifest["files"])
    else:
        have = len(folder_sources(folder)) if folder.is_dir() else 0
        total = int(manifest["image_count"])
    if have >= total:
        return f"present ({total} images in {folder})"
    return f"{'partial' if have else 'not downloaded'} ({have} of {total} images in {folder})"
