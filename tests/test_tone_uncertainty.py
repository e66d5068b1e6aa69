"""dbgan.tone_uncertainty: how firmly two unpaired photo folders pin a camera's brightness and colour."""

from __future__ import annotations

import logging

import pytest
import torch

from dbgan.tone_uncertainty import folder_tone_gap, photo_means


def test_the_gap_and_its_standard_error_follow_the_photos_means():
    sharp = torch.tensor([[0.2, 0.3, 0.4], [0.4, 0.5, 0.6]])  # brightness 0.3, 0.5; channel less it: -0.1, 0, +0.1
    real = torch.tensor([[0.5, 0.5, 0.5], [0.7, 0.7, 0.7], [0.6, 0.6, 0.6]])  # 0.5, 0.7, 0.6; neutral
    gap = folder_tone_gap(sharp, real)
    assert (gap.sharp_photos, gap.real_photos) == (2, 3)
    assert gap.brightness == pytest.approx(0.6 - 0.4, abs=1e-6)
    assert gap.brightness_se == pytest.approx((0.02 / 2 + 0.01 / 3) ** 0.5)
    assert gap.colour == pytest.approx((0.1, 0.0, -0.1), abs=1e-6)
    assert gap.colour_se == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)  # the same colour cast in every photo
    assert not gap.brightness_distinguishable  # 0.2 against a standard error of 0.115: under 2
    assert gap.as_dict()["brightness_distinguishable"] is gap.brightness_distinguishable


def test_a_gap_within_two_standard_errors_is_called_the_scenes_and_the_summary_says_what_to_do():
    gen = torch.Generator().manual_seed(0)
    sharp, real = torch.rand(6, 3, generator=gen), torch.rand(5, 3, generator=gen)
    gap = folder_tone_gap(sharp, real)
    assert abs(gap.brightness) < 2 * gap.brightness_se and not gap.brightness_distinguishable
    text = gap.summary()
    assert "6 sharp and 5 blurred photos" in text and "cannot be told" in text and "adapt_same_scenes" in text
    clear = folder_tone_gap(sharp, real + 0.5)
    assert clear.brightness_distinguishable and "cannot be told" not in clear.summary()


def test_the_standard_error_predicts_the_spread_of_the_gap_over_draws_of_folders():
    """Folders of different photos drawn from one scene distribution: the gap's spread over draws is
    what one draw's standard error says (within 10% over 2000 draws; the spread of photo means is uneven)."""
    gen = torch.Generator().manual_seed(1)
    pool = torch.rand(400, 3, generator=gen) ** 2  # a skewed distribution of photo means
    gaps, ses = [], []
    for _ in range(2000):
        idx = torch.randperm(len(pool), generator=gen)
        g = folder_tone_gap(pool[idx[:14]], pool[idx[14:28]])
        gaps.append(g.brightness)
        ses.append(g.brightness_se)
    spread, predicted = torch.tensor(gaps).std().item(), torch.tensor(ses).mean().item()
    assert abs(predicted / spread - 1) < 0.1
    assert abs(torch.tensor(gaps).mean().item()) < 0.1 * spread  # no side is favoured


def test_grey_photos_have_no_colour_and_too_few_photos_have_no_spread():
    grey = folder_tone_gap(torch.tensor([[0.1], [0.3]]), torch.tensor([[0.2], [0.6]]))
    assert grey.colour == () and grey.colour_se == ()
    assert "colour" not in grey.summary()
    assert folder_tone_gap(torch.rand(1, 3), torch.rand(5, 3)) is None
    with pytest.raises(ValueError, match="N x C and M x C"):
        folder_tone_gap(torch.rand(4, 3), torch.rand(4, 1))


def test_photo_means_pass_the_photos_through_and_record_their_means():
    photos = [torch.full((3, 4, 5), 0.25), torch.rand(3, 6, 2)]
    sink: list[torch.Tensor] = []
    out = list(photo_means(iter(photos), sink))
    assert all(a is b for a, b in zip(out, photos))
    torch.testing.assert_close(torch.stack(sink), torch.stack([p.double().mean((1, 2)) for p in photos]))


def test_the_bgan_stage_measures_its_folders_and_validation_reports_it(camera_stage, sample_images, tmp_path, caplog,
                                                                       one_torch_thread):
    from dbgan.io import read_image, write_image
    from dbgan.train.validation import validate

    dark = tmp_path / "dark"
    dark.mkdir()
    photos = [read_image(p, channels=3) for p in sample_images]
    for p, img in zip(sample_images, photos):
        write_image(dark / p.with_suffix(".png").name, img * 0.8)
    darker = [read_image(p, channels=3) for p in sorted(dark.iterdir())]
    with caplog.at_level(logging.INFO, logger="dbgan.train.camera_fit"):
        _, stage, _ = camera_stage("stages.bgan.tone_from=photos", "nets.blur_g.args.tone=fit",
                                   f"data.real_blur_dir={dark}")
    gap = stage.folder_gap
    assert (gap.sharp_photos, gap.real_photos) == (len(photos), len(darker))
    expected = torch.stack([d.double().mean() for d in darker]).mean() - torch.stack([p.double().mean() for p in photos]).mean()
    assert gap.brightness == pytest.approx(float(expected), abs=1e-6) and gap.brightness < 0
    assert any("less the sharp folder's is -0." in r.getMessage() for r in caplog.records)
    batch = {"sharp": torch.rand(2, 3, 48, 48), "real_blur": torch.rand(2, 3, 48, 48)}
    metrics = validate(stage, None, batch, torch.device("cpu"), {})["metrics"]
    assert metrics["folder_tone_gap"]["brightness"] == pytest.approx(gap.brightness)
    _, without, _ = camera_stage()  # running quantiles: the folders are not read whole
    assert without.folder_gap is None and "folder_tone_gap" not in validate(without, None, batch, torch.device("cpu"), {})["metrics"]


def test_the_samples_page_shows_nested_figures_rounded():
    from dbgan.train.monitor import render_index

    gap = folder_tone_gap(torch.tensor([[0.2, 0.3, 0.4], [0.4, 0.5, 0.6]]), torch.tensor([[0.5] * 3, [0.7] * 3]))
    page = render_index("run", [{"stage": "bgan", "iter": 3, "file": "bgan_000003.png", "columns": ["sharp"],
                                 "metrics": {"folder_tone_gap": gap.as_dict(), "psnr": 1 / 3}}])
    assert "brightness=0.2," in page and "brightness_se=0.1414," in page and "colour=[0.1, " in page
    assert "<td>0.3333</td>" in page and "0.30000001" not in page


def test_two_folders_can_be_checked_before_training(sample_images, tmp_path):
    from dbgan.io import ImageReadError, read_image, write_image
    from dbgan.tone_uncertainty import folders_tone_gap

    bright = tmp_path / "bright"
    bright.mkdir()
    photos = [read_image(p, channels=3) for p in sample_images]
    for p, img in zip(sample_images, photos):
        write_image(bright / p.with_suffix(".png").name, (img + 0.1).clamp(0, 1))
    gap = folders_tone_gap(sample_images[0].parent, bright)
    assert gap.sharp_photos == gap.real_photos == len(photos) and 0.09 < gap.brightness < 0.1 + 1 / 255  # +0.1, less what the clamp cuts, in 8 bits
    assert folders_tone_gap(sample_images[0].parent, bright, channels=1).colour == ()
    with pytest.raises(ImageReadError, match="missing"):
        folders_tone_gap(tmp_path / "missing", bright)


def test_the_check_folders_command(sample_images, tmp_path, capsys):
    """``dbgan check-folders SHARP BLURRED``: the summary, ``--json``, ``--grey``, and one-line errors (exit 2)."""
    import json

    from dbgan.cli import main
    from dbgan.io import read_image, write_image

    bright = tmp_path / "bright"
    bright.mkdir()
    for p in sample_images:
        write_image(bright / p.with_suffix(".png").name, (read_image(p, channels=3) + 0.1).clamp(0, 1))
    sharp = str(sample_images[0].parent)
    assert main(["-q", "check-folders", sharp, str(bright)]) == 0
    import re

    assert re.search(r"mean brightness less the sharp folder's is \+0\.(09|10)\d\d \+/- ", capsys.readouterr().out)
    assert main(["-q", "check-folders", sharp, str(bright), "--json", "--grey"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert 0.09 < figures["brightness"] < 0.1 + 1 / 255 and figures["colour"] == [] and figures["sharp_photos"] == len(sample_images)
    one = tmp_path / "one"
    one.mkdir()
    write_image(one / "a.png", read_image(sample_images[0], channels=3))
    assert main(["-q", "check-folders", sharp, str(one)]) == 2
    assert f"{one}: the check needs at least two photos" in capsys.readouterr().err
    assert main(["-q", "check-folders", str(tmp_path / "missing"), str(bright)]) == 2
    assert "missing" in capsys.readouterr().err
