"""Coarse-to-fine deblurring: run a deblurrer at coarser scales first, for blur wider than it knows.

A network trained on kernels up to ``K`` pixels leaves wider blur mostly alone: a
high-resolution photo blurred by 80 px, or a 2048 px microscope frame, looks the same
after it as before. At half the resolution the same blur is half as wide. With
``levels`` coarse levels, the image is deblurred at ``1/2**levels`` of its size first;
the *correction* there (output minus input), upsampled, is added to the image, and so
on up to the full size, where the network runs once more as usual:

    y = x
    for s in 1/2**levels, ..., 1/4, 1/2:
        lo = down(y, s)
        y = y + up(restore(lo) - lo)
    out = restore(y)

Only the correction is upsampled, so the full-resolution detail of the input is kept;
the coarse levels restore the low frequencies that a wide kernel removed, and the full
size its fine detail. The cost is that of the full-size run times ``1 + 1/4 + 1/16 + ...``
(at most 4/3).

It helps with blur wider than the network's training range; on mildly blurred or sharp
photos the coarse levels sharpen what needs no sharpening, which costs (see the model card
of the bundled ``general`` model for measurements). So it is off by default
(``levels=0``): ``dbgan deblur --coarse-levels 2`` or ``Deblurrer(..., coarse_levels=2)``.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from dbgan.infer.common import InferenceError

log = logging.getLogger(__name__)

__all__ = ["MAX_COARSE_LEVELS", "MIN_COARSE_SIDE", "check_levels", "coarse_to_fine", "refuse_for_ready_runner", "usable_levels"]

#: the most coarse levels one may ask for (1/16 of the size)
MAX_COARSE_LEVELS = 4
#: a coarse level is skipped when its shorter side would fall below this many pixels
MIN_COARSE_SIDE = 32


def check_levels(levels: int) -> int:
    """``levels`` as an int in ``[0, MAX_COARSE_LEVELS]``; :class:`InferenceError` naming the setting otherwise."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= MAX_COARSE_LEVELS:
        raise InferenceError(f"coarse_levels must be an integer in [0, {MAX_COARSE_LEVELS}], got {levels!r}")
    return levels


def check_blind(blind: int) -> int:
    """``blind`` (the largest camera shake to estimate, px) as 0 (off) or an odd int in [3, 151];
    :class:`InferenceError` naming the setting otherwise."""
    if isinstance(blind, bool) or not isinstance(blind, int) or not (blind == 0 or (3 <= blind <= 151 and blind % 2)):
        raise InferenceError(f"blind must be 0 (off) or an odd integer in [3, 151] (the largest camera shake, px), got {blind!r}")
    return blind


def refuse_for_ready_runner(levels: int, blind: int = 0) -> None:
    """Where a ready :class:`dbgan.infer.Deblurrer` is given, its own ``coarse_levels`` and ``blind``
    hold: a second, different setting beside it is an error, not silently dropped."""
    for name, value in (("coarse_levels", levels), ("blind", blind)):
        if value:
            raise InferenceError(f"{name} is set on the ready Deblurrer (Deblurrer(..., {name}=N)), not here")


def usable_levels(height: int, width: int, levels: int) -> int:
    """How many of ``levels`` coarse levels an image of ``height x width`` allows (shorter side >= MIN_COARSE_SIDE)."""
    n = 0
    while n < levels and min(height, width) / 2 ** (n + 1) >= MIN_COARSE_SIDE:
        n += 1
    return n


def _resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    if mode == "area":  # downsampling: antialiased bilinear
        return F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return F.interpolate(x[None], size=size, mode="bicubic", align_corners=False)[0]


def coarse_to_fine(img: Tensor, restore: Callable[[Tensor], Tensor], levels: int) -> Tensor:
    """Deblur the ``C x H x W`` image ``img`` with ``restore`` (a ``C x H x W -> C x H x W`` deblurrer)
    at ``levels`` coarser scales first (see the module docstring); ``levels=0`` is ``restore(img)``."""
    check_levels(levels)
    h, w = img.shape[-2:]
    n = usable_levels(h, w, levels)
    if n < levels:
        log.info("image %dx%d: %d of %d coarse levels (the coarsest side would be under %d px)", w, h, n, levels, MIN_COARSE_SIDE)
    y = img
    for k in range(n, 0, -1):
        size = (max(1, round(h / 2**k)), max(1, round(w / 2**k)))
        lo = _resize(y, size, "area")
        correction = restore(lo) - lo
        y = (y + _resize(correction, (h, w), "bicubic")).clamp(0.0, 1.0)
    return restore(y)

