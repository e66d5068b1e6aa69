"""Apply blur kernels and camera-like degradations to image tensors.

Pure functions on ``float32`` tensors in ``[0, 1]`` (``C x H x W`` or
``N x C x H x W``) plus :class:`DegradationPipeline`, which draws every random
choice from a ``numpy.random.Generator`` so that ``(image, seed)`` reproduces
the degraded image exactly::

    pipeline = DegradationPipeline.from_config(cfg.synth)
    blurred, kernel = pipeline(img, np.random.default_rng(seed))

Blur model: ``blurred = kernel * image`` (true 2-D convolution, the kernel being
the point spread function), computed by FFT with reflected borders so that the
output has the input's size and no dark frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dbgan.blur.fft_cpu import fft_blur_cpu
from dbgan.blur.kernels import random_kernel
from dbgan.blur.padding import reflect_pad
from dbgan.constants import LUMA


__all__ = [
    "fft_blur",
    "reflect_pad",
    "to_linear",
    "from_linear",
    "saturate_highlights",
    "boost_highlights",
    "add_gaussian_noise",
    "add_poisson_noise",
    "jpeg_roundtrip",
    "DegradationParams",
    "DegradationPipeline",
]

KernelLike = Union[torch.Tensor, np.ndarray]


# --------------------------------------------------------------------------- FFT convolution


def _fast_len(n: int) -> int:
    """Smallest 2,3,5,7-smooth integer >= n (cheap FFT sizes)."""
    best = n
    while True:
        m = best
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return best
        best += 1


def _as_kernel_tensor(kernel: KernelLike, like: torch.Tensor) -> torch.Tensor:
    if isinstance(kernel, np.ndarray):
        kernel = torch.from_numpy(np.ascontiguousarray(kernel))
    if not isinstance(kernel, torch.Tensor):
        raise TypeError(f"kernel must be a torch.Tensor or numpy array, got {type(kernel).__name__}")
    return kernel.to(device=like.device, dtype=like.dtype)


def _pad_to(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect padding, through ``F.pad`` where it allows the widths (fast), else by indexing."""
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w:
        shape = x.shape
        y = F.pad(x.reshape(-1, 1, h, w), (left, right, top, bottom), mode="reflect")
        return y.reshape(*shape[:-2], h + top + bottom, w + left + right)
    return reflect_pad(x, top, bottom, left, right)


def _kernel_spectrum_torch(kb: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
    # rows first on the few kernel rows, then the columns: half the work of rfft2(s=...)
    return torch.fft.fft(torch.fft.rfft(kb, n=fw, dim=-1), n=fh, dim=-2)


def _use_scipy(img: torch.Tensor, backend: str) -> bool:
    if backend == "torch":
        return False
    if backend == "scipy":
        if img.device.type != "cpu":
            raise ValueError("fft_blur backend 'scipy' needs CPU tensors")
        return True
    if backend != "auto":
        raise ValueError(f"fft_blur backend must be 'auto', 'torch' or 'scipy', got {backend!r}")
    return (
        img.device.type == "cpu"
        and img.dtype in (torch.float32, torch.float64)
        and not (torch.is_grad_enabled() and img.requires_grad)
    )


def fft_blur(img: torch.Tensor, kernel: KernelLike, backend: str = "auto") -> torch.Tensor:
    """Convolve images with kernels by FFT; same size out, reflected borders.

    On the interior (at least ``k // 2`` pixels from the edges) this equals
    ``scipy.signal.convolve2d(channel, kernel, mode="same")`` up to float rounding;
    the border is extended by reflection without repeating the edge pixel
    (``scipy.ndimage.convolve(..., mode="mirror")`` for odd kernels).

    Args:
        img: ``C x H x W`` or ``N x C x H x W`` floating tensor.
        kernel: ``k x k`` (one kernel for everything), ``N x k x k`` (one per image,
            needs a batched ``img``) or ``N x C x k x k`` (one per image and channel).
            Non-square kernels ``kh x kw`` work too. Numpy arrays are accepted.
        backend: ``"torch"`` (``torch.fft``; any device, differentiable), ``"scipy"``
            (pocketfft through ``scipy.fft`` on CPU tensors, sharing memory; faster
            than MKL's inverse real FFT on CPU) or ``"auto"``: scipy for CPU tensors
            that need no gradient, torch otherwise.

    Returns:
        Tensor of ``img``'s shape and dtype. Each kernel's spectrum is computed once
        for all channels of its image. With torch, many images with their own
        kernels go through one batched FFT (the fast path on a GPU); on CPU the
        scipy path works channel by channel in parallel threads, which keeps the
        transforms in cache.
    """
    if img.ndim not in (3, 4):
        raise ValueError(f"fft_blur needs C x H x W or N x C x H x W, got shape {tuple(img.shape)}")
    if not img.is_floating_point():
        raise TypeError(f"fft_blur needs a floating-point image, got {img.dtype}")
    k = _as_kernel_tensor(kernel, img)
    if k.ndim == 2:
        kb = k
    elif k.ndim == 3:
        if img.ndim != 4 or k.shape[0] not in (1, img.shape[0]):
            raise ValueError(
                f"kernels of shape {tuple(k.shape)} need images N x C x H x W with the same N, "
                f"got {tuple(img.shape)}"
            )
        kb = k[:, None]
    elif k.ndim == 4:
        if img.ndim != 4 or k.shape[0] not in (1, img.shape[0]) or k.shape[1] not in (1, img.shape[1]):
            raise ValueError(
                f"kernels of shape {tuple(k.shape)} need images N x C x H x W with the same N and C, "
                f"got {tuple(img.shape)}"
            )
        kb = k
    else:
        raise ValueError(f"kernel must be k x k, N x k x k or N x C x k x k, got shape {tuple(k.shape)}")

    kh, kw = k.shape[-2:]
    h, w = img.shape[-2:]
    ph, pw = kh // 2, kw // 2  # reflect padding needed on each side
    ch, cw = (kh - 1) // 2, (kw - 1) // 2  # kernel centre (scipy 'same' convention)
    if _use_scipy(img, backend):
        return fft_blur_cpu(img, kb, kh, kw)

    fh, fw = _fast_len(h + 2 * ph), _fast_len(w + 2 * pw)
    # Reflect-pad straight to the FFT size (see dbgan.blur.fft_cpu).
    pads = (ph, fh - h - ph, pw, fw - w - pw)
    crop = (slice(ph + ch, ph + ch + h), slice(pw + cw, pw + cw + w))

    work = torch.float32 if img.dtype in (torch.float16, torch.bfloat16) else img.dtype
    xp = _pad_to(img.to(work), *pads)
    spec = torch.fft.rfft2(xp)
    spec = spec * _kernel_spectrum_torch(kb.to(work), fh, fw)
    out = torch.fft.irfft2(spec, s=(fh, fw))
    return out[..., crop[0], crop[1]].to(img.dtype).contiguous()


# --------------------------------------------------------------------------- tone, noise, compression


def to_linear(x: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """Gamma-encoded values to linear light: ``x ** gamma`` (simple power law)."""
    return x.clamp(min=0.0).pow(gamma)


def from_linear(x: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """Linear light to gamma-encoded values: ``x ** (1 / gamma)``."""
    return x.clamp(min=0.0).pow(1.0 / gamma)


def saturate_highlights(x: torch.Tensor, gain: float) -> torch.Tensor:
    """Multiply by ``gain`` then clip to ``[0, 1]`` (use on linear-light values): an overexposure."""
    return (x * gain).clamp(0.0, 1.0)


def boost_highlights(x: torch.Tensor, gain: float, threshold: float = 0.8) -> torch.Tensor:
    """Scene radiance of clipped highlights: values above ``threshold`` are raised smoothly
    up to ``gain`` at 1 (values below are unchanged). Blurring the result and then clipping
    to ``[0, 1]`` gives the bright streaks of real night-time shake without changing the
    brightness of the rest of the image.
    """
    if gain == 1.0:
        return x
    ramp = ((x - threshold) / max(1.0 - threshold, 1e-6)).clamp(0.0, 1.0)
    return x * (1.0 + (gain - 1.0) * ramp)


def add_gaussian_noise(
    x: torch.Tensor, sigma: float, generator: Optional[torch.Generator] = None, clip: bool = True
) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` (drawn on ``generator``'s device)."""
    if sigma <= 0:
        return x
    gen_device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(x.device)
    y = x + sigma * noise
    return y.clamp(0.0, 1.0) if clip else y


def add_poisson_noise(
    x: torch.Tensor, peak: float, generator: Optional[torch.Generator] = None, clip: bool = True
) -> torch.Tensor:
    """Shot noise: ``Poisson(x * peak) / peak`` (``peak`` photons at white; 0 = no noise)."""
    if peak <= 0:
        return x
    gen_device = generator.device if generator is not None else x.device
    rate = (x.clamp(min=0.0) * peak).to(gen_device, torch.float32)
    y = (torch.poisson(rate, generator=generator) / peak).to(x.device, x.dtype)
    return y.clamp(0.0, 1.0) if clip else y


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode as JPEG at ``quality`` (1..100) and decode again, in memory (OpenCV).

    Accepts ``C x H x W`` or ``N x C x H x W`` with C = 1 (grey JPEG) or 3 (RGB).
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must lie in [1, 100], got {quality}")
    if x.ndim == 4:
        return torch.stack([jpeg_roundtrip(xi, quality) for xi in x])
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"jpeg_roundtrip needs C x H x W with C = 1 or 3, got {tuple(x.shape)}")
    arr = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0)[..., ::-1])
    ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise RuntimeError("OpenCV could not encode a JPEG")
    dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if x.shape[0] == 1 else cv2.IMREAD_COLOR)
    dec = dec[None] if dec.ndim == 2 else dec[..., ::-1].transpose(2, 0, 1)
    out = torch.from_numpy(np.ascontiguousarray(dec)).to(x.device, x.dtype) / 255.0
    return out


# --------------------------------------------------------------------------- pipeline


@dataclass
class DegradationParams:
    """Every random choice for one image (drawn by :meth:`DegradationPipeline.sample`)."""

    kernel: np.ndarray  # k x k float32, sums to 1
    highlight_gain: float
    noise_sigma: float
    jpeg_quality: Optional[int]  # None = no JPEG
    noise_seed: int  # seeds the torch generator of Gaussian/Poisson noise
    gamma: float = 2.2  # camera response of this image (used with linear_light)
    exposure: float = 1.0  # scene gain in linear light (changes the sharp scene too)
    saturation: float = 1.0  # colour strength of the scene
    grey: bool = False  # scene made grey
    poisson_peak: float = 0.0  # photons at white (0 = no shot noise)



def luminance(x: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of ``... x 3 x H x W`` images, keeping a channel axis of 1."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * w).sum(dim=-3, keepdim=True)


class DegradationPipeline:
    """Synthetic blur + camera degradations, configured by a :class:`dbgan.config.SynthConfig`.

    Steps for one image (each optional as configured):

    0. scene augmentation (:meth:`prepare`; changes the *sharp* image too, so use
       :meth:`pair` to get both): grey (``grey_prob``), colour strength
       (``saturation``), exposure (``exposure``, a gain in linear light, clipped);
    1. draw a kernel (:func:`dbgan.blur.kernels.random_kernel`; a delta for a share
       ``identity_prob`` of the images) and the parameters below;
    2. to linear light (``linear_light``: ``x ** gamma``, gamma drawn from
       ``gamma_range`` when given: cameras differ in their response);
    3. raise highlights above 0.8 up to ``highlight_gain`` (scene radiance beyond white);
    4. FFT blur with the kernel, then clip to ``[0, 1]`` (sensor saturation);
    5. shot noise with ``poisson_peak`` photons at white (drawn log-uniformly from
       ``poisson_peak_range`` when given; in linear light when enabled);
    6. back to gamma-encoded values;
    7. Gaussian noise with std drawn from ``noise_sigma`` (steps 5 and 7 for a share
       ``noise_prob`` of the images);
    8. JPEG re-encoding at a quality drawn from ``jpeg_quality`` (if not empty; for
       a share ``jpeg_prob`` of the images).

    ``blurred, kernel = pipeline(img, rng)``: all random draws come from ``rng``
    (a ``numpy.random.Generator``), so the same image and seed give the same output.
    The options of the broad distribution draw only when they are enabled, so a
    config without them reproduces the same images as before they existed.
    """

    def __init__(self, cfg=None) -> None:
        if cfg is None:
            from dbgan.config import SynthConfig

            cfg = SynthConfig()
        self.cfg = cfg

    @classmethod
    def from_config(cls, cfg) -> "DegradationPipeline":
        """Build from a :class:`dbgan.config.SynthConfig`."""
        return cls(cfg)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg!r})"

    # -- random draws ---------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> DegradationParams:
        """Draw the kernel and all parameters for one image, in a fixed order."""
        cfg = self.cfg
        kernel = random_kernel(cfg, rng)
        gain = float(rng.uniform(*cfg.highlight_gain))
        sigma = float(rng.uniform(*cfg.noise_sigma))
        quality = None
        if cfg.jpeg_quality:
            lo, hi = (int(v) for v in cfg.jpeg_quality)
            quality = int(rng.integers(lo, hi + 1))
        seed = int(rng.integers(0, 2**62))
        p = DegradationParams(kernel, gain, sigma, quality, seed, gamma=float(cfg.gamma),
                              poisson_peak=float(cfg.poisson_peak))
        # the broad distribution's options: drawn only when enabled (old configs keep their draws)
        if getattr(cfg, "identity_prob", 0.0) > 0 and rng.random() < cfg.identity_prob:
            delta = np.zeros_like(kernel)
            c = (kernel.shape[-1] - 1) // 2
            delta[c, c] = 1.0
            p.kernel = delta
        if getattr(cfg, "gamma_range", None):
            p.gamma = float(rng.uniform(*cfg.gamma_range))
        if list(getattr(cfg, "exposure", [1.0, 1.0])) != [1.0, 1.0]:
            lo, hi = cfg.exposure
            p.exposure = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        if list(getattr(cfg, "saturation", [1.0, 1.0])) != [1.0, 1.0]:
            p.saturation = float(rng.uniform(*cfg.saturation))
        if getattr(cfg, "grey_prob", 0.0) > 0:
            p.grey = bool(rng.random() < cfg.grey_prob)
        if getattr(cfg, "poisson_peak_range", None):
            lo, hi = cfg.poisson_peak_range
            p.poisson_peak = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        if getattr(cfg, "noise_prob", 1.0) < 1.0 and rng.random() >= cfg.noise_prob:
            p.noise_sigma, p.poisson_peak = 0.0, 0.0
        if getattr(cfg, "jpeg_prob", 1.0) < 1.0 and rng.random() >= cfg.jpeg_prob:
            p.jpeg_quality = None
        return p

    # -- application ----------------------------------------------------------------

    def prepare(self, img: torch.Tensor, p: DegradationParams) -> torch.Tensor:
        """The sharp scene after the scene augmentation (grey, colour strength, exposure).

        Returns ``img`` itself when nothing is enabled.
        """
        x = img
        if x.shape[-3] == 3 and (p.grey or p.saturation != 1.0):
            y = luminance(x)
            x = y.expand_as(x) if p.grey else (y + p.saturation * (x - y))
        if p.exposure != 1.0:
            x = from_linear((to_linear(x, p.gamma) * p.exposure).clamp(0.0, 1.0), p.gamma)
        return x if x is img else x.clamp(0.0, 1.0).contiguous()

    def _before_blur(self, x: torch.Tensor, p: DegradationParams) -> torch.Tensor:
        if self.cfg.linear_light:
            x = to_linear(x, p.gamma)
        return boost_highlights(x, p.highlight_gain)

    def _after_blur(self, x: torch.Tensor, p: DegradationParams) -> torch.Tensor:
        cfg = self.cfg
        x = x.clamp(0.0, 1.0)
        gen = torch.Generator().manual_seed(p.noise_seed)
        if p.poisson_peak > 0:
            x = add_poisson_noise(x, p.poisson_peak, gen)
        if cfg.linear_light:
            x = from_linear(x, p.gamma)
        x = add_gaussian_noise(x, p.noise_sigma, gen)
        if p.jpeg_quality is not None:
            x = jpeg_roundtrip(x, p.jpeg_quality)
        return x.clamp(0.0, 1.0)

    def apply(self, img: torch.Tensor, params: DegradationParams) -> torch.Tensor:
        """Degrade ``img`` (``C x H x W`` in ``[0, 1]``, already :meth:`prepare`-d) with given parameters."""
        _check_image(img, 3)
        x = self._before_blur(img, params)
        x = fft_blur(x, params.kernel)
        return self._after_blur(x, params)

    def pair(self, img: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """``(sharp scene, blurred, kernel)`` for one image: the training pair.

        The sharp scene is ``img`` after the scene augmentation (``img`` itself when
        none is enabled); the blurred image is made from it.
        """
        params = self.sample(rng)
        _check_image(img, 3)
        scene = self.prepare(img, params)
        return scene, self.apply(scene, params), params.kernel

    def __call__(self, img: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
        """Blur and degrade one image: ``(blurred C x H x W in [0, 1], kernel k x k)``.

        With scene augmentation enabled the blurred image is that of the augmented
        scene: use :meth:`pair` to get the matching sharp image.
        """
        _, blurred, kernel = self.pair(img, rng)
        return blurred, kernel

def _check_image(img: torch.Tensor, ndim: int) -> None:
    if not isinstance(img, torch.Tensor) or img.ndim != ndim or not img.is_floating_point():
        shape = "C x H x W" if ndim == 3 else "N x C x H x W"
        got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"expected a float tensor {shape} in [0, 1], got {got}")

