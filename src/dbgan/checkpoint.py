"""Checkpoints: weights as safetensors plus JSON metadata (written through :mod:`dbgan.atomic`).

Shared by ``train/`` and ``infer/`` (inference never imports training code).

A checkpoint ``NAME.safetensors`` holds the tensors of one or more networks under
``<role>.`` prefixes (roles: ``blur_g``, ``blur_d``, ``deblur_g``, ``deblur_d``;
``<role>_ema`` for averaged generator weights). Its safetensors header carries
the metadata as JSON under the key ``dbgan``; a readable copy sits beside it as
``NAME.json``. Metadata: ``format``, ``stage``, ``iter``, ``config_hash``,
``config`` (the resolved run config), ``nets`` (name + args per role) and
library versions. Nothing here unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dbgan import atomic

FORMAT = "dbgan-checkpoint/1"
ROLES = ("blur_g", "blur_d", "deblur_g", "deblur_d")


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or does not fit the requested network."""


# --------------------------------------------------------------------------- resume states


def safe_torch_load(path: str | Path) -> Any:
    """Load a ``.pt`` resume state with ``weights_only=True`` (never arbitrary pickles)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: resume state not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged file or a pickle with code in it
        raise CheckpointError(f"{path}: cannot load resume state safely ({exc})") from None


# --------------------------------------------------------------------------- weights


def versions() -> dict[str, str]:
    import dbgan

    return {"dbgan": dbgan.__version__, "torch": torch.__version__}


def save_checkpoint(
    path: str | Path,
    networks: dict[str, nn.Module | dict[str, torch.Tensor]],
    meta: dict[str, Any],
) -> None:
    """Save ``networks`` (role -> module or state dict) as safetensors + JSON metadata.

    Both files are written atomically; the JSON sidecar is written first so that
    a ``.safetensors`` file that exists always has its metadata.
    """
    from safetensors.torch import save as st_save

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for role, net in networks.items():
        state = net.state_dict() if isinstance(net, nn.Module) else net
        for key, value in state.items():
            tensors[f"{role}.{key}"] = value.detach().to("cpu").contiguous().clone()
    meta = {"format": FORMAT, "roles": sorted(networks), "versions": versions(), **meta}
    meta_json = json.dumps(meta, sort_keys=True, default=str)
    atomic.atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True, default=str))
    atomic.atomic_write_bytes(path, st_save(tensors, metadata={"dbgan": meta_json}))


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def roles(self) -> list[str]:
        return sorted({k.split(".", 1)[0] for k in self.tensors})

    def state_dict(self, role: str) -> dict[str, torch.Tensor]:
        prefix = role + "."
        state = {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(
                f"{self.path}: has no weights for '{role}' (it holds: {', '.join(self.roles)})"
            )
        return state

    def net_spec(self, role: str) -> dict[str, Any]:
        base = role[:-4] if role.endswith("_ema") else role
        nets = self.meta.get("nets", {})
        if base not in nets:
            raise CheckpointError(f"{self.path}: metadata does not describe network '{base}'")
        return nets[base]

    def build(self, role: str, prefer_ema: bool = True) -> nn.Module:
        """Build the network stored under ``role`` and load its weights (EMA ones if present)."""
        from dbgan.nets import build_network

        spec = self.net_spec(role)
        net = build_network(spec["name"], **spec.get("args", {}))
        use = f"{role}_ema" if prefer_ema and f"{role}_ema" in self.roles else role
        load_into(net, self.state_dict(use), f"{self.path} [{use}]")
        return net.eval()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a dbgan ``.safetensors`` checkpoint; clear errors for anything else."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(path)
    if path.is_dir():  # a run directory or its checkpoints folder: take latest
        for cand in (path / "checkpoints" / "latest.safetensors", path / "latest.safetensors"):
            if cand.is_file():
                path = cand
                break
        else:
            raise CheckpointError(f"{path}: folder holds no checkpoints/latest.safetensors")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({exc}); "
            "it may be truncated or in another format (dbgan never loads pickled .pth models)"
        ) from None
    raw_meta = (header.get("__metadata__") or {}).get("dbgan") if isinstance(header, dict) else None
    where = "its header"
    if raw_meta is None:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise CheckpointError(
                f"{path}: safetensors file without dbgan metadata (not written by dbgan, and no "
                f"{sidecar.name} beside it)"
            )
        where = str(sidecar)
        try:
            raw_meta = sidecar.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: cannot read its metadata {sidecar} ({exc})") from None
    try:
        meta = json.loads(raw_meta)
    except ValueError as exc:
        meta = exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the dbgan metadata in {where} is damaged ({meta})")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return Checkpoint(path=path, tensors=tensors, meta=meta)


def load_into(net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``net`` strictly, explaining architecture mismatches."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected tensors (e.g. {extra[0]})")
        if shape:
            k = shape[0]
            parts.append(f"shape mismatch at {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        raise CheckpointError(
            f"{where}: weights do not fit this architecture: {'; '.join(parts)}. "
            "Was it saved from another architecture or config?"
        )
    net.load_state_dict(state)
