"""Deblur the real blurred photos in ../shared/realblur-samples/ with a tiny checkpoint.

The photos are test material that must never enter this repository; the test
reads them from beside the checkout and is skipped when they are absent. The
network is a tiny random U-Net, so this checks the plumbing on real files
(sizes up to 2048x2048, JPEG and PNG, grey and colour, 8 and 16 bits) and not
the quality of a deblurrer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_infer import make_checkpoint  # noqa: E402

from dbgan.infer import Deblurrer, run_folder  # noqa: E402
from dbgan.io import list_images, read_image_with_info, write_image  # noqa: E402

TINIEST = {"num_downs": 2, "ngf": 2}

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "realblur-samples"

pytestmark = [
    pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not present"),
    pytest.mark.usefixtures("one_torch_thread"),
]




@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    # the smallest U-Net (2 levels, 2 features): ~0.6 s per 2048x2048 photo on 2 CPU cores
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", deblur_args=TINIEST)


def test_every_sample_keeps_size_mode_and_bit_depth(ckpt, tmp_path):
    files = list_images(SAMPLES)
    assert files, "no sample photos"
    out = tmp_path / "out"
    # default tiling (automatic, from the memory budget); channels_last off: for a net
    # this small the layout conversions cost more than they save
    deblurrer = Deblurrer.from_checkpoint(ckpt, device="cpu", channels_last=False)
    res = run_folder(deblurrer, SAMPLES, out, progress=False)
    assert sorted(p.name for p in res.written) == sorted(p.name for p in files)
    assert not res.bad and not res.skipped_existing
    for src in files:
        dst = out / src.name
        with Image.open(src) as a, Image.open(dst) as b:  # headers only: size, mode, format
            assert (b.size, b.mode, b.format) == (a.size, a.mode, a.format), src.name
    # nothing was written into the shared folder
    assert sorted(p.name for p in list_images(SAMPLES)) == sorted(p.name for p in files)


def test_grey_16_bit_version_of_a_sample_stays_grey_16_bit(ckpt, tmp_path):
    src = SAMPLES / "restormer_defocus_portrait.jpg"
    if not src.is_file():
        pytest.skip(f"{src.name} not present")
    grey, _ = read_image_with_info(src, channels=1)
    grey16 = write_image(tmp_path / "portrait_grey16.png", grey, bit_depth=16)
    res = run_folder(ckpt, grey16, str(tmp_path / "out") + "/", device="cpu", tile=256, progress=False)
    assert res.written == [tmp_path / "out" / grey16.name]
    img, info = read_image_with_info(res.written[0])
    assert img.shape == grey.shape
    assert (info.channels, info.bit_depth) == (1, 16)
    with Image.open(res.written[0]) as im:
        assert im.mode.startswith("I;16") or im.mode == "I"
