"""Deblur (and blur) images of any size with a trained checkpoint.

:class:`Deblurrer` runs a checkpoint's ``deblur_g``, :class:`Blurrer` its
``blur_g`` (the BGAN as a realistic-blur generator); :func:`run_folder` is what
``dbgan deblur`` / ``dbgan blur`` call. This module never imports ``dbgan.train``.

How an image goes through a network
-----------------------------------
1. **Channels.** Grey in gives grey out and colour in gives colour out:

   * image 1 channel, net 3 channels: the grey plane is repeated to RGB, the
     RGB output converted back to grey with the ITU-R BT.601 luma weights
     (0.299, 0.587, 0.114), the same conversion :mod:`dbgan.io` uses;
   * image 3 channels, net 1 channel: each colour plane is run as its own grey
     image (a batch of 3) and the planes are stacked again ("per channel"). A
     grey-trained net thus never mixes colours; a blur net gets the *same* noise
     for the three planes so that they blur alike.
2. **Size.** The image is padded at the bottom/right to a multiple of the net's
   ``size_multiple`` (reflect as far as the image allows, then replicate: the
   nets' own :func:`dbgan.nets.common.pad_to_multiple`) and the output is cropped
   back. Images are never resized. An untiled image without a noise input goes to
   a dbgan generator unpadded instead: it pads itself the same way, and the U-Net
   then decodes only the image, not the padding (cropped decoding).
3. **Tiles.** With ``tile=T`` the padded image is covered by ``T x T`` tiles
   stepping ``T - overlap``; the last tile of each row/column is flush with the
   border. Tiles are blended with raised-cosine ramps across each overlap (no ramp
   at the image border), the 1-D weights normalised so that they sum to one at
   every pixel: the blend is a convex combination, exact where tiles agree. When
   ``T`` is at least the image's height and width, the untiled code path runs
   (bit-identical to ``tile=None`` on a small image).
4. **Memory.** The whole image, the padded copy and the blended output stay in
   CPU memory; only tile batches go to the device. With ``tile=None`` the image is
   tiled automatically when its estimated activation memory exceeds
   ``memory_budget_mb`` (see :func:`estimate_bytes_per_pixel`).

Noise of blur generators
------------------------
:class:`Blurrer` draws the noise once per image, for the whole padded image, from
a CPU ``torch.Generator`` (so the same seed gives the same blur on every device),
then cuts the noise map per tile (tile positions are aligned to the map's
resolution), so tiles see one consistent noise field; a noise vector is shared by
all tiles.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Protocol, Sequence, Union

import torch
from torch import Tensor, nn

from dbgan.constants import LUMA
from dbgan.nets.common import ImageGenerator, SamplesNoise
from dbgan.device import DeviceError, pick_device  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
DType = Literal["fp32", "bf16", "fp16"]

#: Autocast dtypes by name (``fp32`` runs without autocast).
DTYPES: dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


#: Activation bytes per input pixel assumed when a backend cannot be measured (an
#: ONNX file run without its checkpoint): 512 float32 values per pixel. The seed
#: U-Net (``num_downs=8, ngf=64``) needs ~0.75 KiB per pixel at its peak in
#: onnxruntime and PyTorch alike (measured by ``benchmarks/infer_speed.py``), so
#: this is conservative for it by ~2.7x.
DEFAULT_BYTES_PER_PIXEL = 2048.0

#: Factor applied to the measured live activation memory (convolution workspaces,
#: temporaries between module boundaries that the hooks do not see, fragmentation).
SAFETY_FACTOR = 1.5

#: Default activation budget on CPU / MPS, in MiB (CUDA: half the free device memory).
DEFAULT_CPU_BUDGET_MB = 1024

#: Upper bound of the automatic ``tile_batch`` (CUDA; CPU and MPS use 1 because
#: batching tiles does not speed up CPU convolutions and costs memory).
MAX_AUTO_TILE_BATCH = 8


class InferenceError(ValueError):
    """Bad input to inference: a path that would overwrite its input, a missing model, bad settings."""


# --------------------------------------------------------------------------- device


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


# --------------------------------------------------------------------------- padding / tiles


def pad_image(x: Tensor, multiple: int) -> Tensor:
    """Pad ``N x C x H x W`` at the bottom/right to a multiple (reflect, then replicate), as the nets do."""
    from dbgan.nets.common import pad_to_multiple

    return pad_to_multiple(x, multiple)[0]


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``[0, size)`` with at least ``overlap`` shared pixels.

    Tiles step ``tile - overlap`` (starts rounded down to multiples of ``align``);
    the last tile ends exactly at ``size``. ``tile >= size`` gives ``[0]``.
    """
    if tile >= size:
        return [0]
    step = tile - overlap
    if step < 1:
        raise InferenceError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    starts = []
    pos = 0
    last = size - tile
    while pos < last:
        starts.append(pos - pos % align)
        pos += step
    if last % align:
        raise InferenceError(f"tile end {last} is not a multiple of {align}")
    starts.append(last)
    return sorted(set(starts))


def _ramp(n: int, device: Any = None) -> Tensor:
    """Raised-cosine ramp of ``n`` values strictly inside (0, 1), rising."""
    i = torch.arange(n, dtype=torch.float64, device=device)
    return 0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / n)


def blend_weights(starts: Sequence[int], tile: int, size: int) -> list[Tensor]:
    """Per-tile 1-D blending weights along one axis, normalised to sum to 1 at every position.

    Each tile's weight is 1, falling as a raised cosine across the region it shares
    with its neighbour (the whole shared region, which is ``overlap`` or more for
    the last tile) and staying 1 at the image border. All weights are > 0, so the
    normalisation is defined everywhere and a pixel where all tiles agree gets
    exactly their value (up to float rounding).
    """
    raw = []
    for k, s in enumerate(starts):
        w = torch.ones(min(tile, size), dtype=torch.float64)
        if k > 0:
            shared = starts[k - 1] + tile - s
            if shared > 0:
                w[:shared] = torch.minimum(w[:shared], _ramp(shared))
        if k + 1 < len(starts):
            shared = s + tile - starts[k + 1]
            if shared > 0:
                w[-shared:] = torch.minimum(w[-shared:], _ramp(shared).flip(0))
        raw.append(w)
    total = torch.zeros(size, dtype=torch.float64)
    for s, w in zip(starts, raw):
        total[s : s + w.numel()] += w
    return [(w / total[s : s + w.numel()]).to(torch.float32) for s, w in zip(starts, raw)]


@dataclass
class TilePlan:
    """Where the tiles of one padded image go (``single``: one tile = the untiled path)."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: list[int]
    xs: list[int]

    @property
    def single(self) -> bool:
        return len(self.ys) == 1 and len(self.xs) == 1

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def _round_down(v: int, m: int) -> int:
    return max(m, v // m * m)


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def _auto_axis(size: int, max_tile: int, overlap: int, multiple: int) -> int:
    """Tile length (a multiple of ``multiple``, <= ``max_tile``) for covering ``size`` cheaply.

    ``n`` tiles of length ``t = round_up(ceil((size + (n-1) * overlap) / n), multiple)``
    are scored ``n * (t + multiple / 2)``: the computed length plus a per-tile
    penalty, because small tiles starve a net with a large ``size_multiple`` (the
    U-Net's innermost levels) of context and run less efficiently. The best score
    wins, fewer tiles on ties.
    """
    if size <= max_tile:
        return size
    best: Optional[tuple[float, int, int]] = None
    n = 2
    while n <= size:
        t = max(multiple, _round_up(-(-(size + (n - 1) * overlap) // n), multiple))
        if t <= max_tile or t == multiple:
            cand = (n * (t + multiple / 2), n, t)
            if best is None or cand < best:
                best = cand
            if n > best[1] + 6 or t == multiple:
                break
        n += 1
    return best[2] if best is not None else max(max_tile, multiple)


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


# --------------------------------------------------------------------------- backends


class Backend(Protocol):
    """What runs one batch of (already padded) tiles: ``N x in_channels x h x w`` CPU float32 -> CPU float32."""

    in_channels: int
    out_channels: int
    size_multiple: int
    device: torch.device

    def __call__(self, x: Tensor, noise: Optional[Tensor] = None) -> Tensor: ...

    def sample_noise(self, x: Tensor, generator: Optional[torch.Generator]) -> Optional[Tensor]: ...

    def bytes_per_pixel(self) -> float: ...

    def session(self) -> contextlib.AbstractContextManager: ...


class TorchBackend:
    """Run a PyTorch network on ``device`` with optional bf16/fp16 autocast and channels_last.

    Args:
        net: an image-to-image network (attributes ``in_channels``, ``out_channels``,
            ``size_multiple``; blur generators also ``sample_noise``).
        device: where tiles are computed.
        dtype: ``"fp32"`` (no autocast), ``"bf16"`` or ``"fp16"`` (autocast).
        channels_last: convert the net and its inputs to channels_last memory format.
    """

    def __init__(self, net: nn.Module, device: torch.device, dtype: str = "fp32", channels_last: bool = False):
        if dtype not in DTYPES:
            raise InferenceError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.device = device
        self.dtype_name = dtype
        self.autocast_dtype = DTYPES[dtype]
        if self.autocast_dtype is torch.float16 and device.type == "cpu":
            log.warning("fp16 autocast on CPU is slow on most CPUs; bf16 is usually the better choice")
        self.channels_last = bool(channels_last)
        net = net.eval().to(device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.in_channels = int(getattr(net, "in_channels", 3))
        self.out_channels = int(getattr(net, "out_channels", self.in_channels))
        self.size_multiple = int(getattr(net, "size_multiple", 1))
        # dbgan's generators pad to their size multiple themselves (the same
        # pad_to_multiple as pad_image) and may then compute only the crop they return
        self.pads_itself = isinstance(net, ImageGenerator)
        self._bpp: Optional[float] = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Keep one autocast context (and its cast-weight cache) open across all tiles of an image."""
        with torch.inference_mode(), self._autocast():
            yield

    def sample_noise(self, x: Tensor, generator: Optional[torch.Generator]) -> Optional[Tensor]:
        if not isinstance(self.net, SamplesNoise):
            return None
        return self.net.sample_noise(x, generator)

    def __call__(self, x: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            if noise is None:
                y = self.net(x)
            else:
                y = self.net(x, noise.to(self.device, non_blocking=True))
        return y.to("cpu", torch.float32)

    def bytes_per_pixel(self) -> float:
        if self._bpp is None:
            noise_fn = None
            if isinstance(self.net, SamplesNoise):
                noise_fn = lambda t: self.net.sample_noise(t, torch.Generator().manual_seed(0))  # noqa: E731
            self._bpp = estimate_bytes_per_pixel(
                self.net, self.in_channels, self.size_multiple, self.device,
                self.autocast_dtype, self.channels_last, noise_fn,
            )
            log.debug("estimated %.0f activation bytes per pixel", self._bpp)
        return self._bpp


class OnnxBackend:
    """Run an exported ONNX model (:class:`dbgan.export.OnnxRunner`) as a tile backend.

    Args:
        runner: the onnxruntime session wrapper.
        bytes_per_pixel: activation estimate to plan tiles with (default
            :data:`DEFAULT_BYTES_PER_PIXEL`, or a measurement of the source network).
    """

    def __init__(self, runner: Any, bytes_per_pixel: Optional[float] = None):
        self.runner = runner
        self.device = torch.device("cuda" if runner.uses_cuda else "cpu")
        self.in_channels = runner.in_channels
        self.out_channels = runner.out_channels
        self.size_multiple = runner.size_multiple
        self._bpp = bytes_per_pixel

    def session(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def sample_noise(self, x: Tensor, generator: Optional[torch.Generator]) -> Optional[Tensor]:
        return self.runner.sample_noise(x, generator)

    def __call__(self, x: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        return self.runner(x, noise)

    def bytes_per_pixel(self) -> float:
        return self._bpp if self._bpp is not None else DEFAULT_BYTES_PER_PIXEL


# --------------------------------------------------------------------------- runners


class _ImageRunner:
    """Shared machinery of :class:`Deblurrer` and :class:`Blurrer` (see the module docstring)."""

    role = "deblur_g"

    def __init__(
        self,
        net: Union[nn.Module, Backend],
        *,
        device: Union[str, torch.device] = "auto",
        dtype: DType = "fp32",
        channels_last: Optional[bool] = None,
        tile: Optional[int] = None,
        overlap: int = 32,
        tile_batch: Optional[int] = None,
        memory_budget_mb: Optional[float] = None,
    ):
        if isinstance(net, nn.Module):
            dev = device if isinstance(device, torch.device) else pick_device(device)
            if channels_last is None:
                channels_last = dev.type in ("cpu", "cuda")
            self.backend: Backend = TorchBackend(net, dev, dtype, channels_last)
        else:
            self.backend = net
        if tile is not None and tile < 1:
            raise InferenceError(f"tile must be a positive number of pixels, got {tile}")
        if overlap < 0:
            raise InferenceError(f"overlap must be >= 0, got {overlap}")
        if tile_batch is not None and tile_batch < 1:
            raise InferenceError(f"tile_batch must be >= 1, got {tile_batch}")
        self.tile = tile
        self.overlap = int(overlap)
        self.tile_batch = tile_batch
        self.memory_budget_mb = (
            float(memory_budget_mb) if memory_budget_mb is not None else default_memory_budget_mb(self.backend.device)
        )
        self.last_plan: Optional[TilePlan] = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(
        cls,
        path: PathLike,
        *,
        device: str = "auto",
        dtype: DType = "fp32",
        channels_last: Optional[bool] = None,
        tile: Optional[int] = None,
        overlap: int = 32,
        tile_batch: Optional[int] = None,
        memory_budget_mb: Optional[float] = None,
        onnx: bool = False,
        prefer_ema: bool = True,
        **kwargs: Any,
    ) -> "_ImageRunner":
        """Load the runner's network from a checkpoint (``.safetensors`` or run directory).

        Args:
            path: the checkpoint; with ``onnx=True`` an ``.onnx`` file, or a checkpoint
                with its export beside it (``NAME.onnx`` for ``deblur_g``,
                ``NAME.blur_g.onnx`` for ``blur_g``; see :func:`dbgan.export.onnx_path_for`).
            device: ``auto``, ``cpu``, ``cuda[:i]``, ``mps`` (ONNX: CUDA provider if
                available and the device allows, else CPU).
            dtype: ``fp32`` (default, exact), ``bf16`` or ``fp16`` autocast (PyTorch only).
            channels_last: None = on for CPU and CUDA.
            tile, overlap, tile_batch, memory_budget_mb: see the class docstring.
            prefer_ema: load the EMA weights when the checkpoint has them.
        """
        common = dict(tile=tile, overlap=overlap, tile_batch=tile_batch, memory_budget_mb=memory_budget_mb, **kwargs)
        if onnx:
            from dbgan.export import OnnxRunner, onnx_path_for

            p = Path(path)
            onnx_file = p if p.suffix.lower() == ".onnx" else onnx_path_for(_resolve_checkpoint_file(p), cls.role)
            if not onnx_file.is_file():
                raise InferenceError(
                    f"{onnx_file}: ONNX model not found; export it first with "
                    f"`dbgan export {path} {onnx_file}`"
                )
            if dtype != "fp32":
                log.warning("dtype %s is ignored by onnxruntime (the model runs in float32)", dtype)
            runner = OnnxRunner(onnx_file, device=device)
            if runner.role and runner.role != cls.role:
                raise InferenceError(f"{onnx_file}: holds a {runner.role} network, not {cls.role}")
            bpp = None
            if p.suffix.lower() != ".onnx" and tile is None:
                # the checkpoint is at hand: measure its network's activations for automatic tiling
                from dbgan.checkpoint import load_checkpoint

                net = load_checkpoint(p).build(cls.role, prefer_ema=prefer_ema)
                bpp = TorchBackend(net, torch.device("cpu")).bytes_per_pixel()
            return cls(OnnxBackend(runner, bytes_per_pixel=bpp), **common)
        from dbgan.checkpoint import load_checkpoint

        p = Path(path)
        if p.suffix.lower() == ".onnx":
            raise InferenceError(f"{p}: an ONNX model; pass onnx=True (--onnx) to run it with onnxruntime")
        ckpt = load_checkpoint(p)
        net = ckpt.build(cls.role, prefer_ema=prefer_ema)
        log.info("loaded %s from %s (stage %s, iter %s)", cls.role, ckpt.path, ckpt.meta.get("stage"), ckpt.meta.get("iter"))
        return cls(net, device=device, dtype=dtype, channels_last=channels_last, **common)

    # ------------------------------------------------------------------ planning

    @property
    def in_channels(self) -> int:
        return self.backend.in_channels

    @property
    def size_multiple(self) -> int:
        return self.backend.size_multiple

    def plan(self, height: int, width: int, batch: int = 1, align: int = 1) -> TilePlan:
        """Tile plan for an image of ``height x width`` (unpadded) run as ``batch`` net inputs."""
        m = max(1, self.size_multiple)
        hp, wp = _round_up(height, m), _round_up(width, m)
        if self.tile is not None:
            if self.tile >= height and self.tile >= width:
                return TilePlan(hp, wp, hp, wp, [0], [0])
            t = _round_down(self.tile, m)
            t = max(t, _round_up(align, m))
            if t != self.tile:
                log.info("tile %d rounded to %d (a multiple of the net's %d)", self.tile, t, m)
            th = hp if self.tile >= height else min(t, hp)
            tw = wp if self.tile >= width else min(t, wp)
        else:
            budget = self.memory_budget_mb * 2**20
            bpp = self.backend.bytes_per_pixel()
            if hp * wp * batch * bpp <= budget:
                return TilePlan(hp, wp, hp, wp, [0], [0])
            max_side = int(math.sqrt(budget / (bpp * batch)))
            floor = _round_up(max(2 * self.overlap + 1, 64, align), m)
            max_tile = max(_round_down(max_side, m), floor)
            th = _auto_axis(hp, max_tile, self.overlap, m)
            tw = _auto_axis(wp, max_tile, self.overlap, m)
            log.info(
                "image %dx%d needs ~%.0f MiB of activations (> budget %.0f MiB): tiles %dx%d",
                width, height, hp * wp * batch * bpp / 2**20, self.memory_budget_mb, tw, th,
            )
        ov = min(self.overlap, max(0, min(th, tw) - 1))
        ys = tile_starts(hp, th, ov, align)
        xs = tile_starts(wp, tw, ov, align)
        return TilePlan(hp, wp, th, tw, ys, xs)

    def _tile_batch(self, plan: TilePlan, batch: int) -> int:
        if self.tile_batch is not None:
            return self.tile_batch
        if self.backend.device.type != "cuda":
            return 1
        per_tile = plan.tile_h * plan.tile_w * self.backend.bytes_per_pixel()
        return int(max(1, min(MAX_AUTO_TILE_BATCH, self.memory_budget_mb * 2**20 // max(per_tile, 1))))

    # ------------------------------------------------------------------ running

    def _prepare(self, img: Tensor) -> tuple[Tensor, str]:
        """``C x H x W`` image -> ``B x in_channels x H x W`` net input and the channel mode."""
        if not isinstance(img, Tensor):
            raise TypeError(f"expected a torch.Tensor C x H x W, got {type(img).__name__}")
        if img.dim() != 3:
            raise InferenceError(f"expected one image C x H x W, got shape {tuple(img.shape)}")
        img = img.detach().to("cpu", torch.float32)
        c, cn = img.shape[0], self.in_channels
        if c == cn:
            return img.unsqueeze(0), "same"
        if c == 1 and cn == 3:
            return img.expand(3, -1, -1).unsqueeze(0), "grey_to_rgb"
        if c == 3 and cn == 1:
            return img.unsqueeze(1), "per_channel"
        raise InferenceError(f"the network takes {cn} channel(s); cannot run a {c}-channel image")

    def _finish(self, out: Tensor, mode: str) -> Tensor:
        """``B x out_channels x H x W`` net output -> ``C x H x W`` image of the input's channel count."""
        if mode == "per_channel":
            out = out[:, 0] if out.shape[1] == 1 else out.mean(dim=1)
        else:
            out = out[0]
            if mode == "grey_to_rgb" and out.shape[0] == 3:
                w = torch.tensor(LUMA, dtype=out.dtype).view(3, 1, 1)
                out = (out * w).sum(dim=0, keepdim=True)
        out = out.contiguous()
        if out.is_inference():  # made under inference_mode: return a normal tensor
            return out.clamp(0.0, 1.0)
        return out.clamp_(0.0, 1.0)  # the blended buffer: clamp in place (saves one image copy)

    def _run(self, img: Tensor, generator: Optional[torch.Generator] = None, use_noise: bool = False) -> Tensor:
        x, mode = self._prepare(img)
        b, _, h, w = x.shape
        m = max(1, self.size_multiple)
        xp = pad_image(x, m) if (h % m or w % m) else x
        noise = self.backend.sample_noise(xp[:1], generator) if use_noise else None
        align, scale = 1, (1, 1)
        if noise is not None and noise.dim() == 4:
            nh, nw = noise.shape[-2:]
            hp, wp = xp.shape[-2:]
            if hp % nh or wp % nw:
                raise InferenceError(f"noise map {nh}x{nw} does not divide the padded image {hp}x{wp}")
            scale = (hp // nh, wp // nw)
            align = max(scale)
        plan = self.plan(h, w, batch=b, align=align)
        self.last_plan = plan
        if plan.single:
            if noise is not None and b > 1:
                noise = noise.expand(b, *noise.shape[1:])
            # an unpadded image to a net that pads it itself gives the same result, and lets
            # the U-Net decode only the image, not the padding (cropped decoding)
            own_pad = noise is None and getattr(self.backend, "pads_itself", False)
            with self.backend.session():
                out = self.backend(x if own_pad else xp, noise)
        else:
            # allocated outside inference_mode, so the result is an ordinary tensor
            out = torch.zeros(b, self.backend.out_channels, plan.height, plan.width, dtype=torch.float32)
            with self.backend.session():
                self._run_tiled(xp, noise, plan, scale, out)
        del xp
        return self._finish(out[..., :h, :w], mode)

    def _run_tiled(self, xp: Tensor, noise: Optional[Tensor], plan: TilePlan, scale: tuple[int, int], out: Tensor) -> None:
        """Run the tiles of ``xp`` and accumulate their weighted outputs into ``out`` (zeros, padded size)."""
        b = xp.shape[0]
        th, tw = plan.tile_h, plan.tile_w
        wy = blend_weights(plan.ys, th, plan.height)
        wx = blend_weights(plan.xs, tw, plan.width)
        jobs = [(i, iy, ix) for iy in range(len(plan.ys)) for ix in range(len(plan.xs)) for i in range(b)]
        per = self._tile_batch(plan, b)
        log.debug("%d tiles of %dx%d in batches of %d", len(jobs), tw, th, per)
        for k in range(0, len(jobs), per):
            chunk = jobs[k : k + per]
            xin = torch.stack([xp[i, :, plan.ys[iy] : plan.ys[iy] + th, plan.xs[ix] : plan.xs[ix] + tw] for i, iy, ix in chunk])
            nin = None
            if noise is not None:
                if noise.dim() == 4:
                    sy, sx = scale
                    nin = torch.cat([
                        noise[:, :, plan.ys[iy] // sy : (plan.ys[iy] + th) // sy, plan.xs[ix] // sx : (plan.xs[ix] + tw) // sx]
                        for _i, iy, ix in chunk
                    ])
                else:
                    nin = noise[:1].expand(len(chunk), *noise.shape[1:])
            y = self.backend(xin, nin)
            for j, (i, iy, ix) in enumerate(chunk):
                y0, x0 = plan.ys[iy], plan.xs[ix]
                weight = wy[iy][:, None] * wx[ix][None, :]
                out[i, :, y0 : y0 + th, x0 : x0 + tw].addcmul_(y[j], weight)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(backend={type(self.backend).__name__}, device={self.backend.device}, "
            f"tile={self.tile}, overlap={self.overlap}, memory_budget_mb={self.memory_budget_mb:.0f})"
        )


class Deblurrer(_ImageRunner):
    """Deblur images of any size with a checkpoint's ``deblur_g``.

    Args:
        net: the network (or a :class:`Backend`, e.g. :class:`OnnxBackend`).
        device: ``auto`` | ``cpu`` | ``cuda[:i]`` | ``mps`` (PyTorch nets).
        dtype: ``fp32`` (default), ``bf16`` or ``fp16`` autocast.
        channels_last: channels_last memory format (None: on for CPU and CUDA).
        tile: tile size in pixels (rounded down to the net's ``size_multiple``);
            None tiles automatically when the image exceeds the memory budget.
        overlap: pixels shared by neighbouring tiles (blended with raised cosines).
        tile_batch: tiles per forward pass (None: 1 on CPU/MPS, as many as the
            budget allows up to 8 on CUDA).
        memory_budget_mb: activation memory allowed for one tile batch (None: half
            the free CUDA memory, or 1 GiB on CPU/MPS).

    Call it on a ``C x H x W`` float tensor in ``[0, 1]`` (on the CPU; C = 1 or 3)
    to get the deblurred image of the same size and channel count.
    """

    role = "deblur_g"

    def __call__(self, img: Tensor) -> Tensor:
        """Deblur one ``C x H x W`` image in ``[0, 1]``; returns ``C x H x W`` on the CPU."""
        return self._run(img)


class Blurrer(_ImageRunner):
    """Blur sharp images with a checkpoint's ``blur_g`` (the BGAN), reproducibly.

    Same arguments as :class:`Deblurrer`, plus ``seed``: the generator's noise is
    drawn from a CPU ``torch.Generator`` seeded with ``seed`` at construction and
    advanced by every call (a fixed sequence of blurs); ``blurrer(img, seed=s)``
    draws from a fresh generator seeded ``s`` instead, so the same ``s`` always
    gives the same blur of the same image.
    """

    role = "blur_g"

    def __init__(self, net: Union[nn.Module, Backend], *, seed: int = 0, **kwargs: Any):
        super().__init__(net, **kwargs)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, img: Tensor, seed: Optional[int] = None) -> Tensor:
        """Blur one ``C x H x W`` image in ``[0, 1]``; ``seed`` fixes the noise for this call."""
        gen = self.generator if seed is None else torch.Generator().manual_seed(int(seed))
        return self._run(img, gen, use_noise=True)


def _resolve_checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        for cand in (path / "checkpoints" / "latest.safetensors", path / "latest.safetensors"):
            if cand.is_file():
                return cand
    return path


# --------------------------------------------------------------------------- folders


@dataclass
class RunResult:
    """What :func:`run_folder` did: files written, outputs left alone, unreadable inputs ``(path, reason)``."""

    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"wrote {len(self.written)} image(s)"]
        if self.skipped_existing:
            parts.append(f"skipped {len(self.skipped_existing)} existing output(s) (overwrite to replace)")
        if self.bad:
            parts.append(f"{len(self.bad)} unreadable input(s)")
        return ", ".join(parts)


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _plan_files(inp: Path, out: Path, out_text: str) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs; refuses layouts that would overwrite the inputs."""
    from dbgan.io import ImageReadError, list_images

    if not inp.exists():
        raise ImageReadError(f"{inp}: input does not exist")
    if inp.is_dir():
        if out.exists() and not out.is_dir():
            raise InferenceError(f"{out}: is a file, but the input {inp} is a folder; give an output folder")
        if _same_path(inp, out):
            raise InferenceError(
                f"{out}: output folder is the input folder; refusing to overwrite the inputs "
                f"(choose another output folder)"
            )
        files = list_images(inp)
        pairs = [(f, out / f.name) for f in files]
    else:
        if out.is_dir() or out_text.endswith(("/", os.sep)):
            target = out / inp.name
        else:
            target = out
        pairs = [(inp, target)]
    for src, dst in pairs:
        if _same_path(src, dst):
            raise InferenceError(f"{dst}: output is the input file; refusing to overwrite it")
    return pairs


def _output_bit_depth(info_bit_depth: int, dst: Path) -> int:
    """16 for a 16-bit (or float) input written to a format that holds 16 bits (PNG, TIFF), else 8."""
    import dbgan.io

    sixteen = getattr(dbgan.io, "_SIXTEEN_BIT_EXTENSIONS", (".png", ".tif", ".tiff"))
    return 16 if info_bit_depth >= 16 and dst.suffix.lower() in sixteen else 8


def file_seed(seed: int, name: str) -> int:
    """Per-file noise seed: a stable hash of ``(seed, file name)`` (independent of order and of other files)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def run_folder(
    checkpoint: Union[PathLike, _ImageRunner],
    input: PathLike,
    output: PathLike,
    *,
    mode: Literal["deblur", "blur"] = "deblur",
    tile: Optional[int] = None,
    overlap: int = 32,
    device: str = "auto",
    onnx: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
    dtype: DType = "fp32",
    memory_budget_mb: Optional[float] = None,
    max_pixels: Optional[int] = None,
) -> RunResult:
    """Deblur (or blur) an image file or a folder of images into OUTPUT.

    Args:
        checkpoint: checkpoint ``.safetensors`` / run directory (``.onnx`` with
            ``onnx=True``), or a ready :class:`Deblurrer` / :class:`Blurrer`.
        input: an image file or a folder of images (not recursive).
        output: folder in -> folder out (same file names); file in -> that file, or
            a file of the same name inside OUTPUT when OUTPUT is an existing folder
            or ends with ``/``.
        mode: ``"deblur"`` (``deblur_g``) or ``"blur"`` (``blur_g``).
        tile, overlap, device, dtype, memory_budget_mb: see :class:`Deblurrer`.
        onnx: run an exported model with onnxruntime (see :meth:`Deblurrer.from_checkpoint`).
        overwrite: replace outputs that exist (otherwise they are skipped and listed).
        seed: blur mode: base seed; each file's noise seed is :func:`file_seed` of it
            and the file name, so a file's blur does not depend on the other files.
        skip_bad: list unreadable inputs in ``bad`` and go on; otherwise the first
            :class:`dbgan.io.ImageReadError` (naming the file) propagates.
        progress: tqdm progress bar over the files.
        max_pixels: decompression-bomb limit per input image (None: the default
            ``dbgan.io.DEFAULT_MAX_PIXELS``; 0: no limit), for huge scans.

    Output files keep the input's channels (grey stays grey) and bit depth (16-bit
    PNG/TIFF in gives 16-bit out where the output format allows it); JPEG/WebP are
    written at quality 95. Every write is atomic.

    Raises:
        InferenceError: the output would overwrite an input, or bad settings.
        dbgan.io.ImageReadError: missing input, empty folder, unreadable image.
        dbgan.checkpoint.CheckpointError: unreadable checkpoint.
    """
    from tqdm.auto import tqdm

    from dbgan.io import ImageReadError, read_image_with_info, write_image

    if mode not in ("deblur", "blur"):
        raise InferenceError(f"mode must be 'deblur' or 'blur', got {mode!r}")
    inp, out = Path(input), Path(output)
    pairs = _plan_files(inp, out, str(output))

    todo = []
    result = RunResult()
    for src, dst in pairs:
        if dst.exists() and not overwrite:
            result.skipped_existing.append(dst)
        else:
            todo.append((src, dst))
    if result.skipped_existing:
        log.info("%d output(s) exist and are kept (overwrite=True replaces them)", len(result.skipped_existing))
    if not todo:
        return result

    if isinstance(checkpoint, _ImageRunner):
        runner = checkpoint
        want = Deblurrer if mode == "deblur" else Blurrer
        if not isinstance(runner, want):
            raise InferenceError(f"mode {mode!r} needs a {want.__name__}, got a {type(runner).__name__}")
    else:
        cls = Deblurrer if mode == "deblur" else Blurrer
        runner = cls.from_checkpoint(
            checkpoint, device=device, dtype=dtype, tile=tile, overlap=overlap, onnx=onnx,
            memory_budget_mb=memory_budget_mb,
        )
    bar = tqdm(todo, desc=mode, unit="img", disable=not progress or len(todo) < 2, dynamic_ncols=True)
    for src, dst in bar:
        try:
            img, info = read_image_with_info(src, max_pixels=max_pixels)
        except ImageReadError as exc:
            msg = str(exc)
            if not skip_bad:
                if str(src) not in msg:
                    raise ImageReadError(f"{src}: {msg}") from None
                raise
            log.warning("skipping unreadable %s", msg)
            result.bad.append((src, msg))
            continue
        if mode == "blur":
            res = runner(img, seed=file_seed(seed, src.name))  # type: ignore[call-arg]
        else:
            res = runner(img)
        quality = 95 if dst.suffix.lower() in (".jpg", ".jpeg", ".webp") else None
        write_image(dst, res, bit_depth=_output_bit_depth(info.bit_depth, dst), quality=quality)
        result.written.append(dst)
        log.debug("wrote %s", dst)
    return result
