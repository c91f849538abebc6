"""The run's input images: decoded once to 8-bit RGB ``.npy`` files in a temporary folder that the run
holds locked (``flock``) for as long as it runs, so folders of killed runs are found and removed;
and each codec's check of the originals before any job runs."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..adapters import AdapterError, CodecConfig
from ..datasets import Dataset
from ..datasets.images import ImageError, load_image, pixel_sha256
from ..errors import BenchError
from ..model import BYTES_PER_PIXEL, ImageRecord, ImageRef, Log

LARGE_IMAGE_PIXELS = 40_000_000
TMP_PREFIX = "bench-images-"
IMAGES_LOCK = ".lock"  # held (flock) by the run that owns an image folder, for as long as it runs
UNLOCKED_GRACE_S = 60.0  # a folder without its lock file is another run's only this long after its creation


def _owned_by_a_live_run(folder: Path) -> bool:
    """Whether a run still holds the folder's lock: works across PID namespaces, unlike a pid check."""
    try:
        fd = os.open(folder / IMAGES_LOCK, os.O_RDWR)
    except FileNotFoundError:
        try:
            return time.time() - folder.stat().st_mtime < UNLOCKED_GRACE_S
        except OSError:
            return False
    except OSError:
        return True  # not ours to judge (permissions)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def remove_stale_temp_dirs() -> None:
    """Remove image folders left by runs that were killed: those whose lock no process holds."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        if folder.is_dir() and not _owned_by_a_live_run(folder):
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def image_folder() -> Iterator[Path]:
    """A temporary folder for the workers' image files, locked by this run, removed at the end."""
    remove_stale_temp_dirs()
    folder = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
    lock = os.open(folder / IMAGES_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)


def prepare_images(dataset: Dataset, folder: Path, log: Log) -> tuple[list[ImageRef], list[ImageRecord], list[str]]:
    """Decode every image once to 8-bit RGB in ``folder``; unreadable files are named and skipped."""
    refs, records, skipped = [], [], []
    for source in dataset.sources:
        try:
            image = load_image(source.path, source.name)
        except ImageError as exc:
            skipped.append(str(exc))
            log(f"warning: skipping image: {exc}")
            continue
        for note in image.conversions:
            log(f"warning: {source.path}: {note}")
        digest = pixel_sha256(image.rgb)
        npy = folder / f"{digest}.npy"
        np.save(npy, image.rgb)
        refs.append(ImageRef(image.name, digest, image.width, image.height, str(npy)))
        records.append(ImageRecord(image.name, digest, image.width, image.height, str(source.path),
                                   tuple(image.conversions)))
        if image.pixels >= LARGE_IMAGE_PIXELS:
            per_job = image.pixels * BYTES_PER_PIXEL["conventional"] / 2**30
            log(f"warning: {source.path} is {image.pixels / 1e6:.0f} MP: about {per_job:.1f} GB per job or more; "
                "jobs run only as many at a time as fit in available memory")
    return refs, records, skipped



def check_images(configs: list[CodecConfig], images: list[ImageRef]) -> None:
    """Each codec's check of the run's originals (adapters with ``check_images``), before any job runs."""
    checking = [c for c in configs if c.adapter.check_images is not None]
    if not checking:
        return
    originals = {ref.name: np.load(ref.npy, mmap_mode="r") for ref in images}  # read-only, read on demand
    for config in checking:
        try:
            config.check_images(originals)
        except BenchError as exc:
            raise AdapterError(f"{config.label}: {exc}") from None
        except Exception as exc:
            raise AdapterError(f"{config.label}: checking the originals failed: {type(exc).__name__}: {exc}") from None
