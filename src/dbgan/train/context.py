"""What a stage needs from the run at every step: device, AMP, gradient scaler, gradient sync.

Built once per run by :meth:`StepContext.for_run` and handed to each stage when it is
constructed (a joint stage passes the same context to its parts), so nothing is injected
or copied afterwards.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from dbgan.config import Config, ConfigError

AutocastFactory = Callable[[], contextlib.AbstractContextManager]
GradSync = Callable[[list[nn.Parameter]], None]


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(cfg: Config, device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = cfg.train.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def autocast_factory(amp: str, device: torch.device) -> tuple[AutocastFactory, Optional[torch.amp.GradScaler]]:
    """(context factory, GradScaler or None) for ``train.amp``.

    ``auto`` and ``bf16`` are resolved by :func:`dbgan.cpu_caps.resolve_amp`: bf16 on a
    CPU only where it computes bf16 natively (else fp32, logged), bf16/fp16 on CUDA.
    """
    from dbgan.cpu_caps import resolve_amp

    amp = resolve_amp(amp, device.type)
    if amp == "none":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("'train.amp: fp16' needs a CUDA device; use bf16 on CPU")
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    return (lambda: torch.autocast(device_type=device.type, dtype=dtype)), scaler


def make_grad_sync(info: DistInfo) -> Optional[GradSync]:
    """Average gradients over the ranks (one flat ``all_reduce``); None when not distributed."""
    if not info.enabled:
        return None

    def sync(params: list[nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= info.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    return sync


@dataclass
class StepContext:
    """The per-step settings shared by every stage of a run.

    Attributes:
        device: where the networks and batches live.
        autocast: a factory of the autocast context each step's forward runs in.
        scaler: the fp16 gradient scaler (None without fp16); its state is saved by the stage.
        grad_sync: averages gradients across ranks before each optimizer step (None: one process).
    """

    device: torch.device
    autocast: AutocastFactory = field(default=contextlib.nullcontext)
    scaler: Optional[torch.amp.GradScaler] = None
    grad_sync: Optional[GradSync] = None

    @classmethod
    def for_run(cls, cfg: Config, device: torch.device, info: DistInfo) -> "StepContext":
        autocast, scaler = autocast_factory(cfg.train.amp, device)
        return cls(device, autocast, scaler, make_grad_sync(info))
