"""The command line end to end: synth -> train -> deblur -> blur -> eval -> export, and the
mistakes of the widely copied reimplementation (bool flags, hard-coded paths, resized or
randomly chosen test images)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbgan.cli import build_parser, main
from dbgan.config import load_config
from dbgan.io import read_image_with_info


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_images_module):
    """A tiny separate-scheme run trained through the CLI on synth output."""
    root = tmp_path_factory.mktemp("cli")
    sample_images = sample_images_module
    pairs = root / "pairs"
    assert main(["-q", "synth", str(sample_images), str(pairs), "--kernel-size", "9", "--seed", "1"]) == 0
    real = root / "real"
    assert main(["-q", "synth", str(sample_images), str(root / "realpairs"), "--kernel-size", "15", "--seed", "2"]) == 0
    (root / "realpairs" / "blur").rename(real)
    rc = main([
        "-q", "train", "tiny", "name=cli", f"runs_dir={root / 'runs'}",
        f"data.sharp_dir={sample_images}", f"data.real_blur_dir={real}", f"data.val_dir={pairs}",
    ])
    assert rc == 0
    return {"root": root, "pairs": pairs, "real": real, "sharp": sample_images,
            "ckpt": root / "runs" / "cli" / "checkpoints" / "latest.safetensors"}


@pytest.fixture(scope="module")
def sample_images_module(tmp_path_factory):
    import numpy as np
    import torch
    from skimage import data as skd
    from skimage.transform import resize

    from dbgan.io import write_image

    folder = tmp_path_factory.mktemp("sharp")
    for name in ("astronaut", "coffee", "chelsea"):
        img = getattr(skd, name)()
        h, w = img.shape[:2]
        img = resize(img, (int(h * 80 / w), 80), anti_aliasing=True).astype(np.float32)
        write_image(folder / f"{name}.png", torch.from_numpy(img).permute(2, 0, 1))
    return folder


def test_bool_flags_and_overrides_are_not_always_true():
    p = build_parser()
    assert p.parse_args(["train", "x.yaml"]).resume is None
    assert p.parse_args(["train", "x.yaml", "--resume"]).resume is True
    assert p.parse_args(["train", "x.yaml", "--no-resume"]).resume is False
    assert p.parse_args(["synth", "a", "b"]).aligned is False
    assert p.parse_args(["synth", "a", "b", "--aligned"]).aligned is True
    assert p.parse_args(["deblur", "c", "i", "o"]).overwrite is False
    assert load_config("tiny", ["joint.backprop_into_blur=false"]).joint.backprop_into_blur is False
    assert load_config("tiny", ["joint.backprop_into_blur=true"]).joint.backprop_into_blur is True
    with pytest.raises(ValueError, match="joint.backprop_into_blur"):
        load_config("tiny", ["joint.backprop_into_blur=maybe"])


def test_paths_come_from_the_config(trained):
    run = trained["root"] / "runs" / "cli"
    assert (run / "config.yaml").is_file()
    assert not Path("runs/cli").exists()
    text = (run / "config.yaml").read_text()
    assert str(trained["sharp"]) in text and "launched with: dbgan" in text


def test_deblur_folder_keeps_every_file_name_and_size(trained, capsys):
    out = trained["root"] / "deblurred"
    assert main(["deblur", str(trained["ckpt"]), str(trained["real"]), str(out)]) == 0
    inputs = sorted(p.name for p in trained["real"].iterdir())
    assert sorted(p.name for p in out.iterdir()) == inputs  # every file, no random choice
    for name in inputs:
        _, a = read_image_with_info(trained["real"] / name)
        _, b = read_image_with_info(out / name)
        assert (a.height, a.width, a.channels, a.bit_depth) == (b.height, b.width, b.channels, b.bit_depth)
    assert "wrote" in capsys.readouterr().out
    # second run: existing outputs are kept unless --overwrite
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["deblur", str(trained["ckpt"]), str(trained["real"]), str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_blur_is_seeded(trained):
    a, b, c = (trained["root"] / n for n in ("b1", "b2", "b3"))
    src = trained["sharp"]
    assert main(["blur", str(trained["ckpt"]), str(src), str(a), "--seed", "1"]) == 0
    assert main(["blur", str(trained["ckpt"]), str(src), str(b), "--seed", "1"]) == 0
    assert main(["blur", str(trained["ckpt"]), str(src), str(c), "--seed", "2"]) == 0
    name = sorted(p.name for p in a.iterdir())[0]
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()


def test_eval_writes_json_and_csv(trained, capsys):
    out = trained["root"] / "report.json"
    assert main(["eval", str(trained["ckpt"]), "--pairs", str(trained["pairs"]), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["count"] == 3
    assert out.with_suffix(".csv").is_file()
    assert "psnr" in capsys.readouterr().out.lower()


def test_export_onnx(trained):
    pytest.importorskip("onnxruntime")
    out = trained["root"] / "model.onnx"
    assert main(["export", str(trained["ckpt"]), str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 1000


def test_errors_are_one_line_and_name_the_problem(tmp_path, capsys):
    assert main(["train", "tiny", "stages.dbgan.lrr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages.dbgan.lrr" in err[0]
    import torch

    from dbgan.io import write_image

    write_image(tmp_path / "in" / "a.png", torch.rand(3, 16, 16))
    assert main(["deblur", str(tmp_path / "missing.safetensors"), str(tmp_path / "in"), str(tmp_path / "o")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_deblur_max_pixels_is_configurable(trained, capsys):
    src = trained["real"]
    out = trained["root"] / "mp"
    assert main(["deblur", str(trained["ckpt"]), str(src), str(out), "--max-pixels", "100"]) == 2
    err = capsys.readouterr().err
    assert "max-pixels" in err or "max_image_pixels" in err
    assert main(["deblur", str(trained["ckpt"]), str(src), str(out), "--max-pixels", "0"]) == 0
    assert len(list(out.iterdir())) == len(list(src.iterdir()))
