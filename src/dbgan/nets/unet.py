"""The pix2pix U-Net generator (Isola et al. 2017), with an optional noise input.

``num_downs=8`` is pix2pix's ``unet_256``. The layer layout, channel widths,
bias rules and dropout placement follow pix2pix's ``UnetGenerator`` exactly
(with ``norm="batch"`` and ``ngf=64`` it has pix2pix's 54,414,019 parameters),
but the recursion is unrolled into two lists (``downs``, ``ups``) so that
the state dict keys read plainly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dbgan.nets.common import (
    NORMS,
    ImageGenerator,
    NoiseInput,
    check_choice,
    init_normal,
    norm_layer,
    signed_input,
    standard_path_only,
    to_unit,
)
from dbgan.nets.small_conv import SmallMapConv2d, SmallMapConvTranspose2d, set_small_map_gemm


class UNetGenerator(ImageGenerator):
    """pix2pix U-Net: ``num_downs`` stride-2 4x4 convolutions down, as many transposed up, skips between.

    Level ``i`` (0 = outermost) has ``ngf * min(2**i, 8)`` channels. Down path:
    LeakyReLU(0.2) -> conv -> norm (no activation before the first conv, no norm
    at the outermost and innermost levels); up path: ReLU -> transposed conv ->
    norm (-> Dropout(0.5) at the inner ``8 * ngf`` levels when ``use_dropout``);
    Tanh at the output. Works internally in ``[-1, 1]``; inputs and outputs are
    ``[0, 1]``. Any input size works (reflect-padded to ``2**num_downs``, cropped back).

    Cropped decoding: when the input is smaller than its padded size, the up path
    computes only the region the cropped output depends on (a 4x4 stride-2
    transposed convolution needs input rows ``[0, n // 2 + 1)`` for output rows
    ``[0, n)``), while the down path still sees the whole padded image. The result
    equals decoding everything and cropping, up to float rounding; a 128 px crop
    in a ``unet_256`` then decodes about a third of the padded area. It applies
    when every up-path layer besides the convolution is pointwise (``norm="none"``,
    dropout inactive) and not while tracing or exporting; :func:`set_cropped_decoding`
    turns it off (the plain reference loop of ``benchmarks/train_speed.py`` does).

    Args:
        in_channels: image channels in (1 grey, 3 RGB).
        out_channels: image channels out.
        num_downs: number of downsamplings (8 = ``unet_256``, 7 = ``unet_128``); >= 1.
        ngf: channels of the first level.
        norm: ``"none"`` (convs keep their biases), ``"batch"`` (pix2pix default;
            convs without biases) or ``"instance"``.
        use_dropout: Dropout(0.5) in the inner up levels (pix2pix's noise source).
        noise: ``"none"``, ``"map"`` (Gaussian map at half resolution, upsampled,
            concatenated: the reference recipe) or ``"vector"`` (Gaussian vector
            tiled over the image: the paper).
        noise_nc: channels of the noise map (``noise="map"``).
        noise_dim: length of the noise vector (``noise="vector"``).
        residual: output ``clamp(x + tanh_out, 0, 1)`` instead of ``(tanh_out + 1) / 2``
            (needs ``in_channels == out_channels``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "none",
        use_dropout: bool = False,
        noise: str = "none",
        noise_nc: int = 1,
        noise_dim: int = 4,
        residual: bool = False,
    ):
        super().__init__()
        check_choice("norm", norm, NORMS)
        if num_downs < 1:
            raise ValueError(f"num_downs must be >= 1, got {num_downs}")
        if residual and in_channels != out_channels:
            raise ValueError("residual=True needs in_channels == out_channels")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = 2**num_downs
        self.num_downs = num_downs
        self.residual = residual
        self.norm = norm
        self.use_dropout = use_dropout
        self.cropped_decoding = True
        self.noise_input = NoiseInput(noise, noise_nc, noise_dim)

        use_bias = norm != "batch"  # BatchNorm has its own shift (pix2pix's rule)
        ch = [ngf * min(2**i, 8) for i in range(num_downs)]
        inner = num_downs - 1

        downs = []
        for i in range(num_downs):
            if i == 0:
                downs.append(nn.Sequential(
                    SmallMapConv2d(in_channels + self.noise_input.channels, ch[0], 4, 2, 1, bias=use_bias)
                ))
                continue
            layers: list[nn.Module] = [
                nn.LeakyReLU(0.2, inplace=False),
                SmallMapConv2d(ch[i - 1], ch[i], 4, 2, 1, bias=use_bias),
            ]
            if i != inner:
                layers.append(norm_layer(norm, ch[i]))
            downs.append(nn.Sequential(*layers))

        ups = []
        for i in range(num_downs):
            if i == 0:
                c_in = ch[0] if inner == 0 else 2 * ch[0]
                ups.append(nn.Sequential(
                    nn.ReLU(inplace=False), SmallMapConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()
                ))
                continue
            c_in = ch[i] if i == inner else 2 * ch[i]
            layers = [
                nn.ReLU(inplace=False),
                SmallMapConvTranspose2d(c_in, ch[i - 1], 4, 2, 1, bias=use_bias),
                norm_layer(norm, ch[i - 1]),
            ]
            if use_dropout and i != inner and ch[i - 1] == ch[i] == ngf * 8:
                layers.append(nn.Dropout(0.5))
            ups.append(nn.Sequential(*layers))

        self.downs = nn.ModuleList(downs)
        self.ups = nn.ModuleList(ups)
        init_normal(self, 0.02)

    def cropped_body(self, x: Tensor, img: Tensor, out_size: tuple[int, int]) -> Tensor:
        return self.body(x, img, out_size)

    def crops_decoding(self) -> bool:
        """True when the up path may compute only the region the cropped output needs."""
        dropout_active = self.use_dropout and self.training
        return self.cropped_decoding and self.norm == "none" and not dropout_active and not standard_path_only()

    def body(self, x: Tensor, img: Tensor, out_size: tuple[int, int] | None = None) -> Tensor:
        """The U-Net on the padded input; with ``out_size``, correct only in ``[:out_size[0], :out_size[1]]``.

        Returns at least ``out_size`` rows and columns (with cropped decoding, not
        more than needed), and the whole padded size without ``out_size``.
        """
        h = signed_input(x, self.in_channels)  # noise channels stay as drawn (N(0, 1))
        feats = []
        for down in self.downs:
            h = down(h)
            feats.append(h)
        # need[i]: rows and columns of ups[i]'s output that the cropped result depends on
        need = [(x.shape[-2], x.shape[-1])]
        if out_size is not None and self.crops_decoding():
            need = [(min(out_size[0], x.shape[-2]), min(out_size[1], x.shape[-1]))]
        for i in range(self.num_downs - 1):
            full = (feats[i].shape[-2], feats[i].shape[-1])
            need.append(tuple(min(n // 2 + 1, f) for n, f in zip(need[-1], full)))
        h = self.ups[-1](feats[-1])
        for i in range(self.num_downs - 2, -1, -1):
            rows, cols = need[i + 1]
            h = self.ups[i](torch.cat([feats[i][..., :rows, :cols], h[..., :rows, :cols]], dim=1))
        h = h[..., : need[0][0], : need[0][1]]
        if self.residual:
            return (img[..., : h.shape[-2], : h.shape[-1]] + h).clamp(0.0, 1.0)
        return to_unit(h)


def set_cropped_decoding(net: nn.Module, enabled: bool) -> int:
    """Turn cropped decoding on or off in every U-Net inside ``net``; returns how many were switched."""
    count = 0
    for m in net.modules():
        if isinstance(m, UNetGenerator):
            m.cropped_decoding = enabled
            count += 1
    return count


def use_plain_layers(net: nn.Module) -> None:
    """Plain ``torch.nn`` layers computing everything: no small-map GEMM path, no cropped decoding.

    What a straightforward implementation computes; the benchmarks' reference paths use it.
    """
    set_small_map_gemm(net, False)
    set_cropped_decoding(net, False)
