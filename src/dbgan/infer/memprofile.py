"""Memory: the default activation budget and a measured estimate of activation bytes per pixel."""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from dbgan.infer.common import DEFAULT_CPU_BUDGET_MB, SAFETY_FACTOR
from dbgan.infer.tiling import _round_up

# --------------------------------------------------------------------------- memory budget


def _available_ram_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_budget_mb(device: torch.device) -> float:
    """Activation budget for one tile batch: CUDA half the free memory; else 1 GiB (at most 1/4 of free RAM)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free / 2**20 / 2
    budget = float(DEFAULT_CPU_BUDGET_MB)
    avail = _available_ram_bytes()
    if avail:
        budget = min(budget, max(128.0, avail / 2**20 / 4))
    return budget


# --------------------------------------------------------------------------- memory estimate


def estimate_bytes_per_pixel(
    net: nn.Module,
    in_channels: int,
    multiple: int,
    device: torch.device,
    autocast_dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
    noise_fn: Optional[Callable[[Tensor], Optional[Tensor]]] = None,
) -> float:
    """Peak activation bytes per input pixel (batch 1) of ``net``, measured on a small probe image.

    On CUDA the probe's ``max_memory_allocated`` is used. Elsewhere forward hooks on
    every leaf module track (by weak reference) the tensors that enter and leave
    modules and record the largest total still alive at any module boundary, i.e.
    the live set a framework must hold (U-Net skips included, freed intermediates
    of deep sequential nets excluded). The result is multiplied by
    :data:`SAFETY_FACTOR`. The probe is ``max(64, size_multiple)`` pixels square.
    """
    side = _round_up(max(64, multiple), multiple)
    x = torch.rand(1, in_channels, side, side, generator=torch.Generator().manual_seed(0))
    noise = noise_fn(x) if noise_fn is not None else None
    x = x.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if noise is not None:
        noise = noise.to(device)
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()

    def run() -> Tensor:
        with torch.inference_mode(), ctx:
            return net(x) if noise is None else net(x, noise)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        y = run()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del y
    else:
        tracked: dict[int, tuple[weakref.ref, int]] = {}
        state = {"peak": 0}

        def track(obj: Any) -> None:
            if isinstance(obj, Tensor):
                try:
                    st = obj.untyped_storage()
                    tracked[st.data_ptr()] = (weakref.ref(obj), st.nbytes())
                except (RuntimeError, TypeError):  # pragma: no cover - exotic tensor types
                    pass
            elif isinstance(obj, (list, tuple)):
                for o in obj:
                    track(o)

        def measure() -> None:
            total = 0
            for key in list(tracked):
                ref, nbytes = tracked[key]
                if ref() is None:
                    del tracked[key]
                else:
                    total += nbytes
            state["peak"] = max(state["peak"], total)

        def pre_hook(_m: nn.Module, args: Any) -> None:
            track(args)
            measure()

        def post_hook(_m: nn.Module, args: Any, out: Any) -> None:
            track(args)
            track(out)
            measure()

        handles = []
        for m in net.modules():
            if next(m.children(), None) is None:
                handles.append(m.register_forward_pre_hook(pre_hook))
                handles.append(m.register_forward_hook(post_hook))
        try:
            track(x)
            y = run()
            track(y)
            measure()
        finally:
            for h in handles:
                h.remove()
        peak = state["peak"]
        del y
    return SAFETY_FACTOR * max(peak, 1) / (side * side)
