"""Reading images as 8-bit RGB numpy arrays, with clear conversions and errors."""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp", ".bmp")


class ImageError(Exception):
    """An image file cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class LoadedImage:
    """An input image as the codecs see it: uint8 H x W x 3, plus what was converted."""

    name: str
    path: Path
    rgb: np.ndarray
    conversions: tuple[str, ...]

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def pixels(self) -> int:
        return self.width * self.height


def pixel_sha256(rgb: np.ndarray) -> str:
    """SHA-256 of ``b"<H>x<W>x3\\n"`` + the uint8 RGB samples: identifies an image by its pixels."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    header = f"{rgb.shape[0]}x{rgb.shape[1]}x3\n".encode()
    return hashlib.sha256(header + rgb.tobytes()).hexdigest()


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return None


def _sixteen_bit_to_8(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 with rounding (x * 255 / 65535)."""
    return np.clip(np.rint(values.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def to_rgb8(img: Image.Image, source_bits: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Convert a decoded Pillow image to uint8 RGB; returns the array and the conversions made."""
    mode = img.mode
    if mode.startswith("I"):  # 16/32-bit integer grayscale
        gray = np.asarray(img)
        if source_bits == 8 or (mode == "I" and gray.max(initial=0) <= 255):
            return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2), ["grayscale converted to RGB"]
        gray8 = _sixteen_bit_to_8(gray)
        return np.repeat(gray8[..., None], 3, axis=2), ["16-bit grayscale converted to 8-bit RGB"]
    if mode == "F":
        raise ImageError("floating-point images are not supported")
    notes = ["16-bit samples reduced to 8 bits"] if source_bits == 16 else []
    if mode in ("L", "1"):
        notes.append("grayscale converted to RGB")
    elif mode in ("LA", "La"):
        notes.append("grayscale converted to RGB, alpha channel dropped")
    elif mode in ("P", "PA"):
        notes.append("palette image converted to RGB")
    elif mode in ("RGBA", "RGBa"):
        notes.append("alpha channel dropped")
    elif mode != "RGB":
        notes.append(f"{mode} image converted to RGB")
    rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb, dtype=np.uint8), notes


# Pillow's decompression-bomb error limit (2x its warning limit, 179 MP); checked here, from the header,
# with a message that says what to do, so Pillow's own check is turned off.
DEFAULT_MAX_PIXELS = 2 * int(Image.MAX_IMAGE_PIXELS or 89_478_485)
Image.MAX_IMAGE_PIXELS = None


def max_pixels() -> int:
    """Largest image accepted (pixels): ``$BENCH_MAX_PIXELS``, else Pillow's decompression-bomb limit."""
    env = os.environ.get("BENCH_MAX_PIXELS")
    return int(float(env)) if env else DEFAULT_MAX_PIXELS


def _read_16bit_rgb(path: Path, fmt: str) -> np.ndarray:
    """The full 16-bit samples of an RGB PNG or TIFF (Pillow keeps only the high bytes)."""
    if fmt == "TIFF":
        import tifffile

        return tifffile.imread(path)
    import imagecodecs

    return imagecodecs.png_decode(path.read_bytes())


def _orientation_note(img: Image.Image) -> list[str]:
    orientation = img.getexif().get(0x0112, 1)
    if orientation in (None, 1):
        return []
    return [f"EXIF orientation {orientation} ignored: pixels are used as stored (as other benchmarks do)"]


def load_image(path: str | Path, name: str | None = None) -> LoadedImage:
    """Read an image file as 8-bit RGB; raises ImageError naming the file on failure.

    Images above ``max_pixels()`` (decompression bombs, or genuinely huge images) are refused
    from their header, before any pixel is decoded.
    """
    path = Path(path)
    name = name or path.stem
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            kind = "symbolic link loop" if exc.errno == errno.ELOOP else "dangling symbolic link"
            raise ImageError(f"{path}: {kind} (to {os.readlink(path)})") from None
    try:
        bits = _png_bit_depth(path) if path.suffix.lower() == ".png" else None
        limit = max_pixels()
        with Image.open(path) as img:
            width, height = img.size
            if limit and width * height > limit:
                raise ImageError(f"header claims {width}x{height} = {width * height / 1e6:.0f} MP, above the "
                                 f"limit of {limit / 1e6:.0f} MP (a decompression bomb, or set "
                                 "BENCH_MAX_PIXELS to accept it)")
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise ImageError(f"animated {img.format} image ({frames} frames): refused, as which frame to "
                                 "measure is not defined (save the frame you want as a still image)")
            img.load()
            if bits is None and img.format == "TIFF":
                bps = img.tag_v2.get(258)
                bits = max(bps) if isinstance(bps, tuple) else bps
            notes = _orientation_note(img)
            if bits == 16 and img.mode in ("RGB", "RGBA"):  # rounded like 16-bit grey, not truncated
                rgb = _sixteen_bit_to_8(_read_16bit_rgb(path, img.format)[..., :3])
                more = ["16-bit samples reduced to 8 bits"] + (["alpha channel dropped"] if img.mode == "RGBA" else [])
            else:
                rgb, more = to_rgb8(img, bits)
            notes += more
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: {exc}") from None
    except (OSError, SyntaxError, ValueError, RuntimeError) as exc:
        raise ImageError(f"{path}: cannot decode ({exc})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"{path}: unexpected decoded shape {rgb.shape}")
    return LoadedImage(name=name, path=path, rgb=rgb, conversions=tuple(notes))
