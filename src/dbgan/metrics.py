"""Image quality measures: PSNR and SSIM (scikit-image), a fast batched PSNR, sharpness, colour bias.

Conventions: a ``torch.Tensor`` is ``C x H x W`` (or ``H x W``), a ``numpy``
array ``H x W x C`` (or ``H x W``); values in ``[0, data_range]``. Both images of
a comparison must have the same shape. Nothing here reimplements the reference
measures: :func:`psnr` and :func:`ssim` call
``skimage.metrics.peak_signal_noise_ratio`` / ``structural_similarity``
(SSIM with scikit-image's defaults: 7x7 uniform window, ``gaussian_weights=False``,
``channel_axis`` for colour, mean over channels).
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray]

#: ITU-R BT.601 luma weights (R, G, B), as in :mod:`dbgan.io`.
from dbgan.constants import LUMA


def to_hwc(img: ArrayLike) -> np.ndarray:
    """``C x H x W`` tensor / ``H x W x C`` array -> float64 ``H x W x C`` numpy (``H x W`` for one channel)."""
    if isinstance(img, Tensor):
        arr = img.detach().to("cpu", torch.float64).numpy()
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim == 3:
            arr = arr.transpose(1, 2, 0)
    else:
        arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected one image (C x H x W tensor or H x W x C array), got shape {arr.shape}")
    return arr


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = to_hwc(a), to_hwc(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    return x, y


def psnr(a: ArrayLike, b: ArrayLike, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio of ``a`` against the reference ``b`` in dB (inf when identical).

    ``skimage.metrics.peak_signal_noise_ratio(b, a, data_range=data_range)``.
    """
    from skimage.metrics import peak_signal_noise_ratio

    x, y = _pair(a, b)
    if np.array_equal(x, y):
        return float("inf")
    return float(peak_signal_noise_ratio(y, x, data_range=data_range))


def ssim(a: ArrayLike, b: ArrayLike, data_range: float = 1.0) -> float:
    """Structural similarity of ``a`` and ``b`` (``skimage.metrics.structural_similarity``).

    7x7 uniform window (smaller odd window for images under 7 pixels),
    ``gaussian_weights=False``; colour images use ``channel_axis=-1`` (mean over channels).
    """
    from skimage.metrics import structural_similarity

    x, y = _pair(a, b)
    win = min(7, x.shape[0], x.shape[1])
    win = win if win % 2 else win - 1
    if win < 3:
        raise ValueError(f"images of {x.shape[1]}x{x.shape[0]} pixels are too small for SSIM (need 3x3)")
    kwargs = {"channel_axis": -1} if x.ndim == 3 else {}
    return float(structural_similarity(y, x, data_range=data_range, win_size=win, gaussian_weights=False, **kwargs))


def luma(img: ArrayLike) -> np.ndarray:
    """Grey ``H x W`` float64 image: BT.601 luma of a colour image, the image itself when grey."""
    arr = to_hwc(img)
    if arr.ndim == 2:
        return arr
    if arr.shape[2] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {arr.shape[2]}")
    return arr @ np.asarray(LUMA)


def sharpness(img: ArrayLike, method: str = "gradient") -> float:
    """No-reference sharpness of one image; higher is sharper.

    Methods (both on the BT.601 luma, values in ``[0, 1]``, borders reflected):

    * ``"gradient"`` (default): mean gradient energy, the mean over pixels of
      ``gx**2 + gy**2`` where ``gx``, ``gy`` are Sobel derivatives
      (``scipy.ndimage.sobel``, unnormalised 3x3 kernel ``[1, 2, 1] x [-1, 0, 1]``).
    * ``"laplacian"``: variance of the Laplacian (``scipy.ndimage.laplace``), the
      classic focus measure of Pech-Pacheco et al. (2000).

    Blur removes high frequencies, so both fall as an image gets blurrier; they also
    grow with noise and contrast, so compare versions of the *same* scene (a blurred
    photo and its deblurred output), not different photos.
    """
    from scipy import ndimage

    y = luma(img)
    if method == "gradient":
        gx = ndimage.sobel(y, axis=1, mode="reflect")
        gy = ndimage.sobel(y, axis=0, mode="reflect")
        return float(np.mean(gx * gx + gy * gy))
    if method == "laplacian":
        return float(np.var(ndimage.laplace(y, mode="reflect")))
    raise ValueError(f"method must be 'gradient' or 'laplacian', got {method!r}")


def colour_bias(output: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """Per-channel mean difference ``mean(output - reference)`` (shape ``C``; ``(1,)`` for grey).

    Positive values mean the output is brighter than the reference in that
    channel. Used to log the colour/brightness drift of GAN deblurrers.
    """
    x, y = _pair(output, reference)
    d = x - y
    if d.ndim == 2:
        return np.asarray([d.mean()])
    return d.reshape(-1, d.shape[2]).mean(axis=0)
