"""A shortened demo (seconds): the report, its images and its metrics table exist."""

from __future__ import annotations

import json
import re

from dbgan.cli import main


def test_quick_demo_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--quick", "--out", str(out)]) == 0
    report = out / "report.html"
    assert report.is_file()
    assert str(report) in capsys.readouterr().out
    text = report.read_text()
    # images are embedded (opens without a server) or beside the report
    imgs = re.findall(r"<img src='([^']+)'", text)
    assert len(imgs) >= 3
    for src in imgs:
        assert src.startswith("data:image/") or (out / src).is_file()
    assert (out / "figures" / "losses.png").is_file()
    # metrics table filled with numbers for every held-out image
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["count"] >= 1
    rows = re.findall(r"<tr><td>[^<]+</td><td>(\d+\.\d+)</td><td>(\d+\.\d+)</td>", text)
    assert len(rows) == metrics["count"]
    assert "dbgan train" in text  # the commands to reproduce on one's own data
    assert "stand-in" in text
    # the bundled general model, its adaptation and classical deconvolution, side by side
    for col in ("PSNR input", "PSNR Wiener", "PSNR general", "PSNR adapted"):
        assert col in text
    assert {"psnr_general", "psnr_adapted", "psnr_Wiener"} <= set(metrics["images"][0])


def test_real_photo_crops_sit_where_the_input_has_edges(tmp_path):
    import torch

    from dbgan.demo import busiest_crop, deblur_real_photos
    from dbgan.io import write_image

    img = torch.full((3, 300, 500), 0.5)
    img[:, 200:260, 380:440] = torch.rand(3, 60, 60)  # the only texture: bottom right
    y, x = busiest_crop(img, 128)
    assert y <= 200 and y + 128 >= 260 and x <= 380 and x + 128 >= 440
    assert busiest_crop(img[:, :100, :100], 128) == (0, 0)
    write_image(tmp_path / "real" / "a.png", img)
    rows = deblur_real_photos(tmp_path / "real", tmp_path / "out", {"dark": lambda t: t * 0.5})
    assert rows[0]["columns"] == ["input", "dark"] and rows[0]["crop"][2] == 256
    assert (tmp_path / "out" / "dark" / "a.png").is_file() and len(rows[0]["crops"]) == 2
    assert rows[0]["sharpness_dark"] < rows[0]["sharpness_input"]


def test_report_says_why_when_the_adaptation_scores_below_the_general_model():
    from dbgan.demo import adaptation_note

    note = adaptation_note({"psnr_general": 26.55, "psnr_adapted": 25.48})
    assert note is not None and "25.48 against 26.55 dB" in note and "few photos" in note
    assert adaptation_note({"psnr_general": 26.0, "psnr_adapted": 26.4}) is None
    assert adaptation_note({}) is None
