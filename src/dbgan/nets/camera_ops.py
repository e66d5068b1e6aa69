"""Differentiable camera maths for :mod:`dbgan.nets.camera_blur` (pure functions, no state).

Every function works on ``float32`` tensors; images are ``N x C x H x W``. The model of a
camera used here, in the order light goes through it:

1. the sharp photo's encoded values are turned into scene radiance (:func:`srgb_to_linear`);
2. exposure and white balance scale it (done by the module);
3. the lens and the shaking camera blur it: kernels drawn as thick polylines
   (:func:`render_kernels`), several per image mixed by smooth weights, applied by FFT
   (:func:`fft_blur`);
4. the sensor adds shot and read noise and saturates (:func:`poisson_gaussian`);
5. a monotone response curve per channel encodes it (:func:`monotone_curve`);
6. optionally JPEG, approximated differentiably (:func:`soft_jpeg`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dbgan.degradation_stats import interp_monotone

# --------------------------------------------------------------------------- tone


def srgb_to_linear(x: Tensor) -> Tensor:
    """The sRGB decoding (IEC 61966-2-1) of values in ``[0, 1]``."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(1e-12) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    """The sRGB encoding of linear values in ``[0, 1]``."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


#: the response curve's knots lie at ``t = (j / K) ** KNOT_POWER``: dense in the shadows,
#: where tone curves bend most, and near-uniform in the encoded (sRGB-like) domain
KNOT_POWER = 2.2


def knot_positions(knots: int) -> Tensor:
    """Linear-light input values of the response curve's ``knots + 1`` knots."""
    return (torch.arange(knots + 1, dtype=torch.float32) / knots) ** KNOT_POWER


def monotone_values(offset: Tensor, raw_steps: Tensor) -> Tensor:
    """Knot values ``offset + cumsum(softplus(raw_steps))``: non-decreasing by construction.

    Args:
        offset: ``C`` values, the response at 0 (a camera's black level).
        raw_steps: ``C x K`` unconstrained steps between consecutive knots.

    Returns:
        ``C x (K + 1)`` knot values.
    """
    steps = F.softplus(raw_steps)
    return torch.cat([offset[:, None], offset[:, None] + steps.cumsum(1)], 1)


def shifted_curve(values: Tensor, shift: Tensor) -> Tensor:
    """Knot values ``values + shift`` (both ``C x (K + 1)``), kept in ``[0, 1]`` and non-decreasing."""
    return (values + shift).clamp(0.0, 1.0).cummax(1).values


def inverse_softplus(x: Tensor) -> Tensor:
    """``y`` with ``softplus(y) = x`` for ``x > 0``."""
    x = x.clamp_min(1e-6)
    return x + torch.log(-torch.expm1(-x))


def monotone_curve(x: Tensor, values: Tensor) -> Tensor:
    """Piecewise-linear curve through ``values`` (``C x (K + 1)``) at :func:`knot_positions`, per channel.

    ``x`` (``N x C x H x W``) is clamped to ``[0, 1]``; interpolation runs in the
    ``t ** (1 / KNOT_POWER)`` domain, where the knots are evenly spaced.
    """
    c, k1 = values.shape
    if x.shape[1] != c:
        raise ValueError(f"monotone_curve: {c} curves for {x.shape[1]} channels")
    k = k1 - 1
    x = x.clamp(0.0, 1.0)
    tiny = 1e-6  # below it the power is replaced by its chord: u(0) = 0 with a finite gradient
    u = torch.where(x > tiny, x.clamp_min(tiny) ** (1.0 / KNOT_POWER), x * tiny ** (1.0 / KNOT_POWER - 1.0)) * k
    lo = u.detach().floor().clamp(0, k - 1)
    frac = u - lo
    idx = lo.long()
    table = values[None, :, :, None].expand(x.shape[0], c, k1, x.shape[2] * x.shape[3])
    flat = idx.flatten(2)[:, :, None, :]
    v0 = torch.gather(table, 2, flat).reshape_as(x)
    v1 = torch.gather(table, 2, flat + 1).reshape_as(x)
    return v0 + (v1 - v0) * frac


# --------------------------------------------------------------------------- kernels


def safe_norm(v: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    """Euclidean norm along ``dim`` with a finite gradient at 0 (``torch.norm``'s is NaN there)."""
    return ((v * v).sum(dim) + eps).sqrt()


def polyline_lengths(points: Tensor) -> Tensor:
    """Segment lengths of polylines ``... x T x 2`` -> ``... x (T - 1)``."""
    return safe_norm(points[..., 1:, :] - points[..., :-1, :])


def center_polyline(points: Tensor) -> Tensor:
    """Shift polylines (``... x T x 2``) so that their length-weighted centroid is at 0."""
    mids = 0.5 * (points[..., 1:, :] + points[..., :-1, :])
    w = polyline_lengths(points) + 1e-6
    centroid = (mids * w[..., None]).sum(-2) / w.sum(-1, keepdim=True)
    return points - centroid[..., None, :]


def render_kernels(points: Tensor, radius: Tensor, softness: Tensor, size: int) -> Tensor:
    """Blur kernels drawn as thick polylines: camera shake (the path) times a defocus disc.

    Each pixel ``p`` of a ``size x size`` grid (centre at ``(size - 1) / 2``) gets
    ``sum_t len_t * sigmoid((radius - dist(p, segment_t)) / softness)``: a disc of
    ``radius`` swept along the path, with edges ``softness`` wide. Kernels are
    non-negative and sum to 1; a path whose length-weighted centroid is 0
    (:func:`center_polyline`) gives a kernel centred on the grid.

    Args:
        points: ``N x T x 2`` path points ``(x, y)`` in pixels (``T >= 2``).
        radius: ``N`` disc radii (pixels, ``>= 0``).
        softness: ``N`` edge widths (pixels, ``> 0``).
        size: odd kernel side.

    Returns:
        ``N x size x size`` kernels.
    """
    n, t, _ = points.shape
    ax = torch.arange(size, dtype=points.dtype, device=points.device) - (size - 1) / 2
    grid = torch.stack(torch.meshgrid(ax, ax, indexing="xy"), -1).reshape(1, 1, -1, 2)  # (1,1,P,2): x, y
    a = points[:, :-1, None, :]
    b = points[:, 1:, None, :]
    ab = b - a
    denom = (ab * ab).sum(-1, keepdim=True).clamp_min(1e-8)
    s = (((grid - a) * ab).sum(-1, keepdim=True) / denom).clamp(0.0, 1.0)
    dist = safe_norm(grid - (a + s * ab))  # N x (T-1) x P
    seg = polyline_lengths(points) + 1e-3  # a still camera still draws its disc
    prof = torch.sigmoid((radius[:, None, None] - dist) / softness[:, None, None])
    k = (seg[:, :, None] * prof).sum(1)
    k = k / k.sum(-1, keepdim=True).clamp_min(1e-12)
    return k.reshape(n, size, size)


def kernel_moments(kernels: Tensor) -> tuple[Tensor, Tensor]:
    """Centroid (``N x 2``, pixels from the grid centre) and RMS radius (``N``) of kernels ``N x k x k``."""
    n, kh, kw = kernels.shape
    ys = torch.arange(kh, dtype=kernels.dtype, device=kernels.device) - (kh - 1) / 2
    xs = torch.arange(kw, dtype=kernels.dtype, device=kernels.device) - (kw - 1) / 2
    mass = kernels.sum((1, 2)).clamp_min(1e-12)
    cx = (kernels.sum(1) * xs).sum(-1) / mass
    cy = (kernels.sum(2) * ys).sum(-1) / mass
    r2 = (kernels * ((xs[None, None, :] - cx[:, None, None]) ** 2 + (ys[None, :, None] - cy[:, None, None]) ** 2)).sum(
        (1, 2)
    ) / mass
    return torch.stack([cx, cy], -1), r2.sqrt()


def fft_blur(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each image of ``x`` (``N x C x H x W``) with its own kernel (``N x k x k``, odd ``k``).

    Same-size output with reflected borders (replicated where the image is smaller than
    the kernel's half-width), a true convolution centred at the kernel's middle,
    computed through the FFT so that 41 px kernels cost no more than 5 px ones.
    Differentiable in both arguments.
    """
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    p = k // 2
    mode = "reflect" if p < h and p < w else "replicate"
    xp = F.pad(x, (p, p, p, p), mode=mode) if p else x
    hp, wp = xp.shape[-2:]
    kp = torch.zeros(n, hp, wp, dtype=x.dtype, device=x.device)
    kp[:, :k, :k] = kernels.to(x.dtype)
    kp = torch.roll(kp, shifts=(-p, -p), dims=(-2, -1))  # kernel centre at (0, 0)
    y = torch.fft.irfft2(torch.fft.rfft2(xp) * torch.fft.rfft2(kp)[:, None], s=(hp, wp))
    return y[..., p : p + h, p : p + w]


# --------------------------------------------------------------------------- sensor


def poisson_gaussian(x: Tensor, shot: Tensor, read: Tensor, field: Tensor) -> Tensor:
    """``x + sqrt(shot * x + read**2) * field``: signal-dependent sensor noise in linear light.

    Args:
        x: ``N x C x H x W`` linear values (clipped at 0 for the variance).
        shot: ``N`` shot-noise gains (variance per unit of signal).
        read: ``N`` read-noise standard deviations.
        field: standard normal field of ``x``'s shape.
    """
    var = shot[:, None, None, None] * x.clamp_min(0.0) + read[:, None, None, None] ** 2
    return x + (var + 1e-12).sqrt() * field


# --------------------------------------------------------------------------- JPEG

_LUMA_Q = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
_CHROMA_Q = [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38


def dct_matrix(n: int = 8) -> Tensor:
    """The orthonormal DCT-II matrix ``n x n``."""
    i = torch.arange(n, dtype=torch.float32)
    m = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def quality_scale(quality: Tensor) -> Tensor:
    """The IJG quality -> quantisation-table factor, continuous in ``quality`` (1-100)."""
    q = quality.clamp(1.0, 100.0)
    return torch.where(q < 50, 50.0 / q, (200.0 - 2.0 * q) / 100.0).clamp_min(0.01)


def soft_round(x: Tensor) -> Tensor:
    """Rounding with a usable gradient: ``round(x) + (x - round(x)) ** 3`` (Shin & Song, 2017)."""
    r = torch.round(x)
    return r + (x - r) ** 3


def soft_jpeg(x: Tensor, quality: Tensor) -> Tensor:
    """A differentiable stand-in for JPEG compression of ``x`` (``N x C x H x W`` in ``[0, 1]``).

    8x8 block DCT of Y, Cb, Cr (no chroma subsampling), quantised with the IJG tables
    scaled by ``quality`` (``N`` values, 1-100; differentiable) through :func:`soft_round`.
    Grey images use the luma table only. Borders are reflect-padded to a multiple of 8.
    """
    n, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    if c == 3:
        r, g, b = xp.unbind(1)
        y = 0.299 * r + 0.587 * g + 0.114 * b
        cb = -0.168736 * r - 0.331264 * g + 0.5 * b
        cr = 0.5 * r - 0.418688 * g - 0.081312 * b
        planes = torch.stack([y - 0.5, cb, cr], 1)
        tables = torch.tensor([_LUMA_Q, _CHROMA_Q, _CHROMA_Q], dtype=x.dtype, device=x.device)
    else:
        planes = xp - 0.5
        tables = torch.tensor([_LUMA_Q] * c, dtype=x.dtype, device=x.device)
    hh, ww = planes.shape[-2:]
    blocks = planes.reshape(n, c, hh // 8, 8, ww // 8, 8).permute(0, 1, 2, 4, 3, 5)
    d = dct_matrix(8).to(x.dtype).to(x.device)
    coef = d @ blocks @ d.t()
    q = (tables.reshape(1, c, 1, 1, 8, 8) * quality_scale(quality).reshape(n, 1, 1, 1, 1, 1)).clamp_min(1.0) / 255.0
    coef = soft_round(coef / q) * q
    rec = (d.t() @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(n, c, hh, ww)
    if c == 3:
        y, cb, cr = rec.unbind(1)
        y = y + 0.5
        rec = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    else:
        rec = rec + 0.5
    return rec[..., :h, :w]


def fit_log_gain(
    tone_map, sharp_q: Tensor, real_q: Tensor, span: float = 1.6, steps: int = 321, central: float = 0.8,
    per_channel: bool = False,
) -> Tensor:
    """The log exposure gain whose tone map takes ``sharp_q`` closest to ``real_q`` (a grid search).

    ``tone_map(values C x L, log_gains G) -> G x C x L`` is the camera's tone map at each
    gain; ``sharp_q`` and ``real_q`` are ``C x L`` quantiles of the two photo sets. The
    distance is the mean absolute difference over the central ``central`` share of the
    quantiles (the extremes hold clipped highlights, black borders and the scenes' own
    extremes). The grid covers ``exp(-span)`` to ``exp(span)`` in ``steps`` steps: one
    parameter fitted to whole distributions, so a few different scenes cannot pull it far.
    With ``per_channel`` each channel gets its own gain (``C`` values: exposure times white
    balance), each fitted to its own quantiles.
    """
    levels = sharp_q.shape[-1]
    lo = int(round(levels * (1 - central) / 2))
    sel = slice(lo, levels - lo)
    grid = torch.linspace(-span, span, steps, device=sharp_q.device, dtype=sharp_q.dtype)
    err = (tone_map(sharp_q[:, sel], grid) - real_q[None, :, sel]).abs()
    if per_channel:
        return grid[err.mean(2).argmin(0)]
    return grid[err.mean((1, 2)).argmin()]


def quantile_response(lin_q: Tensor, real_q: Tensor, start: Tensor) -> Tensor:
    """Knot values (``C x (K + 1)``, at :func:`knot_positions`) of the monotone response ``R`` that
    takes the linear values ``lin_q`` to ``real_q`` (both ``C x L``, sorted): histogram matching.

    ``lin_q`` are the sharp photos' brightness quantiles in linear light (after exposure and
    white balance, in ``[0, 1]``), ``real_q`` the real photos' quantiles at the same levels.
    Between the smallest and largest ``lin_q`` the curve interpolates the pairs; beyond them it
    keeps the shape of ``start`` (``C x (K + 1)`` knot values, e.g. the sRGB curve), shifted to
    join the data, so inputs the photos never reached are not clipped or invented. The result
    is non-decreasing and in ``[0, 1]``.
    """
    c, k1 = start.shape
    if lin_q.shape != real_q.shape or lin_q.shape[0] != c:
        raise ValueError(f"quantile_response: lin_q {tuple(lin_q.shape)}, real_q {tuple(real_q.shape)} "
                         f"and start {tuple(start.shape)} disagree")
    t = knot_positions(k1 - 1).to(start)
    out = []
    for ch in range(c):
        xp, fp, s = lin_q[ch].clamp(0.0, 1.0), real_q[ch], start[ch]
        lo, hi = xp.min(), xp.max()
        s_lo, s_hi = (monotone_curve(v.reshape(1, 1, 1, 1), start[ch : ch + 1])[0, 0, 0, 0] for v in (lo, hi))
        mid = interp_monotone(t, xp, fp)
        below = fp[0] - (s_lo - s)
        above = fp[-1] + (s - s_hi)
        v = torch.where(t < lo, below, torch.where(t > hi, above, mid))
        out.append(v.clamp(0.0, 1.0).cummax(0).values)
    return torch.stack(out)
