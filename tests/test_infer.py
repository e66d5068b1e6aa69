"""Inference: any size, tiling and blending, channels, bit depths, folders, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dbgan.checkpoint import save_checkpoint
from dbgan.device import DeviceError
from dbgan.infer import (
    Blurrer,
    Deblurrer,
    InferenceError,
    blend_weights,
    file_seed,
    pick_device,
    run_folder,
    tile_starts,
)
from dbgan.io import ImageReadError, read_image_with_info, write_image
from dbgan.nets import build_network

TINY = {"num_downs": 4, "ngf": 4}
TINY_BLUR = {"num_downs": 4, "ngf": 4, "noise": "map", "noise_nc": 1}

#: |tiled - untiled| allowed on the smooth 333x517 test image, tile 128, overlap 32.
#: The tiny U-Net (4 levels) sees ~100 px of context, more than the overlap, so
#: tiles cannot equal the whole-image run; they differ only near seams. With the
#: pix2pix init (weights ~N(0, 0.02), output barely depends on context) we measured
#: max 8e-5, mean 4e-7: bound max 1e-3, mean 1e-4. With Kaiming weights (the output
#: moves 0.23 from the input on average, strongly context dependent) we measured
#: max 0.14, mean 0.004 (hard seams, overlap 0: max 1.0, mean 0.017): bound max 0.3,
#: mean 0.01, and blending must beat hard seams.
TILE_BOUND_MAX = 1e-3
TILE_BOUND_MEAN = 1e-4
STRONG_BOUND_MAX = 0.3
STRONG_BOUND_MEAN = 0.01


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(args=TINY, seed=0, **extra):
    torch.manual_seed(seed)
    return build_network("unet", **{**args, **extra})


def make_checkpoint(path: Path, deblur_args=None, blur_args=None, channels: int = 3) -> Path:
    """A two-network checkpoint with tiny random U-Nets."""
    deblur_args = {**TINY, "residual": True, "in_channels": channels, "out_channels": channels, **(deblur_args or {})}
    blur_args = {**TINY_BLUR, "in_channels": channels, "out_channels": channels, **(blur_args or {})}
    nets = {"deblur_g": _net(deblur_args, 1), "blur_g": _net(blur_args, 2)}
    save_checkpoint(path, nets, {
        "stage": "dbgan", "iter": 1, "config_hash": "x",
        "config": {"data": {"channels": channels}},
        "nets": {"deblur_g": {"name": "unet", "args": deblur_args}, "blur_g": {"name": "unet", "args": blur_args}},
    })
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def smooth_image(c: int, h: int, w: int) -> torch.Tensor:
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    planes = [0.5 + 0.4 * torch.sin(3.0 * x + 2.0 * y + k) * torch.cos(2.0 * y - x + 0.5 * k) for k in range(c)]
    return torch.stack(planes).float()


class Pointwise(nn.Module):
    """A 1x1-conv 'network' (no spatial context): tiles must agree exactly with the whole image."""

    in_channels = out_channels = 3
    size_multiple = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x, noise=None):
        return torch.sigmoid(self.conv(x))


# --------------------------------------------------------------------------- sizes, tiles


def test_odd_sizes_come_back_exactly():
    d = Deblurrer(_net(), device="cpu")
    for shape in [(3, 333, 517), (1, 333, 517), (3, 7, 5), (3, 1, 1)]:
        out = d(torch.rand(*shape))
        assert out.shape == shape
        assert out.dtype == torch.float32 and 0.0 <= out.min() and out.max() <= 1.0


def test_tile_covering_the_image_is_bit_identical_to_untiled():
    net = _net(residual=True)
    img = torch.rand(3, 333, 517)
    ref = Deblurrer(net, device="cpu")(img)
    for tile in (517, 520, 4096):  # >= both sides (520 is below the padded 528)
        d = Deblurrer(net, device="cpu", tile=tile)
        assert torch.equal(d(img), ref)
        assert d.last_plan.single


def test_untiled_generator_pads_itself_and_decodes_only_the_image():
    """An untiled image reaches a dbgan U-Net unpadded: same result, only the image decoded."""
    net = _net(residual=True)  # multiple 16: 333 x 517 is padded to 336 x 528
    img = torch.rand(3, 333, 517)
    seen = []
    net.ups[0][1].register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    out = Deblurrer(net, device="cpu", channels_last=False)(img)
    assert seen[-1] == (167, 259)  # rows [0, 333) need 333 // 2 + 1 of the padded 336 / 2 (the first call is the memory probe)
    with torch.no_grad():
        ref = net(img[None])[0]
    assert torch.equal(out, ref.clamp(0, 1))
    padded = Deblurrer(Pointwise(), device="cpu", channels_last=False)
    assert not padded.backend.pads_itself  # other nets still get the padded image


def test_real_tiles_stay_close_to_untiled():
    net = _net(residual=True)
    img = smooth_image(3, 333, 517)
    ref = Deblurrer(net, device="cpu")(img)
    d = Deblurrer(net, device="cpu", tile=128, overlap=32)
    out = d(img)
    assert d.last_plan.count > 6
    diff = (out - ref).abs()
    assert out.shape == ref.shape
    assert diff.max() < TILE_BOUND_MAX and diff.mean() < TILE_BOUND_MEAN


def test_real_tiles_with_a_context_sensitive_net():
    net = _net(residual=True)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, a=0.2)
    img = smooth_image(3, 333, 517)
    ref = Deblurrer(net, device="cpu")(img)
    assert (ref - img).abs().mean() > 0.1  # the net really changes the image
    blended = (Deblurrer(net, device="cpu", tile=128, overlap=32)(img) - ref).abs()
    seams = (Deblurrer(net, device="cpu", tile=128, overlap=0)(img) - ref).abs()
    assert blended.max() < STRONG_BOUND_MAX and blended.mean() < STRONG_BOUND_MEAN
    assert blended.max() < seams.max() and blended.mean() < seams.mean()


def test_blend_is_exact_where_tiles_agree():
    img = torch.rand(3, 200, 300)
    ref = Deblurrer(Pointwise(), device="cpu", channels_last=False)(img)
    for tile, overlap in ((64, 16), (48, 32), (96, 0)):
        out = Deblurrer(Pointwise(), device="cpu", tile=tile, overlap=overlap, channels_last=False)(img)
        torch.testing.assert_close(out, ref, atol=2e-6, rtol=0)


def test_tile_positions_and_weights():
    assert tile_starts(300, 128, 32) == [0, 96, 172]
    assert tile_starts(128, 128, 32) == [0]
    assert tile_starts(100, 300, 32) == [0]
    starts = tile_starts(1000, 256, 48, align=2)
    assert starts[-1] == 1000 - 256 and all(s % 2 == 0 for s in starts)
    weights = blend_weights(starts, 256, 1000)
    total = torch.zeros(1000)
    for s, w in zip(starts, weights):
        assert (w > 0).all()
        total[s : s + 256] += w
    torch.testing.assert_close(total, torch.ones(1000), atol=1e-6, rtol=0)


def test_automatic_tiling_under_a_small_memory_budget():
    net = _net(residual=True)
    img = smooth_image(3, 300, 400)
    d = Deblurrer(net, device="cpu", memory_budget_mb=2, overlap=16)
    out = d(img)
    assert not d.last_plan.single
    assert out.shape == img.shape
    ref = Deblurrer(net, device="cpu")(img)
    assert (out - ref).abs().mean() < TILE_BOUND_MEAN


def test_bf16_autocast_runs_close_to_fp32():
    net = _net(residual=True)
    img = smooth_image(3, 64, 80)
    ref = Deblurrer(net, device="cpu", dtype="fp32")(img)
    out = Deblurrer(net, device="cpu", dtype="bf16", channels_last=True)(img)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().max() < 0.05


# --------------------------------------------------------------------------- channels


def test_grey_image_through_rgb_net_is_luma_of_replicated_run():
    net = _net()
    grey = torch.rand(1, 40, 56)
    out = Deblurrer(net, device="cpu")(grey)
    assert out.shape == (1, 40, 56)
    rgb = Deblurrer(net, device="cpu")(grey.expand(3, -1, -1).contiguous())
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    torch.testing.assert_close(out, luma, atol=1e-6, rtol=0)


def test_rgb_image_through_grey_net_runs_per_channel():
    net = _net(in_channels=1, out_channels=1)
    img = torch.rand(3, 40, 56)
    d = Deblurrer(net, device="cpu")
    out = d(img)
    assert out.shape == (3, 40, 56)
    for c in range(3):
        torch.testing.assert_close(out[c : c + 1], d(img[c : c + 1]), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- blur


def test_blurrer_same_seed_same_blur_other_seed_other_blur():
    b = Blurrer(_net(TINY_BLUR, 3), device="cpu")
    img = smooth_image(3, 70, 90)
    a1, a2, a3 = b(img, seed=5), b(img, seed=5), b(img, seed=6)
    assert torch.equal(a1, a2)
    assert (a1 - a3).abs().max() > 1e-3
    # the running generator: reproducible sequence, different draws per call
    b2 = Blurrer(_net(TINY_BLUR, 3), device="cpu", seed=1)
    b3 = Blurrer(_net(TINY_BLUR, 3), device="cpu", seed=1)
    s1, s2 = b2(img), b2(img)
    assert torch.equal(s1, b3(img)) and not torch.equal(s1, s2)


def test_tiled_blur_cuts_one_noise_map():
    net = _net(TINY_BLUR, 3, residual=True)
    img = smooth_image(3, 150, 200)
    ref = Blurrer(net, device="cpu")(img, seed=1)
    tiled = Blurrer(net, device="cpu", tile=64, overlap=16)
    out = tiled(img, seed=1)
    assert not tiled.last_plan.single
    assert (out - ref).abs().mean() < TILE_BOUND_MEAN
    # a different seed changes the tiled blur as much as the untiled one
    assert (tiled(img, seed=2) - out).abs().mean() > 10 * (out - ref).abs().mean()


# --------------------------------------------------------------------------- devices


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="not available"):
            pick_device("cuda")


# --------------------------------------------------------------------------- run_folder


def _write(path: Path, img: torch.Tensor, bit_depth: int = 8) -> Path:
    write_image(path, img, bit_depth=bit_depth)
    return path


def test_run_folder_preserves_size_channels_and_bit_depth(ckpt, tmp_path):
    src = tmp_path / "in"
    _write(src / "grey16.png", smooth_image(1, 45, 61), 16)
    _write(src / "rgb8.png", smooth_image(3, 33, 50))
    _write(src / "photo.jpg", smooth_image(3, 40, 30))
    res = run_folder(ckpt, src, tmp_path / "out", device="cpu", progress=False)
    assert sorted(p.name for p in res.written) == ["grey16.png", "photo.jpg", "rgb8.png"]
    assert not res.skipped_existing and not res.bad
    for name in ("grey16.png", "rgb8.png", "photo.jpg"):
        img_in, info_in = read_image_with_info(src / name)
        img_out, info_out = read_image_with_info(tmp_path / "out" / name)
        assert img_out.shape == img_in.shape
        assert (info_out.channels, info_out.bit_depth) == (info_in.channels, info_in.bit_depth)
    import cv2

    raw = cv2.imread(str(tmp_path / "out" / "grey16.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.ndim == 2
    assert (tmp_path / "out" / "photo.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_run_folder_single_file_to_file_and_into_folder(ckpt, tmp_path):
    src = _write(tmp_path / "a.png", smooth_image(3, 20, 30))
    res = run_folder(ckpt, src, tmp_path / "b.png", device="cpu", progress=False)
    assert res.written == [tmp_path / "b.png"]
    (tmp_path / "outdir").mkdir()
    res = run_folder(ckpt, src, tmp_path / "outdir", device="cpu", progress=False)
    assert res.written == [tmp_path / "outdir" / "a.png"]
    res = run_folder(ckpt, src, str(tmp_path / "newdir") + "/", device="cpu", progress=False)
    assert res.written == [tmp_path / "newdir" / "a.png"]


def test_existing_outputs_are_kept_unless_overwrite(ckpt, tmp_path):
    src = tmp_path / "in"
    _write(src / "x.png", smooth_image(3, 20, 30))
    out = tmp_path / "out"
    out.mkdir()
    marker = b"not an image, keep me"
    (out / "x.png").write_bytes(marker)
    res = run_folder(ckpt, src, out, device="cpu", progress=False)
    assert res.skipped_existing == [out / "x.png"] and not res.written
    assert (out / "x.png").read_bytes() == marker
    res = run_folder(ckpt, src, out, device="cpu", progress=False, overwrite=True)
    assert res.written == [out / "x.png"]
    assert read_image_with_info(out / "x.png")[0].shape == (3, 20, 30)


def test_refuses_to_write_over_its_inputs(ckpt, tmp_path):
    src = _write(tmp_path / "in" / "x.png", smooth_image(3, 20, 30))
    before = src.read_bytes()
    with pytest.raises(InferenceError, match="input"):
        run_folder(ckpt, src, src, device="cpu", progress=False, overwrite=True)
    with pytest.raises(InferenceError, match="input"):
        run_folder(ckpt, tmp_path / "in", tmp_path / "in", device="cpu", progress=False, overwrite=True)
    with pytest.raises(InferenceError, match="input"):
        run_folder(ckpt, tmp_path / "in", str(tmp_path / "in" / ".." / "in") + "/", device="cpu", progress=False, overwrite=True)
    assert src.read_bytes() == before


def test_unreadable_inputs_fail_or_are_listed(ckpt, tmp_path):
    src = tmp_path / "in"
    _write(src / "good.png", smooth_image(3, 20, 30))
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageReadError, match="bad.png"):
        run_folder(ckpt, src, tmp_path / "out", device="cpu", progress=False)
    res = run_folder(ckpt, src, tmp_path / "out2", device="cpu", progress=False, skip_bad=True)
    assert [p.name for p in res.written] == ["good.png"]
    assert [p.name for p, _reason in res.bad] == ["bad.png"]


def test_run_folder_blur_is_reproducible(ckpt, tmp_path):
    src = tmp_path / "in"
    _write(src / "s.png", smooth_image(3, 40, 52))
    run_folder(ckpt, src, tmp_path / "o1", mode="blur", seed=3, device="cpu", progress=False)
    run_folder(ckpt, src, tmp_path / "o2", mode="blur", seed=3, device="cpu", progress=False)
    run_folder(ckpt, src, tmp_path / "o3", mode="blur", seed=4, device="cpu", progress=False)
    a, b, c = (read_image_with_info(tmp_path / o / "s.png")[0] for o in ("o1", "o2", "o3"))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert file_seed(3, "s.png") == file_seed(3, "s.png") != file_seed(4, "s.png")


def test_from_checkpoint_matches_the_network(ckpt):
    from dbgan.checkpoint import load_checkpoint

    d = Deblurrer.from_checkpoint(ckpt, device="cpu")
    img = torch.rand(3, 37, 41)
    net = load_checkpoint(ckpt).build("deblur_g")
    with torch.no_grad():
        ref = net(img[None])[0]
    torch.testing.assert_close(d(img), ref, atol=1e-5, rtol=0)
    with pytest.raises(InferenceError, match="ONNX"):
        Deblurrer.from_checkpoint(ckpt, device="cpu", onnx=True)
