"""Classical deconvolution, the baseline the learnt deblurrers are compared with.

Wiener-type deconvolution with a parametric point spread function (a Gaussian or a
defocus disc), the image reflect-padded so that the circular FFT does not ring at the
borders. The regulariser is the Laplacian's power (a constrained-least-squares filter,
``conj(H) / (|H|^2 + balance |L|^2)``): it vanishes at zero frequency, so the filter
keeps the image's mean. (A constant noise-to-signal term would scale the mean by
``1 / (1 + balance)``, which "corrects" over-exposed cameras by accident and would
credit the baseline with a brightness change, not a deblurring.)
:func:`fit_wiener` estimates the PSF and the noise-to-signal balance of a camera from
calibration pairs (sharp and blurred photos *other* than the ones it is then applied to),
by a grid search on PSNR: the baseline thus knows the camera's blur family and size,
which the general deblurrer does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from dbgan.blur.kernels import defocus_kernel, gaussian_kernel

__all__ = ["WienerSetting", "wiener_deconvolve", "fit_wiener", "psf_for", "DEFAULT_GRID", "PSF_FAMILIES"]


@dataclass(frozen=True)
class WienerSetting:
    """One Wiener filter.

    ``psf``: ``"gaussian"`` (a sampled, normalised Gaussian kernel; size = sigma),
    ``"disc"`` (a defocus disc; size = radius) or ``"gaussian_otf"`` (the Gaussian's
    continuous transfer function ``exp(-2 pi^2 sigma^2 |f|^2)``, no kernel sampled;
    size = sigma: the Wiener row of ``benchmarks/domain_gap.py``), in pixels.
    """

    psf: str
    size: float
    balance: float  # weight of the Laplacian regulariser (noise against detail)

    def __str__(self) -> str:
        return f"{self.psf} {self.size:g} px, balance {self.balance:g}"


PSF_FAMILIES = ("gaussian", "disc", "gaussian_otf")


def psf_for(setting: WienerSetting) -> np.ndarray:
    """The sampled kernel of a ``gaussian`` or ``disc`` setting (``gaussian_otf`` has none)."""
    k = int(2 * np.ceil(3 * setting.size) + 1) if setting.psf == "gaussian" else int(2 * np.ceil(setting.size) + 3)
    k = max(k, 3)
    if setting.psf == "gaussian":
        return gaussian_kernel(k, setting.size)
    if setting.psf == "disc":
        return defocus_kernel(k, setting.size)
    raise ValueError(f"no sampled kernel for PSF family {setting.psf!r}; valid: gaussian, disc")


def _padding(setting: WienerSetting) -> int:
    """Reflect padding around the image: twice the kernel, or 4 sigma + 8 for the transfer function."""
    if setting.psf == "gaussian_otf":
        return int(np.ceil(4 * setting.size)) + 8
    return 2 * psf_for(setting).shape[-1]


def _transfer(setting: WienerSetting, h: int, w: int) -> torch.Tensor:
    """The PSF's transfer function on the ``rfft2`` grid of an ``h x w`` image."""
    if setting.psf == "gaussian_otf":
        fy, fx = torch.fft.fftfreq(h, dtype=torch.float64)[:, None], torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        return torch.exp(-2 * (np.pi * setting.size) ** 2 * (fx**2 + fy**2))
    psf = torch.from_numpy(psf_for(setting)).double()
    k = psf.shape[-1]
    kp = torch.zeros(h, w, dtype=torch.float64)
    kp[:k, :k] = psf
    kp = torch.roll(kp, shifts=(-(k // 2), -(k // 2)), dims=(0, 1))  # centre at the origin
    return torch.fft.rfft2(kp)


def wiener_deconvolve(img: torch.Tensor, setting: WienerSetting) -> torch.Tensor:
    """Deconvolve ``C x H x W`` (``[0, 1]``) with the setting's PSF; same size out, clipped."""
    if setting.psf not in PSF_FAMILIES:
        raise ValueError(f"unknown PSF family {setting.psf!r}; valid: {', '.join(PSF_FAMILIES)}")
    pad = _padding(setting)
    # numpy's reflect (the same values as torch's) also pads beyond the image size
    xp = torch.from_numpy(np.pad(img.detach().cpu().double().numpy(), ((0, 0), (pad, pad), (pad, pad)), mode="reflect"))
    h, w = xp.shape[-2:]
    lap = torch.zeros(h, w, dtype=torch.float64)
    lap[0, 0] = -4.0
    lap[0, 1] = lap[1, 0] = lap[0, -1] = lap[-1, 0] = 1.0
    H, L = _transfer(setting, h, w), torch.fft.rfft2(lap)
    filt = H.conj() / (H.abs() ** 2 + setting.balance * L.abs() ** 2)
    out = torch.fft.irfft2(torch.fft.rfft2(xp) * filt, s=(h, w))
    return out[..., pad : pad + img.shape[-2], pad : pad + img.shape[-1]].clamp(0, 1).to(img.dtype)


DEFAULT_GRID = tuple(
    WienerSetting(psf, size, bal)
    for psf, sizes in (("gaussian", (0.6, 1.0, 1.5, 2.0, 3.0)), ("disc", (1.0, 1.5, 2.5, 3.5, 5.0)))
    for size in sizes
    for bal in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def fit_wiener(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
               grid: Sequence[WienerSetting] = DEFAULT_GRID) -> WienerSetting:
    """The setting of ``grid`` with the best mean PSNR on ``(sharp, blurred)`` calibration pairs."""
    if not pairs:
        raise ValueError("fit_wiener needs at least one (sharp, blurred) pair")
    best, best_score = grid[0], -np.inf
    for s in grid:
        score = float(np.mean([_psnr(wiener_deconvolve(b, s), a) for a, b in pairs]))
        if score > best_score:
            best, best_score = s, score
    return best
