"""Metrics against scikit-image, and the evaluation reports built on them."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_infer import make_checkpoint, smooth_image  # noqa: E402

from dbgan import metrics  # noqa: E402
from dbgan.data.layouts import find_pairs  # noqa: E402
from dbgan.evaluate import evaluate, evaluate_unpaired, format_table  # noqa: E402
from dbgan.infer import Deblurrer  # noqa: E402
from dbgan.io import write_image  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny nets gain nothing from threads, and on a shared CPU spinning worker threads cost a lot."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pair(seed=0, c=3, h=48, w=64):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(c, h, w, generator=g)
    b = (a + 0.08 * torch.randn(c, h, w, generator=g)).clamp(0, 1)
    return a, b


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("c", [1, 3])
def test_psnr_ssim_are_scikit_image(c):
    a, b = _pair(c=c)
    an, bn = a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy()
    gauss = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    if c == 1:
        an, bn = an[..., 0], bn[..., 0]
        ref_ssim = structural_similarity(bn, an, data_range=1.0, **gauss)
        ref_uniform = structural_similarity(bn, an, data_range=1.0)
    else:
        ref_ssim = structural_similarity(bn, an, data_range=1.0, channel_axis=-1, **gauss)
        ref_uniform = structural_similarity(bn, an, data_range=1.0, channel_axis=-1)
    ref_psnr = peak_signal_noise_ratio(bn, an, data_range=1.0)
    assert metrics.psnr(a, b) == pytest.approx(ref_psnr, abs=1e-9)
    assert metrics.ssim(a, b) == pytest.approx(ref_ssim, abs=1e-9)
    assert metrics.ssim(a, b, window="uniform") == pytest.approx(ref_uniform, abs=1e-9)
    assert ref_ssim != ref_uniform  # the two windows really differ
    # numpy H x W x C gives the same numbers as C x H x W tensors
    assert metrics.psnr(an, bn) == pytest.approx(ref_psnr, abs=1e-9)
    assert metrics.ssim(an, bn) == pytest.approx(ref_ssim, abs=1e-9)


def test_psnr_torch_matches_scikit_image_batchwise():
    pairs = [_pair(s) for s in range(4)]
    a = torch.stack([p[0] for p in pairs])
    b = torch.stack([p[1] for p in pairs])
    got = metrics.psnr_torch(a, b)
    assert got.shape == (4,)
    for i in range(4):
        assert float(got[i]) == pytest.approx(metrics.psnr(a[i], b[i]), abs=1e-4)
    assert float(metrics.psnr_torch(a[0], b[0])) == pytest.approx(metrics.psnr(a[0], b[0]), abs=1e-4)
    assert metrics.psnr(a[0], a[0]) == float("inf")


def test_psnr_of_identical_images_is_infinite():
    a, _ = _pair(0)
    assert metrics.psnr(a, a) == float("inf")


def test_sharpness_falls_with_blur():
    img = torch.rand(3, 64, 64)
    blurred = torch.from_numpy(ndimage.gaussian_filter(img.numpy(), sigma=(0, 1.5, 1.5)))
    for method in ("gradient", "laplacian"):
        assert metrics.sharpness(img, method) > 3 * metrics.sharpness(blurred, method)
    assert metrics.sharpness(torch.full((1, 20, 20), 0.3)) == 0.0
    with pytest.raises(ValueError):
        metrics.sharpness(img, "fft")


def test_colour_bias_is_per_channel_mean_difference():
    ref = torch.rand(3, 10, 12)
    out = ref + torch.tensor([0.1, 0.0, -0.05]).view(3, 1, 1)
    np.testing.assert_allclose(metrics.colour_bias(out, ref), [0.1, 0.0, -0.05], atol=1e-6)
    assert metrics.colour_bias(ref[:1], ref[:1]).shape == (1,)
    with pytest.raises(ValueError, match="shape"):
        metrics.colour_bias(ref, ref[:, :5])


# --------------------------------------------------------------------------- evaluate


class Identity(nn.Module):
    in_channels = out_channels = 3
    size_multiple = 1

    def forward(self, x, noise=None):
        return x.clone()


@pytest.fixture()
def pairs_dir(tmp_path):
    root = tmp_path / "pairs"
    for i, (h, w) in enumerate([(40, 56), (37, 61)]):
        sharp = smooth_image(3, h, w)
        noise = 0.05 * torch.randn(3, h, w, generator=torch.Generator().manual_seed(i))
        write_image(root / "sharp" / f"im{i}.png", sharp)
        write_image(root / "blur" / f"im{i}.png", (sharp + noise).clamp(0, 1))
    write_image(root / "sharp" / "lonely.png", smooth_image(3, 8, 8))
    return root


def _skimage_from_files(sharp_path: Path, blur_path: Path) -> tuple[float, float]:
    s = np.asarray(Image.open(sharp_path).convert("RGB"), dtype=np.float64) / 255
    b = np.asarray(Image.open(blur_path).convert("RGB"), dtype=np.float64) / 255
    return (
        peak_signal_noise_ratio(s, b, data_range=1.0),
        structural_similarity(s, b, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False),
    )


def test_evaluate_reproduces_scikit_image_and_writes_reports(pairs_dir, tmp_path):
    ckpt = make_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "report" / "eval.json"
    report = evaluate(ckpt, pairs_dir, out, device="cpu", progress=False)
    assert report["layout"] == "paired" and report["count"] == 2
    assert report["unmatched"] == ["sharp/lonely.png"]
    for row in report["images"]:
        p, s = _skimage_from_files(pairs_dir / "sharp" / row["name"], pairs_dir / "blur" / row["name"])
        assert row["psnr_in"] == pytest.approx(p, abs=1e-3)
        assert row["ssim_in"] == pytest.approx(s, abs=1e-3)
        assert row["psnr_gain"] == pytest.approx(row["psnr_out"] - row["psnr_in"])
    assert report["mean"]["psnr_in"] == pytest.approx(np.mean([r["psnr_in"] for r in report["images"]]))
    saved = json.loads(out.read_text())
    assert saved["mean"]["ssim_out"] == pytest.approx(report["mean"]["ssim_out"])
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["name"] for r in rows] == ["im0.png", "im1.png", "mean"]
    assert float(rows[0]["psnr_in"]) == pytest.approx(report["images"][0]["psnr_in"], abs=1e-5)
    table = format_table(report)
    assert "im0.png" in table and "mean" in table and "PSNR" in table


def test_identity_net_gives_zero_gain_on_aligned_files(tmp_path):
    root = tmp_path / "ab"
    for i in range(2):
        sharp = smooth_image(3, 30, 40)
        blur = torch.from_numpy(ndimage.gaussian_filter(sharp.numpy(), sigma=(0, 1.2, 1.2)))
        write_image(root / f"p{i}.png", torch.cat([sharp, blur], dim=2))
    found = find_pairs(root)
    assert found.layout == "aligned" and len(found.pairs) == 2
    report = evaluate(Deblurrer(Identity(), device="cpu"), root, progress=False)
    for row in report["images"]:
        assert (row["width"], row["height"]) == (40, 30)
        assert row["psnr_out"] == pytest.approx(row["psnr_in"], abs=1e-9)
        assert row["ssim_gain"] == pytest.approx(0.0, abs=1e-9)
    assert report["mean"]["psnr_gain"] == pytest.approx(0.0, abs=1e-9)


def test_evaluate_unpaired_reports_sharpness(tmp_path):
    folder = tmp_path / "real"
    write_image(folder / "a.png", smooth_image(3, 30, 40))
    write_image(folder / "g.png", smooth_image(1, 25, 20))
    out = tmp_path / "u.json"
    report = evaluate_unpaired(Deblurrer(Identity(), device="cpu"), folder, out, progress=False)
    assert report["count"] == 2
    for row in report["images"]:
        assert row["sharpness_ratio"] == pytest.approx(1.0)
    assert out.is_file() and out.with_suffix(".csv").is_file()
    assert "ratio" in format_table(report)
