"""dbgan.blind: blind camera-shake kernel estimation and TV deconvolution."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from dbgan.blind import BlindSetting, blind_deblur, deconvolve, estimate_kernel, photo_kernel, physical_kernel


def _scene(side: int = 160, seed: int = 0) -> np.ndarray:
    """Piecewise-flat rectangles with a little texture: strong edges in every direction."""
    rng = np.random.default_rng(seed)
    img = np.full((side, side), 0.5)
    for _ in range(40):
        y, x = rng.integers(0, side - 10, 2)
        h, w = rng.integers(6, side // 3, 2)
        img[y : y + h, x : x + w] = rng.uniform(0.1, 0.9)
    return np.clip(img + 0.01 * ndimage.gaussian_filter(rng.standard_normal(img.shape), 1), 0, 1)


def _line_kernel(size: int, length: int, angle_deg: float) -> np.ndarray:
    k = np.zeros((size, size))
    c = size // 2
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length)
    a = np.deg2rad(angle_deg)
    for s in t:
        k[int(round(c + s * np.sin(a))), int(round(c + s * np.cos(a)))] += 1
    return k / k.sum()


def _blur(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    return ndimage.convolve(img, k[::-1, ::-1], mode="reflect")


def _psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def test_physical_kernel_is_nonnegative_centred_one_blob_summing_to_one():
    k = np.zeros((15, 15))
    k[3, 2:9] = 1.0  # an off-centre streak
    k[12, 12] = 0.3  # a stray blob
    k[7, 7] = -0.5  # a negative tap
    out = physical_kernel(k)
    assert out.min() >= 0 and np.isclose(out.sum(), 1)
    assert out[10:, 10:].sum() < 1e-9  # the lighter blob is gone
    cy, cx = ndimage.center_of_mass(out)
    assert abs(cy - 7) < 0.5 and abs(cx - 7) < 0.5
    delta = physical_kernel(np.zeros((5, 5)))
    assert delta[2, 2] == 1 and delta.sum() == 1


def test_estimate_kernel_finds_a_horizontal_motion_and_deconvolution_beats_the_blur():
    sharp = _scene()
    true = _line_kernel(15, 9, 0)
    blurred = np.clip(_blur(sharp, true) + 0.002 * np.random.default_rng(1).standard_normal(sharp.shape), 0, 1)
    k = estimate_kernel(blurred, BlindSetting(kernel_size=15))
    assert k.shape == (15, 15) and k.min() >= 0 and np.isclose(k.sum(), 1)
    ys, xs = np.nonzero(k > 0.1 * k.max())
    assert np.ptp(xs) + 1 >= 6 and np.ptp(ys) + 1 <= 3  # a horizontal streak (the true one: 9 x 1 px)
    # the estimate's own deconvolution sharpens: PSNR above the blurred input's, mean kept
    img = torch.from_numpy(blurred).float()[None]
    out = deconvolve(img, k, tv=1e-2)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert _psnr(out[0].numpy(), sharp) > _psnr(blurred, sharp) + 0.5
    assert abs(float(out.mean()) - float(img.mean())) < 2e-3


def test_the_estimate_follows_the_blur_direction():
    sharp = _scene(seed=2)
    for angle in (0, 90):
        k = estimate_kernel(_blur(sharp, _line_kernel(15, 9, angle)), BlindSetting(kernel_size=15))
        ys, xs = np.nonzero(k > 0.1 * k.max())
        long, short = (np.ptp(xs), np.ptp(ys)) if angle == 0 else (np.ptp(ys), np.ptp(xs))
        assert long >= short + 3, (angle, np.ptp(xs), np.ptp(ys))


def test_blind_deblur_takes_colour_and_grey_photos():
    sharp = _scene(seed=3)
    true = _line_kernel(15, 7, 45)
    rgb = torch.from_numpy(np.stack([_blur(sharp * s, true) for s in (1.0, 0.8, 0.6)])).float()
    out, k = blind_deblur(rgb, BlindSetting(kernel_size=15))
    assert out.shape == rgb.shape and 0 <= float(out.min()) and float(out.max()) <= 1 and np.isclose(k.sum(), 1)
    assert _psnr(out[0].numpy(), sharp) > _psnr(rgb[0].numpy(), sharp)
    grey, _ = blind_deblur(rgb[:1], BlindSetting(kernel_size=15))
    assert grey.shape == (1, 160, 160)


def test_bad_settings_and_shapes_are_named():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        BlindSetting(kernel_size=16)
    with pytest.raises(ValueError, match="tv must be > 0"):
        BlindSetting(tv=0)
    with pytest.raises(ValueError, match="edges must be in"):
        BlindSetting(edges=1.5)
    with pytest.raises(ValueError, match="at least 62 px"):
        estimate_kernel(np.zeros((40, 40)))
    tiny = torch.rand(3, 20, 40)
    k = photo_kernel(tiny)  # too small to estimate: a delta, the image kept
    assert k.shape == (31, 31) and k[15, 15] == 1 and k.sum() == 1
    torch.testing.assert_close(blind_deblur(tiny)[0], tiny, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="1 x H x W or 3 x H x W"):
        photo_kernel(torch.zeros(2, 64, 64))
    with pytest.raises(ValueError, match="C x H x W"):
        deconvolve(torch.zeros(64, 64), np.ones((3, 3)) / 9)


def test_deblur_cli_and_api_run_blind_deconvolution_before_the_model(tmp_path):
    from dbgan.api import load_model
    from dbgan.cli import main
    from dbgan.infer import InferenceError, run_folder
    from dbgan.io import read_image, write_image

    sharp = _scene(side=128, seed=4)
    true = _line_kernel(15, 11, 0)
    rgb = torch.from_numpy(np.stack([_blur(sharp * s, true) for s in (1.0, 0.9, 0.7)])).float()
    write_image(tmp_path / "shaken.png", rgb)
    truth = np.stack([sharp * s for s in (1.0, 0.9, 0.7)])
    assert main(["deblur", str(tmp_path / "shaken.png"), str(tmp_path / "out.png"), "--blind", "15", "--device", "cpu",
                 "--dtype", "fp32"]) == 0
    out = read_image(tmp_path / "out.png").numpy()
    assert _psnr(out, truth) > _psnr(rgb.numpy(), truth) + 0.5
    # the Python API gives the same image
    api = load_model("general", device="cpu", blind=15)
    np.testing.assert_allclose(api(read_image(tmp_path / "shaken.png")).numpy(), out, atol=1.5 / 255)
    assert "blind=15" in repr(api)
    # dbgan eval --blind measures the same pipeline on pairs
    write_image(tmp_path / "pairs" / "sharp" / "a.png", torch.from_numpy(truth).float())
    write_image(tmp_path / "pairs" / "blur" / "a.png", rgb)
    assert main(["eval", "general", "--pairs", str(tmp_path / "pairs"), "--blind", "15", "--device", "cpu",
                 "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["blind"] == 15 and report["mean"]["psnr_out"] > report["mean"]["psnr_in"] + 0.5
    with pytest.raises(InferenceError, match=r"blind must be 0 \(off\) or an odd integer"):
        load_model("general", device="cpu", blind=16)
    with pytest.raises(InferenceError, match="blind is for deblurring"):
        run_folder("general", tmp_path / "shaken.png", tmp_path / "b.png", mode="blur", blind=15)
    with pytest.raises(InferenceError, match=r"blind is set on the ready Deblurrer"):
        run_folder(api.runner, tmp_path / "shaken.png", tmp_path / "c.png", blind=15)
    assert not (tmp_path / "c.png").exists()


def test_tv_deconvolution_with_the_true_kernel_restores_edges():
    """The splitting steps must improve on their quadratic start (a sign error in them smooths instead)."""
    sharp = _scene(seed=5)
    true = _line_kernel(15, 11, 0)
    blurred = np.clip(_blur(sharp, true) + 0.003 * np.random.default_rng(2).standard_normal(sharp.shape), 0, 1)
    img = torch.from_numpy(blurred).float()[None]
    start = _psnr(deconvolve(img, true, tv=3e-3, steps=0)[0].numpy(), sharp)
    full = _psnr(deconvolve(img, true, tv=3e-3)[0].numpy(), sharp)
    assert full > _psnr(blurred, sharp) + 3.0 and full > start + 1.0
