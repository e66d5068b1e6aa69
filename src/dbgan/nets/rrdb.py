"""The paper's deblurring generator (DBGAN): residual-in-residual dense blocks (ESRGAN's RRDB).

Zhang et al. (CVPR 2020), section 3.2: the DBGAN generator is built from RRDBs
(Wang et al., ESRGAN, 2018) without normalisation and, unlike ESRGAN, without
upsampling: it predicts a residual that is added to the blurred input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dbgan.nets.common import ImageGenerator, NoiseInput, init_kaiming_scaled


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing all earlier outputs; output ``x + 0.2 * conv5``.

    Args:
        nf: feature channels in and out.
        gc: growth channels (output of each of the first four convolutions).
    """

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(nf + i * gc, gc, 3, 1, 1) for i in range(4)] + [nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)]
        )
        self.act = nn.LeakyReLU(0.2, inplace=False)
        init_kaiming_scaled(self, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(self.act(conv(torch.cat(feats, dim=1))))
        return x + 0.2 * self.convs[-1](torch.cat(feats, dim=1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, output ``x + 0.2 * blocks(x)``.

    Args:
        nf: feature channels.
        gc: growth channels of the dense blocks.
    """

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBGenerator(ImageGenerator):
    """DBGAN generator: conv in, ``nb`` RRDBs, trunk conv + long skip, conv out; ``clamp(x + residual, 0, 1)``.

    No normalisation, no upsampling (same resolution in and out), works directly
    on ``[0, 1]`` images. The output convolution starts with small weights
    (Kaiming x 0.1, ESRGAN's initialisation) so that an untrained net is close
    to the identity.

    Args:
        in_channels: image channels in (1 grey, 3 RGB).
        out_channels: image channels out (must equal ``in_channels``: the output is a residual).
        nf: feature channels.
        nb: number of RRDBs (ESRGAN: 23; the paper's DBGAN: 16).
        gc: growth channels inside the dense blocks.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, nf: int = 64, nb: int = 16, gc: int = 32):
        super().__init__()
        if in_channels != out_channels:
            raise ValueError("RRDBGenerator predicts a residual: in_channels must equal out_channels")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = 1
        self.noise_input = NoiseInput("none")
        self.conv_first = nn.Conv2d(in_channels, nf, 3, 1, 1)
        self.trunk = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_trunk = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_channels, 3, 1, 1)
        init_kaiming_scaled(self.conv_last, 0.1)

    def body(self, x: Tensor, img: Tensor) -> Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_trunk(self.trunk(feat))  # long skip
        return (img + self.conv_last(feat)).clamp(0.0, 1.0)
