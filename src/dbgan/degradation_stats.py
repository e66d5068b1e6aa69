"""Statistics of a degradation that can be matched without pairs (pure functions).

Sharp photos and real blurred photos of one scene distribution share their content
statistics; what differs is what the camera did. Three families of statistics see
the camera and hardly the scene, once averaged over a batch:

* **tone** (:func:`tone_distance`): the distribution of each channel's values after
  ``scale`` x average pooling. Blur and noise barely move it; exposure, white balance,
  black level and the response curve move it directly.
* **noise** (:func:`noise_profile`): a robust high-pass magnitude per brightness bin,
  i.e. the noise level as a function of the signal (shot and read noise through the
  response curve), including its spatial correlation (it is measured at two scales).
* **sharpness** (:func:`spectrum_shape`): the radially averaged power spectrum of the
  luma, normalised per image, on a log scale: the blur's modulation transfer, plus the
  noise floor at the top.

:class:`CameraStats` compares a generated batch with running real statistics, as
L1 distances and log-ratios; it is a fixed-feature discriminator that
needs no training, so it gives BGAN a useful gradient from the first step. All
functions take ``N x C x H x W`` tensors in ``[0, 1]`` and are differentiable in their
first argument.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dbgan.constants import LUMA

#: brightness bins of :func:`noise_profile`
NOISE_BINS = 8
#: radial bands of :func:`spectrum_shape`
SPECTRUM_BANDS = 12

_LAPLACE = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


#: the average pooling of the brightness quantiles (pooled values: the tone, less the noise)
TONE_POOL = 8

def luma(x: Tensor) -> Tensor:
    """``N x 1 x H x W`` luma (Rec. 601 weights for 3 channels, the mean otherwise)."""
    if x.shape[1] == 3:
        return (x * x.new_tensor(LUMA)[None, :, None, None]).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def highpass(x: Tensor) -> Tensor:
    """Immerkaer's plane-cancelling 3x3 residual of each channel (``valid`` size), scaled to noise std."""
    c = x.shape[1]
    k = _LAPLACE.to(x.device, x.dtype)[None, None].expand(c, 1, 3, 3) / 6.0
    return F.conv2d(x, k, groups=c)


def noise_profile(x: Tensor, bins: int = NOISE_BINS, scales: tuple[int, ...] = (1, 2)) -> tuple[Tensor, Tensor]:
    """Noise level per brightness bin and scale: ``(levels, weights)``, both ``len(scales) x bins``.

    At each scale (average pooling by it first, which shows correlated noise), the
    high-pass residual's magnitude is taken where the local brightness falls in each of
    ``bins`` equal bins of ``[0, 1]``; the level is the mean of the lower half of those
    magnitudes (edges and texture land in the upper half). ``weights`` is the share of
    pixels in the bin (0 where a bin is empty).
    """
    levels, weights = [], []
    for s in scales:
        xs = F.avg_pool2d(x.float(), s) if s > 1 else x.float()
        if min(xs.shape[-2:]) < 3:
            continue
        r = highpass(xs).abs() * s  # pooling by s divides white noise's std by s
        m = F.avg_pool2d(xs, 3, stride=1)
        idx = (m.detach() * bins).long().clamp(0, bins - 1).flatten()
        r = r.flatten()
        lv, wt = [], []
        for b in range(bins):
            v = r[idx == b]
            if v.numel() < 16:
                lv.append(r.new_zeros(()))
                wt.append(r.new_zeros(()))
                continue
            lower = v.sort()[0][: max(1, v.numel() // 2)]
            lv.append(lower.mean())
            wt.append(r.new_tensor(v.numel() / r.numel()))
        levels.append(torch.stack(lv))
        weights.append(torch.stack(wt))
    return torch.stack(levels), torch.stack(weights)


def spectrum_shape(x: Tensor, bands: int = SPECTRUM_BANDS) -> Tensor:
    """``N x bands`` log radial power spectrum of each image's luma, normalised to total power 1.

    A Hann window removes the borders' discontinuity; the bands split radial frequency
    from one cycle per crop to 0.5 cycles/pixel on a log scale (a blur ``k`` px long
    acts near ``1 / k``); the DC term is left out.
    """
    y = luma(x.float())[:, 0]
    n, h, w = y.shape
    y = y - y.mean((-2, -1), keepdim=True)
    win = torch.hann_window(h, periodic=False, device=y.device)[:, None] * torch.hann_window(
        w, periodic=False, device=y.device
    )[None, :]
    f = torch.fft.rfft2(y * win)
    p = f.real**2 + f.imag**2  # not abs(): its gradient is NaN at 0
    fy = torch.fft.fftfreq(h, device=y.device)[:, None]
    fx = torch.fft.rfftfreq(w, device=y.device)[None, :]
    rad = (fy**2 + fx**2).sqrt()
    # log-spaced bands from one cycle per crop to Nyquist: a blur of k px acts near 1/k
    edges = band_edges(min(h, w), bands).to(y.device)
    band = torch.bucketize(rad.flatten(), edges[1:-1], right=True) + 1  # 1..bands
    band = torch.where(rad.flatten() < edges[0], torch.zeros_like(band), band)  # DC and below: dropped
    onehot = F.one_hot(band, bands + 1)[:, 1:].float()  # (F, bands)
    power = p.flatten(1) @ onehot / onehot.sum(0).clamp_min(1)
    power = power / power.sum(1, keepdim=True).clamp_min(1e-12)
    return (power + 1e-10).log()


def band_edges(side: int, bands: int = SPECTRUM_BANDS) -> Tensor:
    """``bands + 1`` edges (cycles per pixel) of :func:`spectrum_shape`'s bands for a crop of ``side`` px:
    log-spaced from one cycle per crop to Nyquist (0.5)."""
    return torch.logspace(math.log10(1.0 / side), math.log10(0.5), bands + 1)


def band_mask(side: int, max_freq: float, bands: int = SPECTRUM_BANDS) -> Tensor:
    """``bands`` weights: 1 for the bands of a ``side`` px crop that lie at or below ``max_freq``
    (cycles per pixel), else 0; at least the lowest band."""
    upper = band_edges(side, bands)[1:]
    mask = (upper <= max_freq * (1 + 1e-6)).float()
    mask[0] = 1.0
    return mask


def band_power(x: Tensor, bands: int = SPECTRUM_BANDS) -> Tensor:
    """Batch mean of the per-image normalised band powers (``exp`` of :func:`spectrum_shape`): ``bands``."""
    return spectrum_shape(x, bands).exp().mean(0)


def tone_quantiles(x: Tensor, levels: int = 64, scale: int = TONE_POOL) -> Tensor:
    """``C x levels`` quantiles of each channel's ``scale``-pooled values."""
    s = max(1, min(scale, x.shape[-1], x.shape[-2]))
    p = F.avg_pool2d(x.float(), s).transpose(0, 1).flatten(1)
    return torch.quantile(p, quantile_probs(levels, x.device), dim=1).t()


def crop_coverage(size: int, crop: int) -> Tensor:
    """How often each of ``size`` positions falls inside a random crop of ``crop`` (uniform start), up to
    a constant: 1 everywhere when ``crop >= size``, lower toward the borders otherwise."""
    if crop >= size:
        return torch.ones(size)
    idx = torch.arange(size)
    return ((idx.clamp(max=size - crop) - (idx - crop + 1).clamp(min=0)) + 1).float()


def photo_histogram(img: Tensor, scale: int = TONE_POOL, bins: int = 4096, transform=None, crop: int | None = None) -> Tensor:
    """``C x bins`` histogram of one ``C x H x W`` photo's ``scale``-pooled values, normalised to 1 per
    channel (the part each photo adds to :func:`photo_quantiles`; see there for ``transform`` and ``crop``)."""
    x = img.float()[None]
    x = transform(x) if transform is not None else x
    s = max(1, min(scale, x.shape[-1], x.shape[-2]))
    p = F.avg_pool2d(x, s)[0].flatten(1).clamp(0.0, 1.0)
    h, w = x.shape[-2:]
    wt = torch.ones(1, 1, h, w) if crop is None else torch.outer(crop_coverage(h, crop), crop_coverage(w, crop))[None, None]
    wt = F.avg_pool2d(wt, s)[0].flatten(1).expand_as(p)
    idx = (p * bins).long().clamp_(max=bins - 1)
    hist = torch.zeros(p.shape[0], bins).scatter_add_(1, idx, wt.contiguous())
    return hist / hist.sum(1, keepdim=True)


def quantile_probs(levels: int, device=None) -> Tensor:
    """The probabilities of the ``levels`` brightness quantiles every tone statistic uses: bin centres of ``[0, 1]``."""
    return (torch.arange(levels, device=device, dtype=torch.float32) + 0.5) / levels


def histogram_quantiles(hist: Tensor, levels: int = 64) -> Tensor:
    """``C x levels`` quantiles of a ``C x bins`` histogram over ``[0, 1]`` (any positive scale): the
    distribution function is inverted linearly within a bin."""
    hist = hist.float()
    cdf = torch.cat([torch.zeros(hist.shape[0], 1), (hist / hist.sum(1, keepdim=True)).cumsum(1)], 1)
    edges = torch.linspace(0.0, 1.0, hist.shape[1] + 1)
    probs = quantile_probs(levels)
    return torch.stack([interp_monotone(probs, c, edges) for c in cdf])


def photo_histograms(images, scale: int = TONE_POOL, bins: int = 4096, transform=None, crop: int | None = None) -> Tensor:
    """``N x C x bins``: :func:`photo_histogram` of each of ``N`` photos (read one at a time)."""
    hists = [photo_histogram(img, scale, bins, transform, crop) for img in images]
    if not hists:
        raise ValueError("photo_histograms: no photos")
    if len({h.shape for h in hists}) > 1:
        raise ValueError(f"photo_histograms: photos with different channel counts {sorted({h.shape[0] for h in hists})}")
    return torch.stack(hists)


def photo_quantiles(images, levels: int = 64, scale: int = TONE_POOL, bins: int = 4096, transform=None,
                    crop: int | None = None) -> Tensor:
    """``C x levels`` quantiles of each channel's ``scale``-pooled values over whole photos, each photo
    weighted once (as random crops of random photos weight them), with no sampling noise.

    ``images`` is an iterable of ``C x H x W`` tensors in ``[0, 1]`` (read one at a time, so a folder of
    any size fits in memory); ``transform`` (e.g. a decoding to linear light) is applied to each before
    pooling. With ``crop``, each pixel counts as often as random ``crop`` px crops contain it
    (:func:`crop_coverage`: the centre more than the borders), so the quantiles are what training
    crops see on average. Each photo adds a histogram of ``bins`` bins normalised to 1
    (:func:`photo_histogram`); the quantiles invert the mixture's distribution function
    (:func:`histogram_quantiles`).
    """
    total: Tensor | None = None
    for img in images:
        hist = photo_histogram(img, scale, bins, transform, crop)
        if total is not None and total.shape != hist.shape:
            raise ValueError(f"photo_quantiles: a photo with {hist.shape[0]} channels among photos with {total.shape[0]}")
        total = hist if total is None else total + hist
    if total is None:
        raise ValueError("photo_quantiles: no photos")
    return histogram_quantiles(total, levels)


#: the powers of :func:`photo_log_means`: 1 (grey world: the exposure) and 8 (shades of grey: the white balance)
MEAN_POWERS = (1.0, 8.0)


def photo_log_means(images, powers: tuple[float, ...] = MEAN_POWERS, transform=None) -> Tensor:
    """``len(powers) x C``: for each power ``p``, ``log(mean(x ** p)) / p`` of each channel of each photo,
    averaged over the photos (each photo weighted once: a geometric mean of their power means).

    ``images`` is an iterable of ``C x H x W`` tensors (read one at a time); ``transform`` (e.g. a
    decoding to linear light) is applied to each first. Between two photo sets of one scene
    distribution, the difference of these rows estimates a camera's gains in linear light: ``p = 1``
    (grey world) its exposure, which a kernel summing to 1 cannot move; ``p = 8`` (shades of grey,
    Finlayson and Trezzi, 2004) its white balance, led by the brighter parts of each photo, whose colour
    varies less from scene to scene than the average's (docs/benchmarks.md, section 2, session 18).
    """
    rows = []
    for img in images:
        x = img.float()[None]
        x = (transform(x) if transform is not None else x)[0].clamp_min(0.0)
        rows.append(torch.stack([(x.pow(p).mean((1, 2)) + 1e-12).log() / p for p in powers]))
        if rows[-1].shape != rows[0].shape:
            raise ValueError(f"photo_log_means: a photo with {x.shape[0]} channels among photos with {rows[0].shape[1]}")
    if not rows:
        raise ValueError("photo_log_means: no photos")
    return torch.stack(rows).mean(0)


def interp_monotone(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear ``f`` through ``(xp, fp)`` (1-D, ``xp`` non-decreasing) at ``x``, held constant outside."""
    xp = xp.cummax(0).values + torch.arange(len(xp), device=xp.device, dtype=xp.dtype) * 1e-7
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    t = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return f0 + t * (f1 - f0)


class CameraStats:
    """Running statistics of the real and the sharp photos, and the distances of a generated batch to them.

    :meth:`observe` folds a batch of sharp and of real photos into running means
    (a plain mean over the first ``1 / (1 - decay)`` batches, then an exponential one),
    so the targets are population statistics, not one batch's. :meth:`loss` compares
    the generated batch with its own sharp inputs, which cancels most of the content:

    * ``tone``: L1 between the generated photo and the sharp input mapped through the
      sharp -> real quantile map (histogram matching of ``tone_scale``-pooled values);
    * ``spectrum``: the log ratio of generated to sharp band power against the real
      to sharp one (the squared modulation transfer of the camera, with its noise floor),
      over the bands at or below ``spectrum_max_freq`` cycles per pixel (all by default).
      Above about 1/8 cycle per pixel a real photo's power is mostly sensor noise and
      compression, which the ``noise`` term matches; there the generator's soft JPEG and
      noise floor differ from a camera's at every blur length, and that mismatch grows
      with the blur, so on the benchmark's validation camera the full band range pulled
      the learnt kernels short (docs/benchmarks.md, section 2, session 15);
    * ``noise``: :func:`noise_profile` of the generated batch against the real one's.

    :meth:`state_dict` / :meth:`load_state_dict` make a resumed run exact.
    """

    def __init__(self, decay: float = 0.99, tone_scale: int = TONE_POOL, levels: int = 64, linearise=None,
                 spectrum_max_freq: float = 0.5):
        if not 0.0 < spectrum_max_freq <= 0.5:
            raise ValueError(f"spectrum_max_freq must be in (0, 0.5] cycles per pixel, got {spectrum_max_freq}")
        self.decay, self.tone_scale, self.levels = decay, tone_scale, levels
        self.spectrum_max_freq = spectrum_max_freq
        self.linearise = linearise
        self.count = 0
        self.stats: dict[str, Tensor] = {}
        self.fixed: set[str] = set()

    def fix(self, key: str, value: Tensor) -> None:
        """Hold statistic ``key`` at ``value`` (e.g. :func:`photo_quantiles` of the whole photo folders):
        the running updates leave it alone from now on."""
        self.stats[key] = value.detach().clone()
        self.fixed.add(key)

    def _fold(self, key: str, value: Tensor) -> None:
        if key in self.fixed:
            return
        w = max(1.0 / self.count, 1.0 - self.decay)
        old = self.stats.get(key)
        self.stats[key] = value.detach().clone() if old is None else old + w * (value.detach() - old)

    @torch.no_grad()
    def observe(self, sharp: Tensor, real: Tensor) -> None:
        self.observe_tone(sharp, real)
        self._fold("band_sharp", band_power(sharp))
        self._fold("band_real", band_power(real))
        lv, wt = noise_profile(real)
        self._fold("noise_real", lv)
        self._fold("noise_weight", wt)

    @torch.no_grad()
    def observe_tone(self, sharp: Tensor, real: Tensor) -> None:
        """Count one batch and fold only its brightness quantiles (:meth:`observe` does this and more)."""
        self.count += 1
        for key, x in (("tone_sharp", sharp), ("tone_real", real)):
            if key not in self.fixed:
                self._fold(key, tone_quantiles(x, self.levels, self.tone_scale))
        if self.linearise is not None:  # the same in linear light (fit_space linear): blur cannot move it
            for key, x in zip(("tone_sharp_linear", "tone_real_linear"), self.linearise(sharp, real)):
                if key not in self.fixed:
                    self._fold(key, tone_quantiles(x, self.levels, self.tone_scale))

    @torch.no_grad()
    def observe_outputs(self, fake: Tensor, clean_quantiles: Tensor) -> None:
        """Fold a generated batch's brightness quantiles (``tone_fake``) and the generator's noiseless,
        unblurred tone map of the running sharp quantiles at that moment (``tone_clean``), in step with
        the others (call after :meth:`observe` in the same step)."""
        self._fold("tone_fake", tone_quantiles(fake, self.levels, self.tone_scale))
        self._fold("tone_clean", clean_quantiles)

    def tone_target(self, sharp: Tensor) -> Tensor:
        """The sharp batch's pooled values mapped through the running sharp -> real quantile map."""
        s = max(1, min(self.tone_scale, sharp.shape[-1], sharp.shape[-2]))
        ps = F.avg_pool2d(sharp.float(), s)
        qs, qr = self.stats["tone_sharp"], self.stats["tone_real"]
        return torch.stack([interp_monotone(ps[:, c], qs[c], qr[c]) for c in range(sharp.shape[1])], 1)

    def loss(self, fake: Tensor, sharp: Tensor, eps: float = 2e-3) -> dict[str, Tensor]:
        s = max(1, min(self.tone_scale, fake.shape[-1], fake.shape[-2]))
        tone = (F.avg_pool2d(fake.float(), s) - self.tone_target(sharp.detach())).abs().mean()
        with torch.no_grad():
            bs = band_power(sharp)
        target = (self.stats["band_real"] + 1e-10).log() - (self.stats["band_sharp"] + 1e-10).log()
        dev = ((band_power(fake) + 1e-10).log() - (bs + 1e-10).log() - target).abs()
        mask = band_mask(min(fake.shape[-2:]), self.spectrum_max_freq).to(dev)
        spectrum = (dev * mask).sum() / mask.sum()
        lf, wf = noise_profile(fake)
        w = torch.minimum(wf, self.stats["noise_weight"])
        d = ((lf + eps).log() - (self.stats["noise_real"] + eps).log()).abs()
        noise = (d * w).sum() / w.sum().clamp_min(1e-6)
        return {"tone": tone, "spectrum": spectrum, "noise": noise}

    def state_dict(self) -> dict:
        return {"count": self.count, "stats": {k: v.cpu() for k, v in self.stats.items()}}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        """Running statistics from ``state``; fixed ones keep the values :meth:`fix` gave them."""
        self.count = int(state["count"])
        loaded = {k: v.to(device) if device is not None else v for k, v in state["stats"].items()}
        self.stats = loaded | {k: self.stats[k] for k in self.fixed}
