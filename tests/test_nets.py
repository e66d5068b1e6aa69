"""Architectures: any-size inputs, value range, gradients, noise, parameter counts, VGG loading."""

from __future__ import annotations

import pytest
import torch

from dbgan.nets import NETWORKS, build_network, describe
from dbgan.nets.common import PadToMultiple, count_parameters, crop_to, pad_to_multiple
from dbgan.nets.discriminators import PatchGANDiscriminator, VGGDiscriminator
from dbgan.nets.resnet import ResNetBlurGenerator
from dbgan.nets.rrdb import RRDBGenerator
from dbgan.nets.unet import UNetGenerator, set_cropped_decoding

# tiny versions of every generator: (registry name, kwargs)
TINY_GENERATORS = [
    ("unet", {"num_downs": 5, "ngf": 4}),
    ("unet", {"num_downs": 5, "ngf": 4, "norm": "instance", "noise": "map"}),
    ("unet", {"num_downs": 5, "ngf": 4, "norm": "batch", "use_dropout": True, "residual": True}),
    ("resnet_blur", {"ngf": 4, "n_blocks": 2}),
    ("resnet_blur", {"ngf": 4, "n_blocks": 2, "noise": "map", "noise_nc": 2}),
    ("rrdb", {"nf": 8, "nb": 1, "gc": 4}),
    ("kernel_blur", {"kernel_size": 5, "hidden": 8}),
]


def _id(param):
    name, kw = param
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("spec", TINY_GENERATORS, ids=[_id(p) for p in TINY_GENERATORS])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_any_size_and_range(spec, channels):
    name, kw = spec
    net = build_network(name, in_channels=channels, out_channels=channels, **kw)
    assert net.in_channels == channels and net.out_channels == channels
    assert isinstance(net.size_multiple, int) and net.size_multiple >= 1
    x = torch.rand(2, channels, 37, 53)
    y = net(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.min() >= 0.0 and y.max() <= 1.0


@pytest.mark.parametrize("spec", TINY_GENERATORS[:1] + TINY_GENERATORS[3:4] + TINY_GENERATORS[5:])
def test_generator_tiny_inputs(spec):
    # smaller than size_multiple, even 1x1: reflect where possible, replicate the rest
    name, kw = spec
    net = build_network(name, **kw)
    for h, w in [(1, 1), (3, 70), (33, 2)]:
        assert net(torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


@pytest.mark.parametrize("spec", TINY_GENERATORS, ids=[_id(p) for p in TINY_GENERATORS])
def test_gradients_reach_every_parameter(spec):
    name, kw = spec
    net = build_network(name, **kw)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    net(x).square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [PatchGANDiscriminator, VGGDiscriminator])
def test_discriminator_gradients(cls):
    net = cls(ndf=4)
    net(torch.rand(2, 3, 64, 64)).mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,kw", [("unet", {"num_downs": 5, "ngf": 4}), ("resnet_blur", {"ngf": 4, "n_blocks": 2})])
@pytest.mark.parametrize("mode", ["map", "vector"])
def test_noise_changes_output(name, kw, mode):
    net = build_network(name, noise=mode, **kw).eval()
    x = torch.rand(2, 3, 40, 24)
    n1 = net.sample_noise(x, torch.Generator().manual_seed(1))
    n2 = net.sample_noise(x, torch.Generator().manual_seed(2))
    if mode == "map":
        assert n1.shape == (2, 1, 20, 12)
    else:
        assert n1.shape == (2, 4)
    y1, y2 = net(x, n1), net(x, n2)
    assert (y1 - y2).abs().max() > 1e-4
    # the same noise gives the same output; explicit generator draws reproduce
    torch.testing.assert_close(net(x, n1), y1)
    n1b = net.sample_noise(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(net(x, n1b), y1)
    # without explicit noise it is drawn from torch's global RNG: a global seed reproduces
    torch.manual_seed(5)
    a = net(x)
    torch.manual_seed(5)
    b = net(x)
    c = net(x)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4


def test_noise_none_is_deterministic():
    for net in (UNetGenerator(num_downs=5, ngf=4), ResNetBlurGenerator(ngf=4, n_blocks=2, noise="none")):
        net.eval()
        x = torch.rand(1, 3, 33, 35)
        assert net.sample_noise(x) is None
        torch.testing.assert_close(net(x), net(x))
        with pytest.raises(ValueError, match="noise"):
            net(x, torch.randn(1, 4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="noise"):
        UNetGenerator(num_downs=5, ngf=4, noise="gauss")
    with pytest.raises(ValueError, match="norm"):
        UNetGenerator(num_downs=5, ngf=4, norm="group")
    with pytest.raises(ValueError, match="in_channels"):
        RRDBGenerator(in_channels=1, out_channels=3, nf=4, nb=1, gc=2)
    with pytest.raises(ValueError, match="expects"):
        UNetGenerator(num_downs=5, ngf=4)(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="unknown argument"):
        build_network("unet", ngf=4, n_blocks=3)


def test_unet256_parameter_count():
    # pix2pix's unet_256 (batch norm, ngf 64): 54,413,955 parameters ("54.414 M" in its log)
    with torch.device("meta"):
        bn = UNetGenerator(num_downs=8, ngf=64, norm="batch")
        plain = UNetGenerator(num_downs=8, ngf=64)
    assert count_parameters(bn) == 54_413_955
    assert abs(count_parameters(plain) / 1e6 - 54.41) < 0.01
    assert bn.size_multiple == 256


def test_unet_innermost_1x1_without_norm_trains():
    net = UNetGenerator(num_downs=5, ngf=4, norm="none")
    x = torch.rand(1, 3, 32, 32)  # innermost level is 1x1
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    target = x.flip(-1)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = (net(x) - target).abs().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def _out_and_grads(net, x, noise, weight):
    y = net(x, noise)
    grads = torch.autograd.grad((y * weight).sum(), [x, *net.parameters()])
    return y, grads


@pytest.mark.parametrize(
    "kw, size",
    [
        ({"num_downs": 8, "ngf": 4, "noise": "map"}, (128, 128)),  # a 128 crop in unet_256
        ({"num_downs": 8, "ngf": 4, "residual": True}, (100, 77)),
        ({"num_downs": 3, "ngf": 4}, (5, 9)),  # odd sizes, a level needing the whole map
        ({"num_downs": 3, "ngf": 4}, (13, 1)),
    ],
)
def test_unet_cropped_decoding_equals_full_decoding(kw, size):
    net = UNetGenerator(**kw)
    x = torch.rand(2, 3, *size, requires_grad=True)
    noise = net.sample_noise(x)
    weight = torch.randn(2, 3, *size)
    y, grads = _out_and_grads(net, x, noise, weight)
    assert set_cropped_decoding(net, False) == 1
    y_full, grads_full = _out_and_grads(net, x, noise, weight)
    assert y.shape == y_full.shape == x.shape
    torch.testing.assert_close(y, y_full, rtol=0, atol=1e-6)
    for g, g_full in zip(grads, grads_full):
        torch.testing.assert_close(g, g_full, rtol=1e-5, atol=1e-6 * float(g_full.abs().max()))


def test_unet_cropped_decoding_computes_less():
    # the outermost transposed convolution sees only the rows and columns the crop needs
    net = UNetGenerator(num_downs=8, ngf=4)
    seen = []
    net.ups[0][1].register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    net(torch.rand(1, 3, 128, 96))
    set_cropped_decoding(net, False)
    net(torch.rand(1, 3, 128, 96))
    assert seen == [(65, 49), (128, 128)]
    net(torch.rand(1, 3, 256, 256))  # nothing to crop
    assert seen[-1] == (128, 128)


def test_unet_cropped_decoding_only_with_pointwise_up_layers():
    assert UNetGenerator(num_downs=3, ngf=4).crops_decoding()
    assert not UNetGenerator(num_downs=3, ngf=4, norm="instance").crops_decoding()  # statistics over the map
    assert not UNetGenerator(num_downs=3, ngf=4, norm="batch").crops_decoding()
    drop = UNetGenerator(num_downs=5, ngf=4, use_dropout=True)
    assert not drop.train().crops_decoding()  # the dropout mask would change shape
    assert drop.eval().crops_decoding()


def test_rrdb_starts_near_identity():
    net = RRDBGenerator(nf=8, nb=1, gc=4)
    x = torch.rand(1, 3, 16, 16) * 0.8 + 0.1
    assert (net(x) - x).abs().mean() < 0.05


def test_patchgan_shape_and_receptive_field():
    d = PatchGANDiscriminator(in_channels=6, ndf=4, n_layers=3)
    assert d.receptive_field == 70
    assert PatchGANDiscriminator(ndf=4, n_layers=1).receptive_field == 16
    assert d(torch.rand(2, 6, 32, 32)).shape == (2, 1, 2, 2)
    assert d(torch.rand(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # pix2pix's 30x30 patch map
    assert d(torch.rand(1, 6, 24, 37)).shape[:2] == (1, 1)
    d2 = PatchGANDiscriminator(ndf=4, n_layers=2, norm="batch", spectral_norm=True)
    assert d2(torch.rand(2, 3, 32, 32)).shape == (2, 1, 6, 6)


@pytest.mark.parametrize("size", [64, 96, 128])
def test_vgg_discriminator_any_crop(size):
    d = VGGDiscriminator(ndf=4)
    out = d(torch.rand(2, 3, size, size))
    assert out.shape == (2, 1)
    assert torch.isfinite(out).all()


def test_vgg_discriminator_esrgan_layout():
    with torch.device("meta"):
        d = VGGDiscriminator(ndf=64, norm="batch")
    # ESRGAN's VGGStyleDiscriminator128 layout, counted by hand: convs 13,674,240 +
    # BatchNorm 5,760 + linear head 819,401
    assert count_parameters(d) == 14_499_401


def test_pad_to_multiple_and_wrapper():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    xp, size = pad_to_multiple(x, 8)
    assert xp.shape == (1, 1, 8, 8) and size == (3, 4)
    torch.testing.assert_close(crop_to(xp, size), x)
    # reflect first: row 3 mirrors row 1
    torch.testing.assert_close(xp[0, 0, 3, :4], x[0, 0, 1])
    # then replicate once the image is too small to reflect
    torch.testing.assert_close(xp[0, 0, 7, :4], xp[0, 0, 4, :4])
    same, _ = pad_to_multiple(x, 1)
    assert same is x
    wrapped = PadToMultiple(torch.nn.Conv2d(1, 1, 3, 2, 1).requires_grad_(False), multiple=2)
    assert wrapped(torch.rand(1, 1, 5, 5)).shape[-2:] == (3, 3)


def test_image_layout_declared_by_generators_and_read_from_foreign_modules():
    """Generators declare channels and size multiple; a foreign module may carry them or not."""
    from dbgan.nets import build_network
    from dbgan.nets.common import ImageLayout, image_layout

    class Foreign(torch.nn.Module):
        in_channels, size_multiple = 1, 8

    unet = build_network("unet", num_downs=3, ngf=4)
    assert image_layout(unet) == ImageLayout(3, 3, 8)
    assert image_layout(torch.nn.Sigmoid()) == ImageLayout(None, None, 1)
    assert image_layout(torch.nn.Conv2d(3, 1, 1)) == ImageLayout(3, 1, 1)  # torch declares these too
    assert image_layout(Foreign()) == ImageLayout(1, None, 8)
    wrapped = PadToMultiple(Foreign())
    assert (wrapped.in_channels, wrapped.out_channels, wrapped.size_multiple) == (1, None, 8)
    assert image_layout(wrapped) == ImageLayout(1, None, 8)


def test_registry_and_describe():
    rows = dict(describe())
    assert set(rows) == set(NETWORKS.names())
    assert rows["unet"] > 50_000_000
    assert all(v > 0 for v in rows.values())
    assert describe(["patchgan"])[0][0] == "patchgan"


def test_python_m_dbgan_nets(capsys):
    # in-process (a subprocess would spend seconds importing torch again)
    from dbgan.nets.__main__ import main

    assert main([]) == 0
    out = capsys.readouterr().out
    for name in NETWORKS.names():
        assert name in out
    assert "54,409,603" in out
    assert main(["nope"]) == 2
    assert "unknown network" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_generator_onnx_export_dynamic_size(tmp_path):
    # pad-to-multiple must stay shape arithmetic: one export serves every H x W, even 1 x 1
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    net = UNetGenerator(num_downs=5, ngf=4).eval()
    h, w = torch.export.Dim("h", min=1, max=4096), torch.export.Dim("w", min=1, max=4096)
    path = tmp_path / "g.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 40, 40),), str(path), dynamo=True,
                      dynamic_shapes=({2: h, 3: w},), input_names=["x"])
    sess = ort.InferenceSession(str(path))
    for hw in [(37, 53), (1, 1), (3, 70)]:
        x = torch.rand(1, 3, *hw)
        y = sess.run(None, {"x": x.numpy()})[0]
        assert y.shape == (1, 3, *hw)
        torch.testing.assert_close(torch.from_numpy(y), net(x).detach(), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- VGG19 features


def _random_torchvision_vgg19_state_dict() -> dict[str, torch.Tensor]:
    from dbgan.nets.vgg import _CFG

    sd, idx, in_ch = {}, 0, 3
    for v in _CFG:
        if v == "M":
            idx += 1
            continue
        sd[f"features.{idx}.weight"] = torch.randn(v, in_ch, 3, 3) * 0.05
        sd[f"features.{idx}.bias"] = torch.randn(v) * 0.01
        in_ch, idx = v, idx + 2
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # ignored
    return sd


def test_vgg19_layout_matches_torchvision_indices():
    from dbgan.nets.vgg import VGG19_LAYERS

    assert len(VGG19_LAYERS) == 37
    assert VGG19_LAYERS[0] == "conv1_1" and VGG19_LAYERS[8] == "relu2_2"
    assert VGG19_LAYERS[34] == "conv5_4" and VGG19_LAYERS[36] == "pool5"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vgg19_loads_torchvision_state_dict(tmp_path, suffix):
    from dbgan.nets.vgg import VGG19Features, load_vgg19_state_dict

    sd = _random_torchvision_vgg19_state_dict()
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        save_file(sd, str(path))
    loaded = load_vgg19_state_dict(str(path))
    net = VGG19Features(["relu2_2", "conv3_1"], weights="pretrained", weights_path=str(path))
    assert len(net.features) == 11  # computed only up to conv3_1 (index 10)
    torch.testing.assert_close(net.features[7].weight, loaded["features.7.weight"])
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    out = net(torch.rand(1, 3, 16, 16))
    assert set(out) == {"relu2_2", "conv3_1"}
    assert out["relu2_2"].shape == (1, 128, 8, 8) and out["conv3_1"].shape == (1, 256, 4, 4)
    assert out["conv3_1"].min() < 0  # conv output taken before its ReLU


def test_vgg19_missing_file_message(tmp_path, monkeypatch):
    from dbgan.nets import vgg

    missing = tmp_path / "nope" / "vgg19.pth"
    with pytest.raises(FileNotFoundError) as err:
        vgg.load_vgg19_state_dict(str(missing))
    msg = str(err.value)
    assert str(missing) in msg and "losses.perceptual.weights_path" in msg

    # no path, empty hub cache, download fails (offline): the message names the cache path too
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FileNotFoundError) as err:
        vgg.load_vgg19_state_dict(None)
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in msg
    assert "losses.perceptual.weights_path" in msg

    # a file in the hub cache is found without any download
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(_random_torchvision_vgg19_state_dict(), cache / "vgg19-dcbb9e9d.pth")
    assert "features.0.weight" in vgg.load_vgg19_state_dict(None)


def test_vgg19_rejects_bad_state_dict_and_layer():
    from dbgan.nets.vgg import VGG19Features

    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        VGG19Features(["conv6_1"], weights="random")
    sd = _random_torchvision_vgg19_state_dict()
    del sd["features.2.weight"]
    with pytest.raises(KeyError, match="features.2.weight"):
        VGG19Features(["relu1_2"], weights="pretrained", state_dict=sd)
