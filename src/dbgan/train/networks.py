"""The run's networks: the two generators and the discriminators the stages use, seeded per role."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from dbgan.config import Config, ConfigError, channels_last_mode
from dbgan.nets import build_network

log = logging.getLogger(__name__)


def net_specs(cfg: Config) -> dict[str, dict[str, Any]]:
    """Effective constructor arguments of every role (channels filled in from the data)."""
    c = cfg.data.channels
    specs = {}
    for role in ("blur_g", "blur_d", "deblur_g", "deblur_d"):
        spec = getattr(cfg.nets, role)
        args = dict(spec.args)
        args["in_channels"] = c
        if role.endswith("_g"):
            args["out_channels"] = c
        specs[role] = {"name": spec.name, "args": args}
    return specs


def build_nets(cfg: Config, device: torch.device) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """Build the two generators and the discriminators each stage uses, seeded per role."""
    specs = net_specs(cfg)
    cond = dict(specs["blur_d"], args={**specs["blur_d"]["args"], "in_channels": 2 * cfg.data.channels})
    specs["blur_pretrain_d"] = cond if cfg.stages.blur_pretrain.conditional_d else specs["blur_d"]
    cl_mode = channels_last_mode(cfg.train.channels_last, device.type)
    log.info("train.channels_last %s: %s", cfg.train.channels_last, cl_mode)
    nets = {}
    for i, (role, spec) in enumerate(sorted(specs.items())):
        torch.manual_seed(cfg.seed * 1000 + i)  # each net's init independent of the others
        try:
            net = build_network(spec["name"], **spec["args"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"'nets.{role.replace('blur_pretrain_d', 'blur_d')}': {exc}") from None
        net = net.to(device)
        if cl_mode == "all" or (cl_mode == "discriminators" and role.endswith("_d")):
            net = net.to(memory_format=torch.channels_last)
        nets[role] = net
    return nets, specs
