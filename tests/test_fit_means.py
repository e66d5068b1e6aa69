"""``camera_blur`` ``fit_means``: the generator's own outputs (the whole camera) calibrated to the real
photos' per-channel mean brightness, after the closed-form tone fit; and ``fit_curve_offset``, the fitted
curve calibrated for what the generator's own blur, noise and JPEG do to its pooled quantiles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dbgan.config import ConfigError
from dbgan.degradation_stats import photo_quantiles, tone_quantiles
from dbgan.nets import build_network
from dbgan.nets import camera_ops as ops


def _scenes(n: int = 8, size: int = 96, seed: int = 0) -> torch.Tensor:
    """Smooth random colour scenes in display units, ``n x 3 x size x size``."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=gen) * 0.8 + 0.1
    fine = torch.rand(n, 3, size, size, generator=gen) * 0.1
    return (F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False) + fine).clamp(0, 1)


def _filmic_camera(sharp: torch.Tensor) -> torch.Tensor:
    """A camera outside the generator's start: warm white balance, exposure 1.5 with clipped highlights, a
    9 px box blur in linear light and an S-shaped (filmic) response, not sRGB."""
    wb = torch.tensor([1.15, 1.0, 0.8])[None, :, None, None]
    lin = (ops.srgb_to_linear(sharp) * 1.5 * wb).clamp(0, 1)
    lin = F.avg_pool2d(lin, 9, stride=1, padding=4, count_include_pad=False)
    return torch.sigmoid(6 * (ops.linear_to_srgb(lin) - 0.5))


def _generator(**args):
    torch.manual_seed(0)
    base = dict(tone="fit", learn_wb=False, kernel_size=15, fit_strength=1.0, fit_wb=1.0)
    return build_network("camera_blur", **(base | args)).eval()


def _output_means(g, sharp: torch.Tensor, seed: int) -> torch.Tensor:
    with torch.no_grad():
        return g(sharp, g.noise_input.sample(sharp, torch.Generator().manual_seed(seed))).mean((0, 2, 3))


def test_calibration_puts_the_generators_outputs_at_the_real_photos_means():
    """The fit reads exposure and white balance through the sRGB start curve, so on a filmic camera its
    outputs miss the real photos' channel means (by 0.02-0.03 here); the calibration brings them within a few thousandths,
    measured on other noise vectors than it used."""
    sharp = _scenes()
    real = _filmic_camera(sharp)
    qs, qr = tone_quantiles(sharp), tone_quantiles(real)
    target = real.mean((0, 2, 3))
    g = _generator(fit_means=1.0)
    assert g.wants_mean_calibration and "mean_cal" in g.state_dict()
    g.fit_tone(qs, qr)
    before = (_output_means(g, sharp, 1) - target).abs().max()
    sample = sharp[:4]
    err = g.calibrate_means(sample, g.noise_input.sample(sample, torch.Generator().manual_seed(2)), qs, qr)
    assert err.abs().max() < 1e-3  # what it aimed at, on its own sample
    after = (_output_means(g, sharp, 1) - target).abs().max()
    assert before > 0.01, before
    assert after < 0.004 and after < before / 3, (before, after)
    # the correction lives in mean_cal and survives the next fit (which the stage runs every step)
    cal = g.mean_cal.clone()
    g.fit_tone(qs, qr)
    assert (_output_means(g, sharp, 1) - target).abs().max() < 0.004
    torch.testing.assert_close(g.mean_cal, cal)
    assert float(cal.abs().max()) > 0.02  # it did move the gains


def test_the_correction_does_not_pile_up_without_a_white_balance_fit():
    sharp = _scenes()
    qs, qr = tone_quantiles(sharp), tone_quantiles(_filmic_camera(sharp))
    g = _generator(fit_wb=0.0, fit_means=1.0)
    g.mean_cal.copy_(torch.tensor([0.1, 0.0, -0.1]))
    g.fit_tone(qs, qr)
    first = (g.log_gain.clone(), g.log_wb.clone())
    g.fit_tone(qs, qr)
    torch.testing.assert_close(g.log_wb, first[1])
    torch.testing.assert_close(g.log_gain, first[0])
    torch.testing.assert_close(g.log_wb, torch.tensor([0.1, 0.0, -0.1]))


def test_a_share_below_one_stops_between_the_anchor_and_the_real_photos():
    """``fit_means`` 0.5 ends at the geometric mean of the anchor and the real photos' means: the start
    camera's outputs (``means_anchor: start``) or the closed-form fit's noiseless prediction (``fit``)."""
    sharp = _scenes()
    real = _filmic_camera(sharp)
    qs, qr = tone_quantiles(sharp), tone_quantiles(real)
    sample = sharp[:4]
    noise = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    start = _generator(tone="fixed", fit_strength=1.0, fit_wb=0.0).predicted_means(sample, noise, qs)
    plain = _generator()
    plain.fit_tone(qs, qr)
    anchors = {"start": start, "fit": plain.tone_map(qs)[0].mean(1)}
    for anchor, want in anchors.items():
        means = {}
        for share in (0.5, 1.0):
            g = _generator(fit_means=share, means_anchor=anchor)
            g.fit_tone(qs, qr)
            g.calibrate_means(sample, noise, qs, qr)
            means[share] = g.predicted_means(sample, noise, qs)
        torch.testing.assert_close(means[1.0], qr.mean(1), atol=1e-3, rtol=0)
        torch.testing.assert_close(means[0.5], (want.log() / 2 + qr.mean(1).log() / 2).exp(), atol=1e-3, rtol=0)
    assert (anchors["start"] - anchors["fit"]).abs().max() > 0.02  # two different anchors


@pytest.mark.parametrize("args, match", [
    ({"fit_means": 1.5}, "fit_means must be in"),
    ({"fit_means": 0.5, "learn_wb": True, "fit_wb": 0.0}, "need tone: fit and learn_wb: false"),
    ({"fit_means": 0.5, "tone": "learn"}, "need tone: fit and learn_wb: false"),
    ({"fit_curve_offset": 0.5, "tone": "learn"}, "need tone: fit and learn_wb: false"),
    ({"fit_curve_offset": -0.1}, "fit_curve_offset must be in"),
    ({"fit_means": 0.5, "means_anchor": "real"}, "means_anchor must be one of"),
])
def test_fit_means_arguments_are_checked(args, match):
    with pytest.raises(ValueError, match=match):
        _generator(**args)


def test_without_fit_means_the_checkpoint_keys_are_unchanged():
    keys = _generator().state_dict()
    assert "mean_cal" not in keys and "curve_cal" not in keys and "fit_response" not in keys
    assert not _generator().wants_mean_calibration and not _generator().wants_curve_calibration
    assert "curve_cal" in _generator(fit_curve_offset=1.0).state_dict()
    assert "fit_response" not in _generator(fit_curve_offset=1.0).state_dict()  # recomputed by every fit


def _pooled_error(g, sharp: torch.Tensor, seed: int) -> torch.Tensor:
    """The generator's pooled output quantiles of ``sharp`` (noise vectors from ``seed``) less its fitted
    curve's noiseless tone map of the same crops' pooled quantiles (the fit's target)."""
    with torch.no_grad():
        out = g(sharp, g.noise_input.sample(sharp, torch.Generator().manual_seed(seed)))
        q = tone_quantiles(sharp, 32)
        lin = (ops.srgb_to_linear(q) * (g.log_gain + g.log_wb[:, None]).exp()).clamp(0, 1)
        target = ops.monotone_curve(lin[None, ..., None], g.fit_response.expand(3, -1))[0, ..., 0]
        return tone_quantiles(out, 32) - target


def test_curve_calibration_removes_the_generators_own_pipeline_offset():
    """A wide blur narrows the pooled histogram: the outputs' dark quantiles come out brighter than the
    fitted tone map (here by 0.02-0.04). The calibration moves the knots until they are not, on
    other noise vectors than it used, and keeps the correction over the fits the stage runs every step."""
    sharp = _scenes(n=8, size=128)
    qs, qr = tone_quantiles(sharp), tone_quantiles(_filmic_camera(sharp))
    g = _generator(fit_curve=1.0, fit_curve_offset=1.0, kernel_size=31, init_length=16.0, init_radius=3.0)
    g.fit_tone(qs, qr)
    fitted = g.fit_response.clone()
    torch.testing.assert_close(g.response_values(), fitted)  # no correction yet
    before = _pooled_error(g, sharp, 1)
    assert before[:, :4].mean() > 0.01, before  # the shadows brightened by the blur
    sample = sharp[:6]
    g.calibrate_curve(sample, g.noise_input.sample(sample, torch.Generator().manual_seed(2)))
    after = _pooled_error(g, sharp, 1)
    assert after.abs().mean() < before.abs().mean() / 2, (before.abs().mean(), after.abs().mean())
    values = g.response_values().clone()
    assert (values.diff(dim=1) >= 0).all() and values.min() >= 0 and values.max() <= 1
    assert (values[:, 2] < fitted[:, 2]).all()  # darker shadows: a steeper curve than the fit's
    g.fit_tone(qs, qr)  # the next fit keeps the correction, once
    torch.testing.assert_close(g.response_values(), values)
    torch.testing.assert_close(g.fit_response, fitted)
    half = _generator(fit_curve=1.0, fit_curve_offset=0.5, kernel_size=31, init_length=16.0, init_radius=3.0)
    half.load_state_dict(g.state_dict())
    half.fit_tone(qs, qr)
    torch.testing.assert_close(half.response_values(), ops.shifted_curve(fitted, 0.5 * g.curve_cal).expand(3, -1))


def test_bgan_stage_calibrates_on_a_fixed_sample(camera_stage, sample_images, one_torch_thread):
    from dbgan.io import read_image

    means = ("nets.blur_g.args.tone=fit", "nets.blur_g.args.learn_wb=false", "nets.blur_g.args.fit_means=1")
    with pytest.raises(ConfigError, match="fit_means needs 'stages.bgan.tone_from: photos'"):
        camera_stage(*means)
    overrides = ("stages.bgan.w_adv=0", "stages.bgan.w_diversity=0", "stages.bgan.tone_from=photos",
                 "stages.bgan.iters=40", *means)
    _, stage, g = camera_stage(*overrides)
    _, again, _ = camera_stage(*overrides)
    for a, b in zip(stage.calibration_sample, again.calibration_sample):  # seeded by the run: a resume draws the same
        torch.testing.assert_close(a, b)
    assert stage.calibration_sample[0].shape[0] >= 8
    photos = [read_image(p, channels=3) for p in sorted(sample_images[0].parent.iterdir())]
    gen = torch.Generator().manual_seed(0)
    batch = lambda: {"sharp": torch.rand(4, 3, 48, 48, generator=gen), "real_blur": torch.rand(4, 3, 48, 48, generator=gen)}  # noqa: E731
    stage.step(batch(), 0)
    cal = g.mean_cal.clone()
    assert float(cal.abs().max()) > 0  # the blur and noise move the means: something to correct
    qs = photo_quantiles(photos, crop=48)
    err = g.predicted_means(*stage.calibration_sample, qs) - qs.mean(1)  # the same folder on both sides
    assert err.abs().max() < 1e-3
    g.mean_cal.add_(0.2)  # knocked off: only every CALIBRATION_EVERY iterations ...
    stage.step(batch(), 1)
    torch.testing.assert_close(g.mean_cal, cal + 0.2)
    stage.step(batch(), 39)  # ... and at the stage's last one is it put back
    assert (g.predicted_means(*stage.calibration_sample, qs) - qs.mean(1)).abs().max() < 1e-3
    assert (g.mean_cal - cal).abs().max() < 0.05


def test_bgan_stage_calibrates_the_curve(camera_stage, one_torch_thread):
    curve = ("nets.blur_g.args.tone=fit", "nets.blur_g.args.learn_wb=false", "nets.blur_g.args.fit_curve=1",
             "nets.blur_g.args.fit_curve_offset=1")
    with pytest.raises(ConfigError, match="fit_curve_offset needs 'stages.bgan.tone_from: photos'"):
        camera_stage(*curve)
    _, stage, g = camera_stage("stages.bgan.w_adv=0", "stages.bgan.w_diversity=0", "stages.bgan.tone_from=photos",
                               "stages.bgan.iters=40", *curve)
    assert not hasattr(g, "mean_cal")  # the sample is there for the curve alone
    gen = torch.Generator().manual_seed(0)
    batch = {"sharp": torch.rand(4, 3, 48, 48, generator=gen), "real_blur": torch.rand(4, 3, 48, 48, generator=gen)}
    stage.step(batch, 0)
    assert float(g.curve_cal.abs().max()) > 0
    cal = g.curve_cal.clone()
    stage.step(batch, 1)  # not between the calibrations
    torch.testing.assert_close(g.curve_cal, cal)


def test_fixed_crops_spread_over_the_folder_and_fit_small_photos():
    from dbgan.train.camera_fit import fixed_crops

    photos = [torch.full((3, 40, 40), float(i)) for i in range(100)]
    seen = []
    got = fixed_crops(lambda i: seen.append(i) or photos[i], 100, 4, 16, torch.Generator().manual_seed(0))
    assert got.shape == (4, 3, 16, 16) and seen == [0, 25, 50, 75]  # spread, one read each
    again = fixed_crops(lambda i: photos[i], 100, 4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(got, again)
    small = [torch.rand(1, 12, 30), torch.rand(1, 50, 50)]
    out = fixed_crops(lambda i: small[i], 2, 5, 16, torch.Generator().manual_seed(1))
    assert out.shape == (5, 1, 12, 12)  # cut to the smallest photo's side
    with pytest.raises(ValueError, match="no photos"):
        fixed_crops(lambda i: photos[i], 0, 4, 16, torch.Generator())
