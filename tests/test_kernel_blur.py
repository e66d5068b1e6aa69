"""The kernel-predicting blur generator: it can only blur, and it learns what blur."""

from __future__ import annotations

import pytest
import torch

from dbgan.blur import fft_blur, gaussian_kernel
from dbgan.nets import build_network
from dbgan.nets.kernel_blur import KernelBlurGenerator, blur_per_image


@pytest.fixture
def folders_kernel(sample_images, tmp_path):
    """``make(*overrides)``: the tiny preset with a kernel_blur BGAN on the sample photos."""
    from dbgan.config import load_config

    folder = sample_images[0].parent

    def make(*overrides: str):
        return load_config(
            "tiny",
            [
                f"data.sharp_dir={folder}",
                f"data.real_blur_dir={folder}",
                f"runs_dir={tmp_path / 'runs'}",
                "nets.blur_g={name: kernel_blur, args: {kernel_size: 9}}",
                *overrides,
            ],
        )

    return make


def _z(n: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _blur_pretrain(folders_kernel, *overrides: str):
    """(config, blur_pretrain stage, its kernel_blur generator, one batch) for the given overrides."""
    from dbgan.train import loop as L

    cfg = folders_kernel(*overrides)
    nets, _ = L.build_nets(cfg, torch.device("cpu"))
    stage = L.make_stage("blur_pretrain", cfg, nets, torch.device("cpu"))
    batch = next(L.batches(L.stage_dataset(cfg, "blur_pretrain"), cfg, cfg.stages.blur_pretrain, 0, L.DistInfo()))
    return cfg, stage, nets["blur_g"], batch


def test_blur_per_image_equals_fft_blur():
    x = torch.rand(2, 3, 23, 30, generator=torch.Generator().manual_seed(0))
    k = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(1))
    k = k / k.sum((-2, -1), keepdim=True)
    ref = fft_blur(x, k, backend="torch")
    torch.testing.assert_close(blur_per_image(x, k), ref, atol=1e-5, rtol=0)
    # images smaller than the kernel still work (replicated border), values stay a weighted mean
    tiny = torch.rand(1, 1, 2, 3)
    out = blur_per_image(tiny, k[:1])
    assert out.shape == tiny.shape and tiny.min() - 1e-6 <= out.min() and out.max() <= tiny.max() + 1e-6


def test_output_is_a_blur_of_the_input():
    torch.manual_seed(0)
    net = KernelBlurGenerator(kernel_size=9, linear_light=False, sensor_noise=False).eval()
    x = torch.rand(3, 3, 32, 32)
    z = _z(3)
    p = net.params_from_noise(z)
    k = p["kernels"]
    assert k.shape == (3, 9, 9) and (k >= 0).all()
    torch.testing.assert_close(k.sum((-2, -1)), torch.ones(3))
    torch.testing.assert_close(net(x, z), blur_per_image(x, k).clamp(0, 1))
    # the initial kernel is close to the Gaussian it was initialised with
    torch.testing.assert_close(k[0], torch.from_numpy(gaussian_kernel(9, 1.0)).float(), atol=2e-3, rtol=0)
    # a flat image stays flat, with or without linear light
    flat = torch.full((1, 3, 16, 16), 0.3)
    net_ll = KernelBlurGenerator(kernel_size=9, sensor_noise=False)
    with torch.no_grad():
        net_ll.log_gamma.fill_(0.8)  # gamma 2.2
    torch.testing.assert_close(net_ll(flat, _z(1)), flat)


def test_noise_is_seeded_by_z_and_has_the_initial_level():
    net = KernelBlurGenerator(kernel_size=5, init_noise=0.02).eval()
    flat = torch.full((2, 3, 64, 64), 0.5)
    y1 = net(flat, _z(2, seed=1))
    torch.testing.assert_close(net(flat, _z(2, seed=1)), y1)  # same z, same output (noise included)
    y2 = net(flat, _z(2, seed=2))
    assert (y1 - y2).abs().max() > 1e-3
    std = (y1 - 0.5).std().item()
    assert 0.015 < std < 0.025, std
    # the noise field differs between the images of a batch
    assert (y1[0] - y1[1]).abs().max() > 1e-3
    # a sampled vector has the configured length
    assert net.sample_noise(flat, torch.Generator().manual_seed(0)).shape == (2, 8)


def test_learns_a_wider_kernel_from_examples():
    # fit the generator (L1) to images blurred by a wider Gaussian: the kernels widen
    torch.manual_seed(0)
    net = KernelBlurGenerator(kernel_size=9, hidden=16, linear_light=False, sensor_noise=False)
    target_k = torch.from_numpy(gaussian_kernel(9, 2.0)).float()
    ax = torch.arange(9, dtype=torch.float32) - 4
    r2 = ax[:, None] ** 2 + ax[None, :] ** 2

    def spread(k: torch.Tensor) -> float:
        return float((k.detach() * r2).sum((-2, -1)).mean())

    z0 = _z(4)
    before = spread(net.params_from_noise(z0)["kernels"])
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(3)
    for _ in range(150):
        x = torch.rand(4, 3, 24, 24, generator=gen)
        loss = (net(x) - fft_blur(x, target_k, backend="torch")).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = spread(net.params_from_noise(z0)["kernels"])
    assert before < 2.5 and after > 5.0, (before, after)  # Gaussian sigma 1 -> 2: spread 2 -> 8


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        build_network("kernel_blur", kernel_size=4)
    with pytest.raises(ValueError, match="out_channels"):
        build_network("kernel_blur", in_channels=3, out_channels=1)
    with pytest.raises(ValueError, match="init_sigma"):
        build_network("kernel_blur", init_sigma=0)


def test_export_refuses_with_a_reason(tmp_path):
    from dbgan.export import ExportError, export_onnx

    with pytest.raises(ExportError, match="kernel_blur|KernelBlurGenerator.*cannot be exported"):
        export_onnx(KernelBlurGenerator(kernel_size=5), tmp_path / "k.onnx", role="blur_g")
    assert not (tmp_path / "k.onnx").exists()


def test_paired_terms_see_the_noise_free_output():
    from dbgan.train.stages import blur_with_clean

    torch.manual_seed(0)
    net = KernelBlurGenerator(kernel_size=5, init_noise=0.02)
    x = torch.rand(2, 3, 20, 20)
    z = _z(2)
    noisy, clean = net.forward_parts(x, z)
    torch.testing.assert_close(noisy, net(x, z))
    assert (noisy - clean).std() > 0.01  # the sensor noise is only in the first
    plain = KernelBlurGenerator(kernel_size=5, sensor_noise=False)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("noise_head")})
    torch.testing.assert_close(clean, plain(x, z))
    # an L1 to a noiseless target through the stages' helper does not push the noise level down
    torch.manual_seed(1)
    fake, clean = blur_with_clean(net, x)
    (fake - clean).abs().mean().mul(0).add(clean.sub(x).abs().mean()).backward()
    assert net.noise_head.bias.grad is None or float(net.noise_head.bias.grad.abs()) == 0.0
    assert net.kernel_head.bias.grad.abs().sum() > 0
    # other generators give one output for both
    from dbgan.nets import build_network

    unet = build_network("unet", num_downs=3, ngf=4)
    a, b = blur_with_clean(unet, x[:, :, :16, :16])
    assert a is b


def test_kernel_prior_keeps_the_learnt_kernels_varied(folders_kernel):
    """blur_pretrain with only the kernel prior spreads the kernels out like the synthetic ones."""
    from dbgan.blur import kernel_extent

    _, stage, g, batch = _blur_pretrain(
        folders_kernel,
        "stages.blur_pretrain.w_content=0",
        "stages.blur_pretrain.w_adv=0",
        "stages.blur_pretrain.w_kernel_prior=1",
        "stages.blur_pretrain.lr=0.01",
    )
    z = _z(256, seed=5)

    def spread() -> float:
        with torch.no_grad():
            return float(kernel_extent(g.params_from_noise(z)["kernels"].numpy()).std())

    start = spread()
    first = stage.step(batch, 0)["kernel_mmd"]
    for it in range(1, 60):
        logs = stage.step(batch, it)
    bank_spread = float(kernel_extent(stage.kernel_bank.reshape(-1, g.kernel_size, g.kernel_size).numpy()).std())
    assert start < 0.05 * bank_spread  # every z starts at the same Gaussian
    assert logs["kernel_mmd"] < 0.5 * first
    assert spread() > 0.4 * bank_spread
    # the same draws after a restart at any iteration: no state outside the checkpoint
    a, b = {}, {}
    stage.kernel_prior(7, a)
    stage.kernel_prior(7, b)
    assert float(a["kernel_mmd"].detach()) == float(b["kernel_mmd"].detach())


def test_kernel_prior_needs_a_kernel_predicting_generator(folders_kernel):
    from dbgan.train import loop as L

    cfg = folders_kernel("stages.bgan.w_kernel_prior=1", "nets.blur_g={name: unet, args: {num_downs: 3, ngf: 4}}")
    nets, _ = L.build_nets(cfg, torch.device("cpu"))
    with pytest.raises(ValueError, match="stages.bgan.w_kernel_prior.*kernel_blur"):
        L.make_stage("bgan", cfg, nets, torch.device("cpu"))
    from dbgan.config import ConfigError

    with pytest.raises(ConfigError, match="stages.dbgan.w_kernel_prior"):
        folders_kernel("stages.dbgan.w_kernel_prior=1")


def test_gamma_starts_where_asked_and_its_learning_rate_is_scaled(folders_kernel):
    """``init_gamma`` sets the tone curve; ``gamma_lr_scale`` gives that one scalar its own step size."""
    from dbgan.train.optim import lr_factor

    assert float(KernelBlurGenerator(kernel_size=5, init_gamma=2.2).log_gamma.detach().exp()) == pytest.approx(2.2)
    for bad in ({"init_gamma": 0.0}, {"gamma_lr_scale": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            KernelBlurGenerator(kernel_size=5, **bad)
    cfg, stage, g, batch = _blur_pretrain(
        folders_kernel,
        "nets.blur_g.args.gamma_lr_scale=50",
        "stages.blur_pretrain.schedule=cosine",
        "stages.blur_pretrain.lr=1e-4",
    )
    groups = stage.optimizers["blur_g"].param_groups
    assert sorted(gr["lr_scale"] for gr in groups) == [1.0, 50.0]
    (gamma_group,) = [gr for gr in groups if gr["lr_scale"] == 50.0]
    assert [id(p) for p in gamma_group["params"]] == [id(g.log_gamma)]
    before = float(g.log_gamma.detach())
    stage.step(batch, 3)
    factor = lr_factor(cfg.stages.blur_pretrain, 3)
    assert 0 < factor < 1
    assert gamma_group["lr"] == pytest.approx(1e-4 * 50 * factor)
    assert all(gr["lr"] == pytest.approx(1e-4 * factor) for gr in groups if gr is not gamma_group)
    # Adam's first step moves each parameter by about its lr
    assert abs(float(g.log_gamma.detach()) - before) == pytest.approx(1e-4 * 50 * factor, rel=0.05)
    # a resumed optimizer keeps the groups and their scales
    opt = stage.optimizers["blur_g"]
    opt.load_state_dict(opt.state_dict())
    assert sorted(gr["lr_scale"] for gr in opt.param_groups) == [1.0, 50.0]


def test_lr_scales_must_name_real_parameters():
    from dbgan.train.optim import param_groups

    net = KernelBlurGenerator(kernel_size=5)
    net.lr_scales = lambda: {"no_such_weight": 2.0}
    with pytest.raises(ValueError, match="no_such_weight"):
        param_groups(net)
    assert [g["lr_scale"] for g in param_groups(KernelBlurGenerator(kernel_size=5))] == [1.0]


def test_a_fixed_gamma_is_saved_but_never_trained():
    net = KernelBlurGenerator(kernel_size=5, init_gamma=2.2, learn_gamma=False)
    assert "log_gamma" not in dict(net.named_parameters()) and "log_gamma" in net.state_dict()
    assert net.params_from_noise(_z(1))["gamma"].item() == pytest.approx(2.2)
    learnt = KernelBlurGenerator(kernel_size=5, init_gamma=1.7)
    net.load_state_dict(learnt.state_dict())  # checkpoints of either kind load into the other
    assert net.params_from_noise(_z(1))["gamma"].item() == pytest.approx(1.7)
    # in linear light a dark-bright edge blurs brighter than on the encoded values
    x = torch.zeros(1, 3, 1, 16)
    x[..., 8:] = 1.0
    x = x.expand(1, 3, 16, 16).contiguous()
    lin = KernelBlurGenerator(kernel_size=5, init_gamma=2.2, learn_gamma=False, sensor_noise=False)
    enc = KernelBlurGenerator(kernel_size=5, init_gamma=1.0, learn_gamma=False, sensor_noise=False)
    enc.load_state_dict({**lin.state_dict(), "log_gamma": torch.zeros(())})
    z = _z(1)
    with torch.no_grad():
        assert float(lin(x, z).mean()) > float(enc(x, z).mean()) + 0.02
