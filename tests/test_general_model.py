"""The bundled general model: lookup by name, checksum, deblurring gain, the CLI without a
checkpoint, fine-tuning from it (``init_from: general``); the NAFNet-style network; the
broad degradation options; the photo-folder builder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dbgan.blur import DegradationPipeline
from dbgan.checkpoint import CheckpointError, load_checkpoint
from dbgan.config import ConfigError, SynthConfig, load_config
from dbgan.metrics import psnr
from dbgan.api import resolve_model
from dbgan.models import ModelNotFoundError, available_models, bundled_model_path, model_card, sha256_file


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- bundled weights


def test_general_model_loads_by_name_and_matches_its_checksum():
    assert "general" in available_models()
    path = bundled_model_path("general")
    info = model_card("general")
    assert sha256_file(path) == info["sha256"]
    assert path.stat().st_size <= 10 * 2**20  # "at most about 10 MB"
    net = load_checkpoint(path).build("deblur_g")
    assert type(net).__name__ == "NAFNetGenerator"
    assert resolve_model("general") == path


def test_damaged_bundled_file_is_refused(tmp_path, monkeypatch):
    import dbgan.models as M

    src = bundled_model_path("general")
    shutil.copy(src, tmp_path / "general.safetensors")
    shutil.copy(src.with_suffix(".json"), tmp_path / "general.json")
    with open(tmp_path / "general.safetensors", "r+b") as fh:  # flip one byte of the weights
        fh.seek(-5, 2)
        b = fh.read(1)
        fh.seek(-5, 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    monkeypatch.setattr(M, "_folder", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        bundled_model_path("general")


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(ModelNotFoundError, match="bundled models: .*general"):
        bundled_model_path("nope")


def _degraded_heldout():
    """A held-out photo (never trained on) blurred by a camera unlike any single training draw."""
    from skimage import data as skd

    img = torch.from_numpy(skd.chelsea()[40:232, 120:376].copy()).permute(2, 0, 1).float() / 255.0
    cam = SynthConfig(kernels=["defocus"], kernel_size=15, defocus_radius=[2.5, 2.5], linear_light=True,
                      noise_sigma=[0.005, 0.005], jpeg_quality=[90, 90])
    blurred, _ = DegradationPipeline(cam)(img, np.random.default_rng(0))
    return img, blurred


def test_general_model_deblurs_a_synthetically_blurred_photo():
    from dbgan.infer import Deblurrer

    sharp, blurred = _degraded_heldout()
    deblurrer = Deblurrer.from_checkpoint(bundled_model_path("general"), device="cpu")
    out = deblurrer(blurred)
    to_np = lambda t: t.permute(1, 2, 0).numpy()  # noqa: E731
    before, after = psnr(to_np(blurred), to_np(sharp)), psnr(to_np(out), to_np(sharp))
    assert after > before + 0.25, (before, after)  # measured: 28.88 -> 29.37 dB


def test_cli_deblurs_without_a_checkpoint(tmp_path):
    from dbgan.cli import main
    from dbgan.io import read_image, write_image

    _, blurred = _degraded_heldout()
    write_image(tmp_path / "in.png", blurred[:, :64, :96])
    assert main(["deblur", str(tmp_path / "in.png"), str(tmp_path / "out.png")]) == 0
    assert read_image(tmp_path / "out.png").shape == (3, 64, 96)
    assert main(["deblur", "--model", "general", str(tmp_path / "in.png"), str(tmp_path / "o2.png")]) == 0
    assert main(["deblur", "--model", "nope", str(tmp_path / "in.png"), str(tmp_path / "o3.png")]) == 2
    assert not (tmp_path / "o3.png").exists()


def test_init_from_general_fine_tunes_the_bundled_weights(tmp_path, sample_images):
    """``stages.dbgan.init_from: general`` starts the deblurrer (and its EMA) from the bundled model."""
    from dbgan.train import train

    spec = model_card("general")["nets"]["deblur_g"]
    args = json.dumps(spec["args"]).replace(" ", "")
    cfg = load_config("tiny", [
        "scheme=synthetic", "name=adapt", f"runs_dir={tmp_path / 'runs'}",
        f"data.sharp_dir={sample_images[0].parent}", "data.crop_size=32", "data.val_dir=null",
        f"nets.deblur_g={{name: nafnet, args: {args}}}",
        "stages.dbgan.init_from=general", "stages.dbgan.iters=1", "stages.dbgan.lr=1e-9",
        "stages.dbgan.ema=0.5", "stages.dbgan.w_adv=0",
    ])
    res = train(cfg)
    assert res.status == "done", res.message
    bundled = load_checkpoint(bundled_model_path("general")).state_dict("deblur_g")
    tuned = load_checkpoint(res.checkpoint)
    for role in ("deblur_g", "deblur_g_ema"):
        state = tuned.state_dict(role)
        diff = max(float((state[k] - v).abs().max()) for k, v in bundled.items())
        assert diff < 1e-4, (role, diff)  # a random start would differ by ~0.1


# --------------------------------------------------------------------------- the network


def test_nafnet_any_size_and_near_identity_at_start():
    from dbgan.nets import build_network

    torch.manual_seed(0)
    net = build_network("nafnet", width=8, enc_blocks=[1, 1], middle_blocks=1, sca=False)
    x = torch.rand(2, 3, 23, 37)
    y = net(x).detach()
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - x).abs().mean()) < 0.05  # residual output, small ending convolution
    with pytest.raises(ValueError, match="out_channels"):
        build_network("nafnet", in_channels=3, out_channels=1)


def test_nafnet_without_channel_attention_is_local():
    """sca=False: a pixel far from a change is unaffected by it (tiling is exact away from borders)."""
    from dbgan.nets import build_network

    torch.manual_seed(0)
    net = build_network("nafnet", width=8, enc_blocks=[1, 1], middle_blocks=1, sca=False).eval()
    with torch.no_grad():
        for blk in net.modules():  # give the zero-initialised residual branches some weight
            if hasattr(blk, "beta"):
                blk.beta.fill_(1.0)
                blk.gamma.fill_(1.0)
        x = torch.rand(1, 3, 64, 128)
        x2 = x.clone()
        x2[..., 96:] = 0.0
        a, b = net(x), net(x2)
    assert float((a[..., :32] - b[..., :32]).abs().max()) < 1e-6
    assert float((a[..., 96:] - b[..., 96:]).abs().max()) > 1e-3


# --------------------------------------------------------------------------- the broad degradations


def test_scene_augmentation_changes_the_sharp_image_too():
    ramp = torch.linspace(0.1, 0.5, 48).view(1, 1, 48).expand(3, 48, 48)
    img = (ramp * torch.tensor([1.0, 0.8, 0.6]).view(3, 1, 1)).contiguous()  # smooth and coloured
    cfg = SynthConfig(kernels=["gaussian"], kernel_size=9, grey_prob=1.0, exposure=[2.0, 2.0], linear_light=True)
    scene, blurred, _ = DegradationPipeline(cfg).pair(img, np.random.default_rng(0))
    assert torch.equal(scene[0], scene[1]) and torch.equal(scene[1], scene[2])  # grey
    assert float(scene.mean()) > float(img.mean()) + 0.05  # brighter
    assert abs(float(blurred.mean()) - float(scene.mean())) < 0.03  # blurred from the same scene


def test_identity_share_and_kernel_sizes():
    img = torch.rand(3, 40, 40)
    same = DegradationPipeline(SynthConfig(kernels=["defocus"], kernel_size=9, identity_prob=1.0))
    _, blurred, k = same.pair(img, np.random.default_rng(1))
    assert torch.allclose(blurred, img, atol=1e-5) and k.max() == 1.0
    cfg = SynthConfig(kernels=["motion"], kernel_size=41, kernel_sizes=[7], intensity=[1.0, 1.0])
    for seed in range(3):
        k = DegradationPipeline(cfg).sample(np.random.default_rng(seed)).kernel
        assert k.shape == (41, 41) and abs(float(k.sum()) - 1) < 1e-5
        assert np.all(k[:17] == 0) and np.all(k[24:] == 0)  # drawn on a 7 px canvas, centred


def test_default_config_draws_as_before():
    """The broad options draw nothing when off: old configs make the same images."""
    from dbgan.blur.kernels import random_kernel

    cfg = SynthConfig(jpeg_quality=[70, 90], noise_sigma=[0.0, 0.01])
    p = DegradationPipeline(cfg).sample(np.random.default_rng(5))
    rng = np.random.default_rng(5)
    k = random_kernel(cfg, rng)
    gain, sigma = rng.uniform(*cfg.highlight_gain), rng.uniform(*cfg.noise_sigma)
    q = int(rng.integers(70, 91))
    seed = int(rng.integers(0, 2**62))
    assert np.array_equal(p.kernel, k) and (p.noise_sigma, p.jpeg_quality, p.noise_seed) == (sigma, q, seed)
    assert p.gamma == 2.2 and p.exposure == 1.0 and not p.grey


@pytest.mark.parametrize("override, key", [
    ("synth.kernel_sizes=[8]", "synth.kernel_sizes"),
    ("synth.kernel_sizes=[45]", "synth.kernel_sizes"),
    ("synth.grey_prob=1.5", "synth.grey_prob"),
    ("synth.gamma_range=[2.6, 1.6]", "synth.gamma_range"),
])
def test_broad_options_are_validated(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("general", [override])


# --------------------------------------------------------------------------- the photo folder


def test_photo_folder_from_installed_images(tmp_path, monkeypatch):
    import dbgan.photos as P

    monkeypatch.setattr(P, "SOURCES", (P.Source("scikit-image", "test", ("astronaut",)),))
    summary = P.build_photo_folder(tmp_path / "tiles", scales=(512, 300))
    tiles = sorted((tmp_path / "tiles").glob("*.png"))
    assert len(tiles) == summary["tiles"] == 4 + 1  # 512: 2 x 2 tiles, 300: 1
    assert json.loads((tmp_path / "tiles" / "SOURCES.json").read_text())["sources"][0]["licence"] == "test"
    assert not set(P.HELDOUT_SKIMAGE) & {f for s in P.SOURCES for f in s.files}


def test_photo_folder_names_the_package_to_install(tmp_path, monkeypatch):
    import dbgan.photos as P

    monkeypatch.setattr(P, "BACKGROUNDS", tmp_path)
    monkeypatch.setattr(P, "SOURCES", (P.Source("lomiri-wallpapers-16.04", "CC0-1.0", ("x.jpg",)),))
    with pytest.raises(FileNotFoundError, match="apt-get install lomiri-wallpapers-16.04"):
        P.build_photo_folder(tmp_path / "tiles")


def test_training_photos_exclude_the_reserved_packages_and_heldout_images():
    import dbgan.photos as P

    used = {s.package for s in P.SOURCES}
    assert not used & set(P.RESERVED_PACKAGES)
    skimage_used = {f for s in P.SOURCES if s.package == "scikit-image" for f in s.files}
    assert not skimage_used & {"chelsea", "coffee", "camera", "motorcycle_left", "motorcycle_right"}


def test_adapt_preset_uses_the_bundled_architecture():
    """configs/adapt.yaml's deblurrer must be the bundled model's, or init_from: general cannot load it."""
    cfg = load_config("adapt")
    spec = model_card("general")["nets"]["deblur_g"]
    args = {k: v for k, v in spec["args"].items() if k not in ("in_channels", "out_channels")}
    assert cfg.nets.deblur_g.name == spec["name"] and cfg.nets.deblur_g.args == args
    assert cfg.stages.dbgan.init_from == "general"


def test_nafnet_exports_to_onnx_with_dynamic_size(tmp_path):
    pytest.importorskip("onnxruntime")
    from dbgan.export import OnnxRunner, export_onnx
    from dbgan.nets import build_network

    torch.manual_seed(0)
    net = build_network("nafnet", width=8, enc_blocks=[1, 1], middle_blocks=1, sca=False, shuffle=2).eval()
    path = export_onnx(net, tmp_path / "n.onnx")  # checks onnxruntime against torch at another size itself
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        ref = net(x)
    assert float((OnnxRunner(path, device="cpu")(x) - ref).abs().max()) < 1e-4


def test_wiener_keeps_the_mean_and_sharpens_a_known_blur():
    from dbgan.blur import fft_blur
    from dbgan.classical import WienerSetting, fit_wiener, psf_for, wiener_deconvolve

    from skimage import data as skd

    sharp = torch.from_numpy(skd.camera()[100:228, 100:228].copy()).float()[None] / 255.0
    true = WienerSetting("disc", 2.5, 1e-3)
    blurred = fft_blur(sharp, psf_for(true))
    out = wiener_deconvolve(blurred, true)
    assert abs(float(out.mean()) - float(blurred.mean())) < 2e-3  # no brightness change
    to_np = lambda t: t[0].numpy()  # noqa: E731
    assert psnr(to_np(out), to_np(sharp)) > psnr(to_np(blurred), to_np(sharp)) + 3.0
    assert fit_wiener([(sharp, blurred)]).psf == "disc"
