"""Discriminators: pix2pix's PatchGAN and ESRGAN's VGG-style discriminator.

Both take ``[0, 1]`` images (mapped to ``[-1, 1]`` inside) and return raw logits
(no sigmoid); the adversarial losses in :mod:`dbgan.losses` expect logits. A
conditional discriminator is built by giving ``in_channels = 2 * C`` and
concatenating ``(condition, image)`` along channels before the call.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from dbgan.nets.common import NORMS, check_choice, init_normal, norm_layer, to_signed


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(module) if enabled else module


class PatchGANDiscriminator(nn.Module):
    """pix2pix's ``NLayerDiscriminator``: a fully convolutional net scoring overlapping patches.

    ``n_layers`` stride-2 4x4 convolutions (channels ``ndf * min(2**i, 8)``),
    one stride-1 4x4 convolution and a 4x4 convolution to one channel, LeakyReLU
    0.2 between. ``n_layers=3`` sees 70x70 patches, ``2`` 34x34, ``1`` 16x16
    (a smaller receptive field judges texture and blur rather than scene
    content). Output ``N x 1 x h x w`` logits with ``h = H // 2**n_layers - 2``
    for H a multiple of ``2**n_layers``; inputs must be at least
    ``3 * 2**n_layers`` pixels high and wide (24 for ``n_layers=3``).

    Args:
        in_channels: input channels (``2 * C`` for a conditional discriminator).
        ndf: channels of the first convolution.
        n_layers: number of stride-2 convolutions.
        norm: ``"none"`` (default; convs keep biases), ``"batch"`` (pix2pix) or ``"instance"``.
        spectral_norm: spectral normalisation on every convolution (stabilises training without a norm).
    """

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "none",
        spectral_norm: bool = False,
    ):
        super().__init__()
        check_choice("norm", norm, NORMS)
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.in_channels = in_channels
        self.out_channels = 1
        self.size_multiple = 1
        self.n_layers = n_layers
        bias = norm != "batch"
        sn = spectral_norm

        layers: list[nn.Module] = [
            _sn(nn.Conv2d(in_channels, ndf, 4, 2, 1), sn),
            nn.LeakyReLU(0.2, inplace=False),
        ]
        mult = 1
        for i in range(1, n_layers):
            prev, mult = mult, min(2**i, 8)
            layers += [
                _sn(nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=bias), sn),
                norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, inplace=False),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            _sn(nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=bias), sn),
            norm_layer(norm, ndf * mult),
            nn.LeakyReLU(0.2, inplace=False),
            _sn(nn.Conv2d(ndf * mult, 1, 4, 1, 1), sn),
        ]
        self.model = nn.Sequential(*layers)
        if not sn:
            init_normal(self, 0.02)

    @property
    def receptive_field(self) -> int:
        """Side of the square input patch that one output logit sees."""
        rf = 1
        for _ in range(2):  # the two stride-1 4x4 convolutions (applied last, undone first)
            rf += 3
        for _ in range(self.n_layers):
            rf = rf * 2 + 2
        return rf

    def forward(self, x: Tensor) -> Tensor:
        """``N x in_channels x H x W`` images in ``[0, 1]`` -> ``N x 1 x h x w`` logits."""
        return self.model(to_signed(x))


class VGGDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator with a size-independent head.

    Five stages of (3x3 conv stride 1, 4x4 conv stride 2), channels ``ndf, 2ndf,
    4ndf, 8ndf, 8ndf`` (64 -> 512), LeakyReLU 0.2, then adaptive average pooling
    to ``pool_size x pool_size`` and two linear layers (``100`` hidden) to one
    logit per image. At 128x128 with ``pool_size=4`` this is exactly ESRGAN's
    ``VGGStyleDiscriminator128``; other sizes >= 32 work too.

    Args:
        in_channels: input channels (``2 * C`` for a conditional discriminator).
        ndf: channels of the first stage.
        norm: ``"none"`` (default), ``"batch"`` (ESRGAN) or ``"instance"``; never on the first conv.
        pool_size: side of the adaptive average pooling before the linear head.
        spectral_norm: spectral normalisation on every convolution and linear layer.
    """

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        norm: str = "none",
        pool_size: int = 4,
        spectral_norm: bool = False,
    ):
        super().__init__()
        check_choice("norm", norm, NORMS)
        self.in_channels = in_channels
        self.out_channels = 1
        self.size_multiple = 1
        bias = norm != "batch"
        sn = spectral_norm
        widths = [ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8]
        layers: list[nn.Module] = []
        prev = in_channels
        for i, c in enumerate(widths):
            first = i == 0
            layers += [_sn(nn.Conv2d(prev, c, 3, 1, 1, bias=first or bias), sn)]
            if not first:
                layers.append(norm_layer(norm, c))
            layers += [nn.LeakyReLU(0.2, inplace=False)]
            layers += [
                _sn(nn.Conv2d(c, c, 4, 2, 1, bias=bias), sn),
                norm_layer(norm, c),
                nn.LeakyReLU(0.2, inplace=False),
            ]
            prev = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.head = nn.Sequential(
            _sn(nn.Linear(prev * pool_size * pool_size, 100), sn),
            nn.LeakyReLU(0.2, inplace=False),
            _sn(nn.Linear(100, 1), sn),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``N x in_channels x H x W`` images in ``[0, 1]`` (H, W >= 32) -> ``N x 1`` logits."""
        feat = self.pool(self.features(to_signed(x)))
        return self.head(feat.flatten(1))
