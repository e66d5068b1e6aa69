"""Deblur (and blur) images of any size with a trained checkpoint.

:class:`Deblurrer` runs a checkpoint's ``deblur_g``, :class:`Blurrer` its
``blur_g`` (the BGAN as a realistic-blur generator); :func:`run_folder` is what
``dbgan deblur`` / ``dbgan blur`` call. This package never imports ``dbgan.train``.

How an image goes through a network
-----------------------------------
1. **Channels.** Grey in gives grey out and colour in gives colour out:

   * image 1 channel, net 3 channels: the grey plane is repeated to RGB, the
     RGB output converted back to grey with the ITU-R BT.601 luma weights
     (0.299, 0.587, 0.114), the same conversion :mod:`dbgan.io` uses;
   * image 3 channels, net 1 channel: each colour plane is run as its own grey
     image (a batch of 3) and the planes are stacked again ("per channel"). A
     grey-trained net thus never mixes colours; a blur net gets the *same* noise
     for the three planes so that they blur alike.
2. **Size.** The image is padded at the bottom/right to a multiple of the net's
   ``size_multiple`` (reflect as far as the image allows, then replicate: the
   nets' own :func:`dbgan.nets.common.pad_to_multiple`) and the output is cropped
   back. Images are not resized (except by ``coarse_levels``, 4.). An untiled image without a noise input goes to
   a dbgan generator unpadded instead: it pads itself the same way, and the U-Net
   then decodes only the image, not the padding (cropped decoding).
3. **Tiles.** With ``tile=T`` the padded image is covered by ``T x T`` tiles
   stepping ``T - overlap``; the last tile of each row/column is flush with the
   border. Tiles are blended with raised-cosine ramps across each overlap (no ramp
   at the image border), the 1-D weights normalised so that they sum to one at
   every pixel: the blend is a convex combination, exact where tiles agree. When
   ``T`` is at least the image's height and width, the untiled code path runs
   (bit-identical to ``tile=None`` on a small image).
4. **Coarse to fine** (:class:`Deblurrer` with ``coarse_levels=N``, off by default): the
   image is first deblurred at 1/2, 1/4, ... of its size and each level's upsampled
   correction added (:mod:`dbgan.infer.pyramid`), for blur wider than the network knows.
   This is the only place an image is resized, and only corrections are upsampled.
5. **Memory.** The whole image, the padded copy and the blended output stay in
   CPU memory; only tile batches go to the device. With ``tile=None`` the image is
   tiled automatically when its estimated activation memory exceeds
   ``memory_budget_mb`` (see :func:`estimate_bytes_per_pixel`).

Noise of blur generators
------------------------
:class:`Blurrer` draws the noise once per image, for the whole padded image, from
a CPU ``torch.Generator`` (so the same seed gives the same blur on every device),
then cuts the noise map per tile (tile positions are aligned to the map's
resolution), so tiles see one consistent noise field; a noise vector is shared by
all tiles.
"""

from __future__ import annotations

from dbgan.device import DeviceError, pick_device
from dbgan.infer.common import (
    DEFAULT_BYTES_PER_PIXEL,
    DEFAULT_CPU_BUDGET_MB,
    DEFAULT_OVERLAP,
    DTYPES,
    DType,
    ExportError,
    InferenceError,
    MAX_AUTO_TILE_BATCH,
    MAX_TILES,
    MAX_TILE_WORK,
    MIN_TILE,
    PathLike,
    SAFETY_FACTOR,
)
from dbgan.infer.tiling import (
    TilePlan,
    blend_weights,
    pad_image,
    tile_starts,
)
from dbgan.infer.memprofile import (
    default_memory_budget_mb,
    estimate_bytes_per_pixel,
)
from dbgan.infer.backends import (
    Backend,
    OnnxBackend,
    OnnxRunner,
    TorchBackend,
    onnx_path_for,
    sample_noise_from_spec,
)
from dbgan.infer.runner import (
    Blurrer,
    Deblurrer,
)
from dbgan.infer.folder import (
    RunResult,
    file_seed,
    run_folder,
)

__all__ = [
    "DeviceError",
    "pick_device",
    "DEFAULT_BYTES_PER_PIXEL",
    "DEFAULT_CPU_BUDGET_MB",
    "DEFAULT_OVERLAP",
    "DTYPES",
    "DType",
    "ExportError",
    "InferenceError",
    "MAX_AUTO_TILE_BATCH",
    "MAX_TILES",
    "MAX_TILE_WORK",
    "MIN_TILE",
    "PathLike",
    "SAFETY_FACTOR",
    "TilePlan",
    "blend_weights",
    "pad_image",
    "tile_starts",
    "default_memory_budget_mb",
    "estimate_bytes_per_pixel",
    "Backend",
    "OnnxBackend",
    "OnnxRunner",
    "TorchBackend",
    "onnx_path_for",
    "sample_noise_from_spec",
    "Blurrer",
    "Deblurrer",
    "RunResult",
    "file_seed",
    "run_folder",
]
