"""dbgan.io: image reading/writing, formats, bit depths, orientation, damaged files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from dbgan.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    list_images,
    read_image,
    read_image_with_info,
    write_image,
)


@pytest.fixture
def rgb(sample_arrays) -> np.ndarray:
    return sample_arrays["astronaut"][:48, :64]


def _t(arr: np.ndarray) -> torch.Tensor:
    """uint8 H x W x C -> float C x H x W."""
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1).float() / 255.0


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp"])
def test_8bit_rgb_roundtrip_exact(tmp_path, rgb, ext):
    x = _t(rgb)
    path = tmp_path / f"a{ext}"
    if ext == ".webp":
        pytest.importorskip("cv2")
    write_image(path, x)
    y, info = read_image_with_info(path)
    assert y.dtype == torch.float32 and y.shape == x.shape
    if ext == ".webp":  # lossy at default quality
        assert (y - x).abs().mean() < 0.05
    else:
        assert torch.equal(y, x)
    assert (info.channels, info.bit_depth, info.height, info.width) == (3, 8, 48, 64)


def test_16bit_grey_roundtrip_exact(tmp_path):
    ramp = np.arange(0, 65536, 17, dtype=np.uint16)[: 40 * 60].reshape(40, 60)
    x = torch.from_numpy(ramp.astype(np.float32) / 65535.0)[None]
    for ext in (".png", ".tif"):
        path = tmp_path / f"g16{ext}"
        write_image(path, x, bit_depth=16)
        y, info = read_image_with_info(path)
        assert y.shape == (1, 40, 60)
        assert (info.channels, info.bit_depth) == (1, 16)
        assert np.array_equal(np.round(y.numpy()[0] * 65535).astype(np.uint16), ramp)
        # the file really holds 16 bits
        with Image.open(path) as im:
            assert np.array_equal(np.asarray(im).astype(np.uint16), ramp)


def test_16bit_rgb_roundtrip_exact(tmp_path):
    rng = np.random.default_rng(0)
    vals = rng.integers(0, 65536, (3, 20, 30)).astype(np.float32) / 65535.0
    x = torch.from_numpy(vals)
    write_image(tmp_path / "c16.png", x, bit_depth=16)
    y, info = read_image_with_info(tmp_path / "c16.png")
    assert info.bit_depth == 16 and info.channels == 3
    assert torch.equal(y, x)  # also checks RGB (not BGR) order


def test_write_clamps_rounds_and_creates_parents(tmp_path):
    x = torch.tensor([[-1.0, 0.2, 2.0, float("nan")]])  # H x W
    path = tmp_path / "deep" / "er" / "x.png"
    write_image(path, x)
    y = read_image(path)
    assert y.shape == (1, 1, 4)
    assert torch.allclose(y[0, 0], torch.tensor([0.0, 51 / 255, 1.0, 0.0]))
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary files left


def test_write_16bit_refused_for_jpeg(tmp_path, rgb):
    with pytest.raises(ValueError, match="16 bits"):
        write_image(tmp_path / "a.jpg", _t(rgb), bit_depth=16)
    with pytest.raises(ValueError, match="extension"):
        write_image(tmp_path / "a.gif", _t(rgb))


def test_jpeg_quality(tmp_path, rgb):
    write_image(tmp_path / "lo.jpg", _t(rgb), quality=10)
    write_image(tmp_path / "hi.jpg", _t(rgb), quality=98)
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size
    assert (read_image(tmp_path / "hi.jpg") - _t(rgb)).abs().mean() < 0.02


# --------------------------------------------------------------------------- channels


def test_grey_stays_grey_and_channel_conversion(tmp_path, rgb):
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    g, info = read_image_with_info(tmp_path / "g.png")
    assert g.shape == (1, 48, 64) and info.channels == 1
    g3 = read_image(tmp_path / "g.png", channels=3)
    assert g3.shape == (3, 48, 64) and torch.equal(g3[0], g3[2]) and torch.equal(g3[1], g[0])

    write_image(tmp_path / "c.png", _t(rgb))
    luma = read_image(tmp_path / "c.png", channels=1)
    r, gch, b = _t(rgb)
    assert luma.shape == (1, 48, 64)
    assert torch.allclose(luma[0], 0.299 * r + 0.587 * gch + 0.114 * b, atol=1e-6)
    with pytest.raises(ValueError):
        read_image(tmp_path / "c.png", channels=2)


def test_rgba_drops_alpha(tmp_path, rgb):
    alpha = np.full(rgb.shape[:2], 77, np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "a.png")
    x, info = read_image_with_info(tmp_path / "a.png")
    assert x.shape == (3, 48, 64) and info.channels == 4
    assert torch.equal(x, _t(rgb))


def test_grey_alpha_and_palette(tmp_path, rgb):
    grey = rgb[..., 1]
    Image.fromarray(np.dstack([grey, np.full_like(grey, 9)]), "LA").save(tmp_path / "la.png")
    x, info = read_image_with_info(tmp_path / "la.png")
    assert x.shape == (1, 48, 64) and info.channels == 2
    assert torch.equal(x[0], torch.from_numpy(grey).float() / 255)

    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    y = read_image(tmp_path / "p.png")
    assert y.shape == (3, 48, 64)
    assert torch.equal(y, _t(np.asarray(pal.convert("RGB"))))


# --------------------------------------------------------------------------- orientation


def test_exif_rotated_jpeg_comes_out_rotated(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    x, info = read_image_with_info(tmp_path / "rot.jpg")
    assert x.shape == (3, 64, 48)  # H and W swapped
    assert (info.height, info.width) == (64, 48)
    with Image.open(tmp_path / "rot.jpg") as im:
        ref = _t(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
    assert (x - ref).abs().max() < 0.03  # same file, possibly different IDCT
    # upright content: the clockwise rotation of the stored pixels
    stored = _t(np.rot90(rgb, k=-1).copy())
    assert (x - stored).abs().mean() < 0.02


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_exif_orientations_match_pillow(tmp_path, rgb, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(rgb).save(path, exif=exif)
    with Image.open(path) as im:
        ref = _t(np.asarray(ImageOps.exif_transpose(im)))
    assert torch.equal(read_image(path), ref)


# --------------------------------------------------------------------------- damaged files


def test_truncated_png_and_jpeg(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    Image.fromarray(rgb).save(tmp_path / "ok.jpg")
    for name in ("ok.png", "ok.jpg"):
        data = (tmp_path / name).read_bytes()
        bad = tmp_path / f"cut_{name}"
        bad.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(ImageReadError, match=f"cut_{name}") as err:
            read_image(bad)
        assert "truncated" in str(err.value)


def test_truncated_progressive_jpeg_and_valid_trailer(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "p.jpg", progressive=True, quality=90)
    data = (tmp_path / "p.jpg").read_bytes()
    for cut in (len(data) // 3, len(data) - 5):
        (tmp_path / "cut.jpg").write_bytes(data[:cut])
        with pytest.raises(ImageReadError, match="truncated"):
            read_image(tmp_path / "cut.jpg")
    # a valid JPEG followed by other data (like a "motion photo" video) holding 0xFFDA bytes
    (tmp_path / "motion.jpg").write_bytes(data + b"ftypmp42" + b"\xff\xda\x00\x08" * 50)
    assert torch.equal(read_image(tmp_path / "motion.jpg"), read_image(tmp_path / "p.jpg"))
    # an EXIF thumbnail (a complete JPEG inside APP1) does not hide truncation
    exif = Image.Exif()
    exif[0x0112] = 1
    Image.fromarray(rgb).save(tmp_path / "t.jpg", exif=exif)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t_cut.jpg").write_bytes(data[: len(data) - 40])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "t_cut.jpg")


def test_corrupt_png_data(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "c.png")
    data = bytearray((tmp_path / "c.png").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 40] = bytes(40)  # damage the compressed pixel data (CRC fails)
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"c\.png"):
        read_image(tmp_path / "c.png")


def test_non_image_files(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a picture\n")
    with pytest.raises(ImageReadError, match=r"notes\.jpg.*not a readable image"):
        read_image(tmp_path / "notes.jpg")
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ImageReadError, match=r"noise\.png"):
        read_image(tmp_path / "noise.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_decompression_bomb_limit_names_the_setting(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big\.png.*data\.max_image_pixels.*--max-pixels"):
        read_image(tmp_path / "big.png", max_pixels=1000)
    assert read_image(tmp_path / "big.png", max_pixels=48 * 64).shape == (3, 48, 64)
    assert read_image(tmp_path / "big.png", max_pixels=0).shape == (3, 48, 64)  # 0 = no limit


def test_pillow_global_bomb_setting_untouched(tmp_path, rgb):
    before = Image.MAX_IMAGE_PIXELS
    Image.fromarray(rgb).save(tmp_path / "x.png")
    read_image(tmp_path / "x.png")
    assert Image.MAX_IMAGE_PIXELS == before


# --------------------------------------------------------------------------- listing


def test_list_images(tmp_path, rgb):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.PNG", "a.jpg", "c.TIFF", "sub/d.png", ".hidden.png", "._a.jpg", "notes.txt"):
        (folder / name).write_bytes(b"x")
    assert [p.name for p in list_images(folder)] == ["a.jpg", "b.PNG", "c.TIFF"]
    assert [p.name for p in list_images(folder, recursive=True)] == ["a.jpg", "b.PNG", "c.TIFF", "d.png"]
    assert ".webp" in IMAGE_EXTENSIONS and ".jpeg" in IMAGE_EXTENSIONS


def test_list_images_errors(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(ImageReadError, match=r"empty.*no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(ImageReadError, match="is a file"):
        list_images(tmp_path / "empty" / "readme.txt")
