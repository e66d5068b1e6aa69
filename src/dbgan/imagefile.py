"""Faithful image files: TIFF stacks page by page, EXIF and ICC carried over, bit depth kept.

:mod:`dbgan.io` reads one image as a float tensor and writes one; this module
adds what a whole *file* holds around the pixels, for ``dbgan deblur`` /
``dbgan blur`` and the web app:

* :func:`read_pages`: every page of a multi-page TIFF (a microscope stack, read
  with ``tifffile``; reduced-resolution thumbnail pages are left out), or the one
  image of any other file (:func:`dbgan.io.read_image_with_info`), plus the
  file's metadata (:class:`ImageMeta`, read by :func:`dbgan.io.read_meta`: image
  probing belongs to :mod:`dbgan.io`; this module uses Pillow only to encode).
* :func:`write_pages`: writes the pages back, atomically:

  ======  ==========================  ======================================================
  format  samples                     metadata carried over
  ======  ==========================  ======================================================
  TIFF    8 / 16-bit, float32 (32)    all pages; ICC profile; EXIF's Make, Model, DateTime,
                                      Artist, Copyright, ImageDescription as TIFF tags
  PNG     8 / 16-bit                  ICC profile (``iCCP``), EXIF (``eXIf``)
  JPEG    8-bit, ``quality``          ICC profile (APP2), EXIF (APP1)
  WebP    8-bit, ``quality``          ICC profile, EXIF
  BMP     8-bit                       none (the format has no place for it)
  ======  ==========================  ======================================================

  The EXIF orientation is reset to 1 (top-left): dbgan applies it when reading, so
  the written pixels are already upright.
* :func:`output_bit_depth`: 16-bit input gives 16-bit output (PNG, TIFF), float
  input gives float32 output (TIFF; 16-bit PNG), else 8.
"""

from __future__ import annotations

import io as _io
import logging
import zlib
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from dbgan.atomic import atomic_write_bytes
from dbgan.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageInfo,
    ImageMeta,
    ImageReadError,
    convert_channels,
    read_meta,
    read_image_with_info,
    write_image,
)

log = logging.getLogger(__name__)

__all__ = ["ImageMeta", "read_meta", "read_pages", "write_pages", "output_bit_depth", "DEFAULT_QUALITY"]

PathLike = Union[str, Path]

#: JPEG / WebP quality when none is given (``dbgan deblur --quality``).
DEFAULT_QUALITY = 95

_TIFF = (".tif", ".tiff")


# --------------------------------------------------------------------------- reading


def _tiff_page_count(path: Path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return sum(1 for p in tif.pages if not getattr(p, "is_reduced", False))
    except Exception:  # noqa: BLE001 - not a TIFF tifffile can read: the single-image reader decides
        return 1


def _page_to_tensor(arr: np.ndarray, axes: str, path: Path, k: int) -> tuple[Tensor, int, int]:
    """One tifffile page -> (float32 C x H x W in [0, 1], file channels, bit depth)."""
    if "S" in axes and axes.index("S") < axes.index("Y"):  # planar: S Y X -> Y X S
        arr = np.moveaxis(arr, axes.index("S"), -1)
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageReadError(f"{path}: page {k} has shape {arr.shape} ({axes}); expected grey or RGB(A) pages")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.dtype == np.uint8:
        x, depth = arr.astype(np.float32) / 255.0, 8
    elif arr.dtype == np.uint16:
        x, depth = arr.astype(np.float32) / 65535.0, 16
    elif arr.dtype in (np.float16, np.float32, np.float64):
        x, depth = np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0), 32
    else:
        raise ImageReadError(f"{path}: page {k} has samples of type {arr.dtype} (use 8- or 16-bit or float pages)")
    if x.ndim == 3:
        x = x[..., :1] if channels == 2 else x[..., :3]  # alpha dropped
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
    return t, channels, depth


def read_pages(
    path: PathLike, channels: Optional[int] = None, max_pixels: Optional[int] = None
) -> tuple[list[Tensor], ImageInfo, ImageMeta]:
    """All pages of an image file as float32 ``C x H x W`` tensors in ``[0, 1]``, its info and metadata.

    A TIFF with several full-resolution pages is read page by page with ``tifffile``
    (pages may differ in size; ``info`` describes the first, ``max_pixels`` applies to
    each); any other file gives one page through :func:`dbgan.io.read_image_with_info`.

    Raises:
        ImageReadError: as :func:`dbgan.io.read_image_with_info`, naming the file (and page).
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in _TIFF or not path.is_file() or _tiff_page_count(path) < 2:
        img, info = read_image_with_info(path, channels=channels, max_pixels=max_pixels)
        return [img], info, read_meta(path)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    pages: list[Tensor] = []
    first: Optional[tuple[int, int]] = None
    try:
        with tifffile.TiffFile(path) as tif:
            k = 0
            for page in tif.pages:
                if getattr(page, "is_reduced", False):
                    continue
                h, w = int(page.imagelength), int(page.imagewidth)
                if limit > 0 and h * w > limit:
                    raise ImageReadError(
                        f"{path}: page {k} is {w}x{h} = {w * h} pixels, over the decompression-bomb limit of "
                        f"{limit} pixels; raise it with --max-pixels if the file is trusted"
                    )
                t, ch, depth = _page_to_tensor(page.asarray(), page.axes, path, k)
                if first is None:
                    first = (ch, depth)
                pages.append(convert_channels(t, channels))
                k += 1
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on damaged files
        raise ImageReadError(f"{path}: cannot read TIFF stack ({exc})") from None
    assert first is not None
    info = ImageInfo(path=path, height=pages[0].shape[1], width=pages[0].shape[2], channels=first[0], bit_depth=first[1])
    log.info("%s: %d pages", path, len(pages))
    return pages, info, read_meta(path)


# --------------------------------------------------------------------------- writing


def output_bit_depth(input_bit_depth: int, dst: PathLike) -> int:
    """Bits per sample to write: 32 (float) for float input to TIFF; 16 for >= 16-bit input to PNG/TIFF; else 8."""
    ext = Path(dst).suffix.lower()
    if input_bit_depth >= 32 and ext in _TIFF:
        return 32
    if input_bit_depth >= 16 and ext in (".png",) + _TIFF:
        return 16
    return 8


def _hwc(t: Tensor, bit_depth: int) -> np.ndarray:
    """C x H x W in [0, 1] -> H x W (x C) array of the output sample type (RGB order)."""
    x = torch.nan_to_num(t.detach().to("cpu", torch.float32), nan=0.0).clamp(0.0, 1.0)
    if bit_depth == 32:
        arr = x.numpy()
    else:
        levels = 255.0 if bit_depth == 8 else 65535.0
        arr = x.mul(levels).round_().numpy().astype(np.uint8 if bit_depth == 8 else np.uint16)
    return arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _png_with_meta(png: bytes, meta: ImageMeta) -> bytes:
    """Insert ``iCCP`` and ``eXIf`` chunks after IHDR (the first chunk, 8 + 25 bytes in)."""
    extra = b""
    if meta.icc:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta.icc))
    if meta.exif:
        raw = meta.exif[6:] if meta.exif.startswith(b"Exif\x00\x00") else meta.exif
        extra += _png_chunk(b"eXIf", raw)
    cut = 8 + 8 + int.from_bytes(png[8:12], "big") + 4
    return png[:cut] + extra + png[cut:]


def _encode_pillow(arr: np.ndarray, fmt: str, quality: int, meta: ImageMeta) -> bytes:
    from PIL import Image

    im = Image.fromarray(arr)
    kw: dict = {"quality": int(quality)}
    if meta.icc:
        kw["icc_profile"] = meta.icc
    if meta.exif:
        kw["exif"] = meta.exif
    buf = _io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _encode_tiff(arrays: Sequence[np.ndarray], meta: ImageMeta) -> bytes:
    import tifffile

    buf = _io.BytesIO()
    extratags = [(tag, "s", 0, value, True) for tag, value in sorted(meta.text.items()) if tag not in (270, 306)]
    with tifffile.TiffWriter(buf) as tw:
        for k, arr in enumerate(arrays):
            kw: dict = {
                "photometric": "rgb" if arr.ndim == 3 else "minisblack",
                "compression": "zlib",
                "predictor": arr.dtype != np.float32,
                "contiguous": False,
                "software": "dbgan",
            }
            if k == 0:
                if meta.icc:
                    kw["iccprofile"] = meta.icc
                if 270 in meta.text:
                    kw["description"] = meta.text[270]
                if 306 in meta.text:
                    kw["datetime"] = meta.text[306]
                kw["extratags"] = extratags
            tw.write(arr, **kw)
    return buf.getvalue()


def write_pages(
    path: PathLike,
    pages: Sequence[Tensor],
    bit_depth: int = 8,
    quality: Optional[int] = None,
    meta: Optional[ImageMeta] = None,
) -> Path:
    """Write one or more ``C x H x W`` pages in ``[0, 1]`` to ``path`` atomically, with metadata.

    Args:
        path: the output file; its extension picks the format (see the module docstring).
        pages: one image, or the pages of a TIFF stack (several pages need a .tif output).
        bit_depth: 8, 16 (PNG, TIFF) or 32 (float32 TIFF).
        quality: JPEG / WebP quality 1..100 (None: :data:`DEFAULT_QUALITY`).
        meta: EXIF / ICC to carry over (None: none).

    Raises:
        ValueError: unknown extension, a bit depth or page count the format cannot hold,
            a quality outside 1..100.
    """
    path = Path(path)
    ext = path.suffix.lower()
    meta = meta or ImageMeta()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    if not pages:
        raise ValueError(f"{path}: no pages to write")
    if len(pages) > 1 and ext not in _TIFF:
        raise ValueError(f"{path}: the input has {len(pages)} pages; only a .tif/.tiff output holds a stack")
    if bit_depth not in (8, 16, 32):
        raise ValueError(f"{path}: bit_depth must be 8, 16 or 32, got {bit_depth}")
    if bit_depth == 32 and ext not in _TIFF:
        raise ValueError(f"{path}: float (32-bit) samples need a .tif output")
    if bit_depth == 16 and ext not in (".png",) + _TIFF:
        raise ValueError(f"{path}: {ext} files cannot hold 16 bits per channel; write .png or .tif")
    q = DEFAULT_QUALITY if quality is None else int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"{path}: quality must lie in [1, 100], got {quality}")
    for t in pages:
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"{path}: pages must be C x H x W with C = 1 or 3, got {tuple(t.shape)}")
    if ext in _TIFF:
        data = _encode_tiff([_hwc(t, bit_depth) for t in pages], meta)
    elif ext in (".jpg", ".jpeg"):
        data = _encode_pillow(_hwc(pages[0], 8), "JPEG", q, meta)
    elif ext == ".webp":
        data = _encode_pillow(_hwc(pages[0], 8), "WEBP", q, meta)
    elif ext == ".png":
        import cv2

        arr = _hwc(pages[0], bit_depth)
        if arr.ndim == 3:
            arr = np.ascontiguousarray(arr[..., ::-1])
        ok, buf = cv2.imencode(".png", arr)
        if not ok:  # pragma: no cover
            raise OSError(f"{path}: OpenCV could not encode the image as PNG")
        data = _png_with_meta(buf.tobytes(), meta)
    else:  # BMP: no metadata
        return write_image(path, pages[0], bit_depth=8)
    atomic_write_bytes(path, data)
    return path
