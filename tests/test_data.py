"""Tests for dbgan.data: paired-safe transforms, draw-indexed datasets, layouts and errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from dbgan.config import DataConfig, SynthConfig
from dbgan.data import (
    AlignedDataset,
    BatchSizeError,
    DatasetError,
    DrawSampler,
    ImageTooSmallError,
    PairedFolderDataset,
    UnpairedDataset,
    apply_params,
    center_params,
    check_batchable,
    collate,
    draw_params,
    make_pair_dataset,
    make_val_dataset,
)
from dbgan.io import ImageReadError, write_image


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """96 x 96 x 3 uint8 (downscaled astronaut)."""
    return cv2.resize(skdata.astronaut(), (96, 96), interpolation=cv2.INTER_AREA)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _cfg(**kw) -> DataConfig:
    base = dict(preprocess="crop", load_size=48, crop_size=32, flip=True, channels=3)
    base.update(kw)
    return DataConfig(**base)


def _make_pairs(root: Path, img: np.ndarray, n: int = 3, sizes=None) -> Path:
    """root/sharp/im{i}.png and root/blur/im{i}.png with blur = 255 - sharp (exactly invertible)."""
    for i in range(n):
        h, w = sizes[i] if sizes else (64 + 8 * i, 80)
        sharp = np.ascontiguousarray(np.roll(img, 7 * i, axis=1)[:h, :w])
        write_image(root / "sharp" / f"im{i}.png", _to_tensor(sharp))
        write_image(root / "blur" / f"im{i}.png", _to_tensor(255 - sharp))
    return root


def _pattern(c: int, h: int, w: int) -> torch.Tensor:
    """Unique value per pixel (per channel) in [0, 1)."""
    idx = torch.arange(c * h * w, dtype=torch.float64).reshape(c, h, w)
    return (idx / (c * h * w)).float()


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("preprocess", ["crop", "resize_and_crop", "scale_width", "none"])
def test_pair_alignment_after_transforms(preprocess):
    sharp = _pattern(3, 50, 70)
    blur = sharp * 0.5 + 0.25  # a known, pixel-wise function of the sharp image
    cfg = _cfg(preprocess=preprocess, load_size=40, crop_size=32)
    rng = np.random.default_rng(3)
    flips = set()
    for _ in range(12):
        params = draw_params(50, 70, cfg, rng)
        flips.add(params["flip"])
        s, b = apply_params(sharp, params), apply_params(blur, params)
        assert s.shape == b.shape
        if preprocess == "crop":  # exact: pure indexing; check the position too
            assert s.shape == (3, 32, 32)
            assert torch.equal(b, s * 0.5 + 0.25)
            top, left, _, _ = params["crop"]
            src = sharp[:, top : top + 32, left : left + 32]
            assert torch.equal(s, torch.flip(src, dims=[-1]) if params["flip"] else src)
        else:  # resizing is linear with weights summing to 1: the relation holds up to rounding
            torch.testing.assert_close(b, s * 0.5 + 0.25, atol=1e-5, rtol=0)
        if preprocess == "resize_and_crop":
            assert params["resize"] == (40, 56) and s.shape == (3, 32, 32)
        if preprocess == "scale_width":
            assert params["resize"] == (29, 40) and s.shape == (3, 29, 32)
        if preprocess == "none":
            assert s.shape == (3, 50, 70)
    assert flips == {True, False}


def test_apply_params_rejects_wrong_size_and_copies():
    img = _pattern(1, 40, 40)
    params = draw_params(40, 40, _cfg(flip=False), np.random.default_rng(0))
    out = apply_params(img, params)
    out.add_(1.0)  # must not touch the source (datasets hand out views of their cache otherwise)
    assert img.max() < 1
    with pytest.raises(ValueError):
        apply_params(_pattern(1, 41, 40), params)


def test_center_params_and_too_small_crop():
    p = center_params(50, 70, 32)
    assert p["crop"] == (9, 19, 32, 32) and not p["flip"]
    assert center_params(20, 70, 32)["crop"] == (0, 19, 20, 32)
    assert center_params(20, 70, 0)["crop"] is None
    with pytest.raises(ImageTooSmallError, match=r"tiny\.png is 20x70.*data\.crop_size=32"):
        draw_params(20, 70, _cfg(), np.random.default_rng(0), name="tiny.png")


# --------------------------------------------------------------------------- paired folders


def test_paired_draws_reproducible_any_order(tmp_path, astronaut):
    root = _make_pairs(tmp_path / "pairs", astronaut, n=3)
    cfg = _cfg()
    draws = list(range(8))
    a = PairedFolderDataset(root, cfg, seed=5)
    b = PairedFolderDataset(root, cfg, seed=5, cache_bytes=0)  # no cache: same items
    items_a = {d: a[d] for d in draws}
    items_b = {d: b[d] for d in reversed(draws)}
    for d in draws:
        assert items_a[d]["name"] == items_b[d]["name"]
        assert torch.equal(items_a[d]["sharp"], items_b[d]["sharp"])
        assert torch.equal(items_a[d]["blur"], items_b[d]["blur"])
        s, bl = items_a[d]["sharp"], items_a[d]["blur"]
        assert s.dtype == torch.float32 and s.shape == (3, 32, 32)
        torch.testing.assert_close(bl, 1.0 - s, atol=1e-6, rtol=0)  # alignment kept
    # each epoch of n draws visits every file once
    assert sorted(items_a[d]["name"] for d in range(3)) == ["im0.png", "im1.png", "im2.png"]
    assert sorted(items_a[d]["name"] for d in range(3, 6)) == ["im0.png", "im1.png", "im2.png"]
    # different draws differ (same file in another epoch gets another crop/flip)
    for d in range(3):
        later = [e for e in range(3, 8) if items_a[e]["name"] == items_a[d]["name"]]
        assert not torch.equal(items_a[d]["sharp"], items_a[later[0]]["sharp"])
    # another seed gives other items
    c = PairedFolderDataset(root, cfg, seed=6)
    assert any(not torch.equal(c[d]["sharp"], items_a[d]["sharp"]) for d in draws)
    assert len(a) == 3


def test_paired_resize_and_crop_alignment(tmp_path, astronaut):
    root = _make_pairs(tmp_path / "pairs", astronaut, n=2)
    ds = PairedFolderDataset(root, _cfg(preprocess="resize_and_crop", load_size=40, crop_size=32), seed=0)
    for d in range(4):
        it = ds[d]
        assert it["sharp"].shape == (3, 32, 32)
        torch.testing.assert_close(it["blur"], 1.0 - it["sharp"], atol=1e-5, rtol=0)


def test_pattern_alignment_16bit_files(tmp_path):
    """Unique value per pixel through real files: position and partner relation survive crop + flip."""
    h, w = 48, 56
    idx = np.arange(h * w, dtype=np.uint16).reshape(h, w)
    write_image(tmp_path / "p" / "sharp" / "a.png", torch.from_numpy(idx / 65535.0)[None], bit_depth=16)
    write_image(tmp_path / "p" / "blur" / "a.png", torch.from_numpy((65535 - idx) / 65535.0)[None], bit_depth=16)
    ds = PairedFolderDataset(tmp_path / "p", _cfg(channels=1, crop_size=16), seed=1)
    seen_flip = set()
    for d in range(10):
        it = ds[d]
        s = np.rint(it["sharp"][0].double().numpy() * 65535).astype(np.int64)
        b = np.rint(it["blur"][0].double().numpy() * 65535).astype(np.int64)
        assert np.array_equal(b, 65535 - s)
        y, x = divmod(int(s[0, 0]), w)
        flipped = s[0, 1] < s[0, 0]
        seen_flip.add(bool(flipped))
        expect = idx[y : y + 16, x - 15 : x + 1][:, ::-1] if flipped else idx[y : y + 16, x : x + 16]
        assert np.array_equal(s, expect)
    assert seen_flip == {True, False}


def test_paired_missing_partner_and_subfolder(tmp_path, astronaut):
    root = _make_pairs(tmp_path / "pairs", astronaut, n=2)
    write_image(root / "sharp" / "lonely.png", _to_tensor(astronaut[:64, :64]))
    with pytest.raises(DatasetError, match=r"lonely\.png"):
        PairedFolderDataset(root, _cfg(), seed=0)
    (tmp_path / "nob" / "sharp").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no 'blur' subfolder"):
        PairedFolderDataset(tmp_path / "nob", _cfg(), seed=0)


def test_paired_match_by_stem_with_other_extension(tmp_path, astronaut):
    root = tmp_path / "pairs"
    write_image(root / "sharp" / "x.png", _to_tensor(astronaut[:64, :64]))
    write_image(root / "blur" / "x.jpg", _to_tensor(astronaut[:64, :64]))
    ds = PairedFolderDataset(root, _cfg(), seed=0)
    assert ds.entries[0][1].name == "x.jpg" and ds[0]["name"] == "x.png"


def test_paired_size_mismatch_names_both(tmp_path, astronaut):
    root = tmp_path / "pairs"
    write_image(root / "sharp" / "a.png", _to_tensor(astronaut[:64, :80]))
    write_image(root / "blur" / "a.png", _to_tensor(astronaut[:60, :80]))
    with pytest.raises(DatasetError, match=r"sharp/a\.png is 64x80.*blur/a\.png is 60x80"):
        PairedFolderDataset(root, _cfg(), seed=0)


def test_image_smaller_than_crop(tmp_path, astronaut):
    root = _make_pairs(tmp_path / "pairs", astronaut, n=1, sizes=[(40, 50)])
    with pytest.raises(ImageTooSmallError, match=r"im0\.png is 40x50 \(HxW\).*data\.crop_size=48"):
        PairedFolderDataset(root, _cfg(crop_size=48), seed=0)
    # resize_and_crop resizes first, so the same files are fine
    ds = PairedFolderDataset(root, _cfg(preprocess="resize_and_crop", load_size=56, crop_size=48), seed=0)
    assert ds[0]["sharp"].shape == (3, 48, 48)


# --------------------------------------------------------------------------- aligned A|B


def test_aligned_split_and_direction(tmp_path, astronaut):
    a, b = astronaut[:64, :48], 255 - astronaut[:64, 48:96]
    write_image(tmp_path / "ab" / "p.png", _to_tensor(np.concatenate([a, b], axis=1)))
    cfg = _cfg(val_crop=0)
    val = AlignedDataset(tmp_path / "ab", cfg, seed=0, train=False)
    it = val[0]
    assert torch.equal(it["sharp"], _to_tensor(a)) and torch.equal(it["blur"], _to_tensor(b))
    swapped = AlignedDataset(tmp_path / "ab", dataclasses.replace(cfg, direction="BtoA"), seed=0, train=False)
    it = swapped[0]
    assert torch.equal(it["sharp"], _to_tensor(b)) and torch.equal(it["blur"], _to_tensor(a))
    train = AlignedDataset(tmp_path / "ab", cfg, seed=0)
    assert train[3]["sharp"].shape == (3, 32, 32)
    write_image(tmp_path / "odd" / "q.png", _to_tensor(astronaut[:64, :65]))
    with pytest.raises(DatasetError, match=r"q\.png is 64x65.*even width"):
        AlignedDataset(tmp_path / "odd", cfg, seed=0)


# --------------------------------------------------------------------------- channels, bad files, validation


def test_channels_grey_and_rgb(tmp_path, astronaut):
    write_image(tmp_path / "mix" / "grey.png", _to_tensor(astronaut[:64, :64])[:1])
    write_image(tmp_path / "mix" / "rgb.png", _to_tensor(astronaut[:64, :64]))
    for channels in (1, 3):
        ds = UnpairedDataset(tmp_path / "mix", _cfg(channels=channels), seed=0, key="sharp")
        for d in range(2):
            it = ds[d]
            assert set(it) == {"sharp", "name"}
            assert it["sharp"].shape == (channels, 32, 32)
            assert 0.0 <= float(it["sharp"].min()) and float(it["sharp"].max()) <= 1.0


def test_skip_bad_lists_bad_file(tmp_path, astronaut):
    folder = tmp_path / "real"
    for i in range(2):
        write_image(folder / f"ok{i}.png", _to_tensor(astronaut[:64, :64]))
    (folder / "broken.png").write_bytes(b"definitely not a png")
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        UnpairedDataset(folder, _cfg(), seed=0)
    ds = UnpairedDataset(folder, _cfg(skip_bad=True), seed=0)
    assert [p.name for p, _ in ds.skipped] == ["broken.png"] and len(ds) == 2
    assert {ds[d]["name"] for d in range(4)} == {"ok0.png", "ok1.png"}


def test_skip_bad_truncated_at_load_time(tmp_path, astronaut):
    """A header that reads but data that does not: replaced by the next file, deterministically."""
    folder = tmp_path / "real"
    for i in range(3):
        write_image(folder / f"im{i}.png", _to_tensor(np.roll(astronaut, 9 * i, axis=0)[:64, :64]))
    data = bytearray((folder / "im1.png").read_bytes())
    mid = len(data) // 2  # damage inside the file: the header and the end still look fine
    data[mid : mid + 50] = bytes(b ^ 0xFF for b in data[mid : mid + 50])
    (folder / "im1.png").write_bytes(bytes(data))
    ds = UnpairedDataset(folder, _cfg(skip_bad=True), seed=0)
    items = [ds[d] for d in range(6)]
    assert all(it["name"] != "im1.png" for it in items)
    assert [p.name for p, _ in ds.skipped] == ["im1.png"]
    again = UnpairedDataset(folder, _cfg(skip_bad=True), seed=0)
    for d in reversed(range(6)):
        assert torch.equal(again[d]["real_blur"], items[d]["real_blur"])
    strict = UnpairedDataset(folder, _cfg(), seed=0)
    with pytest.raises(ImageReadError, match=r"im1\.png"):
        [strict[d] for d in range(3)]


def test_validation_mode(tmp_path, astronaut):
    root = _make_pairs(tmp_path / "val", astronaut, n=3)
    ds = make_val_dataset(_cfg(val_dir=str(root), val_max=2, val_crop=40), seed=0)
    assert isinstance(ds, PairedFolderDataset) and len(ds) == 2
    first = ds[0]
    assert first["sharp"].shape == (3, 40, 40) and first["name"] == "im0.png"
    assert torch.equal(ds[0]["sharp"], first["sharp"])  # no randomness
    with pytest.raises(IndexError):
        ds[2]
    assert [it["name"] for it in ds] == ["im0.png", "im1.png"]
    whole = make_val_dataset(_cfg(val_dir=str(root), val_max=0), seed=0)
    assert len(whole) == 3 and whole[2]["sharp"].shape == (3, 80, 80)
    with pytest.raises(BatchSizeError, match=r"batch_size=2"):
        check_batchable(whole, 2)
    assert make_val_dataset(_cfg(), seed=0) is None


# --------------------------------------------------------------------------- factories, batching, sampling


def test_make_pair_dataset_precedence(tmp_path, astronaut):
    root = _make_pairs(tmp_path / "pairs", astronaut, n=1)
    write_image(tmp_path / "ab" / "p.png", _to_tensor(astronaut[:64, :96]))
    synth = SynthConfig()
    ds = make_pair_dataset(_cfg(pairs_dir=str(root), aligned_dir=str(tmp_path / "ab")), synth, seed=0)
    assert isinstance(ds, PairedFolderDataset)
    assert isinstance(make_pair_dataset(_cfg(aligned_dir=str(tmp_path / "ab")), synth, seed=0), AlignedDataset)
    with pytest.raises(DatasetError, match=r"data\.pairs_dir.*data\.aligned_dir.*data\.sharp_dir"):
        make_pair_dataset(_cfg(), synth, seed=0)


def test_collate_and_preprocess_none(tmp_path, astronaut):
    root = _make_pairs(tmp_path / "pairs", astronaut, n=2)  # 64x80 and 72x80
    ds = PairedFolderDataset(root, _cfg(preprocess="none"), seed=0)
    with pytest.raises(BatchSizeError, match=r"data\.preprocess=none.*batch_size=4"):
        check_batchable(ds, 4)
    check_batchable(ds, 1)
    with pytest.raises(BatchSizeError, match=r"batch_size must be 1"):
        collate([ds[0], ds[1]])
    batch = collate([PairedFolderDataset(root, _cfg(), seed=0)[d] for d in range(2)])
    assert batch["sharp"].shape == (2, 3, 32, 32) and len(batch["name"]) == 2


def test_draw_sampler_and_workers(tmp_path, astronaut):
    assert list(DrawSampler(start=2, num_draws=3)) == [2, 3, 4]
    assert list(DrawSampler(start=1, rank=1, world_size=2, num_draws=3)) == [3, 5, 7]
    root = _make_pairs(tmp_path / "pairs", astronaut, n=3)
    ds = PairedFolderDataset(root, _cfg(), seed=0)
    loaders = [
        torch.utils.data.DataLoader(
            ds, batch_size=2, sampler=DrawSampler(start=1, num_draws=4), num_workers=w, collate_fn=collate
        )
        for w in (0, 2)
    ]
    b0, b2 = (list(dl) for dl in loaders)
    for x, y in zip(b0, b2):
        assert x["name"] == y["name"] and torch.equal(x["sharp"], y["sharp"])
    assert torch.equal(b0[0]["blur"][0], ds[1]["blur"])


# --------------------------------------------------------------------------- synthetic pairs


def test_synthetic_pairs(tmp_path, astronaut):
    pytest.importorskip("dbgan.blur.degrade")
    from dbgan.data import SyntheticPairDataset

    for i in range(2):
        write_image(tmp_path / "sharp" / f"s{i}.png", _to_tensor(np.roll(astronaut, 11 * i, axis=1)[:64, :72]))
    synth = SynthConfig(kernels=["motion"], kernel_size=11, intensity=[0.3, 0.6])
    cfg = _cfg(sharp_dir=str(tmp_path / "sharp"))
    ds = make_pair_dataset(cfg, synth, seed=3)
    assert isinstance(ds, SyntheticPairDataset)
    again = SyntheticPairDataset(tmp_path / "sharp", cfg, synth, seed=3, cache_bytes=0)
    items = [ds[d] for d in range(3)]
    for d in reversed(range(3)):
        it = again[d]
        assert torch.equal(it["sharp"], items[d]["sharp"]) and torch.equal(it["blur"], items[d]["blur"])
    for it in items:
        assert it["sharp"].shape == it["blur"].shape == (3, 32, 32)
        assert it["blur"].dtype == torch.float32
        assert float((it["blur"] - it["sharp"]).abs().mean()) > 1e-3
        assert 0.0 <= float(it["blur"].min()) and float(it["blur"].max()) <= 1.0
    # a new blur every draw: the same file in the next epoch is blurred differently
    later = next(e for e in range(2, 6) if ds[e]["name"] == items[0]["name"])
    assert not torch.equal(ds[later]["blur"], items[0]["blur"])
    val = SyntheticPairDataset(tmp_path / "sharp", _cfg(val_crop=40), synth, seed=3, train=False)
    assert torch.equal(val[1]["blur"], val[1]["blur"]) and val[1]["sharp"].shape == (3, 40, 40)
    grey = SyntheticPairDataset(tmp_path / "sharp", _cfg(channels=1), synth, seed=3, return_kernel=True)
    it = grey[0]
    assert it["blur"].shape == (1, 32, 32) and it["kernel"].shape == (11, 11)
