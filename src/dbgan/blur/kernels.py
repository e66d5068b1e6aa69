"""Blur kernels (point spread functions) as numpy arrays: camera shake, linear motion, defocus, Gaussian.

Every kernel is a ``size x size`` ``float32`` array, non-negative, summing to 1,
with its centre of mass at the centre pixel (``size // 2`` for odd sizes). Random
kernels take a ``numpy.random.Generator``; the same seed gives the same kernel.

Camera shake (:func:`motion_kernel`, :func:`motion_kernels`) follows the
random-trajectory recipe of the widely used ``motionblur`` generator
(LeviBorodenko/motionblur): a path of random steps whose directions stay within
a random cone, keep their turning sign with a random "jitter" probability of
flipping, and whose total length grows with ``intensity`` in ``[0, 1]``
(0: short straight streak; 1: long, curved, jittery trajectory). The path is
then randomly rotated, drawn on a 2x supersampled canvas (dense samples along
the path, bilinear splat), smoothed and downsampled by a binomial filter (a
small Gaussian) and normalised. Unlike the original it is vectorised across
steps and kernels (no PIL line drawing), the path is scaled to fit the kernel
instead of being clipped by it, and the kernel's centre of mass is exactly the
centre pixel (every step keeps the centre of mass of the centred path).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dbgan.constants import KERNEL_KINDS

__all__ = [
    "motion_kernel",
    "motion_kernels",
    "linear_motion_kernel",
    "defocus_kernel",
    "gaussian_kernel",
    "random_kernel",
    "pad_kernel",
    "kernel_extent",
    "KERNEL_KINDS",
]


_MAX_STEPS = 48  # most trajectory steps at intensity 1
_SUPERSAMPLE = 2
_MARGIN = 3.0  # supersampled pixels kept free around a fitted path
_SAMPLES_PER_PX = 2.0  # path samples per supersampled pixel of path length
_EPS = 0.1


def _check_size(size: int) -> int:
    size = int(size)
    if size < 1:
        raise ValueError(f"kernel size must be >= 1, got {size}")
    return size


def _normalise(k: np.ndarray) -> np.ndarray:
    """Clip to >= 0 and scale to sum 1 over the last two axes (a delta where all mass vanished)."""
    k = np.maximum(k, 0.0)
    s = k.sum(axis=(-2, -1), keepdims=True)
    empty = s[..., 0, 0] <= 0
    if np.any(empty):
        c = (k.shape[-1] - 1) // 2  # the centre pixel fft_blur uses
        k[empty] = 0.0
        k[empty, c, c] = 1.0
        s = k.sum(axis=(-2, -1), keepdims=True)
    return (k / s).astype(np.float32)


# --------------------------------------------------------------------------- path rendering


def _downsample2(img: np.ndarray, axis: int) -> np.ndarray:
    """Halve ``axis`` with the binomial filter [1, 3, 3, 1] / 4 at stride 2.

    Output pixel ``j`` takes canvas pixels ``2j-1 .. 2j+2``: each canvas pixel
    splits its mass linearly between the two nearest output pixels, so mass and
    centre of mass are kept exactly, and the filter doubles as the small Gaussian
    smoothing of the original recipe.
    """
    pad = [(0, 0)] * img.ndim
    pad[axis] = (1, 1)
    p = np.pad(img, pad)
    n = img.shape[axis] // 2

    def take(start: int) -> np.ndarray:
        sl = [slice(None)] * img.ndim
        sl[axis] = slice(start, start + 2 * n, 2)
        return p[tuple(sl)]

    return 0.25 * (take(0) + take(3)) + 0.75 * (take(1) + take(2))


def _render_paths(vertices: np.ndarray, size: int, centre: bool = True) -> np.ndarray:
    """Draw polylines as kernels (vectorised over paths and segments).

    Points are sampled densely and evenly along each path's arclength (constant
    speed: every stretch of path gets the same exposure), splatted bilinearly on a
    2x supersampled canvas, and the canvas is smoothed and halved by a binomial
    filter. Both steps keep each sample's mass and the centre of mass exactly.

    Args:
        vertices: ``(n, m, 2)`` polyline vertices (x, y) in supersampled-canvas units;
            repeated vertices (zero-length segments) are fine.
        size: kernel size.
        centre: translate each path so that its mass centre is the kernel centre and
            scale it down (shape kept) if it would not fit, instead of clipping it.

    Returns:
        ``(n, size, size)`` float32 kernels summing to 1.
    """
    n, m, _ = vertices.shape
    canvas = size * _SUPERSAMPLE
    c = (canvas - 1) / 2.0  # canvas position of the kernel centre
    half = max(c - _MARGIN, 0.0)  # splat and filter then stay inside the kernel

    seg = np.diff(vertices, axis=1)  # (n, m-1, 2)
    seg_len = np.hypot(seg[..., 0], seg[..., 1])
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(seg_len, axis=1)], axis=1)  # (n, m)
    total = cum[:, -1]

    # enough samples for the longest path of the batch (paths only shrink when fitted)
    longest = float(np.max(total)) if n else 0.0
    p = int(min(max(8, math.ceil(_SAMPLES_PER_PX * longest) + 1), 64 * canvas))
    t = np.linspace(0.0, 1.0, p)[None, :] * total[:, None]  # (n, p) arclength positions

    # each sample's segment: one flat searchsorted, rows kept apart by offsets
    stride = longest + 1.0
    offs = (np.arange(n, dtype=np.float64) * stride)[:, None]
    idx = np.searchsorted((cum + offs).ravel(), (t + offs).ravel(), side="right").reshape(n, p)
    idx = np.clip(idx - (np.arange(n) * m)[:, None] - 1, 0, m - 2)
    rows = np.arange(n)[:, None]
    ln = seg_len[rows, idx]
    frac = (t - cum[rows, idx]) / np.where(ln > 0, ln, np.inf)
    pts = vertices[rows, idx] + frac[..., None] * seg[rows, idx]  # (n, p, 2)

    if centre:
        pts -= pts.mean(axis=1, keepdims=True)
        reach = np.abs(pts).max(axis=(1, 2))
        pts *= np.where(reach > half, half / np.maximum(reach, 1e-12), 1.0)[:, None, None]
    pts += c
    np.clip(pts, 0.0, canvas - 1.0, out=pts)  # (only matters for centre=False)

    # bilinear splat of all samples with a single bincount
    x0 = np.minimum(np.floor(pts[..., 0]), canvas - 2).astype(np.int64)
    y0 = np.minimum(np.floor(pts[..., 1]), canvas - 2).astype(np.int64)
    fx = pts[..., 0] - x0
    fy = pts[..., 1] - y0
    flat = (np.arange(n, dtype=np.int64) * canvas * canvas)[:, None] + y0 * canvas + x0
    index = np.concatenate([flat, flat + 1, flat + canvas, flat + canvas + 1]).ravel()
    weight = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]).ravel()
    img = np.bincount(index, weights=weight, minlength=n * canvas * canvas).reshape(n, canvas, canvas)
    k = _downsample2(_downsample2(img, 1), 2)
    return _normalise(k)


# --------------------------------------------------------------------------- camera shake


def _shake_vertices(n: int, size: int, intensity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random camera-shake trajectories ``(n, _MAX_STEPS + 1, 2)`` on the supersampled canvas.

    Draws (all vectorised, in a fixed order so that a seed reproduces the batch):
    path length ~ canvas * (0.1 + 0.9 I) * U(0.4, 1) + canvas * U(0, I^2) (longer with I);
    number of steps 1 + round(I * (max-1) * U(0.3, 1)); step lengths Beta(1, 3)
    weights (mean step length grows with path length); maximum angle U(0, I pi);
    angles |a| ~ Triangular(0, I * max_angle, max_angle + eps); sign flips with
    probability Beta(2, 20) * (1 + 3 I) per step; a random overall rotation.
    """
    canvas = size * _SUPERSAMPLE
    i = intensity.astype(np.float64)
    m = _MAX_STEPS
    length = canvas * ((0.1 + 0.9 * i) * rng.uniform(0.4, 1.0, n) + rng.uniform(0.0, 1.0, n) * i**2)
    n_steps = 1 + np.rint(i * (m - 1) * rng.uniform(0.3, 1.0, n)).astype(np.int64)
    weights = rng.beta(1.0, 3.0, (n, m)) + 1e-3
    weights[np.arange(m)[None, :] >= n_steps[:, None]] = 0.0
    steps = length[:, None] * weights / weights.sum(axis=1, keepdims=True)

    max_angle = rng.uniform(0.0, 1.0, n) * i * math.pi
    jitter = np.minimum(rng.beta(2.0, 20.0, n) * (1.0 + 3.0 * i), 0.9)
    right = max_angle + _EPS
    mode = i * max_angle
    u = rng.uniform(0.0, 1.0, (n, m))
    # Triangular(0, mode, right) by inverse CDF (vectorised over per-kernel parameters)
    fc = (mode / right)[:, None]
    r, md = right[:, None], mode[:, None]
    mag = np.where(u < fc, np.sqrt(u * r * md), r - np.sqrt(np.maximum((1 - u) * r * (r - md), 0.0)))
    first = rng.uniform(-1.0, 1.0, n) * max_angle
    mag[:, 0] = np.abs(first)
    flips = np.where(rng.uniform(0.0, 1.0, (n, m)) < jitter[:, None], -1.0, 1.0)
    flips[:, 0] = np.where(first < 0, -1.0, 1.0)
    angles = mag * np.cumprod(flips, axis=1) + rng.uniform(0.0, 2.0 * math.pi, n)[:, None]

    inc = steps[..., None] * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    verts = np.concatenate([np.zeros((n, 1, 2)), np.cumsum(inc, axis=1)], axis=1)
    return verts


def motion_kernels(
    n: int,
    size: int,
    intensity_range: float | Sequence[float],
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` random camera-shake kernels at once: ``(n, size, size)`` float32.

    Args:
        n: number of kernels.
        size: kernel size in pixels (odd sizes keep the centre on a pixel).
        intensity_range: a number in ``[0, 1]`` or ``(low, high)``; each kernel
            draws its intensity uniformly from the range.
        rng: the random generator (same state -> same kernels).
    """
    size = _check_size(size)
    if np.isscalar(intensity_range):
        lo = hi = float(intensity_range)  # type: ignore[arg-type]
    else:
        lo, hi = (float(v) for v in intensity_range)  # type: ignore[union-attr]
    if not (0.0 <= lo <= hi <= 1.0):
        raise ValueError(f"motion intensity must lie in [0, 1] with low <= high, got {intensity_range}")
    n = int(n)
    if n <= 0:
        return np.zeros((0, size, size), np.float32)
    intensity = rng.uniform(lo, hi, n) if hi > lo else np.full(n, lo)
    return _render_paths(_shake_vertices(n, size, intensity, rng), size)


def motion_kernel(size: int, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """One random camera-shake kernel (``size x size``, float32, sums to 1).

    ``intensity`` in ``[0, 1]``: 0 gives a short straight streak, 1 a long curved,
    jittery path. See the module docstring for the recipe.
    """
    return motion_kernels(1, size, float(intensity), rng)[0]


# --------------------------------------------------------------------------- parametric kernels


def linear_motion_kernel(size: int, length: float, angle_deg: float) -> np.ndarray:
    """Uniform straight-line motion of ``length`` pixels at ``angle_deg`` (counter-clockwise from +x).

    The line is centred and anti-aliased; lengths longer than the kernel's
    diagonal are shortened to fit.
    """
    size = _check_size(size)
    if length < 0:
        raise ValueError(f"linear motion length must be >= 0, got {length}")
    a = math.radians(angle_deg)
    half = 0.5 * float(length) * _SUPERSAMPLE
    d = np.array([math.cos(a), -math.sin(a)])  # image y axis points down
    verts = np.stack([-half * d, half * d])[None]  # (1, 2, 2)
    return _render_paths(verts, size, centre=True)[0]


def defocus_kernel(size: int, radius: float) -> np.ndarray:
    """Anti-aliased uniform disk of ``radius`` pixels (out-of-focus blur), centred.

    Each pixel's weight is the fraction of its area inside the disk (8 x 8
    subsamples). Radii below half a pixel give a delta.
    """
    size = _check_size(size)
    if radius < 0:
        raise ValueError(f"defocus radius must be >= 0, got {radius}")
    radius = min(float(radius), size / 2.0)
    ss = 8
    c = (size - 1) / 2.0
    sub = (np.arange(size * ss) + 0.5) / ss - 0.5 - c
    inside = (sub[None, :] ** 2 + sub[:, None] ** 2) <= radius**2
    k = inside.reshape(size, ss, size, ss).mean(axis=(1, 3)).astype(np.float64)
    return _normalise(k)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Anisotropic Gaussian: ``sigma_x`` along the axis at ``theta`` radians, ``sigma_y`` across it.

    ``sigma_y`` defaults to ``sigma_x`` (isotropic). A sigma of 0 collapses that
    axis (a delta when both are 0).
    """
    size = _check_size(size)
    sigma_y = sigma_x if sigma_y is None else sigma_y
    if sigma_x < 0 or sigma_y < 0:
        raise ValueError(f"gaussian sigmas must be >= 0, got {sigma_x}, {sigma_y}")
    c = (size - 1) / 2.0
    r = np.arange(size) - c
    x, y = np.meshgrid(r, r)
    ct, st = math.cos(theta), math.sin(theta)
    u = ct * x + st * y
    v = -st * x + ct * y
    sx, sy = max(float(sigma_x), 1e-3), max(float(sigma_y), 1e-3)
    k = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return _normalise(k)


# --------------------------------------------------------------------------- config-driven


def random_kernel(cfg, rng: np.random.Generator) -> np.ndarray:
    """Draw one kernel as ``cfg`` (a :class:`dbgan.config.SynthConfig`) describes.

    The kind is drawn uniformly from ``cfg.kernels``; its parameters uniformly from
    the matching ranges (``intensity``, ``linear_length`` with a uniform angle,
    ``defocus_radius``, ``gaussian_sigma`` for each axis with a uniform orientation).
    With ``cfg.kernel_sizes`` (odd sizes up to ``kernel_size``), a motion kernel is
    drawn on a canvas of a size picked from that list, so shake of every extent
    occurs, and centred in the ``kernel_size`` frame.
    """
    kinds = list(cfg.kernels)
    if not kinds:
        raise ValueError("synth.kernels must name at least one kernel kind")
    kind = kinds[int(rng.integers(len(kinds)))] if len(kinds) > 1 else kinds[0]
    size = int(cfg.kernel_size)
    if kind == "motion":
        sizes = list(getattr(cfg, "kernel_sizes", None) or [])
        if not sizes:
            return motion_kernels(1, size, tuple(cfg.intensity), rng)[0]
        # camera shake of every extent: the path is drawn on a canvas of a random size
        # (its length scales with the canvas) and centred in the kernel_size frame
        inner = int(sizes[int(rng.integers(len(sizes)))]) if len(sizes) > 1 else int(sizes[0])
        return pad_kernel(motion_kernels(1, inner, tuple(cfg.intensity), rng)[0], size)
    if kind == "linear":
        lo, hi = cfg.linear_length
        return linear_motion_kernel(size, rng.uniform(lo, hi), rng.uniform(0.0, 180.0))
    if kind == "defocus":
        lo, hi = cfg.defocus_radius
        return defocus_kernel(size, rng.uniform(lo, hi))
    if kind == "gaussian":
        lo, hi = cfg.gaussian_sigma
        return gaussian_kernel(size, rng.uniform(lo, hi), rng.uniform(lo, hi), rng.uniform(0.0, math.pi))
    raise ValueError(f"unknown kernel kind {kind!r}; valid: {', '.join(KERNEL_KINDS)}")


def pad_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """Centre an odd ``k x k`` kernel in a ``size x size`` frame of zeros (``k <= size``, both odd)."""
    k = kernel.shape[-1]
    if k == size:
        return kernel
    if k > size or (size - k) % 2:
        raise ValueError(f"cannot centre a {k}x{k} kernel in {size}x{size} (needs k <= size, same parity)")
    m = (size - k) // 2
    out = np.zeros((size, size), dtype=kernel.dtype)
    out[m : m + k, m : m + k] = kernel
    return out


def kernel_extent(kernel: np.ndarray) -> np.ndarray:
    """Spatial spread of kernels: the radius of gyration (pixels) about the centre of mass.

    Accepts ``(k, k)`` or ``(n, k, k)``; returns a scalar array or ``(n,)``.
    """
    k = np.asarray(kernel, dtype=np.float64)
    size = k.shape[-1]
    r = np.arange(size, dtype=np.float64)
    s = k.sum(axis=(-2, -1))
    mx = (k.sum(axis=-2) * r).sum(-1) / s
    my = (k.sum(axis=-1) * r).sum(-1) / s
    vx = (k.sum(axis=-2) * r**2).sum(-1) / s - mx**2
    vy = (k.sum(axis=-1) * r**2).sum(-1) / s - my**2
    return np.sqrt(np.maximum(vx + vy, 0.0))
