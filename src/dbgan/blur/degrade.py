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

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, TypeVar, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dbgan.blur.kernels import random_kernel


def _pocketfft_entry_points():
    """pocketfft's own entry points (``scipy.fft`` wraps them), which write into given buffers.

    A private scipy module: used only if it imports and a tiny round trip through the
    ``out`` arguments is right; otherwise ``None`` and the public ``scipy.fft`` path is used.
    """
    try:
        from scipy.fft._pocketfft import pypocketfft as pf

        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        spec = np.empty((2, 3), dtype=np.complex64)
        back = np.empty_like(x)
        pf.r2c(x, axes=(1,), forward=True, inorm=0, out=spec)
        pf.c2c(spec, axes=(0,), forward=True, inorm=0, out=spec)
        pf.c2c(spec, axes=(0,), forward=False, inorm=2, out=spec)
        pf.c2r(spec, axes=(1,), lastsize=4, forward=False, inorm=2, out=back)
        return pf if np.allclose(back, x, atol=1e-5) else None
    except Exception:  # pragma: no cover - another scipy layout or signature
        return None


_pocketfft = _pocketfft_entry_points()

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
T = TypeVar("T")


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


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices into ``range(n)`` for reflect padding (``d c b | a b c d | c b a``) of any width."""
    idx = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def reflect_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last two axes; unlike ``F.pad`` the padding may exceed the image size."""
    h, w = x.shape[-2:]
    if top or bottom:
        x = x.index_select(-2, _reflect_index(h, top, bottom, x.device))
    if left or right:
        x = x.index_select(-1, _reflect_index(w, left, right, x.device))
    return x


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


_POOL: Optional[ThreadPoolExecutor] = None
_POOL_KEY: tuple[int, int] = (0, 0)
_POOL_LOCK = threading.Lock()
_MIN_PIXELS_FOR_THREADS = 1 << 18  # below this a channel is too small to be worth a thread


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-local thread pool (re-created after fork, e.g. in DataLoader workers)."""
    global _POOL, _POOL_KEY
    with _POOL_LOCK:
        key = (os.getpid(), threads)
        if _POOL is None or _POOL_KEY != key:
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dbgan-fft")
            _POOL_KEY = key
        return _POOL


def _reflect_pad_into(dst: np.ndarray, src: np.ndarray, top: int, left: int) -> None:
    """Write ``src`` reflect-padded (``d c b | a b c d | c b a``) into ``dst``, no allocation.

    ``dst`` is larger than ``src`` by ``top``/``left`` before and the rest after; every
    pad must be smaller than the image side (callers fall back to :func:`reflect_pad`).
    """
    h, w = src.shape
    bottom, right = dst.shape[0] - h - top, dst.shape[1] - w - left
    rows = dst[top : top + h]
    rows[:, left : left + w] = src
    if left:
        rows[:, :left] = src[:, left:0:-1]
    if right:
        rows[:, left + w :] = src[:, w - 2 : w - 2 - right : -1] if w - 2 - right >= 0 else src[:, w - 2 :: -1][:, :right]
    if top:
        dst[:top] = dst[2 * top : top : -1]
    if bottom:
        end = top + h - 2 - bottom
        dst[top + h :] = dst[top + h - 2 : end : -1] if end >= 0 else dst[top + h - 2 :: -1][:bottom]


def _axis_plan(n: int, k: int) -> tuple[int, int, int, int]:
    """How :func:`_fft_blur_cpu` handles one axis of length ``n`` for a kernel of length ``k``.

    Returns ``(fft size, reflect pad before, wrong band before, wrong band after)``. Output
    position ``r`` needs input ``r - a .. r + b`` (``a = k // 2``, ``b = (k - 1) // 2``).
    The plain plan pads by ``a`` and ``b`` and rounds up to a fast FFT size: no band is
    wrong. When the image side itself rounds to a smaller fast size (1024, 1000, ...), the
    transform is done at that size with only the rounding as padding; the circular wrap
    then spoils at most ``a`` rows before and ``b`` after, which are redone separately
    (see :class:`_BandRedo`). That saves a fifth of the work at 1024x1024.
    """
    import scipy.fft as sfft

    a, b = k // 2, (k - 1) // 2
    full = sfft.next_fast_len(n + a + b, True)
    tight = sfft.next_fast_len(n, True)
    if tight >= full or n < 8 * k:
        return full, a, 0, 0
    pad = tight - n
    before = min(a, pad)
    return tight, before, a - before, max(0, b - (pad - before))


def _valid_conv_spectrum(kk: np.ndarray, hs: int, ws: int) -> np.ndarray:
    """Spectrum of ``kk`` for :func:`_valid_conv_batch` on strips of ``hs x ws``."""
    import scipy.fft as sfft

    gh, gw = sfft.next_fast_len(hs), sfft.next_fast_len(ws, True)
    return sfft.fft(sfft.rfft(kk, n=gw, axis=-1), n=gh, axis=0)


def _valid_conv_batch(strips: np.ndarray, spec_k: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """``'valid'`` convolution of each ``strips[m]`` with a ``kh x kw`` kernel, by FFT.

    ``spec_k`` comes from :func:`_valid_conv_spectrum` for this strip size.
    """
    import scipy.fft as sfft

    hs, ws = strips.shape[-2:]
    gh, gw = spec_k.shape[0], sfft.next_fast_len(ws, True)
    spec = sfft.rfft(strips, n=gw, axis=-1)
    spec = sfft.fft(spec, n=gh, axis=-2, overwrite_x=True)
    spec *= spec_k
    spec = sfft.ifft(spec, axis=-2, overwrite_x=True)[:, kh - 1 : hs]
    return sfft.irfft(spec, n=gw, axis=-1)[:, :, kw - 1 : ws]


class _BandRedo:
    """Recomputes the output bands a tight circular transform got wrong (see :func:`_axis_plan`).

    Each band is convolved exactly ('valid' convolution of a reflect-padded strip of the
    input, by a small FFT): full-width strips for the top and bottom bands, then the left
    and right bands between them. Strips on opposite sides go through one batched call.
    """

    def __init__(self, h: int, w: int, kh: int, kw: int, rows: tuple[int, int], cols: tuple[int, int]):
        self.h, self.w, self.kh, self.kw = h, w, kh, kw
        ah, bh, aw, bw = kh // 2, (kh - 1) // 2, kw // 2, (kw - 1) // 2
        top, bottom = rows
        left, right = cols
        # a strip's window must be longer than its reflected part: a row or two more if needed
        hb, wb = max(*rows, abs(ah - bh) + 1), max(*cols, abs(aw - bw) + 1)
        # (output rows, output cols) of each strip; all strips of one orientation share a size
        self.horizontal = [((r0, r0 + hb), (0, w)) for r0, n in ((0, top), (h - hb, bottom)) if n]
        self.vertical = [((top, h - bottom), (c0, c0 + wb)) for c0, n in ((0, left), (w - wb, right)) if n]
        self.halo = (ah, bh, aw, bw)

    def _strip_shape(self, strips: list) -> tuple[int, int]:
        (r0, r1), (c0, c1) = strips[0]
        return r1 - r0 + self.kh - 1, c1 - c0 + self.kw - 1

    def spectra(self, kk: np.ndarray) -> list[np.ndarray]:
        return [_valid_conv_spectrum(kk, *self._strip_shape(s)) for s in (self.horizontal, self.vertical) if s]

    def __call__(self, out: np.ndarray, src: np.ndarray, spectra: list[np.ndarray]) -> None:
        ah, bh, aw, bw = self.halo
        h, w = self.h, self.w
        for strips, spec_k in zip([s for s in (self.horizontal, self.vertical) if s], spectra):
            buf = np.empty((len(strips),) + self._strip_shape(strips), dtype=src.dtype)
            for j, ((r0, r1), (c0, c1)) in enumerate(strips):
                # the reflect-extended input window rows r0-ah..r1+bh, cols c0-aw..c1+bw
                lo_r, lo_c = r0 - ah, c0 - aw
                window = src[max(lo_r, 0) : min(r1 + bh, h), max(lo_c, 0) : min(c1 + bw, w)]
                _reflect_pad_into(buf[j], window, max(0, -lo_r), max(0, -lo_c))
            for ((r0, r1), (c0, c1)), band in zip(strips, _valid_conv_batch(buf, spec_k, self.kh, self.kw)):
                out[r0:r1, c0:c1] = band


def _shared_items(items: Iterable[T]) -> Callable[[], Iterator[T]]:
    """Hand ``items`` out to several threads: each calls the result for its own iterator,
    and every item goes to whichever thread asks next (so a slower thread takes fewer)."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        todo.put(item)

    def take() -> Iterator[T]:
        while True:
            try:
                yield todo.get_nowait()
            except queue.Empty:
                return

    return take


def _circular_convolve(
    padded: np.ndarray, spec_k: np.ndarray, rows: slice, bufc: np.ndarray, dest: np.ndarray
) -> None:
    """Rows ``rows`` of the circular convolution of ``padded`` with a kernel, into ``dest``.

    ``spec_k`` is the kernel's spectrum scaled by ``1 / padded.size`` (so no transform
    normalises); ``bufc`` is a reused ``fh x (fw // 2 + 1)`` complex buffer. With
    pocketfft's entry points every step writes into ``bufc`` or ``dest``: a fresh
    multi-megabyte array per transform costs page faults comparable to the transform.
    """
    import scipy.fft as sfft

    fw = padded.shape[1]
    if _pocketfft is not None:
        _pocketfft.r2c(padded, axes=(1,), forward=True, inorm=0, out=bufc)
        _pocketfft.c2c(bufc, axes=(0,), forward=True, inorm=0, out=bufc)
        bufc *= spec_k
        _pocketfft.c2c(bufc, axes=(0,), forward=False, inorm=0, out=bufc)
        _pocketfft.c2r(bufc[rows], axes=(1,), lastsize=fw, forward=False, inorm=0, out=dest)
        return
    spec = sfft.fft(sfft.rfft(padded, axis=1), axis=0, overwrite_x=True)
    spec *= spec_k
    spec = sfft.ifft(spec, axis=0, norm="forward", overwrite_x=True)
    dest[...] = sfft.irfft(spec[rows], n=fw, axis=1, norm="forward")


def _fft_blur_cpu(img: torch.Tensor, kb: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """CPU FFT blur with pocketfft (``scipy.fft``), one channel at a time.

    Per channel: real FFT of the rows, complex FFT of the columns in place, multiply by
    the kernel's spectrum, inverse column FFT in place, and the inverse real FFT of only
    the rows that are kept. That is two transforms per channel
    (``scipy.signal.fftconvolve`` does three: it also transforms the zero-padded kernel),
    with each kernel's spectrum computed once per image and shared by its channels
    (from its few non-zero rows, placed at their circular offsets). Sizes come from
    :func:`_axis_plan`: an image whose side is already a fast FFT size (1024, ...) is
    transformed unpadded and the thin bands spoiled by the circular wrap are redone
    exactly; otherwise it is reflect-padded into a reused buffer. Channel by channel
    keeps the working set in cache (a batched transform of many megapixel channels is
    memory-bound); channels run in as many threads as ``torch.get_num_threads()``
    (pocketfft releases the GIL).
    """
    import scipy.fft as sfft

    x = img.detach().contiguous().numpy()
    x4 = x.reshape((-1,) + x.shape[-3:])  # (B, C, H, W)
    kn = kb.detach().contiguous().numpy()
    k4 = kn.reshape((1,) * (4 - kn.ndim) + kn.shape)  # (Bk or 1, Ck or 1, kh, kw)
    n_img, n_ch = x4.shape[:2]
    n_kch = min(n_ch, k4.shape[1])
    h, w = x4.shape[-2:]
    fh, top, band_t, band_b = _axis_plan(h, kh)
    fw, left, band_l, band_r = _axis_plan(w, kw)
    bands = bool(band_t or band_b or band_l or band_r)
    unpadded = fh == h and fw == w
    # Reflect-pad straight to the FFT size: the circular convolution of size (fh, fw)
    # equals the linear one on the kept window, whatever lies beyond the padding.
    small = max(top, fh - h - top) >= h or max(left, fw - w - left) >= w  # padding wider than the image
    ch, cw = (kh - 1) // 2, (kw - 1) // 2  # kernel centre (scipy 'same' convention)
    cplx = np.result_type(x4.dtype, np.complex64)
    # the kernel's taps sit at circular offsets -centre..: output pixel r lands at r + pad
    # (kh <= fh and kw <= fw always: the FFT sizes cover image + kernel or 8 kernel widths)
    tap_rows, tap_cols = (np.arange(kh) - ch) % fh, (np.arange(kw) - cw) % fw
    rows, cols = slice(top, top + h), slice(left, left + w)
    out = np.empty_like(x4)

    redo = _BandRedo(h, w, kh, kw, (band_t, band_b), (band_l, band_r)) if bands else None

    def spectrum(i: int, c: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """The kernel's spectrum for the main transform, and those for the band strips."""
        kk = k4[min(i, k4.shape[0] - 1), min(c, k4.shape[1] - 1)]
        rows_k = np.zeros((kh, fw), dtype=x4.dtype)
        rows_k[:, tap_cols] = kk / (fh * fw)  # pre-scaled: no transform normalises
        spec = np.zeros((fh, fw // 2 + 1), dtype=cplx)
        spec[tap_rows] = sfft.rfft(rows_k, axis=-1)  # only the kernel's few rows
        spec = sfft.fft(spec, axis=0, overwrite_x=True)
        return spec, (redo.spectra(kk) if redo else [])

    def blur_channels(jobs: Iterable[tuple[int, int]], spectra: dict) -> None:
        """Blur the given (image, channel) pairs; missing kernel spectra are computed on the way."""
        xp = None if unpadded else np.empty((fh, fw), dtype=x4.dtype)
        bufc = np.empty((fh, fw // 2 + 1), dtype=cplx)
        bufr = None if fw == w else np.empty((h, fw), dtype=x4.dtype)
        for i, c in jobs:
            key = (i, min(c, n_kch - 1))
            if key not in spectra:
                spectra.clear()  # a thread's images come in order: keep one image's spectra
                spectra[key] = spectrum(*key)
            src = x4[i, c]
            if xp is None:
                padded = src
            elif small:
                padded = reflect_pad(torch.from_numpy(src), top, fh - h - top, left, fw - w - left).numpy()
            else:
                _reflect_pad_into(xp, src, top, left)
                padded = xp
            main, strip_spectra = spectra[key]
            _circular_convolve(padded, main, rows, bufc, out[i, c] if bufr is None else bufr)
            if bufr is not None:
                out[i, c] = bufr[:, cols]
            if redo:
                redo(out[i, c], src, strip_spectra)

    jobs = [(i, c) for i in range(n_img) for c in range(n_ch)]
    threads = max(1, torch.get_num_threads())
    if threads == 1 or len(jobs) == 1 or h * w < _MIN_PIXELS_FOR_THREADS:
        blur_channels(jobs, {})
    elif n_img >= threads:
        # whole images, handed out one at a time to whichever thread is free (a thread
        # slowed down by other load on its core takes fewer); each computes its own spectra
        images = _shared_items(range(n_img))
        list(_pool(threads).map(lambda _: blur_channels(((i, c) for i in images() for c in range(n_ch)), {}), range(threads)))
    else:
        # fewer images than threads: the kernel spectra first, then channels one at a time
        pool = _pool(threads)
        keys = [(i, c) for i in range(n_img) for c in range(n_kch)]
        spectra = dict(zip(keys, pool.map(lambda ic: spectrum(*ic), keys)))
        channels = _shared_items(jobs)
        list(pool.map(lambda _: blur_channels(channels(), dict(spectra)), range(min(threads, len(jobs)))))
    return torch.from_numpy(out.reshape(x.shape)).to(img.dtype)


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
        return _fft_blur_cpu(img, kb, kh, kw)

    fh, fw = _fast_len(h + 2 * ph), _fast_len(w + 2 * pw)
    # Reflect-pad straight to the FFT size (see _fft_blur_cpu).
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


LUMA = (0.299, 0.587, 0.114)


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

    def apply_batch(
        self, imgs: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Degrade ``N x C x H x W`` images, each with its own kernel, in one batched FFT.

        Draws parameters image by image in the same order as ``N`` calls of
        ``pipeline(img, rng)`` with the same ``rng``, so the results agree with them
        (up to float rounding). Returns ``(N x C x H x W, N x k x k kernels)``.
        """
        _check_image(imgs, 4)
        params = [self.sample(rng) for _ in range(imgs.shape[0])]
        kernels = np.stack([p.kernel for p in params])
        x = torch.stack([self._before_blur(self.prepare(im, p), p) for im, p in zip(imgs, params)])
        x = fft_blur(x, kernels)
        out = torch.stack([self._after_blur(xi, p) for xi, p in zip(x, params)])
        return out, kernels


def _check_image(img: torch.Tensor, ndim: int) -> None:
    if not isinstance(img, torch.Tensor) or img.ndim != ndim or not img.is_floating_point():
        shape = "C x H x W" if ndim == 3 else "N x C x H x W"
        got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"expected a float tensor {shape} in [0, 1], got {got}")

