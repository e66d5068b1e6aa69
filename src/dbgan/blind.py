"""Blind deconvolution of camera shake: one motion kernel estimated from the photo itself.

The learnt deblurrers here are small (CPU budget) and undo little of a long camera shake. The
classical two-phase method does: estimate the blur kernel from the photo's own edges, then
deconvolve with it. This module follows Cho and Lee, "Fast motion deblurring" (SIGGRAPH Asia
2009), simplified:

* **Kernel** (:func:`estimate_kernel`), coarse to fine over an image pyramid. At each level a
  few rounds of: predict the sharp edges (a shock filter of the current latent image, keeping
  only its strongest gradients); solve for the kernel that blurs those gradients into the
  photo's, in closed form in the Fourier domain (Tikhonov-regularised least squares); make it
  physical (non-negative, small values pruned, one connected blob, centred, summing to 1);
  re-estimate the latent image by a quick L2 deconvolution. Saturated pixels, whose blur is
  clipped, are left out of the gradients.
* **Image** (:func:`deconvolve`): non-blind deconvolution with a sparse gradient prior (total
  variation, solved by half-quadratic splitting as in Krishnan and Fergus, NIPS 2009), every
  channel with the one kernel, reflect-padded so the circular FFT does not ring at the borders.
  The prior vanishes at zero frequency and the kernel sums to 1, so the image's mean is kept.

One kernel for the whole photo: a shake that varies over the frame (rotation, moving people,
depth) is undone where the kernel fits and may ring elsewhere. Pure functions on numpy
(estimation, at most ``EST_SIDE`` px) and torch (the deconvolution, any size).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

log = logging.getLogger(__name__)

__all__ = ["BlindSetting", "estimate_kernel", "photo_kernel", "deconvolve", "blind_deblur", "physical_kernel", "EST_SIDE"]

#: the kernel is estimated on at most this many pixels per side (the photo's most textured window)
EST_SIDE = 640


@dataclass(frozen=True)
class BlindSetting:
    """``kernel_size``: the largest blur extent looked for (odd, px); ``tv``: the weight of the
    image prior in the final deconvolution (larger: fewer ringing artefacts and less detail);
    ``rounds``: kernel rounds per pyramid level; ``edges``: the share of pixels whose predicted
    gradients feed the kernel (the strongest)."""

    kernel_size: int = 31
    tv: float = 1e-2  # chosen on the validation cameras (benchmarks/general_model.py --blind)
    rounds: int = 7
    edges: float = 0.07

    def __post_init__(self) -> None:
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and at least 3, got {self.kernel_size}")
        if not self.tv > 0:
            raise ValueError(f"tv must be > 0, got {self.tv}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not 0 < self.edges < 1:
            raise ValueError(f"edges must be in (0, 1), got {self.edges}")


def _centred(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``k`` zero-padded to ``shape`` with its centre moved to the origin (for circular FFTs)."""
    pad = np.zeros(shape)
    kh, kw = k.shape
    pad[:kh, :kw] = k
    return np.roll(pad, (-(kh // 2), -(kw // 2)), (0, 1))


def _otf(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The kernel's transfer function on a ``shape`` grid."""
    return np.fft.fft2(_centred(k, shape))


def _grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward differences (circular); :func:`_otf` of ``[-1, 1]`` is minus this, the same ``|.|^2``."""
    return np.roll(x, -1, 1) - x, np.roll(x, -1, 0) - x


def _shock(x: np.ndarray, steps: int = 2, dt: float = 0.5) -> np.ndarray:
    """Osher-Rudin shock filter: sharpens edges into steps."""
    for _ in range(steps):
        gx = (np.roll(x, -1, 1) - np.roll(x, 1, 1)) / 2
        gy = (np.roll(x, -1, 0) - np.roll(x, 1, 0)) / 2
        lap = np.roll(x, -1, 1) + np.roll(x, 1, 1) + np.roll(x, -1, 0) + np.roll(x, 1, 0) - 4 * x
        x = x - dt * np.sign(lap) * np.hypot(gx, gy)
    return x


def _deconv_l2(b: np.ndarray, k: np.ndarray, weight: float) -> np.ndarray:
    """Closed-form deconvolution with a quadratic gradient prior (the quick latent estimate)."""
    kf = _otf(k, b.shape)
    d2 = np.abs(_otf(np.array([[-1.0, 1.0]]), b.shape)) ** 2 + np.abs(_otf(np.array([[-1.0], [1.0]]), b.shape)) ** 2
    return np.real(np.fft.ifft2(np.conj(kf) * np.fft.fft2(b) / (np.abs(kf) ** 2 + weight * d2)))


def physical_kernel(k: np.ndarray, prune: float = 0.05) -> np.ndarray:
    """Non-negative, values under ``prune`` x the peak removed, only the heaviest connected blob
    kept, centred by its centre of mass, summing to 1 (a delta if nothing is left)."""
    k = np.maximum(k, 0)
    if k.max() <= 0:
        out = np.zeros_like(k)
        out[k.shape[0] // 2, k.shape[1] // 2] = 1
        return out
    k = np.where(k < prune * k.max(), 0, k)
    lab, n = ndimage.label(k > 0)
    if n > 1:
        mass = ndimage.sum(k, lab, range(1, n + 1))
        k = np.where(lab == 1 + int(np.argmax(mass)), k, 0)
    cy, cx = ndimage.center_of_mass(k)
    k = np.maximum(ndimage.shift(k, (k.shape[0] // 2 - cy, k.shape[1] // 2 - cx), order=1), 0)
    return k / k.sum()


def _kernel_step(p: np.ndarray, b: np.ndarray, mask: np.ndarray, size: int, edges: float) -> np.ndarray:
    """The kernel that blurs the predicted sharp image ``p``'s strongest gradients into ``b``'s."""
    px, py = _grad(p)
    bx, by = _grad(b)
    mag = np.hypot(px, py) * mask
    keep = mag > np.quantile(mag, 1 - edges)
    reg = 0.25 * float((mag**2).mean()) + 1e-12  # weak: the pruning in physical_kernel does the rest
    px, py, bx, by = px * keep, py * keep, bx * mask, by * mask
    fpx, fpy = np.fft.fft2(px), np.fft.fft2(py)
    energy = np.abs(fpx) ** 2 + np.abs(fpy) ** 2
    kf = (np.conj(fpx) * np.fft.fft2(bx) + np.conj(fpy) * np.fft.fft2(by)) / (energy + reg)
    full = np.fft.fftshift(np.real(np.fft.ifft2(kf)))
    cy, cx, r = b.shape[0] // 2, b.shape[1] // 2, size // 2
    return physical_kernel(full[cy - r : cy + r + 1, cx - r : cx + r + 1])


def _resize(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return ndimage.zoom(x, (shape[0] / x.shape[0], shape[1] / x.shape[1]), order=1)


def estimate_kernel(gray: np.ndarray, setting: BlindSetting = BlindSetting()) -> np.ndarray:
    """One ``kernel_size`` square motion kernel (non-negative, summing to 1) for a grey ``H x W``
    photo in [0, 1], coarse to fine (for 31 px: kernels of 3, 7, 15 and 31 px on the photo at 1/8 to
    full size). The latent image between kernel steps is a quick quadratic deconvolution."""
    if gray.ndim != 2 or min(gray.shape) < 2 * setting.kernel_size:
        raise ValueError(f"estimate_kernel needs a grey H x W image at least {2 * setting.kernel_size} px "
                         f"on each side for kernel_size {setting.kernel_size}; got shape {gray.shape}")
    gray = gray.astype(np.float64)
    sat = ndimage.binary_dilation(gray > 0.97, iterations=setting.kernel_size // 2)
    levels = max(1, int(np.floor(np.log2(setting.kernel_size / 3))) + 1)
    k, latent = None, None
    for lev in range(levels - 1, -1, -1):
        s = 0.5**lev
        b = gray if lev == 0 else ndimage.zoom(gray, s, order=1)
        mask = (~sat).astype(np.float64) if lev == 0 else (_resize(1.0 - sat, b.shape) > 0.99).astype(np.float64)
        size = max(3, int(setting.kernel_size * s) | 1)  # 3, 7, 15, 31: rounding up (5, 9, 17) finds worse kernels
        k = _delta(size) if latent is None else physical_kernel(_resize(k, (size, size)))
        latent = b.copy() if latent is None else _resize(latent, b.shape)
        for _ in range(setting.rounds):
            p = _shock(ndimage.gaussian_filter(latent, 0.7))
            k = _kernel_step(p, b, mask, size, setting.edges)
            latent = _deconv_l2(b, k, 2e-3)
    return k


def _delta(size: int) -> np.ndarray:
    out = np.zeros((size, size))
    out[size // 2, size // 2] = 1
    return out


def _otf_t(k: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """:func:`_otf` as a half-spectrum (``rfft2``) in complex64 torch."""
    return torch.fft.rfft2(torch.from_numpy(_centred(k, shape).astype(np.float32)))


def deconvolve(img: torch.Tensor, kernel: np.ndarray, tv: float = BlindSetting.tv, steps: int = 8) -> torch.Tensor:
    """Non-blind deconvolution of a ``C x H x W`` image in [0, 1] by one kernel, with a total-variation
    prior of weight ``tv`` (half-quadratic splitting, ``steps`` doublings of the splitting weight),
    reflect-padded by at least the kernel's size (up to an FFT-friendly size); clipped to [0, 1].
    Keeps the image's mean. One channel at a time, real FFTs in float32."""
    from scipy.fft import next_fast_len

    if img.ndim != 3:
        raise ValueError(f"deconvolve wants a C x H x W image, got shape {tuple(img.shape)}")
    kh, kw = kernel.shape
    h, w = img.shape[1:]
    pad_h, pad_w = min(kh, h - 1), min(kw, w - 1)
    shape = (next_fast_len(h + 2 * pad_h, real=True), next_fast_len(w + 2 * pad_w, real=True))
    extra_h, extra_w = min(shape[0] - h - pad_h, h - 1), min(shape[1] - w - pad_w, w - 1)
    shape = (h + pad_h + extra_h, w + pad_w + extra_w)  # as fast as the image allows (reflection < its size)
    kf = _otf_t(kernel, shape)
    d2 = _otf_t(np.array([[-1.0, 1.0]]), shape).abs() ** 2 + _otf_t(np.array([[-1.0], [1.0]]), shape).abs() ** 2
    den0 = kf.abs() ** 2
    out = torch.empty(img.shape, dtype=img.dtype)
    for c in range(img.shape[0]):
        x = torch.nn.functional.pad(img[c : c + 1][None].float(), (pad_w, extra_w, pad_h, extra_h), mode="reflect")[0, 0]
        num0 = kf.conj() * torch.fft.rfft2(x)
        # minimise 1/2 |k * x - b|^2 + tv |grad x|_1, split as  + beta/2 |grad x - w|^2 + tv |w|_1
        beta = tv
        y = torch.fft.irfft2(num0 / (den0 + beta * d2), s=shape)  # w = 0: the quadratic start
        for _ in range(steps):
            beta *= 2
            gx, gy = torch.roll(y, -1, -1) - y, torch.roll(y, -1, -2) - y
            thr = tv / beta
            wx = torch.sign(gx) * torch.clamp(gx.abs() - thr, min=0)
            wy = torch.sign(gy) * torch.clamp(gy.abs() - thr, min=0)
            # conj(Dx) F(wx) + conj(Dy) F(wy) = F(Dx^T wx + Dy^T wy): one FFT, not two
            div = (torch.roll(wx, 1, -1) - wx) + (torch.roll(wy, 1, -2) - wy)
            num = num0 + beta * torch.fft.rfft2(div)
            y = torch.fft.irfft2(num / (den0 + beta * d2), s=shape)
        out[c] = y[pad_h : pad_h + h, pad_w : pad_w + w].clamp(0, 1)
    return out


def _window(gray: np.ndarray, side: int) -> np.ndarray:
    """The ``side`` square window (or the whole photo, if smaller) with the most gradient energy."""
    h, w = gray.shape
    if max(h, w) <= side:
        return gray
    sh, sw = min(side, h), min(side, w)
    gx, gy = _grad(gray)
    energy = ndimage.uniform_filter(np.hypot(gx, gy), size=(sh, sw), mode="constant")
    step = max(1, side // 8)
    ys = np.arange(sh // 2, h - sh // 2 + 1, step)
    xs = np.arange(sw // 2, w - sw // 2 + 1, step)
    sub = energy[np.ix_(ys, xs)]
    iy, ix = np.unravel_index(int(np.argmax(sub)), sub.shape)
    y0, x0 = ys[iy] - sh // 2, xs[ix] - sw // 2
    return gray[y0 : y0 + sh, x0 : x0 + sw]


def photo_kernel(img: torch.Tensor, setting: BlindSetting = BlindSetting()) -> np.ndarray:
    """:func:`estimate_kernel` on a ``C x H x W`` photo's luma, in its most textured window of at most
    :data:`EST_SIDE` px per side; a photo under twice the kernel size gets no kernel (a delta, with a
    warning), so a folder with a thumbnail in it still runs."""
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"photo_kernel wants a 1 x H x W or 3 x H x W image, got shape {tuple(img.shape)}")
    x = img.detach().float().cpu()
    if min(x.shape[1:]) < 2 * setting.kernel_size:
        log.warning("image %s x %s is too small to estimate a %s px shake kernel: left as it is",
                    x.shape[1], x.shape[2], setting.kernel_size)
        return _delta(setting.kernel_size)
    luma = x[0] if x.shape[0] == 1 else 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    return estimate_kernel(_window(luma.numpy().astype(np.float64), EST_SIDE), setting)


def blind_deblur(img: torch.Tensor, setting: BlindSetting = BlindSetting()) -> tuple[torch.Tensor, np.ndarray]:
    """``(deblurred, kernel)`` for a ``C x H x W`` photo in [0, 1]: :func:`photo_kernel`, then
    :func:`deconvolve` of the whole photo with it (the photo as it is when the kernel is a delta)."""
    kernel = photo_kernel(img, setting)
    if kernel.max() >= 1 - 1e-6:  # no blur found (or none looked for): nothing to deconvolve
        return img.clone(), kernel
    return deconvolve(img, kernel, setting.tv), kernel
