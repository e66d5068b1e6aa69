"""Training: every scheme end to end on configs/tiny.yaml, the joint scheme's gradients,
exact resume, data-parallel consistency under gloo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dbgan.config import load_config
from dbgan.train import train
from dbgan.train import loop as L

REPO = Path(__file__).resolve().parents[1]


def _photos():
    from skimage import data as skd

    return [skd.astronaut(), skd.coffee(), skd.chelsea(), skd.rocket()]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Small sharp crops and a separate set of 'real' (Gaussian-blurred, noisy) crops."""
    from scipy.ndimage import gaussian_filter

    from dbgan.io import write_image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    sharp, real, val_s, val_b = (root / n for n in ("sharp", "real", "val/sharp", "val/blur"))
    for i, img in enumerate(_photos()):
        img = img.astype(np.float32) / 255.0
        h, w = img.shape[:2]
        for j in range(2):
            y, x = rng.integers(0, h - 64), rng.integers(0, w - 64)
            crop = img[y : y + 64, x : x + 64]
            write_image(sharp / f"{i}_{j}.png", torch.from_numpy(crop).permute(2, 0, 1))
            y, x = rng.integers(0, h - 64), rng.integers(0, w - 64)
            other = gaussian_filter(img[y : y + 64, x : x + 64], sigma=(1.5, 1.5, 0))
            other = np.clip(other + rng.normal(0, 0.01, other.shape), 0, 1).astype(np.float32)
            write_image(real / f"{i}_{j}.png", torch.from_numpy(other).permute(2, 0, 1))
        crop = img[:48, :48]
        write_image(val_s / f"{i}.png", torch.from_numpy(crop).permute(2, 0, 1))
        write_image(val_b / f"{i}.png", torch.from_numpy(gaussian_filter(crop, sigma=(1.5, 1.5, 0))).permute(2, 0, 1))
    return {"root": root, "sharp": sharp, "real": real, "val": root / "val"}


def tiny(folders, tmp_path, *overrides):
    return load_config(
        "tiny",
        [
            f"data.sharp_dir={folders['sharp']}",
            f"data.real_blur_dir={folders['real']}",
            f"data.val_dir={folders['val']}",
            f"runs_dir={tmp_path / 'runs'}",
            "train.keep_last=10",
            *overrides,
        ],
    )


@pytest.mark.parametrize("scheme", ["separate", "joint", "synthetic"])
def test_each_scheme_runs_end_to_end(folders, tmp_path, scheme):
    cfg = tiny(folders, tmp_path, f"scheme={scheme}", f"name={scheme}")
    res = train(cfg)
    assert res.status == "done", res.message
    run = tmp_path / "runs" / scheme
    assert (run / "config.yaml").is_file()
    for stage in L.SCHEMES[scheme]:
        assert (run / "checkpoints" / f"{stage}_000004.safetensors").is_file()
        assert (run / "checkpoints" / f"{stage}_000004.json").is_file()
        assert (run / "state" / f"{stage}_000004.pt").is_file()
    assert (run / "checkpoints" / "latest.safetensors").is_file()
    assert (run / "samples" / "index.html").is_file()
    assert list((run / "samples").glob("*.png"))
    meta = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert meta["scheme"] == scheme
    assert "deblur_g" in meta["roles"]
    # the resume state loads with weights_only=True
    torch.load(run / "state" / f"{L.SCHEMES[scheme][-1]}_000004.pt", weights_only=True)
    csv = (run / "losses.csv").read_text()
    assert "val_psnr_output" in csv


def _joint_stage(folders, tmp_path):
    cfg = tiny(folders, tmp_path, "scheme=joint")
    nets, _ = L.build_nets(cfg, torch.device("cpu"))
    stage = L.make_stage("joint", cfg, nets, torch.device("cpu"))
    ds = L.stage_dataset(cfg, "joint")
    batch = next(L.batches(ds, cfg, cfg.stages.dbgan, 0, L.DistInfo()))
    return cfg, nets, stage, batch


def test_joint_updates_both_generators_and_each_gets_its_adversarial_gradient(folders, tmp_path):
    cfg, nets, stage, batch = _joint_stage(folders, tmp_path)
    blur_g, deblur_g = nets["blur_g"], nets["deblur_g"]
    # every network has an optimizer holding exactly its parameters
    for role in ("blur_g", "deblur_g", "blur_d", "deblur_d"):
        held = {id(p) for g in stage.optimizers[role].param_groups for p in g["params"]}
        assert held == {id(p) for p in nets[role].parameters()}, role
    # each generator's own adversarial term reaches it with a non-zero gradient
    stage_batch = {k: v for k, v in batch.items() if torch.is_tensor(v)}
    _, logs = stage.compute(stage_batch, 0)
    for term, net in (("blur_adv_g", blur_g), ("sharp_adv_g", deblur_g)):
        grads = torch.autograd.grad(logs[term], list(net.parameters()), allow_unused=True, retain_graph=True)
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert total > 0, term
    # the deblurrer's loss reaches the blur generator (backprop_into_blur)
    grads = torch.autograd.grad(logs["loss_g_deblur"], list(blur_g.parameters()), allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    # one step changes both generators' weights
    before = {r: [p.detach().clone() for p in nets[r].parameters()] for r in ("blur_g", "deblur_g")}
    stage.step(batch, 0)
    for r in ("blur_g", "deblur_g"):
        assert any(not torch.equal(a, p) for a, p in zip(before[r], nets[r].parameters())), r


def test_joint_without_backprop_keeps_deblur_loss_out_of_blur_generator(folders, tmp_path):
    cfg = tiny(folders, tmp_path, "scheme=joint", "joint.backprop_into_blur=false")
    nets, _ = L.build_nets(cfg, torch.device("cpu"))
    stage = L.make_stage("joint", cfg, nets, torch.device("cpu"))
    batch = next(L.batches(L.stage_dataset(cfg, "joint"), cfg, cfg.stages.dbgan, 0, L.DistInfo()))
    _, logs = stage.compute({k: v for k, v in batch.items() if torch.is_tensor(v)}, 0)
    grads = torch.autograd.grad(logs["loss_g_deblur"], list(nets["blur_g"].parameters()), allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in grads)


def test_deblur_stage_overfits_one_pair(tmp_path):
    """A deblur stage trained on one pair raises its PSNR well above the blurred input."""
    from scipy.ndimage import gaussian_filter
    from skimage import data as skd

    from dbgan import metrics as M

    img = skd.astronaut()[100:164, 180:244].astype(np.float32) / 255.0
    blur = gaussian_filter(img, sigma=(1.2, 1.2, 0)).astype(np.float32)
    sharp_t = torch.from_numpy(img).permute(2, 0, 1)[None]
    blur_t = torch.from_numpy(blur).permute(2, 0, 1)[None]
    cfg = load_config(
        "tiny",
        ["scheme=synthetic", "stages.dbgan.w_adv=0", "stages.dbgan.lr=1e-3", "nets.deblur_g.args.ngf=16"],
    )
    nets, _ = L.build_nets(cfg, torch.device("cpu"))
    stage = L.make_stage("dbgan", cfg, nets, torch.device("cpu"))
    batch = {"sharp": sharp_t, "blur": blur_t}
    for it in range(150):
        stage.step(batch, it)
    with torch.no_grad():
        out = nets["deblur_g"].eval()(blur_t).clamp(0, 1)
    before = M.psnr(blur_t[0], sharp_t[0])
    after = M.psnr(out[0], sharp_t[0])
    assert after > before + 3.0, (before, after)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "latest.safetensors"))


@pytest.mark.parametrize("stop", [("blur_pretrain", 2), ("bgan", 3), ("dbgan", 1)])
def test_resume_is_bit_identical(folders, tmp_path, stop):
    full = train(tiny(folders, tmp_path, "name=full"))
    assert full.status == "done"
    cfg = tiny(folders, tmp_path, "name=cut")
    first = train(cfg, stop_at=stop)
    assert first.status == "interrupted"
    assert first.iters[stop[0]] == stop[1]
    second = train(cfg)
    assert second.status == "done"
    a, b = _weights(tmp_path / "runs" / "full"), _weights(tmp_path / "runs" / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_existing_run_with_other_config_is_refused(folders, tmp_path):
    from dbgan.config import ConfigError

    assert train(tiny(folders, tmp_path, "name=r")).status == "done"
    with pytest.raises(ConfigError, match="different config"):
        train(tiny(folders, tmp_path, "name=r", "stages.dbgan.lr=1e-3"))
    # explicit --resume accepts it: the finished run stays finished
    res = train(tiny(folders, tmp_path, "name=r", "stages.dbgan.lr=1e-3"), resume=True)
    assert res.status == "done"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_keep_identical_parameters(folders, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    script = out / "worker.py"
    script.write_text(
        "import json, os, sys\n"
        "from dbgan.config import load_config\n"
        "from dbgan.train import train\n"
        "cfg = load_config('tiny', sys.argv[2:])\n"
        "res = train(cfg)\n"
        "json.dump({'ok': res.ranks_consistent, 'status': res.status}, "
        "open(os.path.join(sys.argv[1], 'rank%s.json' % os.environ['RANK']), 'w'))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        str(script), str(out),
        f"data.sharp_dir={folders['sharp']}", f"data.real_blur_dir={folders['real']}",
        f"runs_dir={out / 'runs'}", "scheme=joint", "train.backend=gloo",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in (0, 1):
        got = json.loads((out / f"rank{r}.json").read_text())
        assert got == {"ok": True, "status": "done"}
    assert (out / "runs" / "tiny" / "checkpoints" / "joint_000004.safetensors").is_file()


def test_kernel_blur_generator_trains_and_blurs_from_its_checkpoint(folders, tmp_path):
    from dbgan.infer import Blurrer
    from dbgan.nets.kernel_blur import KernelBlurGenerator

    cfg = tiny(folders, tmp_path, "scheme=separate", "name=kb", "nets.blur_g={name: kernel_blur, args: {kernel_size: 7, hidden: 16}}")
    res = train(cfg)
    assert res.status == "done", res.message
    ckpt = tmp_path / "runs" / "kb" / "checkpoints" / "latest.safetensors"
    blurrer = Blurrer.from_checkpoint(ckpt, device="cpu")
    assert isinstance(blurrer.backend.net, KernelBlurGenerator)
    # training moved the degradation away from its initialisation
    fresh = KernelBlurGenerator(kernel_size=7, hidden=16)
    trained = blurrer.backend.net
    assert (trained.kernel_head.bias - fresh.kernel_head.bias).abs().max() > 1e-4
    img = torch.from_numpy(_photos()[1][:45, :61].astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    a, b, c = blurrer(img, seed=3), blurrer(img, seed=3), blurrer(img, seed=4)
    assert a.shape == img.shape
    torch.testing.assert_close(a, b)  # the seed fixes kernel and noise
    assert (a - c).abs().max() > 1e-4
    # a blur (before the learnt sensor noise): smoother than the input
    grad = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean()  # noqa: E731
    with torch.no_grad():
        _, clean = trained.forward_parts(img[None].contiguous(), trained.sample_noise(img[None]))
    assert grad(clean) < grad(img)


def test_joint_stage_runs_every_network_on_the_dbgan_schedule(folders):
    """The joint stage lasts ``stages.dbgan.iters``: all four networks follow that schedule."""
    from dbgan.train import loop as L
    from dbgan.train.optim import lr_factor

    cfg = load_config(
        "tiny",
        [
            f"data.sharp_dir={folders['sharp']}",
            f"data.real_blur_dir={folders['real']}",
            "scheme=joint",
            "stages.dbgan.iters=10",
            "stages.dbgan.schedule=cosine",
            "stages.bgan.iters=2",  # its own schedule would have ended long before iteration 6
            "stages.bgan.schedule=linear",
            "stages.bgan.decay_start=0",
            "stages.bgan.lr=1e-3",
        ],
    )
    nets, _ = L.build_nets(cfg, torch.device("cpu"))
    stage = L.make_stage("joint", cfg, nets, torch.device("cpu"))
    batch = next(L.batches(L.stage_dataset(cfg, "joint"), cfg, L.stage_cfg(cfg, "joint"), 0, L.DistInfo()))
    stage.step(batch, 6)
    factor = lr_factor(cfg.stages.dbgan, 6)
    assert 0 < factor < 1
    assert stage.optimizers["blur_g"].param_groups[0]["lr"] == pytest.approx(1e-3 * factor)
    assert stage.optimizers["deblur_g"].param_groups[0]["lr"] == pytest.approx(cfg.stages.dbgan.lr * factor)


def test_bgan_noise_match_term_reaches_the_blur_generator_only(folders):
    """``stages.bgan.w_noise_match`` adds the unpaired noise-level term to G_blur's loss only."""
    from dbgan.train import loop as L

    cfg = load_config(
        "tiny",
        [
            f"data.sharp_dir={folders['sharp']}",
            f"data.real_blur_dir={folders['real']}",
            "stages.bgan.w_noise_match=2",
        ],
    )
    nets, _ = L.build_nets(cfg, torch.device("cpu"))
    batch = next(L.batches(L.stage_dataset(cfg, "bgan"), cfg, L.stage_cfg(cfg, "bgan"), 0, L.DistInfo()))
    batch = {k: v for k, v in batch.items() if torch.is_tensor(v)}

    def losses(weight: float):
        cfg.stages.bgan.w_noise_match = weight
        stage = L.make_stage("bgan", cfg, nets, torch.device("cpu"))
        torch.manual_seed(0)  # the same noise map every time
        ((g, g_nets), (d, d_nets)), logs = stage.compute(batch, 0)
        assert g_nets == [nets["blur_g"]] and d_nets == [nets["blur_d"]]
        return float(g.detach()), float(d.detach()), logs

    g2, d2, logs2 = losses(2.0)
    g0, d0, logs0 = losses(0.0)
    nm = float(logs2["noise_match"].detach())
    assert nm > 0 and "noise_match" not in logs0
    assert g2 - g0 == pytest.approx(2.0 * nm, rel=1e-4)
    assert d2 == pytest.approx(d0)


def test_channels_last_modes_give_the_same_losses(folders):
    """``train.channels_last: discriminators`` puts only the discriminators in channels_last (what ``auto``
    picks on a CPU at AVX512, see test_cpu_caps); every mode gives the same losses."""
    cl = torch.channels_last
    logs = {}
    for mode in ("discriminators", "none", "all"):
        cfg = load_config(
            "tiny",
            [f"data.sharp_dir={folders['sharp']}", f"data.real_blur_dir={folders['real']}", "scheme=joint",
             f"train.channels_last={mode}"],
        )
        nets, _ = L.build_nets(cfg, torch.device("cpu"))
        for role, net in nets.items():
            convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
            expect = mode == "all" or (mode == "discriminators" and role.endswith("_d"))
            assert all(w.is_contiguous(memory_format=cl) == expect for w in convs), (mode, role)
        stage = L.make_stage("joint", cfg, nets, torch.device("cpu"))
        batch = next(L.batches(L.stage_dataset(cfg, "joint"), cfg, L.stage_cfg(cfg, "joint"), 0, L.DistInfo()))
        torch.manual_seed(0)  # the blur generator's noise
        logs[mode] = stage.step(batch, 0)
    for mode in ("discriminators", "all"):
        for key, value in logs["none"].items():
            assert logs[mode][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (mode, key)
