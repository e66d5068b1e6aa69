"""A NAFNet-style restoration network (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022).

A U-shaped stack of NAF blocks: each block is a layer norm, a 1x1 convolution, a
3x3 depthwise convolution, a *simple gate* (the channels split in two halves that
are multiplied: a nonlinearity without activation functions), optionally a
simplified channel attention, and a 1x1 convolution; then a gated 1x1 feed-forward
part. Both parts are residual with learnt per-channel scales initialised at zero,
so a fresh network is the identity plus its small input/output convolutions. Down:
2x2 stride-2 convolutions doubling the channels; up: 1x1 convolution + pixel
shuffle halving them; skips are added. The output is residual:
``clamp(x + net(x), 0, 1)``.

Compared with the pix2pix U-Net, it spends its compute on many cheap depthwise
and 1x1 convolutions at full and half resolution, which is what restoration
needs, and stays small (the general model's configuration has about 0.5 M
parameters). ``sca=False`` drops the channel attention's global average pool, so
that the output at a pixel depends only on a neighbourhood: tiled inference then
matches whole-image inference away from tile borders.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dbgan.nets.common import ImageGenerator, NoiseInput


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of every pixel (``N x C x H x W``), with affine parameters."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def simple_gate(x: Tensor) -> Tensor:
    """Split the channels in two halves and multiply them."""
    a, b = x.chunk(2, dim=1)
    return a * b


class NAFBlock(nn.Module):
    """One NAF block on ``channels`` channels (see the module docstring)."""

    def __init__(self, channels: int, expand: int = 2, ffn_expand: int = 2, sca: bool = True):
        super().__init__()
        dw = channels * expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1)) if sca else None
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        ffn = channels * ffn_expand
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        x = simple_gate(self.conv2(self.conv1(self.norm1(inp))))
        if self.sca is not None:
            x = x * self.sca(x)
        y = inp + self.conv3(x) * self.beta
        x = self.conv5(simple_gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma


class NAFNetGenerator(ImageGenerator):
    """NAFNet-style deblurrer (deterministic: no noise input).

    Args:
        in_channels: image channels in (1 grey, 3 RGB).
        out_channels: image channels out (must equal ``in_channels``: the output is residual).
        width: channels at full resolution (doubled at every level down).
        enc_blocks: NAF blocks at each encoder level; its length is the number of
            downsamplings (the input is padded to a multiple of ``2**len(enc_blocks)``).
        middle_blocks: NAF blocks at the lowest resolution.
        dec_blocks: NAF blocks at each decoder level (default: one per level).
        sca: simplified channel attention (a global average pool) in every block.
        shuffle: space-to-depth factor of the stem: the image is rearranged into
            ``shuffle**2`` times the channels at ``1/shuffle`` of the resolution
            (pixel unshuffle) before the first convolution, and back at the end, so
            every block runs on ``1/shuffle**2`` of the pixels (2: about 3x cheaper on
            a CPU, where the full-resolution layers are memory-bound).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 16,
        enc_blocks: list[int] | tuple[int, ...] = (1, 1, 2, 4),
        middle_blocks: int = 4,
        dec_blocks: list[int] | tuple[int, ...] | None = None,
        sca: bool = True,
        shuffle: int = 1,
    ):
        super().__init__()
        if in_channels != out_channels:
            raise ValueError("NAFNetGenerator's output is residual: out_channels must equal in_channels")
        if width < 2 or width % 2:
            raise ValueError(f"width must be an even number >= 2, got {width}")
        enc_blocks = [int(b) for b in enc_blocks]
        dec_blocks = [1] * len(enc_blocks) if dec_blocks is None else [int(b) for b in dec_blocks]
        if len(dec_blocks) != len(enc_blocks):
            raise ValueError(f"dec_blocks needs {len(enc_blocks)} entries (one per level), got {len(dec_blocks)}")
        if any(b < 0 for b in enc_blocks + dec_blocks) or middle_blocks < 0:
            raise ValueError("block counts must be >= 0")
        self.in_channels = in_channels
        self.out_channels = out_channels
        if shuffle < 1:
            raise ValueError(f"shuffle must be >= 1, got {shuffle}")
        self.size_multiple = 2 ** len(enc_blocks) * shuffle
        self.noise_input = NoiseInput("none")
        self.shuffle = shuffle
        self.unshuffle_in = nn.PixelUnshuffle(shuffle) if shuffle > 1 else nn.Identity()
        self.shuffle_out = nn.PixelShuffle(shuffle) if shuffle > 1 else nn.Identity()

        self.intro = nn.Conv2d(in_channels * shuffle**2, width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        ch = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(ch, sca=sca) for _ in range(n)]))
            self.downs.append(nn.Conv2d(ch, 2 * ch, 2, stride=2))
            ch *= 2
        self.middle = nn.Sequential(*[NAFBlock(ch, sca=sca) for _ in range(middle_blocks)])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in reversed(dec_blocks):
            self.ups.append(nn.Sequential(nn.Conv2d(ch, 2 * ch, 1, bias=False), nn.PixelShuffle(2)))
            ch //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(ch, sca=sca) for _ in range(n)]))
        self.ending = nn.Conv2d(width, out_channels * shuffle**2, 3, padding=1)
        with torch.no_grad():  # start close to the identity (the output is residual)
            self.ending.weight.mul_(0.1)
            self.ending.bias.zero_()

    def body(self, x: Tensor, img: Tensor) -> Tensor:
        h = self.intro(self.unshuffle_in(img))
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            h = enc(h)
            skips.append(h)
            h = down(h)
        h = self.middle(h)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            h = dec(up(h) + skip)
        return (img + self.shuffle_out(self.ending(h))).clamp(0.0, 1.0)
