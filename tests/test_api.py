"""Python API: every input kind round-trips with its dtype and shape; bundled-model lookup; README doctests."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import dbgan
from dbgan.checkpoint import CheckpointError, save_checkpoint
from dbgan.models import ModelNotFoundError, available_models, bundled_model_path
from dbgan.nets import build_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"num_downs": 3, "ngf": 4, "residual": True}


def make_tiny_checkpoint(path: Path, channels: int = 3) -> Path:
    """A checkpoint holding a tiny random U-Net deblurrer (no training)."""
    args = {**TINY, "in_channels": channels, "out_channels": channels}
    torch.manual_seed(0)
    net = build_network("unet", **args)
    save_checkpoint(path, {"deblur_g": net}, {
        "stage": "dbgan", "iter": 1, "config_hash": "test",
        "config": {"data": {"channels": channels}},
        "nets": {"deblur_g": {"name": "unet", "args": args}},
    })
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("api") / "tiny.safetensors")


@pytest.fixture(scope="module")
def deblur(ckpt):
    return dbgan.load_model(ckpt, device="cpu")


def _reference(deblur, chw01: torch.Tensor) -> torch.Tensor:
    """What the inference runner gives for a float C x H x W image in [0, 1]."""
    return deblur.runner(chw01)


def test_top_level_imports():
    from dbgan import Deblurrer, load_model  # noqa: F401

    assert dbgan.Deblurrer is dbgan.api.Deblurrer
    with pytest.raises(AttributeError):
        dbgan.no_such_thing  # noqa: B018


@pytest.mark.parametrize("shape", [(21, 30), (21, 30, 1), (21, 30, 3), (21, 30, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.float16])
def test_numpy_round_trip(deblur, shape, dtype):
    rng = np.random.default_rng(0)
    x01 = rng.random(shape)
    if dtype == np.uint8:
        arr = np.round(x01 * 255).astype(np.uint8)
    elif dtype == np.uint16:
        arr = np.round(x01 * 65535).astype(np.uint16)
    else:
        arr = x01.astype(dtype)
    out = deblur(arr)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == arr.shape
    # the values are the runner's on the scaled image
    scale = {np.uint8: 255.0, np.uint16: 65535.0}.get(dtype, 1.0)
    chw = torch.from_numpy(arr.astype(np.float32) / scale)
    chw = chw.unsqueeze(0) if arr.ndim == 2 else chw.permute(2, 0, 1)
    colour = chw[:3] if chw.shape[0] == 4 else chw
    ref = _reference(deblur, colour.contiguous())
    got = torch.from_numpy(out.astype(np.float32) / scale)
    got = got.unsqueeze(0) if arr.ndim == 2 else got.permute(2, 0, 1)
    tol = {np.uint8: 0.51 / 255, np.uint16: 0.51 / 65535, np.float16: 1e-3}.get(dtype, 1e-6)
    assert torch.allclose(got[: ref.shape[0]], ref, atol=tol)
    if shape[-1] == 4:  # alpha passes through untouched
        np.testing.assert_allclose(out[..., 3].astype(np.float64), arr[..., 3].astype(np.float64), atol=tol * scale)


def test_uint8_tensor_is_scaled_not_white(deblur):
    """The bug this fixes: a uint8 tensor was taken as 0..1 floats and came back almost white."""
    rng = np.random.default_rng(1)
    arr = (rng.random((3, 24, 24)) * 100 + 50).astype(np.uint8)  # mid-grey content, 50..150
    t = torch.from_numpy(arr)
    out = deblur(t)
    assert out.dtype == torch.uint8 and out.shape == t.shape
    ref = _reference(deblur, t.float() / 255)
    assert torch.allclose(out.float() / 255, ref, atol=0.51 / 255)
    assert 40 < out.float().mean() < 160  # not white


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_tensor_chw_and_bchw(deblur, dtype):
    g = torch.Generator().manual_seed(2)
    batch = torch.rand(2, 3, 17, 25, generator=g)
    out = deblur(batch.to(dtype))
    assert out.dtype == dtype and out.shape == batch.shape
    for i in range(2):
        ref = _reference(deblur, batch[i].to(dtype).float())
        assert torch.allclose(out[i].float(), ref, atol=1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-6)
    one = deblur(batch[0].to(dtype))
    assert one.shape == batch[0].shape and one.dtype == dtype
    grey = deblur(batch[:, :1])
    assert grey.shape == (2, 1, 17, 25)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "I;16", "I", "F", "P"])
def test_pil_round_trip(deblur, mode):
    from PIL import Image

    rng = np.random.default_rng(3)
    rgb = Image.fromarray((rng.random((19, 23, 3)) * 255).astype(np.uint8))
    if mode == "I;16":
        im = Image.frombytes("I;16", (23, 19), (rng.random((19, 23)) * 65535).astype("<u2").tobytes())
    elif mode == "I":
        im = Image.fromarray((rng.random((19, 23)) * 65535).astype(np.int32))
    elif mode == "F":
        im = Image.fromarray(rng.random((19, 23)).astype(np.float32))
    else:
        im = rgb.convert(mode)
    im.info["icc_profile"] = b"fake-icc"
    out = deblur(im)
    assert isinstance(out, Image.Image) and out.size == im.size
    assert out.mode == ("RGB" if mode == "P" else mode)
    assert out.info.get("icc_profile") == b"fake-icc"
    if mode == "RGB":
        ref = _reference(deblur, torch.from_numpy(np.asarray(im).astype(np.float32) / 255).permute(2, 0, 1))
        got = torch.from_numpy(np.asarray(out).astype(np.float32) / 255).permute(2, 0, 1)
        assert torch.allclose(got, ref, atol=0.51 / 255)
    if mode == "I;16":
        assert np.asarray(out).dtype == np.uint16


@pytest.mark.parametrize(
    "bad, err, words",
    [
        ([[0.1, 0.2]], TypeError, "numpy array"),
        (np.zeros((4, 4), dtype=np.int32), TypeError, "int32"),
        (np.zeros((4, 4), dtype=bool), TypeError, "bool"),
        (np.full((8, 8, 3), 200.0), ValueError, "[0, 1]"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), ValueError, "H x W x C"),
        (np.zeros((8, 8, 5), dtype=np.uint8), ValueError, "channels"),
        (torch.zeros(1, 1, 3, 8, 8), ValueError, "B x C x H x W"),
        (torch.zeros(3, 8, 8, dtype=torch.int64), TypeError, "uint8"),
        (torch.full((3, 8, 8), float("nan")), ValueError, "NaN"),
        ("photo.jpg", TypeError, "PIL image"),
    ],
)
def test_bad_inputs_are_clear_errors(deblur, bad, err, words):
    with pytest.raises(err, match=re.escape(words)):
        deblur(bad)


def test_progress_reports_tiles(ckpt):
    d = dbgan.load_model(ckpt, device="cpu", tile=32, overlap=8)
    seen = []
    out = d(np.zeros((70, 90, 3), dtype=np.uint8), progress=lambda done, total: seen.append((done, total)))
    assert out.shape == (70, 90, 3)
    total = d.runner.last_plan.count
    assert total > 1 and seen[-1] == (total, total) and len(seen) == total
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)


def test_progress_counts_each_coarse_level_afresh(ckpt):
    d = dbgan.load_model(ckpt, device="cpu", tile=32, overlap=8, coarse_levels=1)
    seen = []
    d(np.zeros((140, 180, 3), dtype=np.uint8), progress=lambda done, total: seen.append((done, total)))
    full = d.runner.last_plan.count  # the last run is the full-size one
    starts = [i for i, (done, _) in enumerate(seen) if done == 1]
    assert len(starts) == 2 and seen[-1] == (full, full)  # the half-size level, then the full size
    coarse = seen[starts[1] - 1]
    assert coarse[0] == coarse[1] < full and all(done <= total for done, total in seen)
    with pytest.raises(ValueError, match="coarse_levels"):
        dbgan.Deblurrer(d.runner, coarse_levels=1)


def test_model_lookup_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="bundled models:"):
        bundled_model_path("no-such-model")
    with pytest.raises(ModelNotFoundError):
        dbgan.load_model("no-such-model")
    with pytest.raises(CheckpointError, match="not found"):
        dbgan.load_model(tmp_path / "missing.safetensors")
    assert isinstance(available_models(), list)


def test_bundled_lookup_reads_package_folder(ckpt, monkeypatch):
    """A name resolves to ``<package>/models/<name>.safetensors`` (the file is added as package data)."""
    import dbgan.models as models

    folder = ckpt.parent
    monkeypatch.setattr(models, "_folder", lambda: folder)
    assert "tiny" in models.available_models()
    assert models.bundled_model_path("tiny") == ckpt
    assert models.model_card("tiny")["stage"] == "dbgan"
    d = dbgan.load_model("tiny", device="cpu")
    assert d(np.zeros((8, 8), dtype=np.uint8)).shape == (8, 8)


# --------------------------------------------------------------------------- README doctests


def _readme_examples() -> str:
    return (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_examples_run(tmp_path, monkeypatch, ckpt):
    """The README's ``>>>`` examples run as doctests, in a folder holding a blurry photo.

    Where the package ships no ``general`` model (a checkout without the model file),
    the lookup is pointed at a tiny random checkpoint of that name, so the examples
    still run end to end (their printed values do not depend on the weights).
    """
    import shutil

    import skimage.data
    from PIL import Image

    import dbgan.models as models

    if "general" not in models.available_models():
        folder = tmp_path / "models"
        folder.mkdir()
        shutil.copy(ckpt, folder / "general.safetensors")
        shutil.copy(ckpt.with_suffix(".json"), folder / "general.json")
        monkeypatch.setattr(models, "_folder", lambda: folder)
    work = tmp_path / "work"
    work.mkdir()
    Image.fromarray(skimage.data.astronaut()[100:228, 150:278]).save(work / "blurry.jpg", quality=90)
    monkeypatch.chdir(work)
    text = _readme_examples()
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, "README.md", "README.md", 0)
    assert len(test.examples) >= 5, "the README lost its Python examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, f"{res.failed} README example(s) failed (output above)"
    assert (work / "sharp.jpg").is_file()


def test_low_level_runner_refuses_integer_tensors(deblur):
    """``dbgan.infer.Deblurrer`` (float tensors only) no longer turns a uint8 tensor white."""
    with pytest.raises(TypeError, match="from dbgan import Deblurrer"):
        deblur.runner(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="numpy arrays"):
        deblur.runner(np.zeros((8, 8, 3), dtype=np.float32))
