"""Dataset layouts: one reader for training and evaluation; each layout, and the error for an unknown one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dbgan.config import DataConfig
from dbgan.data import DatasetError, PairedFolderDataset, make_val_dataset
from dbgan.data.layouts import LAYOUTS, find_pairs
from dbgan.io import write_image


def _img(seed: int, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def _cfg(**kw) -> DataConfig:
    return DataConfig(**{"crop_size": 16, "preprocess": "crop", **kw})


def _two(root: Path, sharp: str, blur: str, names=("a.png", "b.png")) -> None:
    for i, n in enumerate(names):
        s = _img(i)
        write_image(root / sharp / n, s)
        write_image(root / blur / n, (s * 0.9).clamp(0, 1))


def test_sharp_blur_folders(tmp_path):
    _two(tmp_path, "sharp", "blur")
    found = find_pairs(tmp_path)
    assert found.layout == "paired" and [p.name for p in found.pairs] == ["a.png", "b.png"]
    assert found.pairs[0].sharp == tmp_path / "sharp" / "a.png" and found.pairs[0].blur == tmp_path / "blur" / "a.png"


def test_input_target_folders(tmp_path):
    _two(tmp_path, "target", "input")
    found = find_pairs(tmp_path)
    assert found.layout == "input_target"
    assert found.pairs[1].sharp == tmp_path / "target" / "b.png" and found.pairs[1].blur == tmp_path / "input" / "b.png"
    ds = PairedFolderDataset(tmp_path, _cfg(), seed=0)
    item = ds[0]
    assert item["sharp"].shape == (3, 16, 16) and ds.layout == "input_target"
    # the sharp crop is the target file's, the blurred one the input file's (blur = 0.9 x sharp)
    assert torch.allclose(item["blur"], (item["sharp"] * 0.9), atol=2 / 255)


@pytest.mark.parametrize("nested", [False, True])
def test_gopro_scenes(tmp_path, nested):
    root = tmp_path / "GOPRO_Large"
    base = root / "test" if nested else root
    _two(base / "GOPR0384_11_00", "sharp", "blur", names=("000001.png", "000002.png"))
    _two(base / "GOPR0384_11_05", "sharp", "blur_gamma", names=("000001.png",))
    # a scene with both: blur/ is used, blur_gamma/ ignored
    _two(base / "GOPR0385_11_01", "sharp", "blur", names=("000003.png",))
    write_image(base / "GOPR0385_11_01" / "blur_gamma" / "000003.png", _img(9))
    found = find_pairs(root)
    assert found.layout == "gopro"
    pre = "test/" if nested else ""
    assert [p.name for p in found.pairs] == [
        f"{pre}GOPR0384_11_00/000001.png", f"{pre}GOPR0384_11_00/000002.png",
        f"{pre}GOPR0384_11_05/000001.png", f"{pre}GOPR0385_11_01/000003.png",
    ]
    assert found.pairs[2].blur.parent.name == "blur_gamma"
    assert found.pairs[3].blur.parent.name == "blur"
    ds = PairedFolderDataset(root, _cfg(), seed=0)
    assert len(ds) == 4 and len(set(ds.names())) == 4  # same file names in two scenes stay apart


def test_realblur_list(tmp_path):
    root = tmp_path / "RealBlur"
    for i in range(2):
        s = _img(i)
        write_image(root / "RealBlur-J_ECC" / f"scene{i:03d}" / "gt" / "gt_1.png", s)
        write_image(root / "RealBlur-J_ECC" / f"scene{i:03d}" / "blur" / "blur_1.png", (s * 0.8).clamp(0, 1))
    lst = root / "RealBlur_J_test_list.txt"
    lst.write_text(
        "# RealBlur test list\n"
        "RealBlur-J_ECC/scene000/gt/gt_1.png RealBlur-J_ECC/scene000/blur/blur_1.png\n\n"
        "RealBlur-J_ECC/scene001/gt/gt_1.png RealBlur-J_ECC/scene001/blur/blur_1.png\n"
    )
    found = find_pairs(lst)
    assert found.layout == "realblur_list" and len(found.pairs) == 2
    assert found.pairs[1].sharp == root / "RealBlur-J_ECC/scene001/gt/gt_1.png"
    ds = PairedFolderDataset(lst, _cfg(), seed=0)
    assert len(ds) == 2
    # a missing listed file: an error naming it in training, listed in evaluation
    lst.write_text(lst.read_text() + "RealBlur-J_ECC/x/gt/gt_9.png RealBlur-J_ECC/x/blur/blur_9.png\n")
    with pytest.raises(DatasetError, match=r"RealBlur_J_test_list\.txt:5: listed file not found.*gt_9\.png"):
        find_pairs(lst)
    lenient = find_pairs(lst, strict=False)
    assert len(lenient.pairs) == 2 and any("gt_9.png" in u for u in lenient.unmatched)
    bad = tmp_path / "bad.txt"
    bad.write_text("only-one-path.png\n")
    with pytest.raises(DatasetError, match=r"bad\.txt:1: expected 'gt_path blur_path'"):
        find_pairs(bad)


def test_aligned_folder_and_val_dataset(tmp_path):
    write_image(tmp_path / "ab" / "p.png", _img(0, 16, 32))
    assert find_pairs(tmp_path / "ab").layout == "aligned"
    with pytest.raises(DatasetError, match="Accepted layouts"):
        find_pairs(tmp_path / "ab", allow_aligned=False)
    ds = make_val_dataset(_cfg(val_dir=str(tmp_path / "ab")), seed=0)
    assert type(ds).__name__ == "AlignedDataset"
    _two(tmp_path / "it", "target", "input")
    assert isinstance(make_val_dataset(_cfg(val_dir=str(tmp_path / "it")), seed=0), PairedFolderDataset)


def test_unknown_layout_lists_the_accepted_ones(tmp_path):
    (tmp_path / "odd" / "photos").mkdir(parents=True)
    (tmp_path / "odd" / "notes.md").write_text("x")
    with pytest.raises(DatasetError) as info:
        find_pairs(tmp_path / "odd")
    msg = str(info.value)
    assert "unknown dataset layout" in msg and "\n" not in msg
    for name in LAYOUTS:
        assert name in msg
    for words in ("DIR/input/", "blur_gamma", "gt_path blur_path", "A|B"):
        assert words in msg
    with pytest.raises(DatasetError, match="does not exist"):
        find_pairs(tmp_path / "nowhere")
    # a list file next to the images gets a hint
    (tmp_path / "odd" / "test_list.txt").write_text("a b\n")
    with pytest.raises(DatasetError, match=r"pass the file itself"):
        find_pairs(tmp_path / "odd")


def test_eval_reads_the_same_layouts(tmp_path):
    """``dbgan eval`` uses the same reader: an input/target folder evaluates without conversion."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_api import make_tiny_checkpoint

    from dbgan.evaluate import evaluate

    _two(tmp_path / "ds", "target", "input")
    write_image(tmp_path / "ds" / "input" / "extra.png", _img(5))
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    report = evaluate(ckpt, tmp_path / "ds", device="cpu", progress=False)
    assert report["layout"] == "input_target" and report["count"] == 2
    assert report["unmatched"] == ["input/extra.png"]
