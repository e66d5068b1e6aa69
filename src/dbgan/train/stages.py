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

Each declares what the loop needs (config key, data, networks, losses; see
:class:`dbgan.train.stage.Stage`) and is listed in :data:`dbgan.train.registry.STAGES`.
The blur stages' camera statistics and tone fit are :class:`dbgan.train.camera_fit.CameraFit`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dbgan import losses as L
from dbgan.blur.kernels import random_kernel
from dbgan.config import StageConfig
from dbgan.nets.common import ImageGenerator, PredictsKernels, SwapsKernels
from dbgan.train.camera_fit import CameraFit
from dbgan.train.context import StepContext
from dbgan.train.optim import scale_grad, set_requires_grad
from dbgan.train.stage import DataNeeds, Stage

_LOG = logging.getLogger(__name__)


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


class _BlurStage(CameraFit, Stage):
    """A stage that trains G_blur against a blur discriminator (blur_pretrain, bgan)."""

    def __init__(self, cfg, stage_cfg, ctx: StepContext, seed, blur_g: nn.Module, blur_d: nn.Module):
        super().__init__(cfg, stage_cfg, ctx, seed)
        self.generators = {"blur_g": blur_g}
        self.discriminators = {"blur_d": blur_d}
        self.add_optimizer("blur_g", blur_g, stage_cfg.lr)
        self.add_optimizer("blur_d", blur_d, _lr_d(stage_cfg))
        self.add_pool("blur")
        self.kernel_bank: torch.Tensor | None = None
        if stage_cfg.w_kernel_prior > 0:
            self.kernel_bank = self._synthetic_kernel_bank(blur_g)
        if stage_cfg.w_diversity > 0 and not isinstance(blur_g, PredictsKernels):
            raise ValueError(
                f"stages.{self.name}.w_diversity needs a blur generator that predicts kernels from its noise "
                f"vector (kernel_blur, camera_blur), got {type(blur_g).__name__}"
            )
        self.setup_camera_stats(stage_cfg, blur_g)
        self.finish_setup()

    def diversity(self, it: int, logs: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """``w_diversity`` x the mode-seeking term on kernels of two noise vectors per pair (seeded by ``it``)."""
        if self.scfg.w_diversity <= 0:
            return 0.0
        g_net = self.generators["blur_g"]
        gen = torch.Generator().manual_seed(self.seed * 1_000_033 + it)
        z = torch.randn(2, KERNEL_PRIOR_BATCH // 2, g_net.noise_input.noise_dim, generator=gen).to(self.device)
        k1, k2 = (g_net.params_from_noise(zi)["kernels"] for zi in z)
        div = L.kernel_diversity_loss(k1, k2, z[0], z[1])
        logs["kernel_diversity"] = -div
        return self.scfg.w_diversity * div

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.camera_stats is not None:
            state["camera_stats"] = self.camera_stats.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.camera_stats is not None and "camera_stats" in state:
            self.camera_stats.load_state_dict(state["camera_stats"], self.device)

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
        learnt = g_net.params_from_noise(z)["kernels"].reshape(KERNEL_PRIOR_BATCH, -1, self.kernel_bank.shape[1])[:, 0]
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
    config_key = "blur_pretrain"
    roles = ("blur_g", "blur_pretrain_d")
    checkpoint_roles = {"blur_g": "blur_g", "blur_d": "blur_pretrain_d"}
    loss_weights = Stage.loss_weights + ("w_kernel_prior", "w_diversity")

    @classmethod
    def data_needs(cls, cfg):
        return DataNeeds(synthetic=True)

    @classmethod
    def build(cls, cfg, nets, ctx, seed):
        return cls(cfg, cfg.stages.blur_pretrain, ctx, seed, nets["blur_g"], nets["blur_pretrain_d"])

    def compute(self, batch, it):
        g_net, d_net = self.generators["blur_g"], self.discriminators["blur_d"]
        sharp, target = batch["sharp"], batch["blur"]
        fake, clean = blur_with_clean(g_net, sharp)
        logs: dict[str, torch.Tensor] = {}
        cond = sharp if self.scfg.conditional_d else None
        g_adv, d = self.adversarial(d_net, target, fake, "blur", logs, "blur", cond=cond)
        g = self.scfg.w_adv * g_adv + self.generator_terms(clean, target, logs) + self.kernel_prior(it, logs)
        g = g + self.diversity(it, logs)
        logs["loss_g"] = g
        return [(g, [g_net]), (d, [d_net])], logs

    @torch.no_grad()
    def sample(self, batch):
        fake = self.generators["blur_g"](batch["sharp"])
        return {"sharp": batch["sharp"], "blur": batch["blur"], "fake_blur": fake}


class BganStage(_BlurStage):
    """G_blur vs real blurred photos (unpaired), tied to the sharp input's structure."""

    name = "bgan"
    config_key = "bgan"
    roles = ("blur_g", "blur_d")
    checkpoint_roles = {"blur_g": "blur_g", "blur_d": "blur_d"}
    loss_weights = Stage.loss_weights + ("w_synthetic", "w_noise_match", "w_kernel_prior", "w_diversity", "w_stats")

    @classmethod
    def data_needs(cls, cfg):
        return DataNeeds(synthetic=cfg.scheme == "synthetic" or cfg.stages.bgan.w_synthetic > 0, real="required")

    @classmethod
    def build(cls, cfg, nets, ctx, seed):
        return cls(cfg, cfg.stages.bgan, ctx, seed, nets["blur_g"], nets["blur_d"])

    def blur_losses(self, batch, logs, it: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(generated blur, G_blur loss, D_blur loss); shared with :class:`JointStage`."""
        g_net, d_net = self.generators["blur_g"], self.discriminators["blur_d"]
        sharp = batch["sharp"]
        self.observe_camera(batch, it)
        fake, clean = blur_with_clean(g_net, sharp)
        self.observe_outputs(fake)
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
        g = g + self.kernel_prior(it, logs) + self.diversity(it, logs) + self.statistics(fake, batch, logs)
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
    config_key = "dbgan"
    roles = ("deblur_g", "deblur_d", "blur_g")  # blur_g (frozen) in scheme separate only
    checkpoint_roles = {"deblur_g": "deblur_g", "deblur_d": "deblur_d", "blur_g": "blur_g"}

    @classmethod
    def data_needs(cls, cfg):
        synthetic = cfg.scheme == "synthetic"
        return DataNeeds(synthetic=synthetic, real="none" if synthetic else "optional")

    @classmethod
    def build(cls, cfg, nets, ctx, seed):
        blur_g = nets["blur_g"] if cfg.scheme == "separate" else None
        return cls(cfg, cfg.stages.dbgan, ctx, seed, nets["deblur_g"], nets["deblur_d"], blur_g)

    def __init__(self, cfg, stage_cfg, ctx: StepContext, seed, deblur_g, deblur_d, blur_g: nn.Module | None):
        super().__init__(cfg, stage_cfg, ctx, seed)
        self.generators = {"deblur_g": deblur_g}
        self.discriminators = {"deblur_d": deblur_d}
        if blur_g is not None:
            set_requires_grad([blur_g], False)
            self.frozen = {"blur_g": blur_g}
        if stage_cfg.synthetic_kernels > 0 and blur_g is not None and not isinstance(blur_g, SwapsKernels):
            raise ValueError(
                "stages.dbgan.synthetic_kernels needs a blur generator that can run its camera with given kernels "
                f"(camera_blur), got {type(blur_g).__name__}"
            )
        self.add_optimizer("deblur_g", deblur_g, stage_cfg.lr)
        self.add_optimizer("deblur_d", deblur_d, _lr_d(stage_cfg))
        self.add_pool("sharp")
        self.finish_setup()

    def blurred_input(self, batch, it: int | None = None) -> torch.Tensor:
        """The deblurrer's input: the frozen G_blur's blur of the sharp batch, or the synthetic pairs' blur.

        With ``synthetic_kernels`` and an iteration ``it``, that share of the images (drawn from
        the stage seed and ``it``, so a resumed run draws the same) is blurred by kernels drawn by
        ``synth`` through the rest of G_blur's learnt camera.
        """
        if "blur_g" not in self.frozen:
            return batch["blur"]
        blur_g, sharp = self.frozen["blur_g"], batch["sharp"]
        with torch.no_grad():
            out = blur_g(sharp)
            share = self.scfg.synthetic_kernels
            if share > 0 and it is not None:
                rng = np.random.default_rng([self.seed, 7919, it])
                swap = np.flatnonzero(rng.random(sharp.shape[0]) < share)
                if swap.size:
                    size = int(self.cfg.synth.kernel_size) | 1
                    kernels = np.stack([fit_kernel(random_kernel(self.cfg.synth, rng), size) for _ in swap])
                    idx = torch.from_numpy(swap).to(sharp.device)
                    out = out.index_copy(0, idx, blur_g.degrade_with_kernels(sharp[idx], torch.from_numpy(kernels)))
        return out

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
        blurred = self.blurred_input(batch, it)
        if self.scfg.w_adv == 0:
            # plain regression (the general model's recipe): no discriminator to run or train
            g = self.generator_terms(self.generators["deblur_g"](blurred), batch["sharp"], logs)
            logs["loss_g_deblur"] = g
            return [(g, [self.generators["deblur_g"]])], logs
        _, g, d = self.deblur_losses(blurred, batch, logs)
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
    config_key = "dbgan"
    roles = ("blur_g", "blur_d", "deblur_g", "deblur_d")
    checkpoint_roles = {"blur_g": "blur_g", "blur_d": "blur_d", "deblur_g": "deblur_g", "deblur_d": "deblur_d"}
    loss_weights = BganStage.loss_weights

    @classmethod
    def data_needs(cls, cfg):
        return BganStage.data_needs(cfg)

    @classmethod
    def build(cls, cfg, nets, ctx, seed):
        st = cfg.stages
        return cls(cfg, st.bgan, st.dbgan, ctx, seed, nets["blur_g"], nets["blur_d"], nets["deblur_g"], nets["deblur_d"])

    def __init__(self, cfg, bgan_cfg, dbgan_cfg, ctx: StepContext, seed, blur_g, blur_d, deblur_g, deblur_d):
        super().__init__(cfg, dbgan_cfg, ctx, seed)
        # both parts share this stage's context (device, AMP, scaler, gradient sync)
        self.bgan = BganStage(cfg, bgan_cfg, ctx, seed, blur_g, blur_d)
        self.dbgan = DbganStage(cfg, dbgan_cfg, ctx, seed + 1, deblur_g, deblur_d, None)
        self.generators = {"blur_g": blur_g, "deblur_g": deblur_g}
        self.discriminators = {"blur_d": blur_d, "deblur_d": deblur_d}
        self.optimizers = {**self.bgan.optimizers, **self.dbgan.optimizers}
        self.base_lrs = {**self.bgan.base_lrs, **self.dbgan.base_lrs}
        self.pools = {**self.bgan.pools, **self.dbgan.pools}
        self.emas = {**self.bgan.emas, **self.dbgan.emas}

    @property
    def folder_gap(self):
        """The BGAN part's :attr:`CameraFit.folder_gap` (for validation)."""
        return self.bgan.folder_gap

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.bgan.camera_stats is not None:
            state["camera_stats"] = self.bgan.camera_stats.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.bgan.camera_stats is not None and "camera_stats" in state:
            self.bgan.camera_stats.load_state_dict(state["camera_stats"], self.device)

    def prepare_losses(self) -> None:
        """The loss networks of both parts (this stage's own terms are theirs)."""
        for sub in (self.bgan, self.dbgan):
            sub.prepare_losses()

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
