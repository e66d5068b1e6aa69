"""Reliability on bad input (issue 7): bad images and bad settings get correct handling or a
one-line error naming the file (or key) and what to do, before any work starts.

Images: corrupt, truncated (PNG, JPEG), not images at all, an empty folder, junk files
next to images, smaller than the crop, a pair of two sizes, grey mixed with RGB, RGBA,
16-bit, EXIF-rotated, over the decompression-bomb limit (and the limit raised);
``data.skip_bad`` / ``--skip-bad`` continue past unreadable files and list them at the end.
Settings: misspelt keys, wrong types, impossible values, unknown architectures.

Everything runs in-process through :func:`dbgan.cli.main` (the exact code path of the
``dbgan`` command) on tiny images; see docs/reliability.md for the fault table.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dbgan.cli import main
from dbgan.config import load_config
from dbgan.data import ImageTooSmallError, UnpairedDataset
from dbgan.io import ImageReadError, read_image


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: one thread is as fast and leaves the shared CPUs free
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data as skd

    return skd.astronaut()[100:164, 180:244].copy()  # 64 x 64 x 3 uint8


def rgb_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def good_folder(folder: Path, photo: np.ndarray, n: int = 3) -> Path:
    for i in range(n):
        rgb_png(folder / f"good{i}.png", np.roll(photo, 7 * i, axis=1))
    return folder


def truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt_middle(path: Path) -> Path:
    """Valid header and end, damaged data: only a full decode notices."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 50] = bytes(b ^ 0xFF for b in data[mid : mid + 50])
    path.write_bytes(bytes(data))
    return path


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A PNG whose header claims width x height pixels (its data is never decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1) * 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def train_args(tmp_path: Path, sharp: Path, *extra: str) -> list[str]:
    return [
        "train", "tiny", f"data.sharp_dir={sharp}", f"runs_dir={tmp_path / 'runs'}", "name=r",
        "scheme=synthetic", "train.save_every=0", *extra,
    ]


def one_error_line(capsys) -> str:
    """The error output is one line (progress bars aside), without a traceback."""
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "%|" not in line]
    assert len(err) == 1, err
    assert err[0].startswith("dbgan ") and "error" in err[0] and "Traceback" not in err[0]
    return err[0]


# --------------------------------------------------------------------------- damaged files


def _make_bad(kind: str, folder: Path, photo: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "random bytes":
        p = folder / "noise.png"
        p.write_bytes(np.random.default_rng(0).bytes(3000))
    elif kind == "empty file":
        p = folder / "empty.jpg"
        p.write_bytes(b"")
    elif kind == "text named .jpg":
        p = folder / "notes.jpg"
        p.write_text("this is not a photo\n")
    elif kind == "truncated PNG":
        p = truncated(rgb_png(folder / "cut.png", photo))
    elif kind == "truncated JPEG":
        p = folder / "cut.jpg"
        Image.fromarray(photo).save(p, quality=90)
        truncated(p)
    elif kind == "damaged PNG data":
        p = corrupt_middle(rgb_png(folder / "damaged.png", photo))
    else:
        raise ValueError(kind)
    return p


BAD_KINDS = ["random bytes", "empty file", "text named .jpg", "truncated PNG", "truncated JPEG", "damaged PNG data"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_damaged_file_is_an_error_naming_it(tmp_path, photo, kind):
    bad = _make_bad(kind, tmp_path, photo)
    with pytest.raises(ImageReadError) as info:
        read_image(bad)
    assert str(bad) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["random bytes", "text named .jpg", "truncated PNG", "truncated JPEG"])
def test_training_refuses_a_damaged_file_before_any_work(tmp_path, photo, kind, capsys):
    """Found when the data is checked, before the run directory exists; the line names the
    file and says what to do (re-export it, or data.skip_bad)."""
    sharp = good_folder(tmp_path / "sharp", photo)
    bad = _make_bad(kind, sharp, photo)
    assert main(train_args(tmp_path, sharp)) == 2
    line = one_error_line(capsys)
    assert str(bad) in line
    assert not (tmp_path / "runs").exists()


def test_damaged_data_found_while_training_names_the_file(tmp_path, photo, capsys):
    """Damage only a full decode sees surfaces when the file is drawn, from inside a DataLoader
    worker: still one line naming the file (not 'Caught ImageReadError in DataLoader worker')."""
    sharp = good_folder(tmp_path / "sharp", photo, n=2)
    bad = _make_bad("damaged PNG data", sharp, photo)
    assert main(train_args(tmp_path, sharp, "data.num_workers=1")) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and "DataLoader worker" not in line, line


def test_skip_bad_trains_past_unreadable_files_and_lists_them_at_the_end(tmp_path, photo, capsys):
    sharp = good_folder(tmp_path / "sharp", photo)
    bad = [_make_bad(kind, sharp, photo) for kind in ("random bytes", "truncated PNG", "damaged PNG data")]
    assert main(train_args(tmp_path, sharp, "data.skip_bad=true")) == 0
    captured = capsys.readouterr()
    listed = [line for line in captured.err.splitlines() if line.startswith("unreadable, skipped")]
    assert sorted(str(p) for p in bad) == sorted(line.split(": ")[1] for line in listed)
    assert (tmp_path / "runs" / "r" / "checkpoints" / "dbgan_000004.safetensors").is_file()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A dbgan checkpoint of tiny.yaml's networks (untrained: only the files matter here)."""
    from dbgan.checkpoint import save_checkpoint
    from dbgan.train import loop as L

    cfg = load_config("tiny")
    nets, specs = L.build_nets(cfg, torch.device("cpu"))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, {r: nets[r] for r in ("blur_g", "deblur_g")}, {"stage": "dbgan", "iter": 0, "nets": specs})
    return path


def test_deblur_skip_bad_continues_and_lists_unreadable_files_at_the_end(tmp_path, photo, checkpoint, capsys):
    src = good_folder(tmp_path / "in", photo, n=2)
    bad = sorted(_make_bad(kind, src, photo) for kind in ("truncated JPEG", "text named .jpg"))
    (src / "README.txt").write_text("not an image, not listed")
    out = tmp_path / "out"
    # without --skip-bad: one line naming the first bad file
    assert main(["deblur", str(checkpoint), str(src), str(out), "--device", "cpu"]) == 2
    line = one_error_line(capsys)
    assert any(str(p) in line for p in bad)
    # with it: every good image is written, the bad ones are listed at the end
    code = main(["deblur", str(checkpoint), str(src), str(out), "--device", "cpu", "--skip-bad", "--overwrite"])
    assert code == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["good0.png", "good1.png"]
    tail = captured.err.strip().splitlines()[-len(bad):]
    assert [line.split(": ")[1] for line in tail] == [str(p) for p in bad], captured.err
    assert all(line.startswith("unreadable, skipped") for line in tail)


def test_synth_skip_bad_lists_unreadable_files_at_the_end(tmp_path, photo, capsys):
    src = good_folder(tmp_path / "in", photo, n=2)
    bad = _make_bad("truncated PNG", src, photo)
    assert main(["synth", str(src), str(tmp_path / "out"), "--kernel-size", "9"]) == 2
    assert str(bad) in one_error_line(capsys)
    assert main(["synth", str(src), str(tmp_path / "out"), "--kernel-size", "9", "--skip-bad"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"unreadable, skipped: {bad}: "), err
    assert sorted(p.name for p in (tmp_path / "out" / "blur").iterdir()) == ["good0_0.png", "good1_0.png"]


# --------------------------------------------------------------------------- folders


def test_empty_folder_and_folder_without_images(tmp_path, photo, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x")
    (junk / ".DS_Store").write_bytes(b"\0" * 10)
    for folder in (empty, junk):
        assert main(train_args(tmp_path, folder)) == 2
        line = one_error_line(capsys)
        assert str(folder) in line and "no images found" in line
    assert not (tmp_path / "runs").exists()
    assert main(train_args(tmp_path, tmp_path / "missing")) == 2
    assert "does not exist" in one_error_line(capsys)


def test_non_image_files_next_to_images_are_ignored(tmp_path, photo):
    folder = good_folder(tmp_path / "sharp", photo)
    (folder / "notes.txt").write_text("x")
    (folder / "Thumbs.db").write_bytes(b"\0" * 64)
    (folder / "._good0.png").write_bytes(b"\0\x05\x16\x07 AppleDouble junk")  # macOS resource fork
    (folder / ".hidden.png").write_bytes(b"junk")
    (folder / "sub").mkdir()
    rgb_png(folder / "sub" / "nested.png", photo)  # not recursive
    cfg = load_config("tiny").data
    ds = UnpairedDataset(folder, cfg)
    assert sorted(ds.names()) == ["good0.png", "good1.png", "good2.png"]
    assert ds.skipped == []


def test_image_smaller_than_the_crop(tmp_path, photo, capsys):
    sharp = good_folder(tmp_path / "sharp", photo)
    small = rgb_png(sharp / "small.png", photo[:40, :50])
    with pytest.raises(ImageTooSmallError, match=r"small\.png is 40x50 \(HxW\).*data\.crop_size=48"):
        UnpairedDataset(sharp, load_config("tiny").data)
    assert main(train_args(tmp_path, sharp)) == 2
    line = one_error_line(capsys)
    assert str(small) in line and "data.crop_size" in line and "resize_and_crop" in line
    assert not (tmp_path / "runs").exists()
    # the suggested fix works: resize the shorter side to load_size first
    assert main(train_args(tmp_path, sharp, "data.preprocess=resize_and_crop", "data.load_size=48")) == 0


def test_pair_of_two_sizes_names_both_files(tmp_path, photo, capsys):
    pairs = tmp_path / "pairs"
    rgb_png(pairs / "sharp" / "a.png", photo)
    rgb_png(pairs / "blur" / "a.png", photo)
    rgb_png(pairs / "sharp" / "b.png", photo)
    rgb_png(pairs / "blur" / "b.png", photo[:, :56])
    args = train_args(tmp_path, pairs / "sharp", f"data.pairs_dir={pairs}")
    assert main(args) == 2
    line = one_error_line(capsys)
    assert str(pairs / "sharp" / "b.png") in line and str(pairs / "blur" / "b.png") in line
    assert "64x64" in line and "64x56" in line
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- kinds of image


def test_grey_rgba_16bit_and_exif_images_read_correctly(tmp_path, photo):
    grey = photo.mean(axis=2).astype(np.uint8)
    g = read_image(rgb_png(tmp_path / "grey.png", grey), channels=3)
    assert g.shape == (3, 64, 64) and torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    assert torch.equal(g[0], torch.from_numpy(grey).float() / 255)

    rgba = np.dstack([photo, np.full(photo.shape[:2], 80, np.uint8)])  # translucent: alpha dropped, not mixed in
    assert torch.equal(read_image(rgb_png(tmp_path / "rgba.png", rgba)), torch.from_numpy(photo).permute(2, 0, 1).float() / 255)

    deep = photo.astype(np.uint16) * 257 + np.arange(64, dtype=np.uint16)[None, :, None]  # uses the low byte
    cv2.imwrite(str(tmp_path / "deep.png"), deep[..., ::-1])
    d = read_image(tmp_path / "deep.png")
    assert torch.equal(d, torch.from_numpy(deep.astype(np.float32)).permute(2, 0, 1) / 65535)

    # EXIF orientation 6 (camera held upright): stored 48 x 64, shown 64 x 48
    stored = photo[:48]
    plain, turned = tmp_path / "plain.jpg", tmp_path / "turned.jpg"
    Image.fromarray(stored).save(plain, quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(turned, quality=95, exif=exif.tobytes())
    upright = read_image(turned)
    assert upright.shape == (3, 64, 48)
    assert torch.equal(upright, torch.rot90(read_image(plain), k=-1, dims=(1, 2)))


def test_mixed_kinds_of_image_in_one_training_folder(tmp_path, photo, capsys):
    """Grey, RGB, RGBA, 16-bit and EXIF-rotated files in one folder: items all come out as the
    configured channels in [0, 1], header sizes follow the orientation, and a run trains on them."""
    folder = tmp_path / "mixed"
    rgb_png(folder / "rgb.png", photo)
    rgb_png(folder / "grey.png", photo.mean(axis=2).astype(np.uint8))
    rgb_png(folder / "rgba.png", np.dstack([photo, np.full(photo.shape[:2], 200, np.uint8)]))
    cv2.imwrite(str(folder / "deep.png"), (photo.astype(np.uint16) * 257)[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(photo[:, :56]).save(folder / "turned.jpg", quality=95, exif=exif.tobytes())
    for channels in (1, 3):
        cfg = load_config("tiny", [f"data.channels={channels}"]).data
        ds = UnpairedDataset(folder, cfg, key="sharp")
        assert dict(zip(ds.names(), ds.sizes))["turned.jpg"] == (56, 64)  # EXIF 8: rotated by 90 degrees
        for draw in range(10):
            img = ds[draw]["sharp"]
            assert img.shape == (channels, 48, 48) and img.dtype == torch.float32
            assert 0 <= float(img.min()) and float(img.max()) <= 1
    assert main(train_args(tmp_path, folder)) == 0


def test_decompression_bomb_limit_and_raising_it(tmp_path, photo, capsys):
    bomb = bomb_png(tmp_path / "bomb" / "huge.png")
    with pytest.raises(ImageReadError, match=r"huge\.png: 20000x20000 = 400000000 pixels exceeds .*data\.max_image_pixels"):
        read_image(bomb)
    sharp = good_folder(tmp_path / "sharp", photo)
    bomb_png(sharp / "huge.png")
    assert main(train_args(tmp_path, sharp)) == 2
    line = one_error_line(capsys)
    assert "huge.png" in line and "data.max_image_pixels" in line
    assert not (tmp_path / "runs").exists()
    # the limit is a setting: a 64 x 64 image is refused under 4095 pixels and read under 4096
    (sharp / "huge.png").unlink()
    assert main(train_args(tmp_path, sharp, "data.max_image_pixels=4095")) == 2
    assert "good0.png" in one_error_line(capsys)
    assert main(train_args(tmp_path, sharp, "data.max_image_pixels=4096")) == 0
    assert read_image(sharp / "good0.png", max_pixels=4096).shape == (3, 64, 64)


# --------------------------------------------------------------------------- settings


BAD_SETTINGS = [
    (["data.crop_sise=32"], "data.crop_sise"),
    (["stagse.dbgan.lr=1e-4"], "stagse"),
    (["stages.dbgan.lr=-1e-4"], "stages.dbgan.lr"),
    (["stages.dbgan.lr=fast"], "stages.dbgan.lr"),
    (["stages.dbgan.iters=2.5"], "stages.dbgan.iters"),
    (["data.flip=maybe"], "data.flip"),
    (["data.preprocess=resize_and_crop", "data.load_size=32"], "data.crop_size"),
    (["nets.deblur_g.name=unett"], "nets.deblur_g.name"),
    (["nets.deblur_g.args.ngff=8"], "nets.deblur_g"),
    (["stages.bgan.gan_mode=wgan"], "stages.bgan.gan_mode"),
    (["scheme=jointt"], "scheme"),
    (["data.channels=2"], "data.channels"),
    (["synth.kernel_size=8"], "synth.kernel_size"),
    (["train.max_bad_steps=-1"], "train.max_bad_steps"),
    (["train.amp=fp16"], "train.amp"),
    (["scheme=separate"], "data.real_blur_dir"),  # BGAN needs real blurred photos: said before stage 1 trains
]


@pytest.mark.parametrize("bad,key", BAD_SETTINGS, ids=[" ".join(b) for b, _ in BAD_SETTINGS])
def test_bad_setting_is_rejected_before_any_work_naming_the_key(tmp_path, photo, capsys, bad, key):
    sharp = good_folder(tmp_path / "sharp", photo, n=1)
    assert main(train_args(tmp_path, sharp, *bad)) == 2
    line = one_error_line(capsys)
    assert f"'{key}" in line, line
    assert not (tmp_path / "runs").exists()


def test_bad_settings_in_a_config_file(tmp_path, photo, capsys):
    sharp = good_folder(tmp_path / "sharp", photo, n=1)
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    for body, key in (
        ("stages:\n  dbgan:\n    itres: 3\n", "stages.dbgan.itres"),
        ("train:\n  keep_last: many\n", "train.keep_last"),
        ("data: [1, 2]\n", "data"),
        ("stages: {dbgan: {lr: 0}}\n", "stages.dbgan.lr"),
    ):
        cfg = tmp_path / "my.yaml"
        cfg.write_text(f"extends: {tiny}\n{body}")
        args = train_args(tmp_path, sharp)
        args[1] = str(cfg)
        assert main(args) == 2
        line = one_error_line(capsys)
        assert str(cfg) in line and f"'{key}'" in line, line
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    args[1] = str(tmp_path / "broken.yaml")
    assert main(args) == 2
    assert "not valid YAML" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()
