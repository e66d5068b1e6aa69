"""The one device picker, shared by training and inference."""

from __future__ import annotations

from typing import Optional

import torch


class DeviceError(ValueError):
    """A device name that is unknown or not available on this machine."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(name: str = "auto", local_rank: Optional[int] = None) -> torch.device:
    """Resolve a device name: ``"auto"`` (CUDA, else Apple MPS, else CPU), ``"cpu"``, ``"cuda[:i]"``, ``"mps"``.

    Args:
        name: the device setting (``device`` in a config, ``--device`` on the command line).
        local_rank: under ``torchrun``, this process's local rank: ``"auto"`` then picks
            CUDA device ``local_rank % device_count``; None picks the current CUDA device.

    Raises:
        DeviceError: the device is unknown or not available on this machine.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            if local_rank is None:
                return torch.device("cuda")
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available (use cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not _mps_available():
            raise DeviceError(f"device {name!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev
