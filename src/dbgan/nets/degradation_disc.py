"""A discriminator that judges the degradation, not the scene.

Real blurred photos and BGAN's output show different scenes (they are unpaired), so a
discriminator that sees whole images can win on content and teach BGAN nothing about
the camera. :class:`DegradationDiscriminator` sees only what a camera does:

* **band-pass images** of a Laplacian pyramid at ``scales`` scales (``x`` minus its 2x
  blurred copy, then the same on the half-size image, ...), each scored patch-wise by a
  small convolutional net: blur, noise, ringing and compression live in these bands,
  most of the scene's layout does not;
* **patch statistics**: soft histograms of each channel's brightness (after 4x average
  pooling) and of the band-pass magnitude, pooled over the whole image and scored by a
  small MLP, so exposure, tone and the noise level are visible to it.

Every layer is spectrally normalised (``spectral_norm``). The logits of all heads are
returned together as ``N x 1 x 1 x P``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

HIST_BINS = 16


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(module) if enabled else module


def band_pass_pyramid(x: Tensor, scales: int) -> list[Tensor]:
    """``scales`` band-pass images: ``x - up(down(x))`` at full, half, quarter, ... size."""
    bands = []
    cur = x
    for _ in range(scales):
        if min(cur.shape[-2:]) < 2:
            break
        low = F.avg_pool2d(cur, 2, ceil_mode=True)
        up = F.interpolate(low, size=cur.shape[-2:], mode="bilinear", align_corners=False)
        bands.append(cur - up)
        cur = low
    return bands


def soft_histogram(values: Tensor, bins: int, lo: float, hi: float, width: float | None = None) -> Tensor:
    """``N x K x bins`` Gaussian-soft histograms of ``values`` (``N x K x M``), normalised to sum 1."""
    centres = torch.linspace(lo, hi, bins, device=values.device, dtype=values.dtype)
    w = width if width is not None else (hi - lo) / (bins - 1)
    d = (values[..., None] - centres) / w
    h = torch.exp(-0.5 * d * d).mean(-2)
    return h / h.sum(-1, keepdim=True).clamp_min(1e-12)


class DegradationDiscriminator(nn.Module):
    """Scores blur, noise, tone and compression while seeing as little scene content as possible.

    Args:
        in_channels: image channels.
        ndf: channels of each band's first convolution.
        scales: Laplacian-pyramid bands scored (full, 1/2, 1/4, ...).
        spectral_norm: spectral normalisation on every layer.
        histograms: add the patch-statistics head.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 32, scales: int = 3, spectral_norm: bool = True,
                 histograms: bool = True):
        super().__init__()
        if ndf < 1 or scales < 1:
            raise ValueError(f"ndf and scales must be >= 1, got {ndf}, {scales}")
        self.in_channels = in_channels
        self.out_channels = 1
        self.scales = scales
        self.histograms = histograms
        self.band_nets = nn.ModuleList(
            nn.Sequential(
                _sn(nn.Conv2d(in_channels, ndf, 3, padding=1), spectral_norm), nn.LeakyReLU(0.2),
                _sn(nn.Conv2d(ndf, ndf * 2, 4, stride=2, padding=1), spectral_norm), nn.LeakyReLU(0.2),
                _sn(nn.Conv2d(ndf * 2, ndf * 2, 3, padding=1), spectral_norm), nn.LeakyReLU(0.2),
                _sn(nn.Conv2d(ndf * 2, 1, 3, padding=1), spectral_norm),
            )
            for _ in range(scales)
        )
        if histograms:
            feats = 2 * in_channels * HIST_BINS
            self.hist_net = nn.Sequential(
                _sn(nn.Linear(feats, 4 * ndf), spectral_norm), nn.LeakyReLU(0.2),
                _sn(nn.Linear(4 * ndf, 1), spectral_norm),
            )

    def statistics(self, x: Tensor) -> Tensor:
        """``N x (2 C HIST_BINS)`` brightness and band-pass-magnitude histograms."""
        n, c = x.shape[:2]
        bright = F.avg_pool2d(x, 4, ceil_mode=True) if min(x.shape[-2:]) >= 4 else x
        hb = soft_histogram(bright.reshape(n, c, -1), HIST_BINS, 0.0, 1.0)
        hp = band_pass_pyramid(x, 1)[0].abs()
        # band-pass magnitudes on a square-root scale (noise levels of 0.002-0.1 spread out)
        hh = soft_histogram((hp.reshape(n, c, -1).clamp_max(0.25) + 1e-6).sqrt(), HIST_BINS, 0.0, 0.5)
        return torch.cat([hb, hh], 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        outs = [net(band * 4.0).reshape(n, -1) for net, band in zip(self.band_nets, band_pass_pyramid(x, self.scales))]
        if self.histograms:
            outs.append(self.hist_net(self.statistics(x) * HIST_BINS))
        return torch.cat(outs, 1)[:, None, None, :]

    def extra_repr(self) -> str:
        return f"scales={self.scales}, histograms={self.histograms}"
