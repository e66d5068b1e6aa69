"""dbgan.blur: kernels (numpy) and degradations (torch)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.signal import convolve2d

from dbgan.blur import (
    DegradationPipeline,
    add_gaussian_noise,
    add_poisson_noise,
    boost_highlights,
    defocus_kernel,
    fft_blur,
    from_linear,
    gaussian_kernel,
    jpeg_roundtrip,
    kernel_extent,
    linear_motion_kernel,
    motion_kernel,
    motion_kernels,
    random_kernel,
    saturate_highlights,
    to_linear,
)
from dbgan.config import SynthConfig
from dbgan.blur import degrade
from dbgan.blur import fft_cpu
from dbgan.blur.fft_cpu import _axis_plan, _reflect_pad_into


def _centroid(k: np.ndarray) -> tuple[float, float]:
    r = np.arange(k.shape[0])
    k = k.astype(np.float64)
    return float((k.sum(1) * r).sum() / k.sum()), float((k.sum(0) * r).sum() / k.sum())


# --------------------------------------------------------------------------- kernels

KERNEL_MAKERS = {
    "motion": lambda s: motion_kernel(s, 0.7, np.random.default_rng(1)),
    "motion0": lambda s: motion_kernel(s, 0.0, np.random.default_rng(2)),
    "linear": lambda s: linear_motion_kernel(s, 9.0, 30.0),
    "linear_long": lambda s: linear_motion_kernel(s, 500.0, 10.0),
    "defocus": lambda s: defocus_kernel(s, 3.5),
    "defocus0": lambda s: defocus_kernel(s, 0.0),
    "gaussian": lambda s: gaussian_kernel(s, 2.0, 0.7, 0.4),
    "gaussian0": lambda s: gaussian_kernel(s, 0.0),
}


@pytest.mark.parametrize("kind", sorted(KERNEL_MAKERS))
@pytest.mark.parametrize("size", [1, 3, 15, 31, 32])
def test_kernels_nonnegative_sum_to_one(kind, size):
    k = KERNEL_MAKERS[kind](size)
    assert k.shape == (size, size) and k.dtype == np.float32
    assert k.min() >= 0
    assert abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-5
    if size >= 15:  # centred (even sizes: a delta sits on pixel (size - 1) // 2, fft_blur's centre)
        cy, cx = _centroid(k)
        tol = 0.02 if size % 2 else 0.51
        assert abs(cy - (size - 1) / 2) < tol and abs(cx - (size - 1) / 2) < tol


def test_batched_motion_kernels_valid_and_centred():
    ks = motion_kernels(200, 31, (0.0, 1.0), np.random.default_rng(0))
    assert ks.shape == (200, 31, 31) and ks.dtype == np.float32
    assert ks.min() >= 0
    assert np.allclose(ks.sum(axis=(1, 2), dtype=np.float64), 1.0, atol=1e-5)
    # paths are scaled to fit, not clipped: almost nothing reaches the outermost pixels
    border = ks.sum(axis=(1, 2)) - ks[:, 1:-1, 1:-1].sum(axis=(1, 2))
    assert border.max() < 0.02
    for k in ks:
        cy, cx = _centroid(k)
        assert abs(cy - 15) < 1e-3 and abs(cx - 15) < 1e-3
    # different kernels
    assert len({k.tobytes() for k in ks}) == 200


def test_seed_reproduces_kernel_exactly():
    a = motion_kernel(31, 0.6, np.random.default_rng(123))
    b = motion_kernel(31, 0.6, np.random.default_rng(123))
    c = motion_kernel(31, 0.6, np.random.default_rng(124))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    cfg = SynthConfig(kernels=["motion", "linear", "defocus", "gaussian"])
    for seed in range(8):
        a, b = (random_kernel(cfg, np.random.default_rng(seed)) for _ in range(2))
        assert np.array_equal(a, b)
    x = motion_kernels(5, 21, (0.2, 0.8), np.random.default_rng(7))
    y = motion_kernels(5, 21, (0.2, 0.8), np.random.default_rng(7))
    assert np.array_equal(x, y)


def test_path_extent_grows_with_intensity():
    def mean_extent(intensity: float) -> float:
        ks = np.stack([motion_kernel(31, intensity, np.random.default_rng(s)) for s in range(50)])
        return float(kernel_extent(ks).mean())

    low, mid, high = mean_extent(0.1), mean_extent(0.5), mean_extent(0.9)
    assert low < mid < high
    assert high > 2.5 * low
    # the batched generator agrees in distribution
    batched = kernel_extent(motion_kernels(50, 31, 0.9, np.random.default_rng(0))).mean()
    assert batched > 2.5 * low


def test_parametric_kernel_shapes():
    # horizontal line of length L: uniform along x (std L / sqrt(12)), thin in y
    k = linear_motion_kernel(31, 12.0, 0.0)
    ys, xs = np.nonzero(k > 1e-3)
    assert ys.max() - ys.min() <= 2 and 10 <= xs.max() - xs.min() <= 15
    assert kernel_extent(k) == pytest.approx(12.0 / math.sqrt(12), abs=0.4)
    # 90 degrees: vertical
    k = linear_motion_kernel(31, 12.0, 90.0)
    ys, xs = np.nonzero(k > 1e-3)
    assert xs.max() - xs.min() <= 2 and ys.max() - ys.min() >= 10
    # disk radius R: radius of gyration R / sqrt(2), anti-aliased edge values
    k = defocus_kernel(31, 6.0)
    assert kernel_extent(k) == pytest.approx(6.0 / math.sqrt(2), abs=0.1)
    assert len(np.unique(np.round(k / k.max(), 4))) > 3
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1])
    # gaussian: spread sqrt(sx^2 + sy^2); rotation by 90 degrees swaps the axes
    k = gaussian_kernel(41, 3.0, 1.0)
    assert kernel_extent(k) == pytest.approx(math.sqrt(10), abs=0.05)
    assert np.allclose(gaussian_kernel(41, 3.0, 1.0, math.pi / 2), k.T, atol=1e-6)


def test_random_kernel_follows_config():
    cfg = SynthConfig(kernels=["defocus"], kernel_size=15, defocus_radius=[2.0, 2.0])
    assert np.allclose(random_kernel(cfg, np.random.default_rng(0)), defocus_kernel(15, 2.0))
    cfg = SynthConfig(kernels=["motion", "gaussian"], kernel_size=9)
    ks = [random_kernel(cfg, np.random.default_rng(s)) for s in range(10)]
    assert all(k.shape == (9, 9) for k in ks)
    with pytest.raises(ValueError, match="unknown kernel kind"):
        random_kernel(SynthConfig(kernels=["box"]), np.random.default_rng(0))
    with pytest.raises(ValueError):
        motion_kernel(31, 1.5, np.random.default_rng(0))


# --------------------------------------------------------------------------- FFT blur


@pytest.mark.parametrize("backend", ["torch", "scipy"])
@pytest.mark.parametrize("ksize", [(31, 31), (7, 7), (4, 4), (5, 9)])
def test_fft_blur_matches_convolve2d_interior(backend, ksize):
    rng = np.random.default_rng(0)
    img = rng.random((3, 48, 57)).astype(np.float32)
    k = rng.random(ksize).astype(np.float32)
    k /= k.sum()
    out = fft_blur(torch.from_numpy(img), k, backend=backend)
    assert out.shape == img.shape and out.dtype == torch.float32
    ref = np.stack([convolve2d(c, k, mode="same") for c in img])
    ph, pw = ksize[0] // 2, ksize[1] // 2
    interior = (slice(None), slice(ph, img.shape[1] - ph), slice(pw, img.shape[2] - pw))
    assert np.abs(out.numpy()[interior] - ref[interior]).max() < 1e-4
    if ksize[0] % 2 and ksize[1] % 2:  # border: reflection without edge repeat
        mirror = np.stack([ndimage.convolve(c.astype(np.float64), k.astype(np.float64), mode="mirror") for c in img])
        assert np.abs(out.numpy() - mirror).max() < 1e-4


def test_fft_blur_batched_and_small_images():
    rng = np.random.default_rng(1)
    imgs = torch.rand(4, 3, 40, 36, generator=torch.Generator().manual_seed(0))
    ks = motion_kernels(4, 15, (0.0, 1.0), rng)
    batched = fft_blur(imgs, ks)
    single = torch.stack([fft_blur(im, k) for im, k in zip(imgs, ks)])
    assert torch.allclose(batched, single, atol=1e-6)
    assert torch.allclose(fft_blur(imgs, ks, backend="torch"), batched, atol=1e-5)
    # per image and channel kernels; one kernel for the whole batch
    per_ch = np.repeat(ks[:, None], 3, axis=1)
    assert torch.allclose(fft_blur(imgs, per_ch), batched, atol=1e-6)
    assert torch.allclose(fft_blur(imgs, ks[0])[1], fft_blur(imgs[1], ks[0]), atol=1e-6)
    # image smaller than the kernel: reflection repeats, values stay a weighted mean
    tiny = torch.rand(1, 5, 6)
    out = fft_blur(tiny, motion_kernel(31, 1.0, rng))
    assert out.shape == tiny.shape
    assert tiny.min() - 1e-5 <= out.min() and out.max() <= tiny.max() + 1e-5
    big_k = motion_kernel(31, 1.0, np.random.default_rng(3))
    assert torch.allclose(fft_blur(tiny, big_k, backend="torch"), fft_blur(tiny, big_k, backend="scipy"), atol=1e-6)
    # constant image stays constant (no dark frame at the border)
    flat = torch.full((3, 20, 20), 0.4)
    assert torch.allclose(fft_blur(flat, defocus_kernel(9, 3)), flat, atol=1e-6)
    with pytest.raises(ValueError):
        fft_blur(torch.rand(3, 8, 8), ks)  # N kernels for an unbatched image


@pytest.mark.parametrize("shape,pads", [((9, 11), (3, 5, 4, 10)), ((6, 7), (5, 5, 6, 6)), ((20, 3), (0, 7, 2, 2))])
def test_reflect_pad_into_matches_numpy(shape, pads):
    src = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    top, bottom, left, right = pads
    dst = np.full((shape[0] + top + bottom, shape[1] + left + right), np.nan, dtype=np.float32)
    _reflect_pad_into(dst, src, top, left)
    assert np.array_equal(dst, np.pad(src, ((top, bottom), (left, right)), mode="reflect"))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fft_blur_cpu_threads_match_torch_backend(threads, one_torch_thread):
    # big enough for the threaded path; odd sizes, per-image and per-channel kernels
    rng = np.random.default_rng(5)
    imgs = torch.rand(3, 3, 517, 333, generator=torch.Generator().manual_seed(1))
    ks = motion_kernels(3, 21, (0.3, 1.0), rng)
    per_ch = rng.random((3, 3, 9, 6)).astype(np.float32)
    torch.set_num_threads(threads)
    for k in (ks, per_ch, ks[0]):
        ours = fft_blur(imgs, k, backend="scipy")
        assert ours.shape == imgs.shape
        assert torch.allclose(ours, fft_blur(imgs, k, backend="torch"), atol=2e-6)


def test_axis_plan_tight_size_only_when_it_saves():
    # 1024 is a fast size: transformed unpadded, bands of k // 2 and (k - 1) // 2 redone
    assert _axis_plan(1024, 31) == (1024, 0, 15, 15)
    assert _axis_plan(1024, 30) == (1024, 0, 15, 14)
    # 1021 rounds to 1024: 3 rows of reflection, the rest of the halo is a band
    assert _axis_plan(1021, 31) == (1024, 3, 12, 15)
    # small images (side < 8 kernels) always get the full reflect padding, no band
    assert _axis_plan(128, 31) == (160, 15, 0, 0)


@pytest.mark.parametrize("pocketfft", ["entry points", "public scipy.fft"])
@pytest.mark.parametrize("size", [(256, 320), (243, 255), (257, 300), (250, 1000)])
@pytest.mark.parametrize("ksize", [(31, 31), (30, 30), (15, 21), (2, 3)])
def test_fft_blur_cpu_band_redo_matches_torch_backend(pocketfft, size, ksize, monkeypatch, one_torch_thread):
    # sizes whose tight transform leaves wrong bands on some sides, odd and even kernels:
    # float64, so any misplaced row or column of the redone bands shows far above rounding
    if pocketfft != "entry points":
        monkeypatch.setattr(fft_cpu, "_pocketfft", None)
    rng = np.random.default_rng(sum(size) + sum(ksize))
    imgs = torch.rand(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    k = rng.random((2, 3, *ksize))
    k /= k.sum(axis=(-2, -1), keepdims=True)
    plans = [_axis_plan(n, kn) for n, kn in zip(size, ksize)]
    assert any(p[2] or p[3] for p in plans), "size/kernel pair chosen to exercise the band redo"
    ours = fft_blur(imgs, k, backend="scipy")
    assert torch.allclose(ours, fft_blur(imgs, k, backend="torch"), atol=1e-12, rtol=0)


def test_fft_blur_gradient_flows():
    x = torch.rand(1, 1, 16, 16, requires_grad=True)
    y = fft_blur(x, gaussian_kernel(5, 1.0))
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------- tone, noise, JPEG


def test_tone_noise_jpeg_functions():
    x = torch.linspace(0, 1, 64).reshape(1, 8, 8)
    assert torch.allclose(from_linear(to_linear(x, 2.2), 2.2), x, atol=1e-6)
    assert saturate_highlights(x, 2.0).max() == 1.0
    assert torch.equal(saturate_highlights(x, 2.0)[x < 0.5], 2 * x[x < 0.5])
    b = boost_highlights(x, 4.0)
    assert torch.equal(b[x <= 0.8], x[x <= 0.8]) and b.max() == pytest.approx(4.0)
    g1 = add_gaussian_noise(x, 0.1, torch.Generator().manual_seed(3))
    g2 = add_gaussian_noise(x, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(g1, g2) and not torch.equal(g1, x) and 0 <= g1.min() and g1.max() <= 1
    p = add_poisson_noise(torch.full((1, 64, 64), 0.5), 100.0, torch.Generator().manual_seed(0))
    assert p.mean().item() == pytest.approx(0.5, abs=0.01)
    assert p.var().item() == pytest.approx(0.5 / 100, rel=0.15)
    rgb = torch.rand(3, 32, 40, generator=torch.Generator().manual_seed(1))
    j = jpeg_roundtrip(rgb, 50)
    assert j.shape == rgb.shape and not torch.equal(j, rgb)
    assert jpeg_roundtrip(rgb[:1], 90).shape == (1, 32, 40)
    smooth = torch.zeros(3, 32, 32)
    smooth[0] = 0.9  # a saturated red: JPEG must not swap R and B
    out = jpeg_roundtrip(smooth, 95)
    assert out[0].mean() > 0.8 and out[2].mean() < 0.1


# --------------------------------------------------------------------------- pipeline

FULL = SynthConfig(
    kernels=["motion", "linear", "defocus", "gaussian"],
    kernel_size=15,
    linear_light=True,
    highlight_gain=[1.0, 3.0],
    noise_sigma=[0.0, 0.02],
    poisson_peak=300.0,
    jpeg_quality=[60, 95],
)


@pytest.mark.parametrize("cfg", [SynthConfig(kernel_size=15), FULL], ids=["default", "full"])
def test_pipeline_reproducible(cfg, sample_arrays):
    img = torch.from_numpy(sample_arrays["coffee"]).permute(2, 0, 1).float() / 255
    pipe = DegradationPipeline.from_config(cfg)
    a, ka = pipe(img, np.random.default_rng(5))
    b, kb = pipe(img, np.random.default_rng(5))
    c, kc = pipe(img, np.random.default_rng(6))
    assert a.shape == img.shape and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and np.array_equal(ka, kb)
    assert not torch.equal(a, c) and not np.array_equal(ka, kc)
    assert (a - img).abs().mean() > 0.005  # it blurred something
    # no brightness drift from blur alone (linear light and highlight gain brighten a little)
    assert abs(float(a.mean() - img.mean())) < (0.01 if cfg.highlight_gain[1] == 1 else 0.06)


def test_pipeline_grey():
    imgs = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pipe = DegradationPipeline(FULL)
    grey, _ = pipe(imgs[0, :1], np.random.default_rng(1))
    assert grey.shape == (1, 32, 32)


def test_blur_does_not_import_nets():
    import dbgan.blur

    for path in Path(dbgan.blur.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert "nets" not in name.split("."), f"{path.name} imports {name}"
