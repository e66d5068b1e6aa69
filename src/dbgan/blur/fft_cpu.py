"""The CPU fast path of :func:`dbgan.blur.degrade.fft_blur`: pocketfft, channel by channel.

One public function, :func:`fft_blur_cpu`. It uses pocketfft's own entry points
(``scipy.fft._pocketfft``, which write into given buffers) when a tiny round trip
through them is right at import, and the public ``scipy.fft`` functions otherwise.
Each channel's transforms run in a process-local thread pool (pocketfft releases
the GIL).
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import numpy as np
import torch

from dbgan.blur.padding import reflect_pad

__all__ = ["fft_blur_cpu"]

T = TypeVar("T")


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
    """How :func:`fft_blur_cpu` handles one axis of length ``n`` for a kernel of length ``k``.

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


def fft_blur_cpu(img: torch.Tensor, kb: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
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
