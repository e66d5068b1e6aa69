"""Training stages: one small class each, ``step(batch) -> dict of losses``.

Stages:
    * :class:`BlurPretrainStage` -- G_blur learns sharp -> synthetic blur (pix2pix:
      conditional discriminator, adversarial + L1 x100 by default).
    * :class:`BganStage` -- G_blur vs a discriminator that sees the user's *unpaired*
      real blurred photos against generated blur (default: relativistic blur loss),
      plus a structure tie to the sharp input (and optionally L1 to synthetic blur).
    * :class:`DbganStage` -- G_deblur learns blurred -> sharp where the blurred input
      comes from a frozen G_blur (scheme ``separate``) or from synthetic pairs
      (scheme ``synthetic``); its discriminator sees real sharp vs deblurred.
    * :class:`JointStage` -- bgan and dbgan at once; G_blur also receives the
      deblurrer's gradient when ``joint.backprop_into_blur`` is true.

Every update goes through :meth:`Stage.update`: generator and discriminator losses
are computed from *one* discriminator forward per image set (the generator step
comes first, as in BasicSR, so the discriminator is unchanged in between) and each
loss is back-propagated only into its own networks (``backward(inputs=...)``). So
every generator loss is computed on tensors that generator produced, and each
optimizer holds exactly the networks it must update.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dbgan import losses as L
from dbgan.blur.kernels import random_kernel
from dbgan.config import Config, StageConfig, channels_last_mode
from dbgan.nets.common import ImageGenerator, PredictsKernels
from dbgan.train.pool import ImagePool

Batch = dict[str, torch.Tensor]


def lr_factor(stage: StageConfig, it: int) -> float:
    """Learning-rate multiplier at iteration ``it`` (derived from the iteration: nothing to save)."""
    if stage.schedule == "constant" or stage.iters <= 1:
        return 1.0
    if stage.schedule == "linear":  # pix2pix: constant, then linear decay to 0
        start = int(stage.decay_start * stage.iters)
        if it < start:
            return 1.0
        return max(0.0, 1.0 - (it - start) / max(1, stage.iters - start))
    return 0.5 * (1.0 + math.cos(math.pi * min(it, stage.iters) / stage.iters))  # cosine


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    return _ScaleGrad.apply(x, scale)


class EMA:
    """Exponential moving average of a network's parameters and buffers."""

    def __init__(self, net: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        for key, value in net.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)


def param_groups(net: nn.Module) -> list[dict[str, Any]]:
    """``net``'s trainable parameters as optimizer groups, one per learning-rate scale.

    A generator may name parameters that need a larger step than the stage's ``lr``
    through :meth:`ImageGenerator.lr_scales` (``{parameter name: factor}``): a scalar physical
    parameter (e.g. ``kernel_blur``'s gamma) moves by at most about ``lr`` per Adam
    step, so at ``lr = 2e-4`` it could not travel from 1 to 2.2 in a few thousand
    iterations. Each group carries its ``lr_scale``; the stages multiply it into the
    scheduled learning rate.
    """
    inner = getattr(net, "_orig_mod", net)  # the module inside a torch.compile wrapper
    scales = dict(inner.lr_scales()) if isinstance(inner, ImageGenerator) else {}
    groups: dict[float, list[nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if p.requires_grad:
            name = name.removeprefix("_orig_mod.")  # a torch.compile wrapper
            groups.setdefault(float(scales.pop(name, 1.0)), []).append(p)
    if scales:
        raise ValueError(f"{type(net).__name__}.lr_scales names unknown parameters: {sorted(scales)}")
    return [{"params": ps, "lr_scale": scale} for scale, ps in groups.items()]


def make_optimizer(groups: list[dict[str, Any]], lr: float, stage: StageConfig) -> torch.optim.Optimizer:
    """Adam (fused, or foreach where fused is unsupported) over :func:`param_groups` groups."""
    groups = [{**g, "lr": lr * g.get("lr_scale", 1.0)} for g in groups if g["params"]]
    kwargs: dict[str, Any] = dict(lr=lr, betas=tuple(stage.betas), weight_decay=stage.weight_decay)
    try:
        return torch.optim.Adam(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(groups, foreach=True, **kwargs)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group of ``opt`` to ``lr`` times the group's ``lr_scale``."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def reuses_logits(net: nn.Module) -> bool:
    """True when ``net`` scores each image of a batch on its own and a call changes no state.

    Then ``net(x)[i]`` depends only on ``x[i]`` and a repeated call gives the same
    logits, so logits computed once can stand for a second call on the same pixels.
    False with batch statistics (BatchNorm in training mode), running statistics updated
    in training mode, active dropout, or parametrizations and hooks (spectral norm's
    power iteration advances on every call).
    """
    from torch.nn.utils import parametrize

    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.training and (
            isinstance(m, nn.modules.batchnorm._BatchNorm) or m.track_running_stats
        ):
            return False
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            return False
        if parametrize.is_parametrized(m) or m._forward_pre_hooks or m._forward_hooks:
            return False
    return True


def pooled_logits(disc: nn.Module, pooled: torch.Tensor, fresh: torch.Tensor, fresh_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's logits on an image-pool batch without a duplicate forward.

    The pool returns each new image either as it is or swapped for a stored older
    one. ``fresh_logits = disc(fresh)`` already scores the images passed through
    unchanged, so (when :func:`reuses_logits` allows it) only the swapped ones go
    through ``disc`` again; the result equals ``disc(pooled)`` up to floating-point
    rounding, and the discriminator's gradient flows through both parts.
    """
    if pooled.shape != fresh.shape or not reuses_logits(disc):
        return disc(pooled)
    same = (pooled == fresh).flatten(1).all(1)
    if bool(same.all()):
        return fresh_logits
    if not bool(same.any()):
        return disc(pooled)
    idx = (~same).nonzero().squeeze(1)
    return fresh_logits.index_put((idx,), disc(pooled[idx]))


def avg_pool(x: torch.Tensor, scale: int) -> torch.Tensor:
    return x if scale <= 1 else F.avg_pool2d(x, scale, ceil_mode=True)


class Stage:
    """Base class: networks, optimizers, ``step(batch)`` and a resumable state.

    Subclasses set ``self.generators`` (role -> module trained by this stage),
    ``self.discriminators`` (role -> module), ``self.frozen`` (role -> module used
    but not trained), build their optimizers with :meth:`add_optimizer` and
    implement :meth:`compute`, which returns the list of ``(loss, networks)``
    pairs to back-propagate plus the logged scalars and images.
    """

    name = "stage"

    def __init__(self, cfg: Config, stage_cfg: StageConfig, device: torch.device, seed: int):
        self.cfg = cfg
        self.scfg = stage_cfg
        self.device = device
        self.generators: dict[str, nn.Module] = {}
        self.discriminators: dict[str, nn.Module] = {}
        self.frozen: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.base_lrs: dict[str, float] = {}
        self.pools: dict[str, ImagePool] = {}
        self.emas: dict[str, EMA] = {}
        self.seed = seed
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self.scaler: torch.amp.GradScaler | None = None
        self.grad_sync: Callable[[list[nn.Parameter]], None] | None = None
        self._perceptual: nn.Module | None = None
        self._last_images: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ set-up helpers
    def add_optimizer(self, role: str, net: nn.Module, lr: float) -> None:
        self.optimizers[role] = make_optimizer(param_groups(net), lr, self.scfg)
        self.base_lrs[role] = lr

    def add_pool(self, key: str) -> None:
        self.pools[key] = ImagePool(self.scfg.pool_size, seed=self.seed + 17 + len(self.pools))

    def finish_setup(self) -> None:
        if self.scfg.ema > 0:
            for role, net in self.generators.items():
                self.emas[role] = EMA(net, self.scfg.ema)

    @property
    def perceptual(self) -> nn.Module:
        if self._perceptual is None:
            self._perceptual = L.PerceptualLoss.from_config(self.cfg.losses.perceptual).to(self.device)
        return self._perceptual

    # ------------------------------------------------------------------ loss helpers
    def content(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return L.content_loss(self.scfg.content, a, b, eps=self.cfg.losses.charbonnier_eps)

    def generator_terms(self, out: torch.Tensor, target: torch.Tensor, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Content (+ perceptual + frequency) terms tying ``out`` to ``target``."""
        s = self.scfg
        total = out.new_zeros(())
        if s.w_content > 0:
            c = self.content(avg_pool(out, s.content_scale), avg_pool(target, s.content_scale))
            logs["content"] = c
            total = total + s.w_content * c
        if s.w_perceptual > 0:
            p = self.perceptual(out.float(), target.float())
            logs["perceptual"] = p
            total = total + s.w_perceptual * p
        if s.w_frequency > 0:
            fcfg = self.cfg.losses.frequency
            f = L.focal_frequency_loss(out.float(), target.float(), alpha=fcfg.alpha, patch_factor=fcfg.patch_factor)
            logs["frequency"] = f
            total = total + s.w_frequency * f
        return total

    def adversarial(
        self,
        disc: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        pool: str | None,
        logs: dict[str, torch.Tensor],
        prefix: str,
        cond: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generator and discriminator adversarial losses from one D forward per set.

        ``fake`` carries the generator's graph. Without an image pool the same
        ``D(fake)`` serves both losses; with one, the discriminator also sees a
        pooled (detached) batch, and only the images the pool swapped for stored
        ones go through it again (see :func:`pooled_logits`).
        """
        mode = self.scfg.gan_mode
        if cond is not None:
            real = torch.cat([cond, real], 1)
            fake = torch.cat([cond, fake], 1)
        real_logits = disc(real)
        fake_logits = disc(fake)
        g = L.g_loss(mode, fake_logits, real_logits.detach())
        if pool is not None and self.scfg.pool_size > 0:
            d_fake_logits = pooled_logits(disc, self.pools[pool].query(fake.detach()), fake.detach(), fake_logits)
        else:
            d_fake_logits = fake_logits
        d = L.d_loss(mode, real_logits, d_fake_logits)
        logs[f"{prefix}_adv_g"] = g
        logs[f"{prefix}_d"] = d
        with torch.no_grad():  # share of real patches scored above the mean fake score
            logs[f"{prefix}_d_acc"] = 0.5 * (
                (real_logits.float() > fake_logits.float().mean()).float().mean()
                + (fake_logits.float() < real_logits.float().mean()).float().mean()
            )
        return g, d

    # ------------------------------------------------------------------ the step
    def compute(self, batch: Batch, it: int) -> tuple[list[tuple[torch.Tensor, list[nn.Module]]], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def step(self, batch: Batch, it: int = 0) -> dict[str, float]:
        """One training iteration. Returns the logged losses as floats.

        A non-finite loss skips the update (no weights change) and returns
        ``{"skipped": 1.0}`` plus whatever was finite.
        """
        for role, opt in self.optimizers.items():
            set_lr(opt, self.base_lrs[role] * lr_factor(self.scfg, it))
        for net in list(self.generators.values()) + list(self.discriminators.values()):
            net.train()
        for net in self.frozen.values():
            net.eval()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
        if channels_last_mode(self.cfg.train.channels_last, self.device.type) == "all":
            batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
        with self.autocast():
            updates, logs = self.compute(batch, it)
        values = {k: float(v.detach().float()) for k, v in logs.items()}
        if not all(math.isfinite(float(loss.detach().float())) for loss, _ in updates):
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            values["skipped"] = 1.0
            return values
        self.update(updates)
        return values

    def update(self, updates: list[tuple[torch.Tensor, list[nn.Module]]]) -> None:
        """Back-propagate each loss into its own networks only, then step their optimizers."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        all_nets: list[nn.Module] = []
        for i, (loss, nets) in enumerate(updates):
            params = [p for net in nets for p in net.parameters() if p.requires_grad]
            if not params:
                continue
            if self.scaler is not None:
                loss = self.scaler.scale(loss)
            loss.backward(inputs=params, retain_graph=i < len(updates) - 1)
            all_nets.extend(nets)
        roles = {id(net): role for role, net in {**self.generators, **self.discriminators}.items()}
        for net in all_nets:
            role = roles[id(net)]
            opt = self.optimizers[role]
            params = [p for p in net.parameters() if p.grad is not None]
            if self.grad_sync is not None:
                self.grad_sync(params)
            if self.scaler is not None:
                self.scaler.unscale_(opt)
            if self.scfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.scfg.grad_clip)
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()
        for role, ema in self.emas.items():
            ema.update(self.generators[role])

    # ------------------------------------------------------------------ checkpoint content
    def networks(self) -> dict[str, nn.Module | dict[str, torch.Tensor]]:
        """Everything this stage saves into a checkpoint (role -> module or state dict)."""
        out: dict[str, nn.Module | dict[str, torch.Tensor]] = {}
        out.update(self.frozen)
        out.update(self.generators)
        out.update(self.discriminators)
        for role, ema in self.emas.items():
            out[f"{role}_ema"] = ema.shadow
        return out

    def load_networks(self, ckpt) -> None:  # ckpt: dbgan.checkpoint.Checkpoint
        from dbgan.checkpoint import load_into

        for role, net in {**self.frozen, **self.generators, **self.discriminators}.items():
            if role in ckpt.roles:
                load_into(net, ckpt.state_dict(role), f"{ckpt.path} [{role}]")
        for role, ema in self.emas.items():
            if f"{role}_ema" in ckpt.roles:
                state = ckpt.state_dict(f"{role}_ema")
                ema.shadow = {k: v.to(self.device) for k, v in state.items()}

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, pool and scaler state (weights live in the safetensors checkpoint)."""
        return {
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "pools": {k: v.state_dict() for k, v in self.pools.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["optimizers"].items():
            self.optimizers[k].load_state_dict(v)
        for k, v in state["pools"].items():
            self.pools[k].load_state_dict(v, self.device)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    # ------------------------------------------------------------------ monitoring
    @torch.no_grad()
    def sample(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Images for the sample grid: any of sharp, blur, fake_blur, real_blur, deblurred."""
        return {}


def _lr_d(s: StageConfig) -> float:
    return s.lr_d if s.lr_d is not None else s.lr


#: kernels per step in the kernel-prior term, and the size of the synthetic bank they come from
KERNEL_PRIOR_BATCH = 64
KERNEL_PRIOR_BANK = 2048


def fit_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """``kernel`` centre-cropped or zero-padded to ``size x size`` and renormalised to sum 1."""
    k = kernel.shape[0]
    if k > size:
        o = (k - size) // 2
        kernel = kernel[o : o + size, o : o + size]
    elif k < size:
        o = (size - k) // 2
        kernel = np.pad(kernel, ((o, size - k - o), (o, size - k - o)))
    total = kernel.sum()
    return (kernel / total if total > 0 else kernel).astype(np.float32)


class _BlurStage(Stage):
    """A stage that trains G_blur against a blur discriminator (blur_pretrain, bgan)."""

    def __init__(self, cfg, stage_cfg, device, seed, blur_g: nn.Module, blur_d: nn.Module):
        super().__init__(cfg, stage_cfg, device, seed)
        self.generators = {"blur_g": blur_g}
        self.discriminators = {"blur_d": blur_d}
        self.add_optimizer("blur_g", blur_g, stage_cfg.lr)
        self.add_optimizer("blur_d", blur_d, _lr_d(stage_cfg))
        self.add_pool("blur")
        self.kernel_bank: torch.Tensor | None = None
        if stage_cfg.w_kernel_prior > 0:
            self.kernel_bank = self._synthetic_kernel_bank(blur_g)
        self.finish_setup()

    def _synthetic_kernel_bank(self, blur_g: nn.Module) -> torch.Tensor:
        """Kernels drawn by ``cfg.synth`` (fitted to the generator's kernel size), flattened."""
        if not isinstance(blur_g, PredictsKernels) or not isinstance(blur_g.kernel_size, int):
            raise ValueError(
                f"stages.{self.name}.w_kernel_prior needs a blur generator that predicts kernels "
                f"from its noise vector (kernel_blur), got {type(blur_g).__name__}"
            )
        rng = np.random.default_rng([self.seed, 4099])
        size = blur_g.kernel_size
        bank = [fit_kernel(random_kernel(self.cfg.synth, rng), size) for _ in range(KERNEL_PRIOR_BANK)]
        return torch.from_numpy(np.stack(bank).reshape(len(bank), -1)).to(self.device)

    def kernel_prior(self, it: int, logs: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """``w_kernel_prior`` x MMD between kernels for random noise vectors and synthetic ones.

        Both draws depend only on the stage seed and the iteration, so a resumed run
        repeats them exactly without extra state in the checkpoint.
        """
        if self.kernel_bank is None:
            return 0.0
        g_net = self.generators["blur_g"]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + it)
        z = torch.randn(KERNEL_PRIOR_BATCH, g_net.noise_input.noise_dim, generator=gen).to(self.device)
        idx = torch.randint(len(self.kernel_bank), (KERNEL_PRIOR_BATCH,), generator=gen).to(self.device)
        learnt = g_net.params_from_noise(z)["kernels"].flatten(1)
        mmd = L.mmd_rbf(learnt, self.kernel_bank[idx])
        logs["kernel_mmd"] = mmd
        return self.scfg.w_kernel_prior * mmd


def blur_with_clean(g_net: nn.Module, sharp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The blur generator's output, and the same before any sensor noise it adds.

    The paired terms (L1 to the synthetic blur, the content tie to the sharp input) use
    the noise-free output: an L1 to noiseless targets would otherwise teach a generator
    with a noise model (``kernel_blur``) to add no noise at all, whatever the real
    photos look like. :meth:`ImageGenerator.forward_parts` returns one output for both
    unless the generator adds noise of its own.
    """
    if isinstance(g_net, ImageGenerator):
        return g_net.forward_parts(sharp)
    fake = g_net(sharp)
    return fake, fake


class BlurPretrainStage(_BlurStage):
    """G_blur learns sharp -> synthetic blur as a conditional GAN (pix2pix)."""

    name = "blur_pretrain"

    def compute(self, batch, it):
        g_net, d_net = self.generators["blur_g"], self.discriminators["blur_d"]
        sharp, target = batch["sharp"], batch["blur"]
        fake, clean = blur_with_clean(g_net, sharp)
        logs: dict[str, torch.Tensor] = {}
        cond = sharp if self.scfg.conditional_d else None
        g_adv, d = self.adversarial(d_net, target, fake, "blur", logs, "blur", cond=cond)
        g = self.scfg.w_adv * g_adv + self.generator_terms(clean, target, logs) + self.kernel_prior(it, logs)
        logs["loss_g"] = g
        return [(g, [g_net]), (d, [d_net])], logs

    @torch.no_grad()
    def sample(self, batch):
        fake = self.generators["blur_g"](batch["sharp"])
        return {"sharp": batch["sharp"], "blur": batch["blur"], "fake_blur": fake}


class BganStage(_BlurStage):
    """G_blur vs real blurred photos (unpaired), tied to the sharp input's structure."""

    name = "bgan"

    def blur_losses(self, batch, logs, it: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(generated blur, G_blur loss, D_blur loss); shared with :class:`JointStage`."""
        g_net, d_net = self.generators["blur_g"], self.discriminators["blur_d"]
        sharp = batch["sharp"]
        fake, clean = blur_with_clean(g_net, sharp)
        g_adv, d = self.adversarial(d_net, batch["real_blur"], fake, "blur", logs, "blur")
        s = self.scfg
        g = s.w_adv * g_adv + self.generator_terms(clean, sharp, logs)
        if s.w_synthetic > 0:
            syn = F.l1_loss(clean, batch["blur"])
            logs["synthetic_l1"] = syn
            g = g + s.w_synthetic * syn
        if s.w_noise_match > 0:
            nm = L.noise_match_loss(fake, batch["real_blur"])
            logs["noise_match"] = nm
            g = g + s.w_noise_match * nm
        g = g + self.kernel_prior(it, logs)
        logs["loss_g_blur"] = g
        return fake, g, d

    def compute(self, batch, it):
        logs: dict[str, torch.Tensor] = {}
        _, g, d = self.blur_losses(batch, logs, it)
        return [(g, [self.generators["blur_g"]]), (d, [self.discriminators["blur_d"]])], logs

    @torch.no_grad()
    def sample(self, batch):
        out = {"sharp": batch["sharp"], "fake_blur": self.generators["blur_g"](batch["sharp"])}
        for key in ("blur", "real_blur"):
            if key in batch:
                out[key] = batch[key]
        return out


class DbganStage(Stage):
    """G_deblur learns blurred -> sharp; blurred = frozen G_blur(sharp), or synthetic blur."""

    name = "dbgan"

    def __init__(self, cfg, stage_cfg, device, seed, deblur_g, deblur_d, blur_g: nn.Module | None):
        super().__init__(cfg, stage_cfg, device, seed)
        self.generators = {"deblur_g": deblur_g}
        self.discriminators = {"deblur_d": deblur_d}
        if blur_g is not None:
            set_requires_grad([blur_g], False)
            self.frozen = {"blur_g": blur_g}
        self.add_optimizer("deblur_g", deblur_g, stage_cfg.lr)
        self.add_optimizer("deblur_d", deblur_d, _lr_d(stage_cfg))
        self.add_pool("sharp")
        self.finish_setup()

    def blurred_input(self, batch) -> torch.Tensor:
        if "blur_g" in self.frozen:
            with torch.no_grad():
                return self.frozen["blur_g"](batch["sharp"])
        return batch["blur"]

    def deblur_losses(self, blurred, batch, logs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(deblurred, G_deblur loss, D_sharp loss); shared with :class:`JointStage`."""
        g_net, d_net = self.generators["deblur_g"], self.discriminators["deblur_d"]
        sharp = batch["sharp"]
        out = g_net(blurred)
        g_adv, d = self.adversarial(d_net, sharp, out, "sharp", logs, "sharp")
        g = self.scfg.w_adv * g_adv + self.generator_terms(out, sharp, logs)
        logs["loss_g_deblur"] = g
        return out, g, d

    def compute(self, batch, it):
        logs: dict[str, torch.Tensor] = {}
        _, g, d = self.deblur_losses(self.blurred_input(batch), batch, logs)
        return [(g, [self.generators["deblur_g"]]), (d, [self.discriminators["deblur_d"]])], logs

    @torch.no_grad()
    def sample(self, batch):
        blurred = self.blurred_input(batch)
        out = {"sharp": batch["sharp"], "deblurred": self.generators["deblur_g"](blurred)}
        if "blur_g" in self.frozen:
            out["fake_blur"] = blurred
        for key in ("blur", "real_blur"):
            if key in batch:
                out[key] = batch[key]
        return out


class JointStage(Stage):
    """BGAN and DBGAN trained together (the paper's joint scheme).

    Per step: ``fake_blur = G_blur(sharp)``, ``deblurred = G_deblur(fake_blur)``.
    G_blur's loss is its own BGAN loss plus (``joint.backprop_into_blur``) the
    deblurrer's loss scaled by ``joint.w_deblur_into_blur``; G_deblur's loss is its
    DBGAN loss; each discriminator has its own loss. All four networks have
    optimizers. The stage runs ``stages.dbgan.iters`` iterations, so all four follow
    the dbgan stage's learning-rate schedule, each from its own base rate
    (``stages.bgan.lr`` / ``lr_d`` for the blur pair).
    """

    name = "joint"

    def __init__(self, cfg, bgan_cfg, dbgan_cfg, device, seed, blur_g, blur_d, deblur_g, deblur_d):
        super().__init__(cfg, dbgan_cfg, device, seed)
        self.bgan = BganStage(cfg, bgan_cfg, device, seed, blur_g, blur_d)
        self.dbgan = DbganStage(cfg, dbgan_cfg, device, seed + 1, deblur_g, deblur_d, None)
        self.generators = {"blur_g": blur_g, "deblur_g": deblur_g}
        self.discriminators = {"blur_d": blur_d, "deblur_d": deblur_d}
        self.optimizers = {**self.bgan.optimizers, **self.dbgan.optimizers}
        self.base_lrs = {**self.bgan.base_lrs, **self.dbgan.base_lrs}
        self.pools = {**self.bgan.pools, **self.dbgan.pools}
        self.emas = {**self.bgan.emas, **self.dbgan.emas}

    def step(self, batch, it=0):
        for sub in (self.bgan, self.dbgan):  # share the loop's AMP/distributed settings
            sub.autocast, sub.scaler, sub.grad_sync = self.autocast, self.scaler, self.grad_sync
        return super().step(batch, it)

    def compute(self, batch, it):
        logs: dict[str, torch.Tensor] = {}
        fake_blur, g_blur, d_blur = self.bgan.blur_losses(batch, logs, it)
        jcfg = self.cfg.joint
        if jcfg.backprop_into_blur:
            deblur_in = scale_grad(fake_blur, jcfg.w_deblur_into_blur)
        else:
            deblur_in = fake_blur.detach()
        _, g_deblur, d_sharp = self.dbgan.deblur_losses(deblur_in, batch, logs)
        g_nets = [self.generators["blur_g"], self.generators["deblur_g"]]
        if not jcfg.backprop_into_blur:
            return [
                (g_blur, [g_nets[0]]),
                (g_deblur, [g_nets[1]]),
                (d_blur, [self.discriminators["blur_d"]]),
                (d_sharp, [self.discriminators["deblur_d"]]),
            ], logs
        # g_deblur reaches G_blur through deblur_in (scaled); g_blur does not touch G_deblur
        return [
            (g_blur + g_deblur, g_nets),
            (d_blur, [self.discriminators["blur_d"]]),
            (d_sharp, [self.discriminators["deblur_d"]]),
        ], logs

    @torch.no_grad()
    def sample(self, batch):
        fake_blur = self.generators["blur_g"](batch["sharp"])
        out = {"sharp": batch["sharp"], "fake_blur": fake_blur, "deblurred": self.generators["deblur_g"](fake_blur)}
        for key in ("blur", "real_blur"):
            if key in batch:
                out[key] = batch[key]
        return out
