"""Image files in and out as float tensors in ``[0, 1]``.

Everything inside dbgan works on ``float32`` tensors ``C x H x W`` in ``[0, 1]``;
this module is the only place that knows about files.

Reading (:func:`read_image`, :func:`read_image_with_info`):

* PNG, JPEG, TIFF, BMP and WebP; 8- and 16-bit (and 32-bit float TIFF);
  grey, grey+alpha, RGB, RGBA and palette images. Alpha is dropped.
* The EXIF orientation tag is applied, so a portrait photo from a phone comes
  out upright.
* Pillow reads only the header (size for the decompression-bomb limit,
  orientation, mode); OpenCV decodes the pixels (it keeps 16 bits per channel
  for RGB too). When OpenCV cannot decode a file, Pillow is tried.
* Damaged files raise :class:`ImageReadError` naming the file and the reason:
  truncated JPEG (no end-of-image marker after the last scan) and PNG (no
  ``IEND`` chunk) are caught even where a decoder would silently fill the
  missing rows with grey; a JPEG damaged inside (libjpeg only warns "Corrupt
  JPEG data" and decodes garbage) is caught from libjpeg's warning, and a
  warning of Pillow's decoder is an error too.
* TIFF orientation tags are applied by the decoders themselves (and Pillow
  reports the oriented size): they are not applied a second time.

Probing: :func:`probe_size` (the oriented size from the header), :func:`read_meta`
(EXIF and ICC profile to carry to an output) and :func:`open_with_pillow`, the one
function in dbgan that opens an image file with Pillow (tests/test_architecture.py
checks that no other module does).

Writing (:func:`write_image`) clamps, rounds, encodes in memory and replaces the
target atomically, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

from dbgan.io.files import (
    _SIXTEEN_BIT_EXTENSIONS,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageInfo,
    ImageReadError,
    is_image_file,
    list_images,
)
from dbgan.io.read import (
    convert_channels,
    looks_complete,
    open_with_pillow,
    probe_size,
    read_image,
    read_image_with_info,
)
from dbgan.io.meta import ImageMeta, read_meta
from dbgan.io.write import (
    write_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "ImageReadError",
    "is_image_file",
    "list_images",
    "convert_channels",
    "looks_complete",
    "open_with_pillow",
    "ImageMeta",
    "read_meta",
    "probe_size",
    "read_image",
    "read_image_with_info",
    "write_image",
]
