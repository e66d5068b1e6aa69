"""int8 quantisation (dbgan.quantize): export, loading, tiling, errors, and the ``--dtype auto`` rule.

One tiny U-Net exported and quantised once for the module (a few seconds on one thread).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_infer import make_checkpoint, smooth_image  # noqa: E402

from dbgan.cli import main  # noqa: E402
from dbgan.cpu_caps import INT8_MAX_COST_DB, int8_default_rule  # noqa: E402
from dbgan.export import OnnxRunner, export_onnx, onnx_path_for  # noqa: E402
from dbgan.infer import Deblurrer, InferenceError, OnnxBackend, TorchBackend  # noqa: E402
from dbgan.infer.backends import int8_path_for  # noqa: E402
from dbgan.io import ImageReadError, write_image  # noqa: E402
from dbgan.quantize import META_COST, CalibrationSettings, calibration_crops, quantize_int8  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: int8 against fp32 on the tiny net's [0, 1] output: largest and mean absolute difference allowed
MAX_ABS, MEAN_ABS = 0.02, 0.004  # measured: 0.006, 0.0013


def _photo(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    img = smooth_image(3, h, w) + 0.05 * torch.rand(3, h, w, generator=g)
    return img.clamp(0, 1)


@pytest.fixture(scope="module")
def quantised(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    ckpt = make_checkpoint(root / "tiny.safetensors")
    fp32 = export_onnx(ckpt, onnx_path_for(ckpt), example_size=64)
    calib, pairs = root / "calib", root / "pairs"
    for k in range(3):
        write_image(calib / f"c{k}.png", _photo(k))
    for k in range(2):
        sharp = _photo(10 + k)
        write_image(pairs / "sharp" / f"p{k}.png", sharp)
        write_image(pairs / "blur" / f"p{k}.png", torch.nn.functional.avg_pool2d(sharp[None], 3, 1, 1)[0])
    res = quantize_int8(fp32, calib, settings=CalibrationSettings(crops=4, crop_size=32), eval_pairs=pairs)
    return ckpt, fp32, res, calib


def _with_cost(src: Path, dst: Path, cost: str | None) -> Path:
    """A copy of the int8 model whose recorded PSNR cost is ``cost`` (None: not recorded)."""
    model = onnx.load(str(src))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != META_COST]
    del model.metadata_props[:]
    for key, value in kept + ([(META_COST, cost)] if cost is not None else []):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(dst))
    return dst


def test_int8_export_sits_beside_the_fp32_one_with_metadata(quantised):
    ckpt, fp32, res, _ = quantised
    assert res.path == int8_path_for(fp32) == ckpt.with_suffix(".int8.onnx") and res.path.is_file()
    runner = OnnxRunner(res.path, device="cpu")
    assert runner.precision == "int8" and OnnxRunner(fp32).precision == "fp32"
    assert (runner.role, runner.in_channels, runner.size_multiple) == ("deblur_g", 3, 16)
    assert runner.input_names == ["input"] and [o.name for o in runner.session.get_outputs()] == ["output"]
    assert runner.int8_cost_db == pytest.approx(res.cost_db, abs=1e-4)
    ops = {n.op_type for n in onnx.load(str(res.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_deblurs_close_to_fp32_whole_and_tiled(quantised):
    ckpt, _fp32, res, _ = quantised
    img = smooth_image(3, 150, 211)
    ref = Deblurrer.from_checkpoint(ckpt, device="cpu", dtype="fp32")(img)
    for tile in (None, 64):
        d = Deblurrer.from_checkpoint(ckpt, device="cpu", dtype="int8", tile=tile)
        assert isinstance(d.backend, OnnxBackend) and d.backend.runner.precision == "int8"
        got = d(img)
        assert got.shape == ref.shape
        err = (got - ref).abs()
        assert float(err.max()) <= MAX_ABS and float(err.mean()) <= MEAN_ABS
        if tile:
            assert not d.last_plan.single
    # the .int8.onnx file given directly runs the same model
    direct = Deblurrer.from_checkpoint(res.path, device="cpu", dtype="int8")(img)
    torch.testing.assert_close(direct, Deblurrer.from_checkpoint(ckpt, device="cpu", dtype="int8")(img))


def test_calibration_crops_are_seeded_and_sized(quantised):
    *_, calib = quantised
    a = calibration_crops(calib, CalibrationSettings(crops=5, crop_size=32, seed=3))
    b = calibration_crops(calib, CalibrationSettings(crops=5, crop_size=32, seed=3))
    c = calibration_crops(calib, CalibrationSettings(crops=5, crop_size=32, seed=4))
    assert len(a) == 5 and all(x.shape == (1, 3, 32, 32) and x.dtype == np.float32 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("make", ["missing", "empty", "broken"])
def test_bad_calibration_folder_names_it(quantised, tmp_path, make):
    _ckpt, fp32, _res, _ = quantised
    folder = tmp_path / "calib"
    if make != "missing":
        folder.mkdir()
    if make == "broken":
        (folder / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError) as err:
        quantize_int8(fp32, folder, tmp_path / "q.onnx")
    assert str(folder / "bad.png" if make == "broken" else folder) in str(err.value)
    assert not (tmp_path / "q.onnx").exists()


def test_cli_int8_export_errors(quantised, tmp_path, capsys):
    ckpt, *_ = quantised
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), str(out), "--int8", "--calibration", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert not out.exists()  # checked before the export
    assert main(["export", str(ckpt), str(out), "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert main(["export", str(ckpt), str(out), "--calibration", str(tmp_path)]) == 2
    assert "--int8" in capsys.readouterr().err
    with pytest.raises(ValueError, match="crops"):
        CalibrationSettings(crops=0)


def test_quantising_refuses_to_overwrite_or_requantise(quantised, tmp_path):
    _ckpt, fp32, res, calib = quantised
    with pytest.raises(ValueError, match="overwrite"):
        quantize_int8(fp32, calib, fp32)
    with pytest.raises(ValueError, match="int8 model"):
        quantize_int8(res.path, calib, tmp_path / "again.onnx")


@pytest.mark.parametrize("cost, take", [
    (None, False), (0.0, True), (0.049, True), (INT8_MAX_COST_DB, False), (0.3, False),
    (-0.02, True), (float("nan"), False),
])
def test_int8_default_rule(cost, take):
    got, why = int8_default_rule(cost)
    assert got is take and why


@pytest.mark.parametrize("cost, take", [("0.01", True), ("0.2", False), (None, False), ("oops", False)])
def test_auto_takes_int8_only_below_the_cost(quantised, tmp_path, cost, take, caplog):
    ckpt, _fp32, res, _ = quantised
    local = tmp_path / "m.safetensors"
    shutil.copy(ckpt, local)
    _with_cost(res.path, int8_path_for(onnx_path_for(local)), cost)
    with caplog.at_level("INFO", logger="dbgan.infer.runner"):
        d = Deblurrer.from_checkpoint(local, device="cpu", dtype="auto")
    assert isinstance(d.backend, OnnxBackend if take else TorchBackend)
    if cost not in (None, "oops"):
        assert "--dtype auto" in caplog.text and cost in caplog.text
    # an explicit fp32 request never takes it; an explicit int8 request always does
    assert isinstance(Deblurrer.from_checkpoint(local, device="cpu", dtype="fp32").backend, TorchBackend)
    assert isinstance(Deblurrer.from_checkpoint(local, device="cpu", dtype="int8").backend, OnnxBackend)


def test_int8_request_without_a_model_names_the_file(tmp_path):
    ckpt = make_checkpoint(tmp_path / "lone.safetensors")
    with pytest.raises(InferenceError) as err:
        Deblurrer.from_checkpoint(ckpt, device="cpu", dtype="int8")
    assert str(tmp_path / "lone.int8.onnx") in str(err.value) and "--int8 --calibration" in str(err.value)
    assert isinstance(Deblurrer.from_checkpoint(ckpt, device="cpu", dtype="auto").backend, TorchBackend)
    with pytest.raises(InferenceError, match="int8"):
        Deblurrer(torch.nn.Conv2d(3, 3, 1), device="cpu", dtype="int8")


def test_an_int8_model_of_another_checkpoint_version_is_not_used(quantised, tmp_path, caplog):
    ckpt, _fp32, res, _ = quantised
    local = tmp_path / "latest.safetensors"
    make_checkpoint(local, deblur_args={"ngf": 8})  # saved again under the same name: other weights
    _with_cost(res.path, int8_path_for(onnx_path_for(local)), "0.001")
    with caplog.at_level("WARNING", logger="dbgan.infer.runner"):
        d = Deblurrer.from_checkpoint(local, device="cpu", dtype="auto")
    assert isinstance(d.backend, TorchBackend) and "another version" in caplog.text
    with pytest.raises(InferenceError, match="another version"):
        Deblurrer.from_checkpoint(local, device="cpu", dtype="int8")


def test_bundled_general_model_ships_an_int8_model_auto_takes(caplog):
    """``general.int8.onnx`` records a cost below 0.05 dB and the bundled checkpoint's sha256: auto runs it on a CPU."""
    from dbgan.models import bundled_model_path, sha256_file

    ckpt = bundled_model_path("general")
    runner = OnnxRunner(int8_path_for(onnx_path_for(ckpt)), device="cpu")
    assert runner.precision == "int8" and runner.checkpoint_sha256 == sha256_file(ckpt)
    assert runner.int8_cost_db is not None and runner.int8_cost_db < INT8_MAX_COST_DB
    with caplog.at_level("INFO", logger="dbgan.infer.runner"):
        auto = Deblurrer.from_checkpoint(ckpt, device="cpu", dtype="auto")
    assert isinstance(auto.backend, OnnxBackend) and "--dtype auto: int8" in caplog.text
    img = smooth_image(3, 96, 128)
    err = (auto(img) - Deblurrer.from_checkpoint(ckpt, device="cpu", dtype="fp32")(img)).abs()
    assert float(err.max()) <= MAX_ABS and float(err.mean()) <= MEAN_ABS


def test_cli_export_int8_then_deblur(quantised, tmp_path, capsys):
    ckpt, _fp32, _res, calib = quantised
    local = tmp_path / "m.safetensors"
    shutil.copy(ckpt, local)
    out = tmp_path / "m.onnx"
    assert main(["export", str(local), str(out), "--int8", "--calibration", str(calib),
                 "--calibration-crops", "2", "--crop-size", "32"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out.with_suffix('.int8.onnx')}" in text and "not measured" in text
    assert OnnxRunner(out.with_suffix(".int8.onnx")).int8_cost_db is None
    write_image(tmp_path / "in.png", smooth_image(3, 40, 56))
    assert main(["deblur", str(local), str(tmp_path / "in.png"), str(tmp_path / "o.png"), "--dtype", "int8"]) == 0
    assert (tmp_path / "o.png").is_file()
