"""Paired-safe image transforms: draw parameters once, apply them to every image of a pair.

Every random choice (crop position, flip) is drawn by :func:`draw_params` from a
``numpy.random.Generator`` into a small dict; :func:`apply_params` then applies
that dict to the sharp *and* the blurred image, so the two stay pixel-aligned.
Images are ``float32`` tensors ``C x H x W`` in ``[0, 1]``.

``data.preprocess`` modes (training):

``resize_and_crop``
    Resize so that the **shorter** side equals ``data.load_size`` (aspect ratio
    kept), then take a random ``crop_size x crop_size`` crop. This differs from
    pix2pix, which squashes every image to a ``load_size x load_size`` square:
    squashing changes the shape (and the direction and length) of the blur
    itself, which is what we are learning.
``crop``
    No resize; a random ``crop_size x crop_size`` crop. An image smaller than the
    crop is an error (:class:`ImageTooSmallError` naming the file, its size and
    ``data.crop_size``); we never pad, because padded borders would teach the
    networks a blur that does not exist.
``scale_width``
    Resize the width to ``data.load_size`` (aspect kept), then crop each axis to
    ``min(crop_size, size)`` at a random position: a random ``crop_size`` square
    when the resized image is large enough; otherwise that axis is kept whole
    (batches then need equal sizes, see :func:`dbgan.data.collate`).
``none``
    Images are used whole: no resize, no crop (the networks pad internally).

Resizing uses antialiased bilinear interpolation
(``torch.nn.functional.interpolate(antialias=True)``) and is deterministic, so
datasets may cache resized images (see :func:`resize_target`). Random
horizontal flips follow ``data.flip``.

Validation never resizes (resizing at test time changes the blur): see
:func:`center_params` (centre crop to ``data.val_crop`` or the whole image).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from dbgan.config import DataConfig
from dbgan.data.errors import ImageTooSmallError

__all__ = [
    "resize_target",
    "resize",
    "draw_params",
    "center_params",
    "apply_params",
    "crop_box",
    "flip",
]

Params = dict[str, Any]


def resize_target(h: int, w: int, cfg: DataConfig) -> Optional[tuple[int, int]]:
    """The deterministic resize of an ``h x w`` image under ``cfg.preprocess`` (training).

    Returns ``(new_h, new_w)``, or ``None`` when the mode does not resize or the
    image already has the target size.
    """
    load = cfg.load_size
    if cfg.preprocess == "resize_and_crop":
        if h <= w:
            size = (load, max(load, int(round(w * load / h))))
        else:
            size = (max(load, int(round(h * load / w))), load)
    elif cfg.preprocess == "scale_width":
        size = (max(1, int(round(h * load / w))), load)
    else:
        return None
    return None if size == (h, w) else size


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of a ``C x H x W`` tensor to ``size = (H', W')``."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    out = F.interpolate(
        img.unsqueeze(0), size=tuple(size), mode="bilinear", align_corners=False, antialias=True
    )[0]
    return out.clamp_(0.0, 1.0)


def _too_small(name: Optional[str], h: int, w: int, crop: int, note: str = "") -> ImageTooSmallError:
    who = name or "an image"
    return ImageTooSmallError(
        f"{who} is {h}x{w} (HxW){note}, smaller than data.crop_size={crop}; use larger images, "
        "lower data.crop_size, or set data.preprocess=resize_and_crop (resizes the shorter side "
        "to data.load_size first)"
    )


def draw_params(
    h: int,
    w: int,
    cfg: DataConfig,
    rng: np.random.Generator,
    name: Optional[str] = None,
) -> Params:
    """Draw the training transform of an ``h x w`` image (the size *before* resizing).

    Args:
        h, w: size of the image as read from disk.
        cfg: ``preprocess``, ``load_size``, ``crop_size`` and ``flip`` are used.
        rng: the item's generator; draws happen in a fixed order (crop top, crop
            left, flip), so the same generator state gives the same parameters.
        name: file name used in error messages.

    Returns:
        ``{"size": (h, w), "resize": (H', W') or None, "crop": (top, left, ch, cw)
        or None, "flip": bool}``; ``crop`` is in resized coordinates.

    Raises:
        ImageTooSmallError: ``crop`` mode and the image is smaller than the crop.
    """
    target = resize_target(h, w, cfg)
    rh, rw = target if target is not None else (h, w)
    crop: Optional[tuple[int, int, int, int]] = None
    c = cfg.crop_size
    if cfg.preprocess in ("resize_and_crop", "crop"):
        if rh < c or rw < c:
            note = "" if target is None else f" ({rh}x{rw} after resizing to data.load_size={cfg.load_size})"
            raise _too_small(name, h, w, c, note)
        crop = (int(rng.integers(0, rh - c + 1)), int(rng.integers(0, rw - c + 1)), c, c)
    elif cfg.preprocess == "scale_width":
        ch, cw = min(c, rh), min(c, rw)
        crop = (int(rng.integers(0, rh - ch + 1)), int(rng.integers(0, rw - cw + 1)), ch, cw)
    elif cfg.preprocess != "none":
        raise ValueError(f"unknown data.preprocess {cfg.preprocess!r}")
    flipped = bool(rng.random() < 0.5) if cfg.flip else False
    return {"size": (h, w), "resize": target, "crop": crop, "flip": flipped}


def center_params(h: int, w: int, crop: int = 0) -> Params:
    """Validation transform: centre crop to ``crop`` (clipped to the image), no resize, no flip.

    ``crop <= 0`` keeps the whole image.
    """
    box = None
    if crop > 0:
        ch, cw = min(crop, h), min(crop, w)
        box = ((h - ch) // 2, (w - cw) // 2, ch, cw)
    return {"size": (h, w), "resize": None, "crop": box, "flip": False}


def crop_box(img: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``img[..., top:top+h, left:left+w]`` for ``box = (top, left, h, w)`` (a view)."""
    top, left, ch, cw = box
    H, W = img.shape[-2:]
    if top < 0 or left < 0 or top + ch > H or left + cw > W:
        raise ValueError(f"crop box {box} does not fit an image of {H}x{W}")
    return img[..., top : top + ch, left : left + cw]


def flip(img: torch.Tensor) -> torch.Tensor:
    """Horizontal flip (a copy)."""
    return torch.flip(img, dims=[-1])


def apply_params(img: torch.Tensor, params: Params) -> torch.Tensor:
    """Apply parameters from :func:`draw_params` / :func:`center_params` to ``img``.

    ``img`` may be the image as read (size ``params["size"]``) or already resized
    to ``params["resize"]`` (datasets cache resized images); the resize step is
    skipped in the second case. Any other size is an error, which catches a pair
    whose images differ in size. The result never shares memory with ``img``.
    """
    size = tuple(img.shape[-2:])
    target = params.get("resize")
    if target is not None and size != tuple(target):
        if size != tuple(params["size"]):
            raise ValueError(f"image is {size[0]}x{size[1]}, transform expects {params['size']} or {target}")
        img = resize(img, target)
    elif target is None and size != tuple(params["size"]):
        raise ValueError(f"image is {size[0]}x{size[1]}, transform expects {tuple(params['size'])}")
    if params.get("crop") is not None:
        img = crop_box(img, params["crop"])
    if params.get("flip"):
        return flip(img)  # torch.flip copies
    return img.clone(memory_format=torch.contiguous_format)
