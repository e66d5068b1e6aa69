"""The paper's blur generator (BGAN): a residual-block encoder-decoder with a noise input.

Zhang et al., "Deblurring by Realistic Blurring" (CVPR 2020), section 3.1: the
sharp image, concatenated with a 4-d Gaussian noise vector tiled over the image,
goes through a 7x7 convolution and two stride-2 convolutions, nine residual
blocks with a long skip around them, two transposed convolutions back to full
resolution and a 7x7 convolution out.
"""

from __future__ import annotations

from torch import Tensor, nn

from dbgan.nets.common import (
    NORMS,
    ImageGenerator,
    NoiseInput,
    check_choice,
    norm_layer,
    signed_input,
    to_unit,
)


class ResBlock(nn.Module):
    """conv3x3 -> norm -> ReLU -> conv3x3 -> norm, plus the identity.

    Args:
        channels: feature channels (in = out).
        norm: ``"none"``, ``"batch"`` or ``"instance"``.
    """

    def __init__(self, channels: int, norm: str = "none"):
        super().__init__()
        bias = norm != "batch"
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=bias),
            norm_layer(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNetBlurGenerator(ImageGenerator):
    """BGAN generator: 7x7 conv, two stride-2 3x3 convs, ``n_blocks`` ResBlocks + long skip, up, 7x7 conv.

    Works internally in ``[-1, 1]``; output ``(tanh + 1) / 2`` in ``[0, 1]`` (or
    ``clamp(x + tanh, 0, 1)`` with ``residual``). Any input size works
    (reflect-padded to a multiple of 4 and cropped back).

    Args:
        in_channels: image channels in (1 grey, 3 RGB).
        out_channels: image channels out.
        ngf: channels after the first convolution (x2, x4 after the downsamplings).
        n_blocks: residual blocks at quarter resolution (paper: 9).
        noise: ``"vector"`` (paper: Gaussian vector tiled over the image), ``"map"``
            (Gaussian map at half resolution, upsampled) or ``"none"``.
        noise_dim: length of the noise vector (paper: 4).
        noise_nc: channels of the noise map.
        norm: ``"none"`` (default), ``"instance"`` or ``"batch"`` after each convolution.
        residual: add the input to the output (needs ``in_channels == out_channels``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        noise: str = "vector",
        noise_dim: int = 4,
        noise_nc: int = 1,
        norm: str = "none",
        residual: bool = False,
    ):
        super().__init__()
        check_choice("norm", norm, NORMS)
        if residual and in_channels != out_channels:
            raise ValueError("residual=True needs in_channels == out_channels")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = 4
        self.residual = residual
        self.noise_input = NoiseInput(noise, noise_nc, noise_dim)
        bias = norm != "batch"
        c_in = in_channels + self.noise_input.channels

        self.head = nn.Sequential(
            nn.Conv2d(c_in, ngf, 7, 1, 3, padding_mode="reflect", bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(inplace=False),
            nn.Conv2d(ngf, ngf * 2, 3, 2, 1, bias=bias),
            norm_layer(norm, ngf * 2),
            nn.ReLU(inplace=False),
            nn.Conv2d(ngf * 2, ngf * 4, 3, 2, 1, bias=bias),
            norm_layer(norm, ngf * 4),
            nn.ReLU(inplace=False),
        )
        self.blocks = nn.Sequential(*[ResBlock(ngf * 4, norm) for _ in range(n_blocks)])
        self.tail = nn.Sequential(
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1, bias=bias),
            norm_layer(norm, ngf * 2),
            nn.ReLU(inplace=False),
            nn.ConvTranspose2d(ngf * 2, ngf, 3, 2, 1, output_padding=1, bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(inplace=False),
            nn.Conv2d(ngf, out_channels, 7, 1, 3, padding_mode="reflect"),
            nn.Tanh(),
        )

    def body(self, x: Tensor, img: Tensor) -> Tensor:
        feat = self.head(signed_input(x, self.in_channels))
        h = self.tail(feat + self.blocks(feat))  # long skip around the residual blocks
        if self.residual:
            return (img + h).clamp(0.0, 1.0)
        return to_unit(h)
