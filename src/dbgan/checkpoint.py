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
import math
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
    shapes: dict[str, tuple[int, ...]] | None = None  # from the safetensors header

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
        """The validated ``{"name", "args"}`` of ``role`` from the metadata (registry names,
        argument types and ranges), without building anything."""
        from dbgan.nets import NETWORKS

        base = role[:-4] if role.endswith("_ema") else role
        nets = self.meta.get("nets", {})
        if not isinstance(nets, dict) or base not in nets:
            raise CheckpointError(f"{self.path}: metadata does not describe network '{base}'")
        spec = nets[base]
        name = spec.get("name") if isinstance(spec, dict) else None
        args = spec.get("args", {}) if isinstance(spec, dict) else None
        if not isinstance(name, str) or not isinstance(args, dict):
            raise CheckpointError(f"{self.path}: metadata of '{base}' is damaged (needs a name and an args mapping)")
        if name not in NETWORKS:
            raise CheckpointError(
                f"{self.path}: metadata of '{base}' names unknown architecture {name[:60]!r}; "
                f"valid: {', '.join(NETWORKS.names())}"
            )
        try:
            NETWORKS.validate_args(name, args, where=f"nets.{base}.args")
        except ValueError as exc:
            raise CheckpointError(f"{self.path}: metadata: {exc}") from None
        return {"name": name, "args": dict(args)}

    def build(self, role: str, prefer_ema: bool = True) -> nn.Module:
        """Build the network stored under ``role`` and load its weights (EMA ones if present).

        The metadata is validated and the stored shapes are compared with the network's
        (built on the ``meta`` device, nothing allocated) before the network is built.
        """
        from dbgan.nets import build_network

        spec = self.net_spec(role)
        use = f"{role}_ema" if prefer_ema and f"{role}_ema" in self.roles else role
        state = self.state_dict(use)
        try:
            with torch.device("meta"):
                probe = build_network(spec["name"], **spec["args"])
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{self.path}: metadata of '{role}' does not build a network ({exc})") from None
        check_fit(
            {k: tuple(v.shape) for k, v in probe.state_dict().items()},
            {k: tuple(v.shape) for k, v in state.items()},
            f"{self.path} [{use}]",
        )
        del probe
        net = build_network(spec["name"], **spec["args"])
        load_into(net, state, f"{self.path} [{use}]")
        return net.eval()


#: Largest safetensors header accepted (dbgan's hold the config: a few KiB).
MAX_HEADER_BYTES = 16 * 2**20

#: Bytes per element of the safetensors dtypes.
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}


def _not_safetensors(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a readable safetensors checkpoint ({why}); "
        "it may be truncated or in another format (dbgan never loads pickled .pth models)"
    )


def read_header(path: str | Path) -> dict[str, Any]:
    """The safetensors header of ``path``, checked against the file size before any tensor
    data is read: header length, dtypes, shapes and data offsets (contiguous, inside the file).

    Raises:
        CheckpointError: the file is not a consistent safetensors file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise _not_safetensors(path, f"{size} bytes, shorter than a header")
            n = int.from_bytes(head, "little")
            if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
                raise _not_safetensors(path, f"header length {n} does not fit a file of {size} bytes")
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _not_safetensors(path, f"header is not JSON: {str(exc)[:80]}") from None
    if not isinstance(header, dict):
        raise _not_safetensors(path, "header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _not_safetensors(path, "__metadata__ is not a mapping of strings")
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) - {"dtype", "shape", "data_offsets"}:
            raise _not_safetensors(path, f"tensor {name!r}: malformed entry")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise _not_safetensors(path, f"tensor {name!r}: unknown dtype {str(dtype)[:20]!r}")
        if (
            not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)
        ):
            raise _not_safetensors(path, f"tensor {name!r}: bad shape")
        if (
            not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise _not_safetensors(path, f"tensor {name!r}: bad data offsets")
        numel = math.prod(shape)
        if offsets[1] - offsets[0] != numel * _DTYPE_BYTES[dtype] or offsets[0] < 0:
            raise _not_safetensors(path, f"tensor {name!r}: data offsets do not match dtype and shape")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    pos = 0
    for begin, end_, name in spans:
        if begin != pos:
            raise _not_safetensors(path, f"tensor {name!r}: data is not contiguous")
        pos = end_
    if 8 + n + pos != size:
        raise _not_safetensors(path, f"the tensors need {8 + n + pos} bytes, the file has {size}")
    return header


def check_finite(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse NaN or inf in any floating-point tensor, naming the first one."""
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{path}: tensor {key!r} holds NaN or inf values (a diverged run or a damaged file); "
                "refusing to load it"
            )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a dbgan ``.safetensors`` checkpoint; clear errors for anything else.

    The header is read and checked first (length, dtypes, shapes, offsets against the file
    size), so a large file that is not a checkpoint is refused without being read; weights
    holding NaN or inf are refused naming the tensor.
    """
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
    header = read_header(path)
    raw_meta = header.get("__metadata__", {}).get("dbgan")
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
            if sidecar.stat().st_size > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: its metadata {sidecar} is too large to be dbgan's")
            raw_meta = sidecar.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: cannot read its metadata {sidecar} ({exc})") from None
    try:
        meta = json.loads(raw_meta)
    except (ValueError, RecursionError) as exc:
        meta = exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the dbgan metadata in {where} is damaged ({str(meta)[:80]})")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {str(meta.get('format'))[:40]!r}")
    nets = meta.get("nets", {})
    if not isinstance(nets, dict):
        raise CheckpointError(f"{path}: the dbgan metadata in {where} is damaged ('nets' is not a mapping)")
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError, RuntimeError) as exc:
        raise _not_safetensors(path, str(exc)[:200]) from None
    check_finite(path, tensors)
    shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    return Checkpoint(path=path, tensors=tensors, meta=meta, shapes=shapes)


def check_fit(own: dict[str, tuple[int, ...]], state: dict[str, tuple[int, ...]], where: str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly the tensor names and shapes of ``own``."""
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shape = [k for k in own if k in state and tuple(own[k]) != tuple(state[k])]
    if missing or extra or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected tensors (e.g. {extra[0]})")
        if shape:
            k = shape[0]
            parts.append(f"shape mismatch at {k}: {tuple(state[k])} vs {tuple(own[k])}")
        raise CheckpointError(
            f"{where}: weights do not fit this architecture: {'; '.join(parts)}. "
            "Was it saved from another architecture or config?"
        )


def load_into(net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``net`` strictly, explaining architecture mismatches."""
    own = net.state_dict()
    check_fit({k: tuple(v.shape) for k, v in own.items()}, {k: tuple(v.shape) for k, v in state.items()}, where)
    net.load_state_dict(state)
