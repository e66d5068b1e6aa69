"""ONNX export: dynamic sizes, agreement with PyTorch, onnxruntime inference paths.

One export per network kind for the whole module. The default (TorchScript)
exporter is tested always; the torch.export-based one takes 5-15 s even for a
tiny net and is tested only with DBGAN_TEST_DYNAMO=1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_infer import make_checkpoint, smooth_image  # noqa: E402

from dbgan.checkpoint import load_checkpoint  # noqa: E402
from dbgan.export import ExportError, OnnxRunner, export_onnx, onnx_path_for  # noqa: E402
from dbgan.infer import Blurrer, Deblurrer, run_folder  # noqa: E402
from dbgan.io import read_image_with_info, write_image  # noqa: E402

EXAMPLE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    ckpt = make_checkpoint(root / "tiny.safetensors")
    path = export_onnx(ckpt, onnx_path_for(ckpt), example_size=EXAMPLE)
    return ckpt, path


@pytest.fixture(scope="module")
def exported_blur(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_blur")
    ckpt = make_checkpoint(root / "tiny.safetensors")
    path = export_onnx(ckpt, onnx_path_for(ckpt, "blur_g"), role="blur_g", example_size=EXAMPLE)
    return ckpt, path


def test_export_writes_a_dynamic_model_with_metadata(exported):
    ckpt, path = exported
    assert path == ckpt.with_suffix(".onnx") and path.is_file()
    runner = OnnxRunner(path)
    assert (runner.role, runner.in_channels, runner.out_channels, runner.size_multiple) == ("deblur_g", 3, 3, 16)
    assert runner.sample_noise(torch.zeros(1, 3, 8, 8)) is None
    import onnx

    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1] == 3 and isinstance(dims[2], str) and isinstance(dims[3], str)


def test_onnx_matches_pytorch_at_other_sizes(exported):
    ckpt, path = exported
    net = load_checkpoint(ckpt).build("deblur_g")
    runner = OnnxRunner(path)
    for shape in [(1, 3, 45, 77), (2, 3, 96, 33), (1, 3, 5, 3)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            ref = net(x)
        got = runner(x)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
        got_np = runner(x.numpy())
        assert isinstance(got_np, np.ndarray) and np.abs(got_np - ref.numpy()).max() < 1e-4


def test_onnx_backend_uses_the_same_tiling(exported):
    ckpt, path = exported
    img = smooth_image(3, 150, 211)
    for tile in (None, 64):
        ref = Deblurrer.from_checkpoint(ckpt, device="cpu", tile=tile)(img)
        got = Deblurrer.from_checkpoint(path, device="cpu", tile=tile, onnx=True)(img)
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


def test_run_folder_with_onnx_beside_the_checkpoint(exported, tmp_path):
    ckpt, _path = exported
    src = tmp_path / "in"
    write_image(src / "a.png", smooth_image(3, 50, 70))
    write_image(src / "g.png", smooth_image(1, 33, 40), bit_depth=16)
    run_folder(ckpt, src, tmp_path / "torch", device="cpu", progress=False)
    res = run_folder(ckpt, src, tmp_path / "onnx", device="cpu", onnx=True, progress=False)
    assert len(res.written) == 2
    for name in ("a.png", "g.png"):
        a, ia = read_image_with_info(tmp_path / "torch" / name)
        b, ib = read_image_with_info(tmp_path / "onnx" / name)
        assert a.shape == b.shape and ia.bit_depth == ib.bit_depth
        assert (a - b).abs().max() <= 1.5 / (255 if ia.bit_depth == 8 else 65535)


def test_blur_export_takes_noise_and_matches(exported_blur):
    ckpt, path = exported_blur
    runner = OnnxRunner(path)
    assert runner.role == "blur_g" and len(runner.input_names) == 2
    assert runner.noise_spec == {"kind": "map", "channels": 1, "scale": [2, 2]}
    img = smooth_image(3, 75, 101)
    ref = Blurrer.from_checkpoint(ckpt, device="cpu")(img, seed=7)
    got = Blurrer.from_checkpoint(path, device="cpu", onnx=True)(img, seed=7)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


def test_export_refuses_bad_names(exported, tmp_path):
    ckpt, _ = exported
    with pytest.raises(ExportError, match=".onnx"):
        export_onnx(ckpt, tmp_path / "model.bin")
    assert json.loads(ckpt.with_suffix(".json").read_text())["stage"] == "dbgan"


@pytest.mark.skipif(
    not __import__("os").environ.get("DBGAN_TEST_DYNAMO"),
    reason="the torch.export-based exporter takes 5-15 s even for a tiny net; set DBGAN_TEST_DYNAMO=1",
)
def test_dynamo_exporter_also_gives_a_dynamic_model(exported, tmp_path):
    pytest.importorskip("onnxscript")
    ckpt, _ = exported
    path = export_onnx(ckpt, tmp_path / "d.onnx", exporter="dynamo")
    runner = OnnxRunner(path)
    net = load_checkpoint(ckpt).build("deblur_g")
    x = torch.rand(1, 3, 45, 77)
    with torch.no_grad():
        torch.testing.assert_close(runner(x), net(x), atol=1e-4, rtol=0)


def test_exporter_choice_is_recorded(exported):
    _, path = exported
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["dbgan.exporter"] == "torchscript"
    assert json.loads(props["dbgan.noise"]) is None
