"""SSIM against the MATLAB reference of Wang et al. (2004), and the no-reference BRISQUE score.

The reference is an independent numpy/scipy transcription of Wang's ``ssim_index.m``
(the SSIM of the deblurring papers' tables): ``window = fspecial('gaussian', 11, 1.5)``,
``filter2(window, img, 'valid')`` for the local means, variances and covariance,
``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``, ``mssim = mean2(ssim_map)``, on grey
uint8 images with ``L = 255``. (Wang's later ``ssim.m`` first downsamples images whose
short side exceeds 256 pixels; the pair here is 256 x 256, where both agree.)
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, signal

from dbgan import metrics


def matlab_ssim_index(img1: np.ndarray, img2: np.ndarray, K=(0.01, 0.03), L=255.0) -> float:
    """Wang et al.'s ssim_index.m, line by line."""
    x = np.asarray(img1, dtype=np.float64)
    y = np.asarray(img2, dtype=np.float64)
    r = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))  # fspecial('gaussian', 11, 1.5)
    window = g / g.sum()
    C1, C2 = (K[0] * L) ** 2, (K[1] * L) ** 2

    def filter2(img):  # MATLAB filter2 = 2-D correlation
        return signal.correlate2d(img, window, mode="valid")

    mu1, mu2 = filter2(x), filter2(y)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = filter2(x * x) - mu1_sq
    sigma2_sq = filter2(y * y) - mu2_sq
    sigma12 = filter2(x * y) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + C1) * (2 * sigma12 + C2)) / ((mu1_sq + mu2_sq + C1) * (sigma1_sq + sigma2_sq + C2))
    return float(ssim_map.mean())


@pytest.fixture(scope="module")
def fixed_pair() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's cameraman (256 x 256 crop) and a blurred, noisy, re-quantised copy."""
    import skimage.data

    sharp = skimage.data.camera()[100:356, 128:384]
    rng = np.random.default_rng(20040401)
    blurred = ndimage.gaussian_filter(sharp.astype(np.float64), 1.6) + rng.normal(0, 4, sharp.shape)
    return sharp, np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def test_ssim_matches_wang_matlab_reference(fixed_pair):
    sharp, blurred = fixed_pair
    ref = matlab_ssim_index(sharp, blurred)
    assert 0.5 < ref < 0.95  # a meaningful pair, neither identical nor unrelated
    assert metrics.ssim(blurred, sharp, data_range=255) == pytest.approx(ref, abs=1e-4)
    # the same in [0, 1] floats, and as a C x H x W tensor
    import torch

    a = torch.from_numpy(blurred.astype(np.float32) / 255)[None]
    b = torch.from_numpy(sharp.astype(np.float32) / 255)[None]
    assert metrics.ssim(a, b) == pytest.approx(ref, abs=1e-4)
    # scikit-image's default window does not reproduce it (why the default changed)
    assert abs(metrics.ssim(blurred, sharp, data_range=255, window="uniform") - ref) > 1e-3


def test_ssim_symmetric_and_one_for_identical(fixed_pair):
    sharp, blurred = fixed_pair
    assert metrics.ssim(sharp, sharp, data_range=255) == pytest.approx(1.0)
    assert metrics.ssim(sharp, blurred, data_range=255) == pytest.approx(metrics.ssim(blurred, sharp, data_range=255))
    with pytest.raises(ValueError, match="window"):
        metrics.ssim(sharp, blurred, window="box")


def test_brisque_ranks_blur_and_noise_worse(fixed_pair):
    """The no-reference score rises with blur and with noise (gradient sharpness would rise with noise)."""
    import skimage.data

    img = skimage.data.astronaut()[:192, :192].astype(np.float64) / 255
    blurred = np.stack([ndimage.gaussian_filter(img[..., c], 2.0) for c in range(3)], -1)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 0.08, img.shape), 0, 1)
    s, b, n = metrics.brisque(img), metrics.brisque(blurred), metrics.brisque(noisy)
    assert b > s + 10 and n > s + 10
    assert metrics.sharpness(noisy) > metrics.sharpness(img)  # the failure BRISQUE avoids
    with pytest.raises(ValueError, match="too small"):
        metrics.brisque(img[:8, :8])
