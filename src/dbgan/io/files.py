"""Image files: extensions, limits, the error type, file info and folder listing."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Union


PathLike = Union[str, Path]

#: File name endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: Extensions that can hold 16 bits per channel when writing.
_SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")

#: Decompression-bomb limit used when ``max_pixels`` is None (same as ``data.max_image_pixels``).
DEFAULT_MAX_PIXELS = 250_000_000


# EXIF tag 0x0112 (Orientation)
_ORIENTATION_TAG = 0x0112

# Pillow's own decompression-bomb guard is a process-wide setting; we replace it by
# ours (which names the dbgan setting) while a header is opened.
_PIL_LOCK = threading.Lock()

# libjpeg reports damage inside the entropy-coded data only as a warning on the C
# library's stderr and decodes garbage; these lines mean the pixels are wrong
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file", "Bogus", "Huffman", "JPEG datastream contains no image")
_STDERR_LOCK = threading.Lock()

#: Formats whose decoders (Pillow's and OpenCV's) already apply the orientation tag and
#: report the oriented size: dbgan must not rotate them a second time.
SELF_ORIENTING_FORMATS = ("TIFF",)

_GREY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S"}


class ImageReadError(ValueError):
    """An image file (or folder of images) cannot be read; the message names it and why."""


@dataclass
class ImageInfo:
    """What an image FILE holds (before any channel conversion).

    Attributes:
        path: the file.
        height, width: size after the EXIF orientation is applied.
        channels: channels stored in the file: 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha.
        bit_depth: bits per channel: 8, 16 (or 32 for float TIFF).
    """

    path: Path
    height: int
    width: int
    channels: int
    bit_depth: int


# --------------------------------------------------------------------------- listing


def is_image_file(path: PathLike) -> bool:
    """True for a non-hidden file whose name ends with one of :data:`IMAGE_EXTENSIONS`."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_images(folder: PathLike, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (optionally its subfolders), sorted by path.

    Hidden files (names starting with ``.``, such as macOS ``._photo.jpg``) are skipped.

    Raises:
        ImageReadError: the folder does not exist, is a file, or holds no image.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ImageReadError(f"{folder}: folder does not exist")
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: is a file, expected a folder of images")
    pattern = "**/*" if recursive else "*"
    files = sorted(
        p
        for p in folder.glob(pattern)
        if p.is_file()
        and is_image_file(p)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        where = " (or its subfolders)" if recursive else ""
        raise ImageReadError(
            f"{folder}: no images found{where}; expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    return files
