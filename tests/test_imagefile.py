"""Files kept as users keep them: TIFF stacks page by page, EXIF and ICC carried over, --quality, 16-bit and float."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms
from torch import nn

from dbgan.cli import main
from dbgan.imagefile import ImageMeta, output_bit_depth, read_meta, read_pages, write_pages
from dbgan.infer import Deblurrer, InferenceError, run_folder


class Identity(nn.Module):
    in_channels = out_channels = 3
    size_multiple = 1

    def forward(self, x, noise=None):
        return x.clone()


class Invert(Identity):
    def forward(self, x, noise=None):
        return 1.0 - x


@pytest.fixture(scope="module")
def identity():
    return Deblurrer(Identity(), device="cpu")


@pytest.fixture(scope="module")
def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[271] = "TestCam"  # Make
    exif[272] = "Model 7"  # Model
    exif[306] = "2026:11:30 12:00:00"  # DateTime
    exif[0x0112] = orientation
    return exif


def _photo(h=40, w=56) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- stacks


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_stack_processed_page_by_page(tmp_path, dtype):
    rng = np.random.default_rng(1)
    scale = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0}[dtype]
    stack = (rng.random((4, 30, 44)) * scale).astype(dtype)
    src = tmp_path / "in" / "cells.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, stack, photometric="minisblack")  # 4 grey pages
    pages, info, _ = read_pages(src)
    assert len(pages) == 4 and all(p.shape == (1, 30, 44) for p in pages)
    assert info.bit_depth == {np.uint8: 8, np.uint16: 16, np.float32: 32}[dtype]
    res = run_folder(Deblurrer(Invert(), device="cpu"), src.parent, tmp_path / "out", progress=False)
    assert res.written == [tmp_path / "out" / "cells.tif"]
    out = tifffile.imread(tmp_path / "out" / "cells.tif")
    assert out.shape == stack.shape and out.dtype == stack.dtype  # every page, same sample type
    expect = (scale - stack.astype(np.float64)) if dtype != np.float32 else 1.0 - stack
    np.testing.assert_allclose(out.astype(np.float64), expect, atol=0.51 if dtype != np.float32 else 1e-6)


def test_stack_to_a_non_tiff_output_is_refused(tmp_path, identity):
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, np.zeros((2, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(InferenceError, match=r"2-page TIFF stack needs a \.tif output"):
        run_folder(identity, src, tmp_path / "s.png", progress=False)


def test_rgb_pages_and_different_sizes(tmp_path, identity):
    src = tmp_path / "rgb.tif"
    with tifffile.TiffWriter(src) as tw:
        tw.write(_photo(20, 30), photometric="rgb")
        tw.write(_photo(24, 16), photometric="rgb")
    run_folder(identity, src, tmp_path / "o.tif", progress=False)
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        shapes = [p.shape for p in tif.pages]
        assert shapes == [(20, 30, 3), (24, 16, 3)]
        np.testing.assert_array_equal(tif.pages[1].asarray(), _photo(24, 16))


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif"])
def test_exif_and_icc_carried_over(tmp_path, identity, icc, ext):
    src = tmp_path / f"photo{ext}"
    im = Image.fromarray(_photo())
    kw = {"exif": _exif(orientation=1).tobytes(), "icc_profile": icc}
    if ext in (".jpg", ".webp"):
        kw["quality"] = 95
    im.save(src, **kw)
    dst = tmp_path / "out" / f"photo{ext}"
    run_folder(identity, src, dst, progress=False)
    with Image.open(dst) as out:
        assert out.info.get("icc_profile") == icc
        if ext == ".tif":  # TIFF: the text tags
            assert out.tag_v2.get(271) == "TestCam" and out.tag_v2.get(272) == "Model 7"
        else:
            exif = out.getexif()
            assert exif.get(271) == "TestCam" and exif.get(306) == "2026:11:30 12:00:00"


def test_rotated_photo_keeps_exif_but_orientation_reset(tmp_path, identity):
    """dbgan writes upright pixels, so a carried-over orientation 6 would rotate the photo twice."""
    src = tmp_path / "portrait.jpg"
    Image.fromarray(_photo(40, 56)).save(src, exif=_exif(orientation=6).tobytes(), quality=95)
    dst = tmp_path / "out.jpg"
    run_folder(identity, src, dst, progress=False)
    with Image.open(dst) as out:
        assert out.size == (40, 56)  # rotated upright
        assert out.getexif().get(0x0112, 1) == 1 and out.getexif().get(271) == "TestCam"


def test_no_metadata_no_problem(tmp_path, identity):
    src = tmp_path / "plain.png"
    Image.fromarray(_photo()).save(src)
    assert read_meta(src) == ImageMeta()
    run_folder(identity, src, tmp_path / "o.png", progress=False)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), _photo())
    assert read_meta(tmp_path / "nope.png") == ImageMeta()  # unreadable: empty, never an error


# --------------------------------------------------------------------------- quality, bit depth


def test_quality_option(tmp_path, identity):
    rng = np.random.default_rng(3)
    src = tmp_path / "noise.png"
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(src)
    run_folder(identity, src, tmp_path / "q30.jpg", quality=30, progress=False)
    run_folder(identity, src, tmp_path / "q95.jpg", progress=False)
    assert (tmp_path / "q30.jpg").stat().st_size < 0.7 * (tmp_path / "q95.jpg").stat().st_size
    with pytest.raises(InferenceError, match="quality"):
        run_folder(identity, src, tmp_path / "bad.jpg", quality=0, progress=False)
    assert main(["-q", "deblur", "x.safetensors", str(src), str(tmp_path / "c.jpg"), "--quality", "101"]) == 2


def test_sixteen_bit_in_sixteen_bit_out(tmp_path, identity):
    import cv2

    rng = np.random.default_rng(4)
    arr = (rng.random((20, 24, 3)) * 65535).astype(np.uint16)
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), arr)
    for ext in (".png", ".tif"):
        dst = tmp_path / f"out{ext}"
        run_folder(identity, src, dst, progress=False)
        back = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(back, arr)
    run_folder(identity, src, tmp_path / "out.jpg", progress=False)  # JPEG holds 8 bits: no error
    assert output_bit_depth(16, "x.jpg") == 8 and output_bit_depth(32, "x.png") == 16 and output_bit_depth(32, "x.tif") == 32


def test_float_tiff_round_trip(tmp_path, identity):
    rng = np.random.default_rng(5)
    arr = rng.random((18, 22)).astype(np.float32)
    src = tmp_path / "f.tif"
    tifffile.imwrite(src, arr)
    run_folder(identity, src, tmp_path / "o.tif", progress=False)
    out = tifffile.imread(tmp_path / "o.tif")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, arr, atol=1e-7)


def test_write_pages_refuses_what_formats_cannot_hold(tmp_path):
    t = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="float"):
        write_pages(tmp_path / "a.png", [t], bit_depth=32)
    with pytest.raises(ValueError, match="16 bits"):
        write_pages(tmp_path / "a.jpg", [t], bit_depth=16)
    with pytest.raises(ValueError, match="pages"):
        write_pages(tmp_path / "a.png", [t, t])
    write_pages(tmp_path / "a.bmp", [t])  # BMP: pixels only
    assert Image.open(tmp_path / "a.bmp").size == (8, 8)
    assert not list(tmp_path.glob("*.tmp*"))


def test_png_chunks_are_valid(tmp_path, icc):
    """The inserted iCCP / eXIf chunks keep the PNG readable by a strict decoder (CRC checked)."""
    write_pages(tmp_path / "m.png", [torch.rand(3, 9, 7)], meta=ImageMeta(exif=_exif().tobytes(), icc=icc))
    data = (tmp_path / "m.png").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.info["icc_profile"] == icc and im.getexif().get(272) == "Model 7"
    import cv2

    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape == (9, 7, 3)
