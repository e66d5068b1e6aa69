"""Coarse-to-fine deblurring (dbgan.infer.pyramid) and its ``coarse_levels`` setting everywhere."""

from __future__ import annotations

import pytest
import torch

from dbgan.cli import main
from dbgan.infer import Deblurrer, InferenceError, run_folder
from dbgan.infer.pyramid import MAX_COARSE_LEVELS, MIN_COARSE_SIDE, coarse_to_fine, usable_levels
from dbgan.io import read_image, write_image

from test_infer import Pointwise, make_checkpoint, smooth_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_identity_restorer_leaves_the_image_unchanged():
    x = torch.rand(3, 70, 130)
    for levels in range(MAX_COARSE_LEVELS + 1):
        assert torch.equal(coarse_to_fine(x, lambda t: t, levels), x)


def test_each_level_adds_its_correction_coarse_to_fine():
    x = 0.3 + 0.3 * smooth_image(3, 128, 192)
    sizes = []

    def brighten(t):  # a "restorer" whose correction is +0.01 everywhere
        sizes.append(tuple(t.shape[-2:]))
        return t + 0.01

    out = coarse_to_fine(x, brighten, 2)
    assert sizes == [(32, 48), (64, 96), (128, 192)]  # 1/4, then 1/2, then full size
    torch.testing.assert_close(out, x + 0.03, atol=1e-5, rtol=0)  # three corrections, each upsampled exactly


def test_levels_are_capped_by_the_image_and_checked():
    assert usable_levels(2 * MIN_COARSE_SIDE, 500, 3) == 1
    assert usable_levels(MIN_COARSE_SIDE * 2 - 1, 500, 3) == 0
    assert usable_levels(4000, 3000, 4) == 4
    seen = []
    coarse_to_fine(torch.rand(1, 40, 300), lambda t: seen.append(t.shape[-2:]) or t, 2)
    assert seen == [(40, 300)]  # too small for a coarse level: the plain run
    for bad in (-1, MAX_COARSE_LEVELS + 1, 1.5, True, "2"):
        with pytest.raises(InferenceError, match="coarse_levels"):
            coarse_to_fine(torch.rand(3, 64, 64), lambda t: t, bad)


def test_deblurrer_runs_its_network_coarse_to_fine():
    x = smooth_image(3, 96, 160)
    plain = Deblurrer(Pointwise(), device="cpu")
    pyr = Deblurrer(Pointwise(), device="cpu", coarse_levels=1)
    assert "coarse_levels=1" in repr(pyr) and "coarse_levels" not in repr(plain)
    out = pyr(x)
    torch.testing.assert_close(out, coarse_to_fine(x, plain, 1))
    assert (out - plain(x)).abs().max() > 1e-3  # the coarse level changed the result
    with pytest.raises(TypeError, match="float tensor"):
        pyr((x * 255).to(torch.uint8))
    with pytest.raises(InferenceError, match="coarse_levels"):
        Deblurrer(Pointwise(), device="cpu", coarse_levels=9)


def test_run_folder_and_cli_take_coarse_levels(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "tiny.safetensors")
    src = tmp_path / "a.png"
    write_image(src, smooth_image(3, 96, 128))
    run_folder(ckpt, src, tmp_path / "plain.png", device="cpu", progress=False)
    run_folder(ckpt, src, tmp_path / "pyr.png", device="cpu", progress=False, coarse_levels=1)
    assert (read_image(tmp_path / "plain.png") - read_image(tmp_path / "pyr.png")).abs().max() > 0
    with pytest.raises(InferenceError, match="coarse_levels is for deblurring"):
        run_folder(ckpt, src, tmp_path / "b.png", mode="blur", device="cpu", progress=False, coarse_levels=1)
    # fp32 as run_folder defaults to: the CLI's auto takes bf16 on a CPU with native bf16
    assert main(["deblur", str(ckpt), str(src), str(tmp_path / "cli.png"), "--coarse-levels", "1", "--device", "cpu", "--dtype", "fp32"]) == 0
    assert torch.equal(read_image(tmp_path / "cli.png"), read_image(tmp_path / "pyr.png"))
    assert main(["deblur", str(ckpt), str(src), str(tmp_path / "bad.png"), "--coarse-levels", "7", "--device", "cpu"]) != 0
    assert "coarse_levels must be an integer in [0, 4], got 7" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


def test_coarse_levels_benchmark_runs_on_given_photos(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import coarse_levels as B

    photo = tmp_path / "p.png"
    write_image(photo, smooth_image(3, 80, 120))
    assert B.main(["--photos", str(photo), "--sizes", "120", "--json", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["blur"] for r in rows] == ["shake 12", "shake 40", "shake 80", "disc 4", "disc 12", "none", "disc 24"]
    by = {r["blur"]: r for r in rows}
    assert by["none"]["input"] > 40 > by["disc 12"]["input"]  # noise only vs a wide disc
    assert set(by["none"]) >= {f"levels {n}" for n in B.LEVELS}
    with pytest.raises(SystemExit, match="--blurs: unknown disc:5"):
        B.main(["--photos", str(photo), "--blurs", "disc:5"])
    with pytest.raises(SystemExit, match="photos not found"):
        B.main(["--photos", str(tmp_path / "missing.jpg")])


def test_eval_takes_coarse_levels_and_records_them(tmp_path):
    from dbgan.evaluate import evaluate

    ckpt = make_checkpoint(tmp_path / "tiny.safetensors")
    for k in range(2):
        write_image(tmp_path / "pairs" / "sharp" / f"{k}.png", smooth_image(3, 64, 96))
        write_image(tmp_path / "pairs" / "blur" / f"{k}.png", smooth_image(3, 64, 96) * 0.9)
    plain = evaluate(ckpt, tmp_path / "pairs", device="cpu", progress=False)
    pyr = evaluate(ckpt, tmp_path / "pairs", device="cpu", progress=False, coarse_levels=1)
    assert (plain["coarse_levels"], pyr["coarse_levels"]) == (0, 1)
    assert pyr["mean"]["psnr_out"] != plain["mean"]["psnr_out"]
    with pytest.raises(InferenceError, match="ready Deblurrer"):
        evaluate(Deblurrer.from_checkpoint(ckpt, device="cpu"), tmp_path / "pairs", progress=False, coarse_levels=1)
    assert main(["eval", str(ckpt), "--pairs", str(tmp_path / "pairs"), "--coarse-levels", "1", "--device", "cpu",
                 "--out", str(tmp_path / "r.json")]) == 0
