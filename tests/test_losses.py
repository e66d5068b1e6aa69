"""Losses: hand-computed RBL values, sign behaviour of every GAN mode, content, perceptual, frequency."""

from __future__ import annotations

import math

import pytest
import torch

from dbgan import losses as L
from dbgan.config import FrequencyConfig, PerceptualConfig


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- adversarial


def test_rbl_matches_hand_computation():
    real = [1.0, 2.0, 0.5]
    fake = [0.0, -1.0]
    mr = sum(real) / len(real)  # E_r C(r) = 7/6
    mf = sum(fake) / len(fake)  # E_f C(f) = -1/2
    d_expected = sum((r - mf - 1) ** 2 for r in real) / len(real) + sum((f - mr + 1) ** 2 for f in fake) / len(fake)
    g_expected = sum((r - mf + 1) ** 2 for r in real) / len(real) + sum((f - mr - 1) ** 2 for f in fake) / len(fake)
    rt, ft = torch.tensor(real), torch.tensor(fake)
    assert L.d_loss("rbl", rt, ft).item() == pytest.approx(d_expected, rel=1e-6)
    assert L.g_loss("rbl", ft, rt).item() == pytest.approx(g_expected, rel=1e-6)
    # written out: d = ((1.5-1)^2 + (2.5-1)^2 + (1-1)^2)/3 + ((-7/6+1)^2 + (-13/6+1)^2)/2
    assert d_expected == pytest.approx((0.25 + 2.25 + 0.0) / 3 + ((1 / 6) ** 2 + (7 / 6) ** 2) / 2)
    assert L.rbl_d_loss(rt, ft).item() == pytest.approx(d_expected, rel=1e-6)
    assert L.rbl_g_loss(ft, rt).item() == pytest.approx(g_expected, rel=1e-6)


def test_rbl_patch_maps_average_over_all_elements():
    real = torch.tensor([[[[1.0, 3.0]]], [[[0.0, 0.0]]]])  # N x 1 x 1 x 2
    fake = torch.zeros(2, 1, 1, 2)
    # E_f = 0, E_r = 1: d = mean((r - 1)^2) + mean((0 - 1 + 1)^2) = (0 + 4 + 1 + 1) / 4
    assert L.d_loss("rbl", real, fake).item() == pytest.approx(1.5)


def test_vanilla_lsgan_hinge_values():
    r, f = torch.tensor([2.0]), torch.tensor([-1.0])
    sp = lambda v: math.log1p(math.exp(v))  # softplus
    assert L.d_loss("vanilla", r, f).item() == pytest.approx(sp(-2.0) + sp(-1.0), rel=1e-6)
    assert L.g_loss("vanilla", f).item() == pytest.approx(sp(1.0), rel=1e-6)
    assert L.d_loss("lsgan", r, f).item() == pytest.approx((2 - 1) ** 2 + 1.0)
    assert L.g_loss("lsgan", f).item() == pytest.approx(4.0)
    assert L.d_loss("hinge", r, f).item() == pytest.approx(0.0)
    assert L.g_loss("hinge", f).item() == pytest.approx(1.0)


@pytest.mark.parametrize("mode", L.GAN_MODES)
def test_d_loss_falls_as_real_rises_above_fake(mode):
    fake = torch.full((4, 1, 3, 3), -0.2) + 0.1 * torch.randn(4, 1, 3, 3)
    values = []
    for gap in (-1.0, 0.0, 0.5, 1.0):
        real = fake.mean() + gap + 0.1 * torch.randn(4, 1, 3, 3)
        values.append(L.d_loss(mode, real, fake).item())
    assert values == sorted(values, reverse=True), values
    assert values[0] > values[-1]


@pytest.mark.parametrize("mode", L.GAN_MODES)
def test_sign_behaviour_of_every_mode(mode):
    # scores inside every mode's active region (lsgan targets 1/0, hinge margins +-1):
    # the discriminator pushes real logits up and fake logits down (negative / positive
    # gradient), the generator pushes fake logits up.
    real = (torch.randn(8) * 0.05 + 0.6).requires_grad_(True)
    fake = (torch.randn(8) * 0.05 + 0.3).requires_grad_(True)
    L.d_loss(mode, real, fake).backward()
    assert real.grad.sum() < 0 and fake.grad.sum() > 0
    fake.grad = None
    L.g_loss(mode, fake, real.detach()).backward()
    assert fake.grad.sum() < 0
    # the generator's loss is lower when its fakes score higher
    lo = torch.tensor([-1.0, -2.0])
    hi = torch.tensor([0.5, 1.0])
    ref = torch.tensor([0.0, 0.2])
    assert L.g_loss(mode, hi, ref) < L.g_loss(mode, lo, ref)


def test_gan_errors():
    r, f = torch.randn(3), torch.randn(3)
    torch.testing.assert_close(L.rbl_d_loss(r, f), L.d_loss("rbl", r, f))
    torch.testing.assert_close(L.rbl_g_loss(f, r), L.g_loss("rbl", f, r))
    with pytest.raises(ValueError, match="real_logits"):
        L.g_loss("rbl", f)
    with pytest.raises(ValueError, match="gan_mode"):
        L.d_loss("wgan", r, f)


# --------------------------------------------------------------------------- content


@pytest.mark.parametrize("name", L.CONTENT_LOSSES)
def test_content_losses(name):
    a = torch.rand(2, 3, 8, 8)
    b = a + 0.1
    same = L.content_loss(name, a, a.clone())
    diff = L.content_loss(name, a, b)
    if name == "charbonnier":
        assert same.item() == pytest.approx(1e-3)  # eps, never 0
        assert diff.item() == pytest.approx(math.sqrt(0.01 + 1e-6), rel=1e-5)
    else:
        assert same.item() == 0.0
    assert diff > same


def test_charbonnier_positive_and_smooth():
    a = torch.zeros(4, requires_grad=True)
    loss = L.charbonnier_loss(a, torch.zeros(4), eps=1e-2)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(a.grad).all()
    assert L.content_loss("l1", torch.ones(3), torch.zeros(3)).item() == pytest.approx(1.0)
    assert L.content_loss("mse", 2 * torch.ones(3), torch.zeros(3)).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="content"):
        L.content_loss("l3", a, a)


# --------------------------------------------------------------------------- frequency


def test_focal_frequency_zero_for_identical_positive_otherwise():
    a = torch.rand(2, 3, 16, 16)
    assert L.focal_frequency_loss(a, a.clone()).item() == 0.0
    b = a + 0.05 * torch.randn_like(a)
    for kw in ({}, {"patch_factor": 2}, {"alpha": 2.0, "log_matrix": True}, {"ave_spectrum": True, "batch_matrix": True}):
        assert L.focal_frequency_loss(a, b, **kw).item() > 0, kw
    cfg = FrequencyConfig(alpha=1.0, patch_factor=4)
    assert L.focal_frequency_loss(a, a, alpha=cfg.alpha, patch_factor=cfg.patch_factor).item() == 0.0
    assert L.focal_frequency_loss(a, b, alpha=cfg.alpha, patch_factor=cfg.patch_factor).item() > 0


def test_focal_frequency_gradient_and_errors():
    a = torch.rand(1, 1, 8, 8, requires_grad=True)
    t = torch.rand(1, 1, 8, 8)
    loss = L.focal_frequency_loss(a, t)
    loss.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    # a gradient step lowers it
    with torch.no_grad():
        a2 = a - 0.1 * a.grad / a.grad.abs().max()
    assert L.focal_frequency_loss(a2, t) < loss
    # identical inputs: finite (zero) gradient, no NaN from the weight normalisation
    z = t.clone().requires_grad_(True)
    L.focal_frequency_loss(z, t).backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="patch_factor"):
        L.focal_frequency_loss(torch.rand(1, 1, 9, 8), torch.rand(1, 1, 9, 8), patch_factor=2)


def test_focal_frequency_matches_direct_formula():
    # alpha = 1, one patch: weight = |D| / max|D| per channel, loss = mean(weight * |D|^2)
    a, b = torch.rand(1, 2, 6, 6), torch.rand(1, 2, 6, 6)
    d = torch.fft.fft2(a, norm="ortho") - torch.fft.fft2(b, norm="ortho")
    mag = d.abs()
    w = mag / mag.amax(dim=(-2, -1), keepdim=True)
    expected = (w * mag**2).mean()
    assert L.focal_frequency_loss(a, b).item() == pytest.approx(expected.item(), rel=1e-5)


# --------------------------------------------------------------------------- perceptual


def test_perceptual_random_weights():
    loss = L.PerceptualLoss(layers=["relu1_2", "conv2_2"], layer_weights=[1.0, 0.5], weights="random")
    a = torch.rand(2, 3, 16, 16)
    assert loss(a, a.clone()).item() == 0.0
    p = (a + 0.1 * torch.randn_like(a)).requires_grad_(True)
    value = loss(p, a)
    assert value.item() > 0
    value.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(q.grad is None for q in loss.parameters())  # the VGG stays frozen
    grey = torch.rand(1, 1, 16, 16)
    assert loss(grey, grey).item() == 0.0 and loss(grey, 1 - grey).item() > 0
    with pytest.raises(ValueError, match="layer_weights"):
        L.PerceptualLoss(layers=["relu1_2"], layer_weights=[1.0, 2.0], weights="random")


def test_perceptual_from_config(tmp_path):
    cfg = PerceptualConfig(layers=["relu1_1"], weights="random", criterion="mse")
    loss = L.PerceptualLoss.from_config(cfg)
    assert loss.layer_weights == [1.0] and loss.criterion == "mse"
    missing = tmp_path / "vgg19.pth"
    cfg = PerceptualConfig(layers=["relu1_1"], weights="pretrained", weights_path=str(missing))
    with pytest.raises(FileNotFoundError, match="losses.perceptual.weights_path"):
        L.PerceptualLoss.from_config(cfg)


def test_mmd_rbf_separates_distributions_and_punishes_collapse():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 10, generator=gen)
    b = torch.randn(64, 10, generator=gen)  # same distribution, other draw
    shifted = torch.randn(64, 10, generator=gen) + 1.5
    assert float(L.mmd_rbf(a, a)) == pytest.approx(0.0, abs=1e-6)
    same, apart = float(L.mmd_rbf(a, b)), float(L.mmd_rbf(a, shifted))
    assert 0 <= same < apart / 4, (same, apart)
    # every sample at the mean of the targets (what a paired L1 leads to) is far from them
    collapsed = b.mean(0, keepdim=True).expand(64, -1)
    assert float(L.mmd_rbf(collapsed, a)) > 4 * same
    # the gradient moves a collapsed sample apart
    x = collapsed.clone().requires_grad_()
    L.mmd_rbf(x, a).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="n x d"):
        L.mmd_rbf(a, torch.randn(5, 3))


def test_noise_level_reads_the_noise_std_and_ignores_smooth_structure():
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 64)[None, None, None, :].expand(1, 3, 64, 64)  # smooth: no residual
    assert float(L.noise_level(ramp)) < 1e-6
    for sigma in (0.005, 0.02):
        grey = (0.5 + sigma * torch.randn(2, 1, 96, 96, generator=g)).clamp(0, 1)
        assert torch.allclose(L.noise_level(grey), torch.tensor([sigma, sigma]), rtol=0.05)
    # colour: the luma of independent channel noise
    rgb = 0.5 + 0.02 * torch.randn(1, 3, 96, 96, generator=g)
    assert float(L.noise_level(rgb)) == pytest.approx(0.02 * math.sqrt(0.299**2 + 0.587**2 + 0.114**2), rel=0.05)
    with pytest.raises(ValueError, match="3x3"):
        L.noise_level(torch.zeros(1, 3, 2, 8))


def test_noise_match_pulls_the_noise_level_towards_the_real_photos():
    g = torch.Generator().manual_seed(1)
    base = torch.full((4, 3, 48, 48), 0.5)
    real = base + 0.01 * torch.randn(base.shape, generator=g)
    field = torch.randn(base.shape, generator=g)
    for start, direction in ((0.05, -1), (0.002, 1)):  # too noisy: lower it; too clean: raise it
        s = torch.tensor(start, requires_grad=True)
        loss = L.noise_match_loss(base + s * field, real)
        loss.backward()
        assert float(loss.detach()) > 0.5 and float(s.grad) * direction < 0
    assert float(L.noise_match_loss(real, real)) < 1e-12
    fake = (base + 0.01 * torch.randn(base.shape, generator=g)).requires_grad_(True)
    real_g = real.clone().requires_grad_(True)
    L.noise_match_loss(fake, real_g).backward()
    assert real_g.grad is None  # the real photos are a target only
