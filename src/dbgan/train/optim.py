"""Optimizers and schedules of the stages: parameter groups, Adam, learning-rate schedule, EMA."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from dbgan.config import StageConfig
from dbgan.nets.common import ImageGenerator


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
