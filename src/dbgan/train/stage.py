"""The stage base class: optimizers, one update per step, resumable state; and what each
stage declares for the training loop (config key, data, networks, losses).

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
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from dbgan import losses as L
from dbgan.config import Config, StageConfig, channels_last_mode
from dbgan.train.context import StepContext
from dbgan.train.optim import EMA, lr_factor, make_optimizer, param_groups, set_lr
from dbgan.train.pool import ImagePool

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class DataNeeds:
    """The training data a stage draws.

    Attributes:
        synthetic: blurred/sharp pairs (synthesised from ``data.sharp_dir``, or a pair
            folder); False: sharp images alone.
        real: the unpaired real blurred photos of ``data.real_blur_dir``: ``"required"``,
            ``"optional"`` (drawn when the folder is set, for the sample grid) or ``"none"``.
    """

    synthetic: bool
    real: str = "none"


def rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG ``torch.random.fork_rng`` must save (none off CUDA)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


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

    What the training loop needs to run a stage, each stage declares (the loop names
    no stage; it finds them in :data:`dbgan.train.registry.STAGES`):

    * :attr:`name` -- the stage's name in a scheme's plan, checkpoints and logs;
    * :attr:`config_key` -- ``stages.<key>``: iterations, batch size, schedule, weights;
    * :meth:`data_needs` -- which training data it draws (synthetic pairs, real blur);
    * :attr:`roles` and :meth:`build` -- the networks it takes from the run's set;
    * :attr:`loss_weights` -- the ``stages.<key>.w_*`` weights of its loss terms, and
      :meth:`prepare_losses`, which builds loss networks (VGG) before training starts.

    Args:
        cfg: the run's config.
        stage_cfg: ``cfg.stages.<config_key>``.
        ctx: device, AMP, gradient scaler and gradient sync of the run.
        seed: the stage's seed (image pools, kernel-prior draws).
    """

    name = "stage"
    config_key = "stage"
    roles: tuple[str, ...] = ()
    #: checkpoint role -> key of the run's networks (what ``init_from`` loads into)
    checkpoint_roles: dict[str, str] = {}
    loss_weights: tuple[str, ...] = ("w_adv", "w_content", "w_perceptual", "w_frequency")

    def __init__(self, cfg: Config, stage_cfg: StageConfig, ctx: StepContext, seed: int):
        self.cfg = cfg
        self.scfg = stage_cfg
        self.ctx = ctx
        self.device = ctx.device
        self._channels_last_inputs = channels_last_mode(cfg.train.channels_last, ctx.device.type) == "all"
        self.generators: dict[str, nn.Module] = {}
        self.discriminators: dict[str, nn.Module] = {}
        self.frozen: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.base_lrs: dict[str, float] = {}
        self.pools: dict[str, ImagePool] = {}
        self.emas: dict[str, EMA] = {}
        self.seed = seed
        self._perceptual: nn.Module | None = None
        self._last_images: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ what the loop needs
    @classmethod
    def stage_config(cls, cfg: Config) -> StageConfig:
        """``cfg.stages.<config_key>``: iterations, batch size and schedule of this stage."""
        return getattr(cfg.stages, cls.config_key)

    @classmethod
    def data_needs(cls, cfg: Config) -> DataNeeds:
        """The training data this stage draws under ``cfg``."""
        raise NotImplementedError

    @classmethod
    def build(cls, cfg: Config, nets: dict[str, nn.Module], ctx: StepContext, seed: int) -> "Stage":
        """The stage over the run's networks (``nets``: role -> module, see :attr:`roles`)."""
        raise NotImplementedError

    def prepare_losses(self) -> None:
        """Build the perceptual loss's VGG now, outside the training RNG stream.

        Built lazily at the first step, its initialisation would draw from the global RNG at the
        first step *after a resume* too, so a resumed run would draw different noise than an
        uninterrupted one. Random weights (tests) are seeded from ``cfg.seed``.
        """
        if self.scfg.w_perceptual > 0:
            with torch.random.fork_rng(devices=rng_devices(self.device)):
                torch.manual_seed(self.cfg.seed)
                self.perceptual  # noqa: B018 - the property builds and caches the module

    @property
    def autocast(self) -> Callable[[], contextlib.AbstractContextManager]:
        return self.ctx.autocast

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        return self.ctx.scaler

    @property
    def grad_sync(self) -> Callable[[list[nn.Parameter]], None] | None:
        return self.ctx.grad_sync

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
        if self._channels_last_inputs:
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
            elif role in ckpt.roles:  # e.g. a bundled model: the average starts from the loaded weights
                ema.shadow = {k: v.detach().clone() for k, v in self.generators[role].state_dict().items()}

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
