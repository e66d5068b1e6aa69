"""Losses: content (L1, MSE, Charbonnier), adversarial (vanilla, LSGAN, hinge, RBL),
perceptual (VGG19 features), focal frequency, and a sample-distribution distance
(:func:`mmd_rbf`, used to keep a kernel-predicting blur generator's kernels as
varied as the synthetic ones).

Pure functions do the arithmetic; the one module, :class:`PerceptualLoss`, holds the
VGG. The training stages pick them from their config: content losses by name with
:func:`content_loss` (``StageConfig.content``), adversarial losses with :func:`d_loss` /
:func:`g_loss` and a mode string (``StageConfig.gan_mode``), and each term's weight
from ``StageConfig.w_*``. All losses return scalar (mean-reduced) tensors.

Conventions for the adversarial losses: the discriminator returns raw logits
(any shape: ``N x 1`` or a ``N x 1 x h x w`` patch map); all means run over
every element. The discriminator loss is the *sum* of its real and fake terms
(no 0.5 factor; pix2pix halves it, scale ``w_adv`` if you want that).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dbgan.constants import CONTENT_LOSSES, GAN_MODES, LUMA, PERCEPTUAL_CRITERIA


# --------------------------------------------------------------------------- content


def l1_loss(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute difference."""
    return F.l1_loss(a, b)


def mse_loss(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference."""
    return F.mse_loss(a, b)


def charbonnier_loss(a: Tensor, b: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier (smooth L1) loss ``mean(sqrt((a - b)**2 + eps**2))``.

    The standard form (Lai et al., LapSRN): it equals ``eps`` (not 0) for
    identical inputs and is always > 0.

    Args:
        a: prediction.
        b: target.
        eps: smoothing constant (config ``losses.charbonnier_eps``).
    """
    diff = a - b
    return torch.sqrt(diff * diff + eps * eps).mean()


_CONTENT_FUNCS: dict[str, Callable[..., Tensor]] = {
    "l1": l1_loss,
    "mse": mse_loss,
    "charbonnier": charbonnier_loss,
}


def content_loss(name: str, a: Tensor, b: Tensor, eps: float = 1e-3) -> Tensor:
    """Content loss picked by name (``StageConfig.content``).

    Args:
        name: ``"l1"``, ``"mse"`` or ``"charbonnier"``.
        a: prediction.
        b: target.
        eps: Charbonnier's constant (ignored by the others).
    """
    if name not in _CONTENT_FUNCS:
        raise ValueError(f"unknown content loss {name!r}; valid: {', '.join(CONTENT_LOSSES)}")
    if name == "charbonnier":
        return charbonnier_loss(a, b, eps)
    return _CONTENT_FUNCS[name](a, b)


def noise_level(x: Tensor) -> Tensor:
    """Immerkaer's fast noise estimate (1996) of each image of ``x`` (``N x C x H x W``, 0-1 scale).

    The luma (Rec. 601 weights for 3 channels, the mean otherwise) is filtered by the
    3x3 kernel ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]``, which cancels smooth structure,
    and ``sigma = sqrt(pi / 2) / 6 * mean |residual|``. For white Gaussian noise on a flat
    image it returns the noise std; blur lowers it, noise, JPEG and artefacts raise it.
    Differentiable; returns ``N`` values.
    """
    if x.dim() != 4 or x.shape[-1] < 3 or x.shape[-2] < 3:
        raise ValueError(f"noise_level needs N x C x H x W images of at least 3x3, got {tuple(x.shape)}")
    x = x.float()
    if x.shape[1] == 3:
        y = (x * x.new_tensor(LUMA)[None, :, None, None]).sum(1, keepdim=True)
    else:
        y = x.mean(1, keepdim=True)
    k = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], device=x.device)
    r = F.conv2d(y, k[None, None])
    return (math.sqrt(math.pi / 2) / 6.0) * r.abs().mean(dim=(1, 2, 3))


def noise_match_loss(fake: Tensor, real: Tensor, eps: float = 1e-4) -> Tensor:
    """``(log mean noise_level(fake) - log mean noise_level(real))^2``: unpaired, no gradient into ``real``.

    Matches the generated images' noise level (batch mean) to that of unpaired real
    photos, which can be measured without any pairs.
    """
    a = noise_level(fake).mean() + eps
    b = noise_level(real.detach()).mean() + eps
    return (a.log() - b.log()) ** 2


def kernel_diversity_loss(k1: Tensor, k2: Tensor, z1: Tensor, z2: Tensor, cap: float = 1.0) -> Tensor:
    """Mode-seeking term (Mao et al., 2019) on blur kernels: ``-mean(min(|k1 - k2|_1 / |z1 - z2|_1 * dim, cap))``.

    ``k1``, ``k2`` are the kernels (any trailing shape, each summing to 1) that noise
    vectors ``z1``, ``z2`` (``N x dim``) give. Minimising it spreads kernels apart as
    the noise vectors differ, up to ``cap`` (the L1 distance of two kernels is at most 2),
    so no single kernel takes over; it does not pull kernels towards any fixed bank.
    """
    dk = (k1 - k2).abs().flatten(1).sum(1)
    dz = (z1 - z2).abs().mean(1).clamp_min(1e-6)
    return -(dk / dz).clamp_max(cap).mean()


# --------------------------------------------------------------------------- adversarial


# --------------------------------------------------------------------------- distributions


def mmd_rbf(x: Tensor, y: Tensor, scales: Sequence[float] = (0.5, 1.0, 2.0)) -> Tensor:
    """Squared maximum mean discrepancy between two samples, ``x`` (``n x d``) and ``y`` (``m x d``).

    Gaussian kernels of bandwidths ``scales`` times the median pairwise distance of
    the pooled sample (the median heuristic; the bandwidth gets no gradient), summed.
    The biased (V-statistic) estimate: non-negative, zero when the samples coincide,
    and it grows as the two distributions separate. Unlike an L1 between *paired*
    samples it does not pull every sample to the mean of the targets.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd_rbf needs n x d and m x d samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    xy = torch.cat([x, y]).float()
    sq = (xy * xy).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * xy @ xy.t()).clamp_min(0)
    off = d2.detach()[~torch.eye(len(xy), dtype=torch.bool, device=xy.device)]
    med = off.median().clamp_min(1e-12)
    k = sum(torch.exp(-d2 / (2 * s * s * med)) for s in scales)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def _check_mode(mode: str) -> None:
    if mode not in GAN_MODES:
        raise ValueError(f"unknown gan_mode {mode!r}; valid: {', '.join(GAN_MODES)}")


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def d_loss(mode: str, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator loss (to minimise) from its logits on real and fake images.

    * ``vanilla``: ``BCE(C(r), 1) + BCE(C(f), 0)`` (with logits).
    * ``lsgan``: ``E[(C(r) - 1)^2] + E[C(f)^2]``.
    * ``hinge``: ``E[relu(1 - C(r))] + E[relu(1 + C(f))]``.
    * ``rbl`` (the paper's relativistic blur loss, relativistic average least squares):
      ``E_r[(C(r) - E_f C(f) - 1)^2] + E_f[(C(f) - E_r C(r) + 1)^2]``, the two
      terms summed, not halved.

    Args:
        mode: one of ``GAN_MODES``.
        real_logits: raw discriminator output on real images.
        fake_logits: raw discriminator output on generated images (detach the
            generator's output before the discriminator call).
    """
    _check_mode(mode)
    if mode == "vanilla":
        return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)
    if mode == "lsgan":
        return ((real_logits - 1.0) ** 2).mean() + (fake_logits**2).mean()
    if mode == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    return ((real_rel - 1.0) ** 2).mean() + ((fake_rel + 1.0) ** 2).mean()


def g_loss(mode: str, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    """Generator's adversarial loss (to minimise) from the discriminator's logits.

    * ``vanilla``: ``BCE(C(f), 1)`` (the non-saturating loss).
    * ``lsgan``: ``E[(C(f) - 1)^2]``.
    * ``hinge``: ``-E[C(f)]``.
    * ``rbl``: ``E_r[(C(r) - E_f C(f) + 1)^2] + E_f[(C(f) - E_r C(r) - 1)^2]``
      (summed, not halved). Needs ``real_logits``; they are used as given:
      pass ``D(real).detach()`` (the usual choice) or keep their graph.

    Args:
        mode: one of ``GAN_MODES``.
        fake_logits: raw discriminator output on generated images (not detached).
        real_logits: raw discriminator output on real images (``rbl`` only).
    """
    _check_mode(mode)
    if mode == "vanilla":
        return _bce(fake_logits, 1.0)
    if mode == "lsgan":
        return ((fake_logits - 1.0) ** 2).mean()
    if mode == "hinge":
        return -fake_logits.mean()
    if real_logits is None:
        raise ValueError("gan_mode 'rbl' needs real_logits for the generator loss")
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    return ((real_rel + 1.0) ** 2).mean() + ((fake_rel - 1.0) ** 2).mean()


def rbl_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The paper's relativistic blur loss for the discriminator (``d_loss("rbl", ...)``)."""
    return d_loss("rbl", real_logits, fake_logits)


def rbl_g_loss(fake_logits: Tensor, real_logits: Tensor) -> Tensor:
    """The paper's relativistic blur loss for the generator (``g_loss("rbl", ...)``)."""
    return g_loss("rbl", fake_logits, real_logits)


# --------------------------------------------------------------------------- perceptual

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualLoss(nn.Module):
    """Distance between VGG19 features of two ``[0, 1]`` images.

    Inputs are normalised with ImageNet mean/std inside; grey (1-channel) inputs
    are repeated to 3 channels. The loss is ``sum_i w_i * criterion(f_i(pred),
    f_i(target))`` over the requested layers. The VGG is frozen, but gradients
    reach ``pred`` (and ``target``, if it requires them).

    Args:
        layers: VGG19 layer names (default ``["conv5_4"]``, before the ReLU as in the paper).
        layer_weights: one weight per layer (default 1 each).
        weights: ``"pretrained"`` (torchvision ImageNet VGG19, see
            :func:`dbgan.nets.vgg.load_vgg19_state_dict`) or ``"random"`` (tests only).
        weights_path: explicit weights file (config ``losses.perceptual.weights_path``).
        criterion: ``"l1"`` or ``"mse"`` between features.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("conv5_4",),
        layer_weights: Sequence[float] | None = None,
        weights: str = "pretrained",
        weights_path: str | None = None,
        criterion: str = "l1",
    ):
        super().__init__()
        from dbgan.nets.vgg import VGG19Features  # import the VGG only when this loss is used

        layers = list(layers)
        if layer_weights is None or len(layer_weights) == 0:
            layer_weights = [1.0] * len(layers)
        if len(layer_weights) != len(layers):
            raise ValueError(
                f"perceptual layer_weights has {len(layer_weights)} entries for {len(layers)} layers"
            )
        if criterion not in PERCEPTUAL_CRITERIA:
            raise ValueError(f"perceptual criterion must be 'l1' or 'mse', got {criterion!r}")
        self.layers = layers
        self.layer_weights = [float(w) for w in layer_weights]
        self.criterion = criterion
        self.vgg = VGG19Features(layers, weights=weights, weights_path=weights_path)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> "PerceptualLoss":
        """Build from a :class:`dbgan.config.PerceptualConfig`."""
        return cls(
            layers=cfg.layers,
            layer_weights=cfg.layer_weights or None,
            weights=cfg.weights,
            weights_path=cfg.weights_path,
            criterion=cfg.criterion,
        )

    def _prepare(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"perceptual loss needs 1 or 3 channel images, got {x.shape[1]}")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        fp = self.vgg(self._prepare(pred))
        ft = self.vgg(self._prepare(target))
        crit = F.l1_loss if self.criterion == "l1" else F.mse_loss
        total = pred.new_zeros(())
        for name, w in zip(self.layers, self.layer_weights):
            total = total + w * crit(fp[name], ft[name])
        return total


# --------------------------------------------------------------------------- frequency


def _to_freq(x: Tensor, patch_factor: int) -> Tensor:
    n, c, h, w = x.shape
    if h % patch_factor or w % patch_factor:
        raise ValueError(
            f"focal frequency loss: image size {h}x{w} is not divisible by patch_factor {patch_factor}"
        )
    ph, pw = h // patch_factor, w // patch_factor
    # N x C x pf x ph x pf x pw -> N x (pf*pf) x C x ph x pw
    patches = x.reshape(n, c, patch_factor, ph, patch_factor, pw).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(n, patch_factor * patch_factor, c, ph, pw)
    return torch.fft.fft2(patches.float(), norm="ortho")


def focal_frequency_loss(
    pred: Tensor,
    target: Tensor,
    alpha: float = 1.0,
    patch_factor: int = 1,
    log_matrix: bool = False,
    ave_spectrum: bool = False,
    batch_matrix: bool = False,
) -> Tensor:
    """Focal frequency loss (Jiang et al., ICCV 2021), as the authors' reference implementation.

    Both images are cut into ``patch_factor x patch_factor`` patches and taken to
    the frequency domain (orthonormal 2-D FFT, in float32). The loss is the mean
    over frequencies of ``W * |F_pred - F_target|^2`` where the weight matrix
    ``W = |F_pred - F_target|^alpha`` (optionally ``log(1 + .)``), scaled to
    ``[0, 1]`` by its maximum per patch and channel (or over the batch) and
    detached, so the hard frequencies get the most weight. Zero for identical images.

    Args:
        pred: ``N x C x H x W`` prediction.
        target: ``N x C x H x W`` target.
        alpha: focusing exponent of the weight matrix.
        patch_factor: patches per side (H and W must be divisible by it).
        log_matrix: weigh by ``log(1 + |diff|^alpha)``.
        ave_spectrum: compare batch-averaged spectra.
        batch_matrix: normalise the weight matrix by its maximum over the whole batch.
    """
    if pred.shape != target.shape:
        raise ValueError(f"focal frequency loss: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    fp = _to_freq(pred, patch_factor)
    ft = _to_freq(target, patch_factor)
    if ave_spectrum:
        fp = fp.mean(0, keepdim=True)
        ft = ft.mean(0, keepdim=True)
    diff = fp - ft
    dist = diff.real**2 + diff.imag**2  # |F_pred - F_target|^2
    with torch.no_grad():
        weight = dist.sqrt() ** alpha
        if log_matrix:
            weight = torch.log1p(weight)
        if batch_matrix:
            peak = weight.amax()
        else:
            peak = weight.amax(dim=(-2, -1), keepdim=True)
        weight = torch.where(peak > 0, weight / peak.clamp_min(1e-12), torch.zeros_like(weight))
        weight = weight.clamp(0.0, 1.0)
    return (weight * dist).mean()
