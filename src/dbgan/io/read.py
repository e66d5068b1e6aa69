"""Reading images: header probing, truncation checks, decoding, orientation, channels."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dbgan.constants import LUMA
from dbgan.io.files import _GREY_MODES, _JPEG_DAMAGE, _ORIENTATION_TAG, _PIL_LOCK, _STDERR_LOCK, DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageInfo, ImageReadError, PathLike, SELF_ORIENTING_FORMATS


# --------------------------------------------------------------------------- reading


def open_with_pillow(path: PathLike) -> Image.Image:
    """Open an image file with Pillow: the one place in dbgan that does (header probing,
    metadata, and the fallback decoder all go through here).

    Pillow reads only the header until the pixels are asked for (``im.load()``, ``convert``);
    use the result as a context manager. Pillow's process-wide decompression-bomb limit is
    off while the file is opened (under a lock): the callers apply dbgan's own limit, whose
    error names the dbgan setting. Warnings about header oddities are silenced.

    Raises:
        Pillow's errors: ``UnidentifiedImageError`` (not an image), ``OSError``, ...
    """
    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # our own check names the dbgan setting
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _open_header(path: Path, max_pixels: int) -> tuple[int, int, str, int, Optional[str]]:
    """(width, height, mode, EXIF orientation, format) from the file header via Pillow."""
    try:
        im = open_with_pillow(path)
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not a readable image (unrecognised or damaged header); "
            f"supported formats: {', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image header ({exc})") from None
    with im:
        width, height = im.size
        mode, fmt = im.mode, im.format
        if max_pixels > 0 and width * height > max_pixels:
            raise ImageReadError(
                f"{path}: {width}x{height} = {width * height} pixels exceeds the "
                f"decompression-bomb limit of {max_pixels} pixels; if the file is trusted, "
                f"raise the limit with data.max_image_pixels (config) or --max-pixels"
            )
        orientation = 1
        try:
            with warnings.catch_warnings():  # "Corrupt EXIF data": not a reason to reject the pixels
                warnings.simplefilter("ignore")
                orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
        except Exception:  # broken EXIF is not a reason to reject the pixels
            orientation = 1
    return width, height, mode, orientation, fmt


def probe_size(path: PathLike) -> Optional[tuple[int, int]]:
    """``(height, width)`` from the file header (after the EXIF orientation), or ``None``
    when Pillow cannot tell (unknown format, damaged header): the caller then decodes.

    EXIF orientations 5-8 (rotated by 90 degrees) swap the two, as :func:`read_image`
    applies the orientation. No decompression-bomb limit: nothing is decoded.
    """
    try:
        width, height, _, orientation, fmt = _open_header(Path(path), 0)
    except Exception:  # noqa: BLE001 - unknown format, truncated header: decide by decoding
        return None
    if fmt in SELF_ORIENTING_FORMATS:  # the decoder orients these itself: size already oriented
        orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return int(height), int(width)


def looks_complete(path: PathLike) -> bool:
    """Cheap test (two small reads) that a PNG or JPEG file was not cut short.

    A truncated file keeps a valid header, so the header probe alone would let it through
    and training would stop on it hours later. PNG files end with an ``IEND`` chunk and
    JPEG files with an end-of-image marker (``FF D9``), possibly followed by a little
    trailing data; when the tail lacks them the caller decodes the file to decide (the
    decoder raises :class:`ImageReadError` naming the file if it is damaged).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = fh.seek(0, 2)
            fh.seek(max(0, size - 4096))
            tail = fh.read()
    except OSError:
        return False
    if head.startswith(b"\x89PNG"):
        return b"IEND" in tail
    if head.startswith(b"\xff\xd8"):
        return b"\xff\xd9" in tail
    return True


# a JPEG marker inside entropy-coded data: 0xFF followed by neither a stuffed 0x00
# nor a restart marker (RST0..7), nor another fill 0xFF
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_complete(data: bytes) -> bool:
    """Walk the JPEG segments up to the end-of-image marker; False if the data runs out first.

    Anything after the main image's EOI (thumbnails are inside APP1, but "motion
    photos" and maker trailers append whole files) is ignored.
    """
    n = len(data)
    if data[:2] != b"\xff\xd8":
        return True  # not our business: the decoder will judge
    pos = 2
    while pos < n:
        if data[pos] != 0xFF:  # garbage between segments (tolerated by libjpeg): resync
            nxt = data.find(b"\xff", pos)
            if nxt < 0:
                return False
            pos = nxt
            continue
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= n:
            return False
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            return True
        if 0xD0 <= marker <= 0xD7 or marker in (0x01, 0xD8):  # standalone markers
            pos += 2
            continue
        if pos + 4 > n:
            return False
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan: skip the entropy-coded data
            m = _JPEG_MARKER.search(data, min(pos, n))
            if m is None:
                return False
            pos = m.start()
    return False


def _png_complete(data: bytes) -> bool:
    """Walk the PNG chunks up to ``IEND``; False if the data runs out first."""
    n = len(data)
    pos = 8  # signature
    while pos + 8 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos += 12 + length  # length, type, data, CRC
    return False


def _check_complete(path: Path, data: bytes, fmt: Optional[str]) -> None:
    """Catch truncation that decoders may paper over (grey-filled JPEG rows)."""
    if fmt == "JPEG" and not _jpeg_complete(data):
        raise ImageReadError(
            f"{path}: JPEG is truncated (the data ends before the end-of-image marker); "
            f"re-download or re-export the file, or use data.skip_bad"
        )
    if fmt == "PNG" and not _png_complete(data):
        raise ImageReadError(
            f"{path}: PNG is truncated (the data ends before the IEND chunk); re-download or "
            f"re-export the file, or use data.skip_bad"
        )


def _imdecode_jpeg_checked(path: Path, data: bytes) -> Optional[np.ndarray]:
    """``cv2.imdecode`` of a JPEG with the C library's stderr captured: libjpeg's "Corrupt JPEG
    data" warnings (damage inside the file, decoded as garbage) become an :class:`ImageReadError`
    naming the file; any other text captured is passed on to stderr."""
    buf = np.frombuffer(data, np.uint8)
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to capture: decode unchecked
            return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        with tempfile.TemporaryFile() as sink:
            try:
                os.dup2(sink.fileno(), 2)
                arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
    damage = [line.strip() for line in text.splitlines() if any(k in line for k in _JPEG_DAMAGE)]
    rest = "".join(line + "\n" for line in text.splitlines() if not any(k in line for k in _JPEG_DAMAGE))
    if rest:
        os.write(2, rest.encode())
    if damage:
        raise ImageReadError(
            f"{path}: JPEG data is damaged (libjpeg: {damage[0][:120]}); "
            f"re-download or re-export the file, or use data.skip_bad"
        )
    return arr


def _decode_with_pillow(path: Path, reason: str) -> np.ndarray:
    """Fallback decoder; returns H x W (grey) or H x W x 3/4 in BGR(A) order like OpenCV.

    A warning while decoding (a damaged stream that Pillow papers over) is an error.
    """
    try:
        im = open_with_pillow(path)  # header oddities are not errors (as in _open_header)
        with warnings.catch_warnings(), im:
            warnings.simplefilter("error")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit was checked
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                arr = np.asarray(im).astype(np.uint16)
            elif im.mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
                if im.mode in ("1", "L"):
                    arr = np.asarray(im.convert("L"))
                elif im.mode in ("LA", "RGBA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    arr = np.asarray(im.convert("RGBA"))[..., [2, 1, 0, 3]]
                else:
                    arr = np.asarray(im.convert("RGB"))[..., ::-1]
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            elif im.mode == "I":
                arr = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
            else:
                raise ImageReadError(f"{path}: unsupported image mode {im.mode!r}")
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot decode image ({reason}; {exc})") from None
    return np.ascontiguousarray(arr)


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to an H x W (x C) array (same result as PIL's exif_transpose)."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, k=-1)
    elif orientation == 7:
        arr = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        arr = np.rot90(arr, k=1)
    return np.ascontiguousarray(arr)


def _file_channels(mode: str, arr: np.ndarray) -> int:
    if mode in ("LA", "La", "PA"):
        return 2 if mode != "PA" else 4
    if mode in _GREY_MODES:
        return 1
    if mode in ("RGBA", "RGBa"):
        return 4
    if arr.ndim == 2:
        return 1
    return 4 if arr.shape[2] == 4 else 3


def read_image_with_info(
    path: PathLike,
    channels: Optional[int] = None,
    max_pixels: Optional[int] = None,
) -> tuple[torch.Tensor, ImageInfo]:
    """Read an image file as a ``float32`` tensor ``C x H x W`` in ``[0, 1]`` plus what the file holds.

    Args:
        path: image file (PNG, JPEG, TIFF, BMP, WebP).
        channels: None keeps grey as 1 channel and colour as 3; 1 converts colour to
            grey (ITU-R BT.601 luma); 3 repeats grey. Alpha is always dropped.
        max_pixels: refuse images with more pixels than this (decompression bombs);
            None uses :data:`DEFAULT_MAX_PIXELS`; 0 or less disables the check.

    Returns:
        (tensor, :class:`ImageInfo` of the file: original channels and bit depth).

    Raises:
        ImageReadError: missing, unreadable, damaged, truncated or too large file.
        ValueError: ``channels`` is not None, 1 or 3.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, expected an image file")
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)

    width, height, mode, orientation, fmt = _open_header(path, limit)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    _check_complete(path, data, fmt)

    if fmt in SELF_ORIENTING_FORMATS:
        orientation = 1  # the decoders apply it, and the header size is already the oriented one
    arr: Optional[np.ndarray] = None
    reason = "OpenCV could not decode it"
    try:
        if fmt == "JPEG":
            arr = _imdecode_jpeg_checked(path, data)
        else:
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # pragma: no cover - depends on codec builds
        reason = f"OpenCV: {str(exc).strip().splitlines()[-1]}"
        arr = None
    if arr is None or arr.size == 0:
        arr = _decode_with_pillow(path, reason)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.shape[:2] != (height, width):
        raise ImageReadError(
            f"{path}: decoded size {arr.shape[1]}x{arr.shape[0]} does not match the header "
            f"({width}x{height}); the file is probably damaged"
        )

    file_channels = _file_channels(mode, arr)
    if arr.dtype == np.uint8:
        bit_depth, scale = 8, 255.0
    elif arr.dtype == np.uint16:
        bit_depth, scale = 16, 65535.0
    elif arr.dtype in (np.float32, np.float64):
        bit_depth, scale = 32, 1.0
    else:
        raise ImageReadError(f"{path}: unsupported sample type {arr.dtype} (use 8- or 16-bit images)")

    # to RGB / grey, alpha dropped (OpenCV gives BGR(A))
    if arr.ndim == 3:
        if mode in _GREY_MODES or mode in ("LA", "La"):
            arr = arr[..., 0]
        elif arr.shape[2] == 2:  # grey + alpha
            arr = arr[..., 0]
        elif arr.shape[2] >= 3:
            arr = arr[..., 2::-1]
        else:  # pragma: no cover
            raise ImageReadError(f"{path}: unsupported channel count {arr.shape[2]}")
    arr = _apply_orientation(arr, orientation)

    img = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32))
    if scale != 1.0:
        img = img / scale
    else:
        img = torch.nan_to_num(img).clamp_(0.0, 1.0)
    img = img.unsqueeze(0) if img.ndim == 2 else img.permute(2, 0, 1).contiguous()
    img = convert_channels(img, channels)
    info = ImageInfo(
        path=path, height=img.shape[1], width=img.shape[2], channels=file_channels, bit_depth=bit_depth
    )
    return img, info


def read_image(
    path: PathLike,
    channels: Optional[int] = None,
    max_pixels: Optional[int] = None,
) -> torch.Tensor:
    """Read an image as ``float32`` ``C x H x W`` in ``[0, 1]``; see :func:`read_image_with_info`."""
    return read_image_with_info(path, channels=channels, max_pixels=max_pixels)[0]


def convert_channels(img: torch.Tensor, channels: Optional[int]) -> torch.Tensor:
    """Convert ``C x H x W`` (C = 1 or 3) to ``channels`` (None: unchanged; 1: BT.601 luma; 3: repeat grey)."""
    if channels is None or img.shape[0] == channels:
        return img
    if channels == 1:
        w = torch.tensor(LUMA, dtype=img.dtype, device=img.device).view(3, 1, 1)
        return (img * w).sum(dim=0, keepdim=True)
    if channels == 3:
        return img.expand(3, -1, -1).contiguous()
    raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
