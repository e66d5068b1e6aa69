"""Convolutions that compute small feature maps as one matrix product.

oneDNN (PyTorch's CPU convolution backend) is tuned for large feature maps. At the
inner levels of a U-Net the maps are 1x1 to 16x16 pixels with 512-1024 channels:
there the work is a few GFLOP but the weights are tens of MB, and oneDNN's forward
and especially backward passes run at a few GFLOP/s (weight reorders per call). A
convolution written as ``unfold`` + ``matmul`` (transposed: ``matmul`` + ``fold``)
streams the weights once through a GEMM and is 1.5-5x faster there, in fp32 and in
bf16 autocast, forward and backward (``benchmarks/train_speed.py``).

:class:`SmallMapConv2d` and :class:`SmallMapConvTranspose2d` are drop-in subclasses
of ``nn.Conv2d`` / ``nn.ConvTranspose2d`` (same parameters, same state dict) that
take that path on CPU tensors whose batch of input maps has at most
``gemm_max_pixels`` pixels in all, and the standard path otherwise, and always while tracing, scripting,
compiling or exporting to ONNX (so exported graphs hold plain convolutions and no
branch on the image size). Results equal the standard path up to float rounding.
:func:`set_small_map_gemm` switches the path on or off in a whole network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dbgan.nets.common import standard_path_only

#: default batch x input-map size (N * H * W) up to which the GEMM path is taken
#: (measured per layer on a 2-core Zen 4, fp32 and bf16: the gain fades past these)
CONV_MAX_PIXELS = 256  # e.g. one 16x16 map, four 8x8 maps
TRANSPOSED_MAX_PIXELS = 256


def conv2d_gemm(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int], padding: tuple[int, int]) -> Tensor:
    """``F.conv2d`` (groups 1, dilation 1, zero padding) as ``unfold`` + one ``matmul`` for the whole batch."""
    n, _, h, w = x.shape
    cout, _, kh, kw = weight.shape
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # N x K x L, K = Cin*kh*kw
    k, l = cols.shape[1], cols.shape[2]
    cols = cols.transpose(0, 1).reshape(k, n * l)  # the batch joins the columns: the weights stream once
    y = torch.matmul(weight.reshape(cout, k), cols)  # Cout x N*L
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    y = y.reshape(cout, n, ho, wo).transpose(0, 1)
    return y if bias is None else y + bias.to(y.dtype)[None, :, None, None]


def conv_transpose2d_gemm(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int], padding: tuple[int, int]
) -> Tensor:
    """``F.conv_transpose2d`` (groups 1, dilation 1, no output padding) as one ``matmul`` + ``fold``."""
    n, cin, h, w = x.shape
    _, cout, kh, kw = weight.shape
    ckk = cout * kh * kw
    # positions as rows, the contiguous weight as the right operand: MKL's GEMM with a
    # transposed left operand and a few columns is an order of magnitude slower in fp32
    xs = x.reshape(n, cin, h * w).transpose(1, 2).reshape(n * h * w, cin)
    cols = torch.matmul(xs, weight.reshape(cin, ckk))  # N*HW x (Cout*kh*kw)
    cols = cols.reshape(n, h * w, ckk).transpose(1, 2)
    ho = (h - 1) * stride[0] - 2 * padding[0] + kh
    wo = (w - 1) * stride[1] - 2 * padding[1] + kw
    y = F.fold(cols, (ho, wo), (kh, kw), padding=padding, stride=stride)
    return y if bias is None else y + bias.to(y.dtype)[None, :, None, None]


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` with the GEMM path for input maps of at most ``gemm_max_pixels`` pixels on CPU."""

    gemm_max_pixels: int = CONV_MAX_PIXELS

    def forward(self, x: Tensor) -> Tensor:
        if (
            not standard_path_only()  # first: no shape test while tracing
            and x.dim() == 4
            and x.device.type == "cpu"
            and x.shape[0] * x.shape[-2] * x.shape[-1] <= self.gemm_max_pixels
            and self.groups == 1
            and self.dilation == (1, 1)
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
        ):
            return conv2d_gemm(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)


class SmallMapConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with the GEMM path for input maps of at most ``gemm_max_pixels`` pixels on CPU."""

    gemm_max_pixels: int = TRANSPOSED_MAX_PIXELS

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if (
            not standard_path_only()  # first: no shape test while tracing
            and output_size is None
            and x.dim() == 4
            and x.device.type == "cpu"
            and x.shape[0] * x.shape[-2] * x.shape[-1] <= self.gemm_max_pixels
            and self.groups == 1
            and self.dilation == (1, 1)
            and self.output_padding == (0, 0)
        ):
            return conv_transpose2d_gemm(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x, output_size)


def set_small_map_gemm(net: nn.Module, enabled: bool) -> int:
    """Turn the GEMM path on (default thresholds) or off in every small-map layer of ``net``.

    Returns the number of layers switched. Off gives exactly the standard ``torch.nn`` layers.
    """
    count = 0
    for m in net.modules():
        if isinstance(m, SmallMapConv2d):
            m.gemm_max_pixels = CONV_MAX_PIXELS if enabled else 0
            count += 1
        elif isinstance(m, SmallMapConvTranspose2d):
            m.gemm_max_pixels = TRANSPOSED_MAX_PIXELS if enabled else 0
            count += 1
    return count
