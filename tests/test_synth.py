"""dbgan.synth: synthetic paired datasets from a folder of sharp images."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dbgan.config import SynthConfig
from dbgan.io import ImageReadError, read_image, read_image_with_info, write_image
from dbgan.synth import synthesize


def _sizes(paths):
    return {p.stem: read_image(p).shape for p in paths}


def test_paired_layout(tmp_path, sample_images):
    sharp_dir = sample_images[0].parent
    before = sorted(p.name for p in sharp_dir.iterdir())
    out = tmp_path / "out"
    res = synthesize(sharp_dir, out, per_image=2, seed=1, save_kernels=True, progress=False, kernel_size=15)
    assert res.n_images == 3 and res.n_pairs == 6 and res.layout == "paired" and not res.skipped
    names = sorted(f"{p.stem}_{k}.png" for p in sample_images for k in range(2))
    assert sorted(p.name for p in (out / "sharp").iterdir()) == names
    assert sorted(p.name for p in (out / "blur").iterdir()) == names
    assert sorted(p.name for p in (out / "kernels").iterdir()) == names
    assert len(res.written) == 18 and all(p.is_file() for p in res.written)
    for src in sample_images:
        x = read_image(src)
        for k in range(2):
            s = read_image(out / "sharp" / f"{src.stem}_{k}.png")
            b = read_image(out / "blur" / f"{src.stem}_{k}.png")
            assert torch.equal(s, x)  # the sharp copy is exact
            assert b.shape == x.shape and not torch.equal(b, x)
        kern = read_image(out / "kernels" / f"{src.stem}_0.png")
        assert kern.shape == (1, 15, 15) and kern.max() == 1.0
        # the copies got different kernels
        b0, b1 = (read_image(out / "blur" / f"{src.stem}_{k}.png") for k in range(2))
        assert not torch.equal(b0, b1)
    assert sorted(p.name for p in sharp_dir.iterdir()) == before  # SHARP_DIR untouched
    assert "6 paired pairs from 3 images" in res.summary()


def test_aligned_layout(tmp_path, sample_images):
    sharp_dir = sample_images[0].parent
    out = tmp_path / "ab"
    res = synthesize(sharp_dir, out, aligned=True, seed=0, progress=False, kernel_size=15)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}_0.png" for p in sample_images)
    assert res.layout == "aligned" and res.n_pairs == 3
    for src in sample_images:
        x = read_image(src)
        ab = read_image(out / f"{src.stem}_0.png")
        w = x.shape[2]
        assert ab.shape == (3, x.shape[1], 2 * w)
        assert torch.equal(ab[:, :, :w], x)  # A (left) is sharp: direction AtoB
        assert not torch.equal(ab[:, :, w:], x)


def test_same_seed_same_output_and_order_independent(tmp_path, sample_images):
    sharp_dir = sample_images[0].parent
    cfg = SynthConfig(kernels=["motion", "defocus"], noise_sigma=[0.0, 0.01], jpeg_quality=[70, 90])
    kw = dict(per_image=1, progress=False, kernel_size=15, synth=cfg)
    synthesize(sharp_dir, tmp_path / "a", seed=3, **kw)
    synthesize(sharp_dir, tmp_path / "b", seed=3, **kw)
    synthesize(sharp_dir, tmp_path / "c", seed=4, **kw)
    for src in sample_images:
        name = f"blur/{src.stem}_0.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    # one image alone gives the same result as within the full folder
    solo = tmp_path / "solo"
    solo.mkdir()
    shutil.copy(sample_images[1], solo / sample_images[1].name)
    synthesize(solo, tmp_path / "d", seed=3, **kw)
    name = f"blur/{sample_images[1].stem}_0.png"
    assert (tmp_path / "d" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


def test_refuses_output_inside_sharp_dir(tmp_path, sample_images):
    sharp_dir = sample_images[0].parent
    before = sorted(p.name for p in sharp_dir.rglob("*"))
    for bad in (sharp_dir, sharp_dir / "out", sharp_dir / "out" / "deeper"):
        with pytest.raises(ValueError, match="inside") as err:
            synthesize(sharp_dir, bad, progress=False)
        assert str(sharp_dir) in str(err.value) and str(bad) in str(err.value)
    assert sorted(p.name for p in sharp_dir.rglob("*")) == before
    # OUT_DIR/sharp would be SHARP_DIR itself (synth data/sharp data)
    shutil.copytree(sharp_dir, tmp_path / "data" / "sharp")
    with pytest.raises(ValueError, match=r"would be the sharp folder"):
        synthesize(tmp_path / "data" / "sharp", tmp_path / "data", progress=False)
    assert sorted(p.name for p in (tmp_path / "data" / "sharp").iterdir()) == [p.name for p in sample_images]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["sharp"]


def test_16bit_and_grey_sources_keep_their_format(tmp_path):
    src = tmp_path / "src"
    ramp = np.linspace(0, 1, 40 * 50, dtype=np.float32).reshape(1, 40, 50)
    write_image(src / "g16.png", torch.from_numpy(ramp), bit_depth=16)
    rgb = np.random.default_rng(0).random((3, 30, 20)).astype(np.float32)
    write_image(src / "c8.jpg", torch.from_numpy(rgb))
    synthesize(src, tmp_path / "out", progress=False, kernel_size=7)
    s, info = read_image_with_info(tmp_path / "out" / "sharp" / "g16_0.png")
    assert (info.bit_depth, info.channels, s.shape) == (16, 1, (1, 40, 50))
    assert torch.equal(s, read_image(src / "g16.png"))
    b, binfo = read_image_with_info(tmp_path / "out" / "blur" / "g16_0.png")
    assert (binfo.bit_depth, b.shape) == (16, (1, 40, 50))
    c, cinfo = read_image_with_info(tmp_path / "out" / "blur" / "c8_0.png")
    assert (cinfo.bit_depth, c.shape) == (8, (3, 30, 20))
    grey_out = synthesize(src, tmp_path / "out3", progress=False, kernel_size=7, channels=3)
    assert read_image(tmp_path / "out3" / "sharp" / "g16_0.png").shape == (3, 40, 50)
    assert grey_out.n_pairs == 2


def test_bad_files_fail_or_are_skipped(tmp_path, sample_images):
    sharp_dir = sample_images[0].parent
    (sharp_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        synthesize(sharp_dir, tmp_path / "o1", progress=False, kernel_size=7)
    res = synthesize(sharp_dir, tmp_path / "o2", progress=False, kernel_size=7, skip_bad=True)
    assert res.n_images == 3 and [p.name for p, _ in res.skipped] == ["broken.png"]
    assert "1 unreadable" in res.summary()
    with pytest.raises(ImageReadError, match="does not exist"):
        synthesize(tmp_path / "missing", tmp_path / "o3", progress=False)


def test_colliding_stems_and_arguments(tmp_path, sample_arrays):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(sample_arrays["chelsea"]).save(src / "cat.png")
    Image.fromarray(sample_arrays["coffee"]).save(src / "cat.jpg")
    synthesize(src, tmp_path / "out", progress=False, kernel_size=7, intensity=0.5)
    assert sorted(p.name for p in (tmp_path / "out" / "blur").iterdir()) == ["cat_jpg_0.png", "cat_png_0.png"]
    with pytest.raises(ValueError, match="odd"):
        synthesize(src, tmp_path / "x", kernel_size=8, progress=False)
    with pytest.raises(ValueError, match="intensity"):
        synthesize(src, tmp_path / "x", intensity=(0.5, 2.0), progress=False)
    with pytest.raises(ValueError, match="per_image"):
        synthesize(src, tmp_path / "x", per_image=0, progress=False)
