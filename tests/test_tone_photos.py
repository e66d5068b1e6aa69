"""The tone statistics of whole photo folders (``tone_from: photos``) and the exposure fit in linear
light (``fit_space: linear``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dbgan.config import ConfigError
from dbgan.degradation_stats import (CameraStats, crop_coverage, histogram_quantiles, photo_histograms, photo_quantiles,
                                     tone_quantiles)
from dbgan.nets import build_network
from dbgan.nets import camera_ops as ops


def test_photo_quantiles_of_one_photo_are_its_pooled_quantiles():
    img = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))
    got = photo_quantiles([img], levels=32, scale=8)
    want = tone_quantiles(img[None], 32, 8)
    assert got.shape == (3, 32)
    assert (got - want).abs().max() < 0.01  # within a bin or so of the exact quantiles


def test_photo_quantiles_weight_each_photo_once_and_take_a_transform():
    dark, bright = torch.full((1, 64, 64), 0.2), torch.full((1, 16, 16), 0.8)  # 16x fewer pixels
    q = photo_quantiles([dark, bright], levels=4, scale=1)[0]
    assert q[:2].max() < 0.21 and q[2:].min() > 0.79  # half the levels each, not 1/17 for the small one
    lin = photo_quantiles([dark], levels=4, scale=1, transform=ops.srgb_to_linear)[0]
    torch.testing.assert_close(lin, ops.srgb_to_linear(torch.tensor(0.2)).expand(4), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="no photos"):
        photo_quantiles([])


def test_per_photo_histograms_give_the_same_quantiles_and_can_be_reweighted():
    """photo_histograms keeps each photo's part of photo_quantiles: their sum gives the same quantiles, and
    weighting one photo twice (as a bootstrap draw may) moves the quantiles toward it."""
    gen = torch.Generator().manual_seed(1)
    imgs = [torch.rand(3, 40, 56, generator=gen) * 0.5, torch.rand(3, 64, 64, generator=gen) * 0.5 + 0.5]
    hists = photo_histograms(imgs, crop=32)
    assert hists.shape == (2, 3, 4096)
    torch.testing.assert_close(hists.sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(histogram_quantiles(hists.sum(0)), photo_quantiles(imgs, crop=32))
    reweighted = histogram_quantiles(torch.einsum("n,ncb->cb", torch.tensor([1.0, 2.0]), hists))
    assert float(reweighted.median()) > float(photo_quantiles(imgs, crop=32).median()) + 0.05
    with pytest.raises(ValueError, match="channel counts"):
        photo_histograms([torch.rand(3, 8, 8), torch.rand(1, 8, 8)])
    with pytest.raises(ValueError, match="no photos"):
        photo_histograms([])


def test_crop_weighting_sees_the_photos_as_random_crops_do():
    """A photo whose borders are dark: random crops see its bright centre more often than a plain count of
    its pixels does, and the weighted quantiles follow the crops, not the plain count."""
    assert crop_coverage(6, 6).tolist() == [1.0] * 6
    assert crop_coverage(5, 2).tolist() == [1.0, 2.0, 2.0, 2.0, 1.0]  # 4 starts; the ends are in one crop each
    img = torch.full((1, 64, 64), 0.1)
    img[:, 16:48, 16:48] = 0.9  # a quarter of the pixels, bright
    plain = photo_quantiles([img], levels=16, scale=1)
    weighted = photo_quantiles([img], levels=16, scale=1, crop=40)
    gen = np.random.default_rng(0)
    starts = gen.integers(0, 64 - 40 + 1, size=(400, 2))
    crops = torch.stack([img[:, y : y + 40, x : x + 40] for y, x in starts])
    bright_share = float((crops > 0.5).float().mean())  # what the crops see
    assert abs(float((plain > 0.5).float().mean()) - 0.25) < 0.07
    assert abs(float((weighted > 0.5).float().mean()) - bright_share) < 0.07
    assert bright_share > 0.35  # the weighting matters here


def test_fixed_statistics_ignore_the_running_updates_and_survive_a_resume():
    stats = CameraStats()
    fixed = torch.linspace(0, 1, 64)[None].repeat(3, 1)
    stats.fix("tone_sharp", fixed)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        stats.observe(torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen))
    torch.testing.assert_close(stats.stats["tone_sharp"], fixed)
    assert not torch.allclose(stats.stats["tone_real"], fixed)  # the others still run
    resumed = CameraStats()
    resumed.fix("tone_sharp", fixed)
    resumed.load_state_dict(stats.state_dict())
    for key in stats.stats:
        torch.testing.assert_close(resumed.stats[key], stats.stats[key])


def _textured(n: int, size: int = 96) -> torch.Tensor:
    """Photos with strong local contrast (where a blur in linear light brightens display values)."""
    gen = torch.Generator().manual_seed(1)
    coarse = torch.rand(n, 3, size // 12, size // 12, generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest") * 0.9 + 0.05


def test_linear_fit_space_recovers_the_exposure_of_a_camera_that_blurs():
    """A camera: exposure 0.8 in linear light, a 5 px box blur, the sRGB curve. The display-unit fit
    takes the blur's brightening for exposure; the linear-light fit does not."""
    sharp = _textured(6)
    lin = ops.srgb_to_linear(sharp) * 0.8
    real = ops.linear_to_srgb(torch.nn.functional.avg_pool2d(lin, 5, stride=1, padding=2, count_include_pad=False))
    truth = math.log(0.8)
    errors = {}
    for space in ("display", "linear"):
        g = build_network("camera_blur", tone="fit", learn_wb=False, fit_strength=1.0, fit_space=space)
        assert g.wants_linear_quantiles == (space == "linear")
        views = g.linear_views(sharp, real)
        g.fit_tone(tone_quantiles(sharp), tone_quantiles(real),
                   sharp_linear=tone_quantiles(views[0]), real_linear=tone_quantiles(views[1]))
        errors[space] = float(g.log_gain) - truth
    assert errors["display"] > 0.05  # fitted too bright
    assert abs(errors["linear"]) < 0.02, errors
    with pytest.raises(ValueError, match="fit_space must be one of"):
        build_network("camera_blur", tone="fit", fit_space="log")


def test_linear_views_decode_by_the_input_encoding_and_the_start_curve():
    x = torch.rand(1, 3, 8, 8)
    g = build_network("camera_blur", input_encoding="linear", init_response="linear")
    for view in g.linear_views(x, x):
        torch.testing.assert_close(view, x)
    s, r = build_network("camera_blur").linear_views(x, x)
    torch.testing.assert_close(s, ops.srgb_to_linear(x))
    torch.testing.assert_close(r, ops.srgb_to_linear(x))


def test_bgan_stage_takes_the_tone_from_the_whole_photo_folders(camera_stage, sample_images, one_torch_thread):
    from dbgan.io import read_image

    _, stage, g = camera_stage("stages.bgan.w_adv=0", "stages.bgan.w_diversity=0", "stages.bgan.tone_from=photos",
                               "nets.blur_g.args.tone=fit", "nets.blur_g.args.learn_wb=false",
                               "nets.blur_g.args.fit_space=linear")
    photos = [read_image(p, channels=3) for p in sorted(sample_images[0].parent.iterdir())]
    want = photo_quantiles(photos, crop=48)  # weighted as the stage's 48 px crops see them
    st = stage.camera_stats
    torch.testing.assert_close(st.stats["tone_sharp"], want)
    torch.testing.assert_close(st.stats["tone_real_linear"], photo_quantiles(photos, transform=ops.srgb_to_linear, crop=48))
    assert not torch.allclose(want, photo_quantiles(photos))  # the weighting changed something
    gen = torch.Generator().manual_seed(0)
    stage.step({"sharp": torch.rand(4, 3, 48, 48, generator=gen), "real_blur": torch.rand(4, 3, 48, 48, generator=gen)}, 0)
    torch.testing.assert_close(st.stats["tone_real"], want)  # the crops did not move it
    assert abs(float(g.log_gain)) < 0.02  # the same folder on both sides: no exposure change
    assert "tone_real_linear" in stage.state_dict()["camera_stats"]["stats"]


@pytest.mark.parametrize("overrides, match", [
    (["stages.bgan.tone_from=folders"], "tone_from"),
    (["stages.bgan.tone_from=photos", "stages.bgan.w_stats=0"], "tone_from' applies to the bgan stage"),
    (["stages.dbgan.tone_from=photos"], "stages.dbgan.tone_from"),
])
def test_tone_from_is_checked(overrides, match):
    from dbgan.config import load_config

    with pytest.raises(ConfigError, match=match):
        load_config("camera", overrides)


def test_tone_from_photos_needs_both_folders(camera_stage):
    with pytest.raises(ConfigError, match="needs 'data.real_blur_dir'"):
        camera_stage("stages.bgan.tone_from=photos", "data.real_blur_dir=")


def test_photo_log_means_average_each_photos_power_means_in_logs():
    """Rows are powers 1 and 8; each photo counts once (a geometric mean over photos); a transform applies first."""
    from dbgan.degradation_stats import photo_log_means

    a, b = torch.full((3, 4, 4), 0.2), torch.full((3, 8, 8), 0.8)
    b[0] = 0.4
    m = photo_log_means([a, b])
    assert m.shape == (2, 3)
    torch.testing.assert_close(m[0], torch.tensor([(math.log(0.2) + math.log(0.4)) / 2] + [(math.log(0.2) + math.log(0.8)) / 2] * 2))
    c = torch.zeros(1, 4, 4)
    c[0, 0, 0] = 1.0  # one bright pixel in 16: the 8th-power mean follows the bright part far more than the mean
    g = photo_log_means([c])
    assert g[1, 0] - g[0, 0] > 2.0
    torch.testing.assert_close(photo_log_means([a], transform=lambda x: 2 * x)[0], torch.full((3,), math.log(0.4)))
    with pytest.raises(ValueError, match="no photos"):
        photo_log_means([])
    with pytest.raises(ValueError, match="1 channels among photos with 3"):
        photo_log_means([a, c])


def test_fit_from_means_recovers_a_cameras_exposure_and_white_balance_through_blur():
    """A camera: exposure 1.3 and white balance (1.1, 1, 0.85) in linear light, a 5 px box blur, the sRGB
    curve. Fitted from the two sets' linear means, both come out close; fit_strength and fit_wb scale them."""
    from dbgan.degradation_stats import photo_log_means

    sharp = _textured(6) * 0.7
    wb = torch.tensor([1.1, 1.0, 0.85])
    lin = (ops.srgb_to_linear(sharp) * 1.3 * wb[None, :, None, None]).clamp(0, 1)
    real = ops.linear_to_srgb(torch.nn.functional.avg_pool2d(lin, 5, stride=1, padding=2, count_include_pad=False))
    for share in (1.0, 0.5):
        g = build_network("camera_blur", tone="fit", learn_wb=False, fit_from="means", fit_strength=share, fit_wb=share)
        assert g.wants_photo_means
        views = g.linear_views(sharp, real)
        means = [photo_log_means(list(v)) for v in views]
        g.fit_tone(tone_quantiles(sharp), tone_quantiles(real), sharp_means=means[0], real_means=means[1])
        assert abs(float(g.log_gain) - share * math.log(1.3)) < 0.03 * share + 1e-6
        want = wb.log() - wb.log().mean()
        assert (g.log_wb - share * want).abs().max() < 0.03
    with pytest.raises(ValueError, match="tone_from: photos"):
        g.fit_tone(tone_quantiles(sharp), tone_quantiles(real))
    with pytest.raises(ValueError, match="fit_from must be one of"):
        build_network("camera_blur", tone="fit", fit_from="medians")


def test_bgan_stage_gives_fit_from_means_the_folders_linear_means(camera_stage, sample_images, one_torch_thread):
    from dbgan.degradation_stats import photo_log_means
    from dbgan.io import read_image

    means = ("nets.blur_g.args.tone=fit", "nets.blur_g.args.learn_wb=false", "nets.blur_g.args.fit_from=means",
             "nets.blur_g.args.fit_wb=1")
    with pytest.raises(ConfigError, match="fit_from: means needs 'stages.bgan.tone_from: photos'"):
        camera_stage(*means)
    _, stage, g = camera_stage("stages.bgan.w_adv=0", "stages.bgan.w_diversity=0", "stages.bgan.tone_from=photos", *means)
    photos = [read_image(p, channels=3) for p in sorted(sample_images[0].parent.iterdir())]
    torch.testing.assert_close(stage.camera_stats.stats["means_real"], photo_log_means(photos, transform=ops.srgb_to_linear))
    gen = torch.Generator().manual_seed(0)
    stage.step({"sharp": torch.rand(4, 3, 48, 48, generator=gen), "real_blur": torch.rand(4, 3, 48, 48, generator=gen)}, 0)
    assert abs(float(g.log_gain)) < 1e-5 and g.log_wb.abs().max() < 1e-5  # the same folder on both sides
