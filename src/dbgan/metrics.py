"""Image quality measures: PSNR and SSIM (scikit-image), a fast batched PSNR, sharpness, BRISQUE, colour bias.

Conventions: a ``torch.Tensor`` is ``C x H x W`` (or ``H x W``), a ``numpy``
array ``H x W x C`` (or ``H x W``); values in ``[0, data_range]``. Both images of
a comparison must have the same shape. Nothing here reimplements the reference
measures: :func:`psnr` and :func:`ssim` call
``skimage.metrics.peak_signal_noise_ratio`` / ``structural_similarity``.

SSIM is computed as in Wang et al. (2004) and in the deblurring papers' tables
(DeblurGAN, MPRNet, Restormer, NAFNet; their MATLAB ``ssim``): an 11x11 Gaussian
window with sigma 1.5, population (not sample) covariances, ``K1 = 0.01``,
``K2 = 0.03``, the mean over the valid region (borders of 5 pixels left out);
colour images are the mean over channels. ``tests/test_metrics_reference.py``
checks it against an independent implementation of the MATLAB algorithm to 1e-4.
``window="uniform"`` gives scikit-image's default 7x7 uniform window instead
(what dbgan reported before; the SSIM figures in ``docs/benchmarks.md`` dated up to
2026-11-30 were measured that way).

:func:`brisque` is a no-reference score for real photos (no sharp image to compare
with), from the ``brisque`` package whose SVM model ships inside it (nothing is
downloaded); lower is better.
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


#: Gaussian window of SSIM: sigma and scikit-image's truncation (radius int(3.5 * 1.5 + 0.5) = 5: 11x11).
SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5


def ssim(a: ArrayLike, b: ArrayLike, data_range: float = 1.0, window: str = "gaussian") -> float:
    """Structural similarity of ``a`` and ``b`` (``skimage.metrics.structural_similarity``).

    ``window="gaussian"`` (default): ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False`` -- Wang et al.'s 11x11 Gaussian window, the SSIM of
    published deblurring tables (see the module docstring). ``window="uniform"``:
    scikit-image's default 7x7 uniform window with sample covariances. Images smaller
    than the window use the largest odd window that fits (at least 3x3). Colour images
    use ``channel_axis=-1`` (mean over channels).
    """
    from skimage.metrics import structural_similarity

    if window not in ("gaussian", "uniform"):
        raise ValueError(f"window must be 'gaussian' or 'uniform', got {window!r}")
    x, y = _pair(a, b)
    full = 2 * int(_SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1 if window == "gaussian" else 7
    win = min(full, x.shape[0], x.shape[1])
    win = win if win % 2 else win - 1
    if win < 3:
        raise ValueError(f"images of {x.shape[1]}x{x.shape[0]} pixels are too small for SSIM (need 3x3)")
    kwargs: dict = {"channel_axis": -1} if x.ndim == 3 else {}
    if window == "gaussian":
        kwargs.update(gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False)
        if win != full:
            kwargs["win_size"] = win
    else:
        kwargs.update(win_size=win, gaussian_weights=False)
    return float(structural_similarity(y, x, data_range=data_range, **kwargs))


def brisque(img: ArrayLike) -> float:
    """BRISQUE no-reference quality of one image in ``[0, 1]`` (lower is better; about 0-100).

    The ``brisque`` package's own features and its bundled SVM model (LIVE database,
    ``brisque/models/svm.txt``; no download) on the grey image
    (``skimage.color.rgb2gray`` for colour, as the package does). Blur and noise
    both raise it, which the gradient :func:`sharpness` cannot tell apart.
    (The package's ``score`` method trips over numpy 2's scalar conversion, so its
    feature and model steps are called here directly.)
    """
    import warnings

    import cv2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # brisque imports scipy.ndimage.filters (deprecated)
        from brisque import BRISQUE
    from skimage.color import rgb2gray

    x = to_hwc(img)
    grey = rgb2gray(np.clip(x, 0.0, 1.0)) if x.ndim == 3 else np.clip(x, 0.0, 1.0)
    if min(grey.shape) < 16:
        raise ValueError(f"an image of {grey.shape[1]}x{grey.shape[0]} pixels is too small for BRISQUE (need 16x16)")
    model = _brisque_model(BRISQUE)
    small = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    with np.errstate(all="ignore"):
        feats = np.concatenate([
            model.calculate_brisque_features(grey, kernel_size=7, sigma=7 / 6),
            model.calculate_brisque_features(small, kernel_size=7, sigma=7 / 6),
        ])
    flat = np.array([float(np.asarray(f, dtype=np.float64).reshape(-1)[0]) for f in feats])
    return float(model.calculate_image_quality_score(flat))


def _brisque_model(cls):  # one loaded SVM per process would be global state: load per call (~20 ms)
    return cls(url=False)


def psnr_torch(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """Batched PSNR in dB for ``N x C x H x W`` (or ``C x H x W``) tensors, for training validation.

    Returns a float64 tensor of ``N`` values (a 0-d tensor for one image); the mean
    squared error is accumulated in float64 so the value equals
    :func:`psnr` (scikit-image) within 1e-4 dB. Identical images give ``inf``.
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    single = a.dim() == 3
    if single:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    if a.dim() != 4:
        raise ValueError(f"expected N x C x H x W or C x H x W, got shape {tuple(a.shape)}")
    diff = a.detach().to(torch.float64) - b.detach().to(torch.float64)
    mse = diff.pow(2).flatten(1).mean(dim=1)
    out = 10.0 * torch.log10(torch.as_tensor(float(data_range) ** 2, dtype=torch.float64) / mse)
    return out[0] if single else out


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
