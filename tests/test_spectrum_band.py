"""The spectrum statistic's frequency limit (``stages.bgan.spectrum_max_freq``)."""

from __future__ import annotations

import math

import pytest
import torch

from dbgan.config import ConfigError, load_config
from dbgan.degradation_stats import CameraStats, band_edges, band_mask


def test_band_mask_keeps_the_bands_at_or_below_the_limit():
    edges = band_edges(128)
    assert float(edges[0]) == pytest.approx(1 / 128) and float(edges[-1]) == pytest.approx(0.5)
    mask = band_mask(128, 0.125)
    assert mask.tolist() == [1.0] * 8 + [0.0] * 4  # upper edges 0.011 ... 0.125 kept, 0.177 ... 0.5 not
    assert band_mask(128, 0.5).sum() == 12
    assert band_mask(128, 1e-3).tolist() == [1.0] + [0.0] * 11  # never empty
    assert band_mask(64, 0.125).sum() == 7  # a smaller crop's bands are wider


def _fine_pattern(x: torch.Tensor, freq: float, amp: float) -> torch.Tensor:
    """``x`` plus a horizontal sinusoid of ``freq`` cycles per pixel (one band near Nyquist)."""
    cols = torch.arange(x.shape[-1], dtype=x.dtype)
    return x + amp * torch.cos(2 * math.pi * freq * cols)


def test_spectrum_term_ignores_what_happens_above_the_limit():
    gen = torch.Generator().manual_seed(0)
    # smooth random scenes (most power at low frequencies, as in photos)
    sharp = torch.nn.functional.interpolate(torch.rand(4, 3, 16, 16, generator=gen), size=(128, 128), mode="bicubic",
                                            align_corners=False).clamp(0, 1) * 0.6 + 0.2
    fake = _fine_pattern(sharp, 0.42, 0.05)  # power only in the top band (0.35-0.5 cycles per pixel)
    full, limited = CameraStats(), CameraStats(spectrum_max_freq=0.125)
    for st in (full, limited):
        st.observe(sharp, sharp)  # real = sharp: the target ratio is 1 in every band
    d_full = float(full.loss(fake, sharp)["spectrum"])
    d_limited = float(limited.loss(fake, sharp)["spectrum"])
    assert d_full > 0.2  # the top band's log ratio moved a lot
    assert d_limited < 0.1 * d_full  # the kept bands barely see it (only through the per-image normalisation)
    blurred = torch.nn.functional.avg_pool2d(sharp, 9, stride=1, padding=4, count_include_pad=False)
    assert float(limited.loss(blurred, sharp)["spectrum"]) > 5 * d_limited  # a 9 px blur shows in the kept bands


def test_spectrum_max_freq_is_checked():
    with pytest.raises(ValueError, match="spectrum_max_freq"):
        CameraStats(spectrum_max_freq=0.0)
    with pytest.raises(ConfigError, match="spectrum_max_freq' must be in"):
        load_config("camera", ["stages.bgan.spectrum_max_freq=0.7"])
    with pytest.raises(ConfigError, match="spectrum_max_freq' applies to the bgan stage"):
        load_config("camera", ["stages.dbgan.spectrum_max_freq=0.125"])
    # a preset's value stays harmless when its user switches the statistics off
    assert load_config("camera", ["stages.bgan.w_stats=0"]).stages.bgan.spectrum_max_freq == 0.125
    assert load_config("camera", ["stages.bgan.spectrum_max_freq=0.125"]).stages.bgan.spectrum_max_freq == 0.125


def test_bgan_stage_passes_the_limit_on(camera_stage):
    _, stage, _ = camera_stage("stages.bgan.spectrum_max_freq=0.2")
    assert stage.camera_stats.spectrum_max_freq == 0.2
