"""dbgan.realism: the held-out two-sample test and KID on content-free features."""

import pytest
import torch
import torch.nn.functional as F

from dbgan.realism import kid, random_crops, realism_features, realism_report, two_sample_accuracy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _textures(n: int, seed: int, blur: bool = False, noise: float = 0.02) -> torch.Tensor:
    """Smooth random textures plus sensor-like noise; ``blur`` box-blurs them before the noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 8, 8, generator=g)
    x = F.interpolate(base, size=(32, 32), mode="bilinear", align_corners=False)
    x = x + 0.15 * torch.rand(n, 3, 32, 32, generator=g)
    if blur:
        x = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    return (x * 0.8 + noise * torch.randn(n, 3, 32, 32, generator=g)).clamp(0, 1)


def test_features_shape_and_grey():
    f = realism_features(_textures(5, 0))
    assert f.shape[0] == 5 and f.dim() == 2 and torch.isfinite(f).all()
    grey = realism_features(_textures(5, 0)[:, :1])  # grey crops are accepted (repeated to RGB)
    assert grey.shape == f.shape


def test_identical_distributions_are_indistinguishable():
    a, b = realism_features(_textures(120, 1)), realism_features(_textures(120, 2))
    acc = two_sample_accuracy(a, b, seed=0)
    assert 0.35 <= acc <= 0.65
    k, _ = kid(a, b, seed=0)
    assert abs(k) < 0.2


def test_different_distributions_are_told_apart():
    a, b = realism_features(_textures(120, 1)), realism_features(_textures(120, 2, blur=True, noise=0.005))
    assert two_sample_accuracy(a, b, seed=0) > 0.9
    k, _ = kid(a, b, seed=0)
    k_same, _ = kid(a, realism_features(_textures(120, 3)), seed=0)
    assert k > 2 and k > 10 * abs(k_same)


def test_brightness_alone_is_visible():
    a = _textures(120, 1)
    b = (_textures(120, 2) * 1.25).clamp(0, 1)  # an exposure bias, same blur and noise
    r = realism_report(a, b, seed=0)
    assert r["accuracy"] > 0.85 and r["kid"] > 0.1


def test_deterministic_under_seed():
    a, b = realism_features(_textures(60, 1)), realism_features(_textures(60, 2, blur=True))
    assert two_sample_accuracy(a, b, seed=3) == two_sample_accuracy(a, b, seed=3)
    assert kid(a, b, seed=3) == kid(a, b, seed=3)


def test_random_crops_and_errors():
    imgs = [torch.rand(3, 40, 50), torch.rand(3, 64, 64)]
    c = random_crops(imgs, 32, 3, seed=0)
    assert c.shape == (6, 3, 32, 32)
    assert torch.equal(c, random_crops(imgs, 32, 3, seed=0))
    with pytest.raises(ValueError, match="smaller than the crop"):
        random_crops(imgs, 48, 1)
    with pytest.raises(ValueError, match="at least 4"):
        two_sample_accuracy(torch.zeros(3, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        realism_features(torch.rand(2, 2, 32, 32))


def test_grouped_split_does_not_reward_recognising_photos():
    # real and fake crops come from different "photos" (each with its own colour cast and
    # contrast) through the same process: split by photo, nothing is left to find; split by
    # crop, the classifier recognises the photos
    g = torch.Generator().manual_seed(1)

    def photo(i: int) -> torch.Tensor:
        gain = 0.4 + 0.6 * torch.rand(1, 3, 1, 1, generator=g)
        contrast = 0.3 + 0.7 * torch.rand(1, generator=g)
        x = _textures(12, 100 + i, noise=0.0)
        return ((x - 0.5) * contrast + 0.5) * gain + 0.01 * torch.randn(x.shape, generator=g)

    real = torch.cat([photo(i) for i in range(10)]).clamp(0, 1)
    fake = torch.cat([photo(10 + i) for i in range(10)]).clamp(0, 1)
    fr, ff = realism_features(real), realism_features(fake)
    groups = torch.arange(10).repeat_interleave(12)
    by_crop = sum(two_sample_accuracy(fr, ff, seed=s) for s in range(3)) / 3
    by_photo = sum(two_sample_accuracy(fr, ff, seed=s, groups_real=groups, groups_fake=groups) for s in range(3)) / 3
    assert by_crop > 0.75 and by_photo < by_crop - 0.15
    with pytest.raises(ValueError, match="group labels"):
        two_sample_accuracy(fr, ff, groups_real=groups[:5])
