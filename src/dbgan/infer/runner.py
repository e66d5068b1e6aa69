""":class:`Deblurrer` and :class:`Blurrer`: channels, padding, tiling and noise around a backend."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from dbgan.constants import LUMA
from dbgan.device import pick_device
from dbgan.infer.backends import Backend, OnnxBackend, OnnxRunner, TorchBackend, int8_path_for, onnx_path_for
from dbgan.infer.common import DEFAULT_OVERLAP, DType, InferenceError, MAX_AUTO_TILE_BATCH, MAX_TILES, MAX_TILE_WORK, MIN_TILE, PathLike
from dbgan.infer.memprofile import default_memory_budget_mb
from dbgan.infer.pyramid import check_blind, check_levels, coarse_to_fine
from dbgan.infer.tiling import TilePlan, _auto_axis, _round_down, _round_up, blend_weights, pad_image, tile_starts

log = logging.getLogger(__name__)

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
        overlap: Optional[int] = None,
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
        if overlap is None:  # the default: 32 pixels, at most half the tile (an explicit overlap is checked as given)
            overlap = DEFAULT_OVERLAP if tile is None else min(DEFAULT_OVERLAP, max(0, tile // 2))
        if tile is not None and tile < MIN_TILE:
            raise InferenceError(f"tile must be at least {MIN_TILE} pixels, got {tile}")
        if overlap < 0:
            raise InferenceError(f"overlap must be >= 0, got {overlap}")
        if tile is not None and overlap >= tile:
            raise InferenceError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
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
        overlap: Optional[int] = None,
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
                ``NAME.blur_g.onnx`` for ``blur_g``; see :func:`dbgan.infer.backends.onnx_path_for`).
            device: ``auto``, ``cpu``, ``cuda[:i]``, ``mps`` (ONNX: CUDA provider if
                available and the device allows, else CPU).
            dtype: ``fp32`` (default, exact), ``bf16`` or ``fp16`` autocast (PyTorch only),
                ``int8`` (the quantised ONNX model ``NAME.int8.onnx`` beside the checkpoint's
                export, or the ``.onnx`` given, run by onnxruntime; see :mod:`dbgan.quantize`), or
                ``auto`` (:mod:`dbgan.cpu_caps`: on a CPU also the int8 model when it exists and
                records a PSNR cost below 0.05 dB, whether or not ``onnx`` is set).
            channels_last: None = on for CPU and CUDA.
            tile, overlap, tile_batch, memory_budget_mb: see the class docstring.
            prefer_ema: load the EMA weights when the checkpoint has them.
        """
        common = dict(tile=tile, overlap=overlap, tile_batch=tile_batch, memory_budget_mb=memory_budget_mb, **kwargs)
        p = Path(path)
        int8 = _int8_choice(p, cls.role, dtype, device)
        if int8 is not None:
            return cls(_onnx_backend(int8, p, cls.role, tile, prefer_ema), **common)
        if dtype == "int8":  # not reached for deblurrers (_int8_choice raises); blur_g has no int8 path
            raise InferenceError(f"dtype int8 is for deblurrers only, not {cls.role}")
        if onnx:
            onnx_file = p if p.suffix.lower() == ".onnx" else onnx_path_for(_resolve_checkpoint_file(p), cls.role)
            if not onnx_file.is_file():
                raise InferenceError(
                    f"{onnx_file}: ONNX model not found; export it first with "
                    f"`dbgan export {path} {onnx_file}`"
                )
            if dtype not in ("fp32", "auto"):
                log.warning("dtype %s is ignored by onnxruntime (the model runs in float32)", dtype)
            return cls(_onnx_backend(OnnxRunner(onnx_file, device=device), p, cls.role, tile, prefer_ema), **common)
        from dbgan.checkpoint import load_checkpoint

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
        for t, size in ((th, hp), (tw, wp)):  # checked before any clamping (the rounded tile counts)
            if t < size and self.overlap >= t:
                raise InferenceError(
                    f"overlap ({self.overlap}) must be smaller than the tile ({t}"
                    + (f", {self.tile} rounded to a multiple of the net's {m})" if self.tile not in (None, t) else ")")
                )
        ov = min(self.overlap, max(0, min(th, tw) - 1))  # only an axis covered by one tile is clamped
        ys = tile_starts(hp, th, ov, align)
        xs = tile_starts(wp, tw, ov, align)
        n = len(ys) * len(xs)
        work = n * th * tw / max(1, hp * wp)
        if n > 1 and (n > MAX_TILES or work > MAX_TILE_WORK):
            raise InferenceError(
                f"tiling a {width}x{height} image with {tw}x{th} tiles and overlap {self.overlap} needs {n} tiles "
                f"({work:.0f}x the image's pixels); use a larger tile or a smaller overlap"
            )
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
        img = self._checked(img)
        c, cn = img.shape[0], self.in_channels
        if c == cn:
            return img.unsqueeze(0), "same"
        if c == 1 and cn == 3:
            return img.expand(3, -1, -1).unsqueeze(0), "grey_to_rgb"
        if c == 3 and cn == 1:
            return img.unsqueeze(1), "per_channel"
        raise InferenceError(f"the network takes {cn} channel(s); cannot run a {c}-channel image")

    @staticmethod
    def _checked(img: Tensor) -> Tensor:
        """A ``C x H x W`` float image as float32 on the CPU; a clear error for anything else."""
        if not isinstance(img, Tensor):
            raise TypeError(
                f"expected a torch.Tensor C x H x W, got {type(img).__name__}; dbgan.Deblurrer "
                "(from dbgan import Deblurrer) takes numpy arrays, PIL images and batches"
            )
        if not img.is_floating_point():  # a uint8 tensor taken as [0, 1] floats would come out white
            raise TypeError(
                f"expected a float tensor with values in [0, 1], got {img.dtype}; dbgan.Deblurrer "
                "(from dbgan import Deblurrer) scales uint8 tensors itself"
            )
        if img.dim() != 3:
            raise InferenceError(f"expected one image C x H x W, got shape {tuple(img.shape)}")
        return img.detach().to("cpu", torch.float32)

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
            own_pad = noise is None and self.backend.pads_itself
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
            f"tile={self.tile}, overlap={self.overlap}, memory_budget_mb={self.memory_budget_mb:.0f}"
            + (f", coarse_levels={self.coarse_levels}" if getattr(self, "coarse_levels", 0) else "")
            + (f", blind={self.blind}" if getattr(self, "blind", 0) else "") + ")"
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
        coarse_levels: deblur at that many coarser scales (1/2, 1/4, ...) first, coarse
            to fine (:mod:`dbgan.infer.pyramid`), for blur wider than the network's
            training range; 0 (default) runs the network once, at full size.
        blind: camera shake of up to this many pixels (odd, >= 3) is first estimated from
            each image as one motion kernel and deconvolved (:mod:`dbgan.blind`), then the
            network runs on the result; 0 (default): off.

    Call it on a ``C x H x W`` float tensor in ``[0, 1]`` (on the CPU; C = 1 or 3)
    to get the deblurred image of the same size and channel count.
    """

    role = "deblur_g"

    def __init__(self, net: Union[nn.Module, Backend], *, coarse_levels: int = 0, blind: int = 0, **kwargs: Any):
        super().__init__(net, **kwargs)
        self.coarse_levels = check_levels(coarse_levels)
        self.blind = check_blind(blind)

    def __call__(self, img: Tensor) -> Tensor:
        """Deblur one ``C x H x W`` image in ``[0, 1]``; returns ``C x H x W`` on the CPU."""
        if self.blind:
            from dbgan.blind import BlindSetting, blind_deblur

            img = blind_deblur(self._checked(img).float(), BlindSetting(kernel_size=self.blind))[0]
        if self.coarse_levels:
            return coarse_to_fine(self._checked(img), self._run, self.coarse_levels)
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


def _onnx_backend(runner: OnnxRunner, source: Path, role: str, tile: Optional[int], prefer_ema: bool) -> OnnxBackend:
    """An :class:`OnnxBackend` over ``runner``; tiles planned from the checkpoint's network when ``source`` is one."""
    if runner.role and runner.role != role:
        raise InferenceError(f"{runner.path}: holds a {runner.role} network, not {role}")
    bpp = None
    if source.suffix.lower() != ".onnx" and tile is None:
        # the checkpoint is at hand: measure its network's activations for automatic tiling
        from dbgan.checkpoint import load_checkpoint

        net = load_checkpoint(source).build(role, prefer_ema=prefer_ema)
        bpp = TorchBackend(net, torch.device("cpu")).bytes_per_pixel()
    return OnnxBackend(runner, bytes_per_pixel=bpp)


def _int8_choice(path: Path, role: str, dtype: str, device: str) -> Optional[OnnxRunner]:
    """The int8 model to run for ``dtype`` (``int8``: required; ``auto``: by the rule), else None.

    The int8 model of a checkpoint ``NAME.safetensors`` is ``NAME.int8.onnx`` (beside its
    export ``NAME.onnx``); of an export ``NAME.onnx``, ``NAME.int8.onnx``; an ``.int8.onnx``
    file is its own. ``auto`` takes it only on a CPU, when onnxruntime is installed and
    :func:`dbgan.cpu_caps.int8_default_rule` accepts its recorded PSNR cost.
    """
    if dtype not in ("int8", "auto") or role != "deblur_g":
        return None
    if path.name.lower().endswith(".int8.onnx"):
        candidate = path
    elif path.suffix.lower() == ".onnx":
        candidate = int8_path_for(path)
    else:
        candidate = int8_path_for(onnx_path_for(_resolve_checkpoint_file(path), role))
    if dtype == "int8":
        if not candidate.is_file():
            fp32 = candidate.with_name(candidate.name[: -len(".int8.onnx")] + ".onnx")
            source = "CHECKPOINT" if path.suffix.lower() == ".onnx" else str(path)
            raise InferenceError(
                f"{candidate}: int8 model not found; make it with "
                f"`dbgan export {source} {fp32} --int8 --calibration BLURRED_PHOTOS_DIR`"
            )
        runner = OnnxRunner(candidate, device="cpu")
        stale = _stale(runner, path)
        if stale:
            raise InferenceError(f"{candidate}: {stale}")
        if runner.precision != "int8":
            log.warning("%s: --dtype int8 given, but this model's metadata says %s", candidate, runner.precision)
        return runner
    if not candidate.is_file() or pick_device(device).type != "cpu":
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.info("%s not used by --dtype auto: onnxruntime is not installed", candidate)
        return None
    from dbgan.cpu_caps import int8_default_rule

    runner = OnnxRunner(candidate, device="cpu")
    stale = _stale(runner, path)
    if stale:
        log.warning("--dtype auto: not the int8 model %s: %s", candidate, stale)
        return None
    take, why = int8_default_rule(runner.int8_cost_db)
    log.info("--dtype auto: %s %s, because %s", "int8" if take else "not the int8 model", candidate, why)
    return runner if take else None


def _stale(runner: OnnxRunner, path: Path) -> Optional[str]:
    """Why the ONNX model beside checkpoint ``path`` is not an export of it (None: it is, or ``path`` is no checkpoint).

    An export records the sha256 of the checkpoint it was made from; a checkpoint saved
    again under the same name (``latest.safetensors``) no longer matches it.
    """
    if path.suffix.lower() == ".onnx":
        return None
    from dbgan.models import sha256_file

    ckpt = _resolve_checkpoint_file(path)
    if runner.checkpoint_sha256 is None:
        return f"it does not record which checkpoint it was made from; export {ckpt} again"
    if runner.checkpoint_sha256 != sha256_file(ckpt):
        return f"it was made from another version of {ckpt} (sha256 differs); export it again"
    return None


def _resolve_checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        for cand in (path / "checkpoints" / "latest.safetensors", path / "latest.safetensors"):
            if cand.is_file():
                return cand
    return path
