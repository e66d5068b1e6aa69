"""The GEMM path for small feature maps gives the standard convolution's values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dbgan.nets.small_conv import SmallMapConv2d, SmallMapConvTranspose2d, set_small_map_gemm
from dbgan.nets.unet import UNetGenerator


def _pair(cls, std_cls, *args, **kw):
    torch.manual_seed(0)
    a = cls(*args, **kw)
    b = std_cls(*args, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("size", [(2, 2), (2, 3), (4, 4), (7, 5), (16, 16)])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_match_the_standard_layer(size, transposed, bias):
    if transposed:
        ours, ref = _pair(SmallMapConvTranspose2d, nn.ConvTranspose2d, 6, 5, 4, 2, 1, bias=bias)
    else:
        ours, ref = _pair(SmallMapConv2d, nn.Conv2d, 6, 5, 4, 2, 1, bias=bias)
    ours.gemm_max_pixels = 10_000  # force the GEMM path at every size tested
    x = torch.randn(3, 6, *size, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y_ref = ours(x), ref(x2)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-5)
    for (name, p), p_ref in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-4, rtol=1e-5, msg=name)


def test_other_strides_and_paddings_and_bf16():
    ours, ref = _pair(SmallMapConvTranspose2d, nn.ConvTranspose2d, 8, 4, 4, 2, 1)  # the U-Net's innermost up
    x = torch.randn(2, 8, 1, 1)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    for args in [(4, 3, 3, 1, 1), (4, 3, 3, 2, 0), (4, 3, 5, 1, 2)]:
        for cls, std in ((SmallMapConv2d, nn.Conv2d), (SmallMapConvTranspose2d, nn.ConvTranspose2d)):
            ours, ref = _pair(cls, std, *args)
            ours.gemm_max_pixels = 10_000
            x = torch.randn(2, 4, 6, 5)
            torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                torch.testing.assert_close(ours(x).float(), ref(x).float(), atol=0.05, rtol=0.05)


def test_switch_off_is_the_standard_path_and_unet_uses_the_layers():
    torch.manual_seed(0)
    net = UNetGenerator(num_downs=6, ngf=4).eval()
    x = torch.rand(1, 3, 64, 64)
    on = net(x)
    assert set_small_map_gemm(net, False) == 12
    off = net(x)
    torch.testing.assert_close(on, off, atol=1e-5, rtol=1e-5)
    assert all(m.gemm_max_pixels == 0 for m in net.modules() if isinstance(m, (SmallMapConv2d, SmallMapConvTranspose2d)))
    set_small_map_gemm(net, True)
    assert max(m.gemm_max_pixels for m in net.modules() if isinstance(m, SmallMapConv2d)) > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tracing_takes_the_standard_path():
    layer = SmallMapConvTranspose2d(4, 3, 4, 2, 1)
    traced = torch.jit.trace(layer, torch.randn(1, 4, 2, 2))
    kinds = {n.kind() for n in traced.inlined_graph.nodes()}
    assert "aten::_convolution" in kinds or "aten::conv_transpose2d" in kinds, kinds
    assert "aten::col2im" not in kinds and "aten::matmul" not in kinds


def test_unet_takes_the_gemm_path_only_for_small_maps(monkeypatch):
    import dbgan.nets.small_conv as sc

    seen: list[tuple[str, int]] = []
    conv, tconv = sc.conv2d_gemm, sc.conv_transpose2d_gemm
    monkeypatch.setattr(sc, "conv2d_gemm", lambda x, *a: seen.append(("c", x.shape[-1])) or conv(x, *a))
    monkeypatch.setattr(sc, "conv_transpose2d_gemm", lambda x, *a: seen.append(("t", x.shape[-1])) or tconv(x, *a))
    net = UNetGenerator(num_downs=8, ngf=2)
    net(torch.rand(1, 3, 256, 256))
    # batch 1: convolutions on 16x16 and smaller inputs, transposed ones on 16x16 and smaller
    assert sorted(seen) == sorted([("c", s) for s in (16, 8, 4, 2)] + [("t", s) for s in (1, 2, 4, 8, 16)])
    seen.clear()
    net(torch.rand(4, 3, 256, 256))  # batch 4: the limit is on batch x pixels
    assert sorted(seen) == sorted([("c", s) for s in (8, 4, 2)] + [("t", s) for s in (1, 2, 4, 8)])
