"""Metadata of an image file worth carrying to its output: EXIF and the ICC profile."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Optional

from dbgan.io.files import _ORIENTATION_TAG, PathLike
from dbgan.io.read import open_with_pillow

log = logging.getLogger(__name__)

#: EXIF IFD0 tags written into TIFF outputs as plain ASCII tags.
TIFF_TEXT_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 306: "DateTime", 315: "Artist", 33432: "Copyright"}


@dataclass
class ImageMeta:
    """Metadata of an image file worth carrying to its output.

    Attributes:
        exif: the EXIF block as Pillow serialises it (``b"Exif\\0\\0"`` + TIFF data), with
            the orientation reset to 1; None when the file has none.
        icc: the ICC colour profile; None when the file has none.
        text: EXIF IFD0 text tags (``{tag id: value}``) for TIFF outputs.
    """

    exif: Optional[bytes] = None
    icc: Optional[bytes] = None
    text: dict[int, str] = field(default_factory=dict)


def read_meta(path: PathLike) -> ImageMeta:
    """EXIF and ICC profile of an image file (empty :class:`ImageMeta` when unreadable: metadata never blocks pixels).

    The pixels were size-checked by the reader; only the header is read here.
    """
    meta = ImageMeta()
    try:
        with warnings.catch_warnings(), open_with_pillow(path) as im:
            warnings.simplefilter("ignore")
            meta.icc = im.info.get("icc_profile") or None
            exif = im.getexif()
            if len(exif):
                if exif.get(_ORIENTATION_TAG, 1) != 1:
                    exif[_ORIENTATION_TAG] = 1
                meta.exif = exif.tobytes()
                for tag in TIFF_TEXT_TAGS:
                    v = exif.get(tag)
                    if isinstance(v, str) and v.strip() and v.isascii():
                        meta.text[tag] = v.strip("\x00")
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block is no reason to lose the image
        log.debug("%s: metadata not read (%s)", path, exc)
        return ImageMeta()
    return meta
