"""The Python API: ``from dbgan import Deblurrer, load_model``.

:class:`Deblurrer` wraps the tiled inference runner (:class:`dbgan.infer.Deblurrer`)
and takes images the way notebooks and scripts hold them, giving back the same
kind, shape and dtype:

==========================  ===============================================================
input                       values and result
==========================  ===============================================================
numpy ``uint8``             ``H x W`` or ``H x W x C``; 0..255; result ``uint8``
numpy ``uint16``            0..65535 (16-bit microscopy, scans); result ``uint16``
numpy float (16/32/64)      ``[0, 1]``; result of the same float dtype
PIL image                   modes ``L``, ``RGB``, ``RGBA``, ``LA``, ``I;16``, ``I``, ``F``
                            (``P`` / ``CMYK`` / ``YCbCr`` are converted to ``RGB``);
                            result a PIL image of the same mode and size, ``info``
                            (ICC profile, EXIF) copied
torch tensor                ``C x H x W`` or ``B x C x H x W``; float in ``[0, 1]`` or
                            ``uint8`` in 0..255 (scaled, not taken as 0..1); result on
                            the input's device, same dtype
==========================  ===============================================================

``C`` is 1 (grey), 3 (RGB), 2 or 4 (an alpha channel, passed through unchanged).
Anything else -- a list, a float image in 0..255, ``int32`` pixels, a 5-D tensor --
is a :class:`TypeError` or :class:`ValueError` that says what is accepted.

``progress`` (a callable ``(tiles_done, tiles_total)``) is called after each tile
batch of a tiled image; the web app shows it as a progress bar. With ``coarse_levels``
it counts each level's run afresh (the last one is the full size).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor

from dbgan import infer
from dbgan.infer.pyramid import refuse_for_ready_runner

log = logging.getLogger(__name__)

__all__ = ["Deblurrer", "load_model", "resolve_model"]

Progress = Callable[[int, int], None]

_NUMPY_FLOATS = (np.float16, np.float32, np.float64)
_PIL_CONVERT_TO_RGB = ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1")


def resolve_model(name_or_path: Union[str, Path]) -> Path:
    """A checkpoint path for ``name_or_path``: an existing file or run folder, else a bundled model name.

    Raises:
        dbgan.checkpoint.CheckpointError: a path (it has a folder or a file suffix) that does not exist.
        dbgan.models.ModelNotFoundError: neither a path nor a bundled model (lists the bundled names).
    """
    from dbgan.checkpoint import CheckpointError
    from dbgan.models import bundled_model_path

    p = Path(name_or_path)
    if p.exists():
        return p
    text = str(name_or_path)
    if "/" in text or "\\" in text or p.suffix:
        raise CheckpointError(f"{p}: checkpoint not found")
    return bundled_model_path(text)


class _ProgressBackend:
    """A backend that counts tiles and reports them; everything else is the wrapped backend's."""

    def __init__(self, inner: Any, runner: infer.Deblurrer, progress: Progress, batch: int):
        self._inner, self._runner, self._progress, self._batch = inner, runner, progress, batch
        self.done = 0
        self._plan: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, x: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        y = self._inner(x, noise)
        plan = self._runner.last_plan
        if plan is not self._plan:  # a new run (coarse_levels runs the net once per level): count afresh
            self._plan, self.done = plan, 0
        total = plan.count * self._batch if plan is not None else x.shape[0]
        self.done += int(x.shape[0])
        self._progress(min(self.done, total), total)
        return y


class Deblurrer:
    """Deblur numpy arrays, PIL images and tensors with a checkpoint or a bundled model.

    Args:
        model: a bundled model name (see :func:`dbgan.models.available_models`), a
            checkpoint ``.safetensors`` file or run folder, or a ready
            :class:`dbgan.infer.Deblurrer`.
        device, dtype, tile, overlap, memory_budget_mb, coarse_levels, blind: see :class:`dbgan.infer.Deblurrer`
            (``coarse_levels=2``: coarse to fine, for blur wider than the model knows; ``blind=31``: camera
            shake up to 31 px estimated from each image and deconvolved before the model).

    Example (see the README)::

        deblur = Deblurrer("runs/mine/checkpoints/latest.safetensors")
        sharp = deblur(np.asarray(Image.open("blurry.jpg")))
    """

    def __init__(
        self,
        model: Union[str, Path, infer.Deblurrer] = "general",
        *,
        device: str = "auto",
        dtype: infer.DType = "fp32",
        tile: Optional[int] = None,
        overlap: Optional[int] = None,
        memory_budget_mb: Optional[float] = None,
        coarse_levels: int = 0,
        blind: int = 0,
    ):
        if isinstance(model, infer.Deblurrer):
            refuse_for_ready_runner(coarse_levels, blind)
            self.runner = model
            self.source = type(model).__name__
        else:
            path = resolve_model(model)
            self.runner = infer.Deblurrer.from_checkpoint(
                path, device=device, dtype=dtype, tile=tile, overlap=overlap, memory_budget_mb=memory_budget_mb,
                coarse_levels=coarse_levels, blind=blind,
            )
            self.source = str(model)

    def __repr__(self) -> str:
        return f"Deblurrer({self.source!r}, {self.runner!r})"

    # ------------------------------------------------------------------ core

    def _planes(self, chw: Tensor, progress: Optional[Progress]) -> Tensor:
        """Deblur one float32 ``C x H x W`` CPU image in [0, 1]; an alpha plane passes through."""
        c = chw.shape[0]
        alpha = None
        if c in (2, 4):
            chw, alpha = chw[:-1], chw[-1:]
        elif c not in (1, 3):
            raise ValueError(f"images need 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, got {c}")
        if chw.shape[-2] < 1 or chw.shape[-1] < 1:
            raise ValueError(f"empty image of shape {tuple(chw.shape)}")
        if progress is None:
            out = self.runner(chw)
        else:
            inner = self.runner.backend
            self.runner.backend = _ProgressBackend(inner, self.runner, progress, 3 if (chw.shape[0] == 3 and self.runner.in_channels == 1) else 1)
            try:
                out = self.runner(chw)
            finally:
                self.runner.backend = inner
        return out if alpha is None else torch.cat([out, alpha], dim=0)

    # ------------------------------------------------------------------ kinds

    def __call__(self, image: Any, progress: Optional[Progress] = None) -> Any:
        """Deblur ``image`` (numpy array, PIL image or tensor); returns the same kind, shape and dtype."""
        if isinstance(image, Tensor):
            return self._tensor(image, progress)
        if isinstance(image, np.ndarray):
            return self._numpy(image, progress)
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a dependency
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            return self._pil(image, progress)
        raise TypeError(
            f"cannot deblur a {type(image).__module__}.{type(image).__name__}: give a numpy array "
            "(uint8, uint16 or float in [0, 1]; H x W or H x W x C), a PIL image, or a torch tensor "
            "(C x H x W or B x C x H x W; float in [0, 1] or uint8)"
        )

    def _numpy(self, arr: np.ndarray, progress: Optional[Progress]) -> np.ndarray:
        if arr.ndim not in (2, 3):
            raise ValueError(
                f"a numpy image must be H x W or H x W x C, got shape {arr.shape}; for a batch, "
                "call once per image or pass a B x C x H x W tensor"
            )
        dtype = arr.dtype
        x = _to_unit(arr, "numpy array")
        chw = torch.from_numpy(x).unsqueeze(0) if arr.ndim == 2 else torch.from_numpy(x).permute(2, 0, 1)
        out = self._planes(chw.contiguous(), progress)
        res = out[0].numpy() if arr.ndim == 2 else out.permute(1, 2, 0).numpy()
        return _from_unit(res, dtype)

    def _tensor(self, t: Tensor, progress: Optional[Progress]) -> Tensor:
        if t.dim() not in (3, 4):
            raise ValueError(f"a tensor image must be C x H x W or B x C x H x W, got shape {tuple(t.shape)}")
        dtype, device = t.dtype, t.device
        if dtype == torch.uint8:
            x = t.detach().to("cpu", torch.float32) / 255.0
        elif getattr(torch, "uint16", None) is not None and dtype == torch.uint16:
            x = t.detach().to("cpu").to(torch.int32).to(torch.float32) / 65535.0
        elif dtype.is_floating_point:
            x = t.detach().to("cpu", torch.float32)
            _check_float_range(x, "tensor")
        else:
            raise TypeError(
                f"cannot deblur a tensor of dtype {dtype}: use a float tensor with values in [0, 1] "
                "or a uint8 tensor with values in 0..255"
            )
        batch = x if x.dim() == 4 else x.unsqueeze(0)
        outs = [self._planes(img.contiguous(), progress) for img in batch]
        out = torch.stack(outs) if t.dim() == 4 else outs[0]
        if dtype == torch.uint8:
            out = out.mul(255.0).round_().to(torch.uint8)
        elif getattr(torch, "uint16", None) is not None and dtype == torch.uint16:
            out = out.mul(65535.0).round_().to(torch.int32).to(torch.uint16)
        else:
            out = out.to(dtype)
        return out.to(device)

    def _pil(self, im: Any, progress: Optional[Progress]) -> Any:
        from PIL import Image

        mode = im.mode
        src = im
        if mode in _PIL_CONVERT_TO_RGB:
            has_alpha = mode in ("PA",) or (mode == "P" and "transparency" in im.info)
            src = im.convert("RGBA" if has_alpha else "RGB")
            mode = src.mode
        if mode in ("L", "LA", "RGB", "RGBA"):
            arr = np.asarray(src)
        elif mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            arr = np.asarray(src).astype(np.uint16)
        elif mode == "I":  # 32-bit integer, as Pillow opens some 16-bit files: taken as 0..65535
            arr = np.clip(np.asarray(src), 0, 65535).astype(np.uint16)
        elif mode == "F":
            arr = np.asarray(src, dtype=np.float32)
        else:
            raise TypeError(f"cannot deblur a PIL image of mode {im.mode!r}; convert it to 'RGB' or 'L' first")
        res = self._numpy(np.ascontiguousarray(arr), progress)
        if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            out = Image.frombytes("I;16", src.size, res.astype("<u2").tobytes())
        elif mode == "I":
            out = Image.fromarray(res.astype(np.int32))
        elif mode == "F":
            out = Image.fromarray(res.astype(np.float32))
        else:
            out = Image.fromarray(res)
        out.info = dict(im.info)
        return out


def _check_float_range(x: Tensor, what: str) -> None:
    if x.numel() == 0:
        return
    if not torch.isfinite(x).all():
        raise ValueError(f"the {what} holds NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(
            f"a float {what} must hold values in [0, 1], got {lo:.4g}..{hi:.4g}; divide 8-bit "
            "values by 255 (or pass the uint8 data as it is)"
        )


def _to_unit(arr: np.ndarray, what: str) -> np.ndarray:
    """uint8 / uint16 / float array -> float32 in [0, 1] (same shape)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype in _NUMPY_FLOATS:
        x = arr.astype(np.float32)
        _check_float_range(torch.from_numpy(x), what)
        return x
    raise TypeError(
        f"cannot deblur a {what} of dtype {arr.dtype}: use uint8 (0..255), uint16 (0..65535) or "
        "float16/32/64 (0..1)"
    )


def _from_unit(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float32 in [0, 1] -> ``dtype`` (rounded for integers)."""
    if dtype == np.uint8:
        return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(np.clip(x, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return np.ascontiguousarray(x.astype(dtype))


def load_model(name_or_path: Union[str, Path] = "general", **kwargs: Any) -> Deblurrer:
    """A :class:`Deblurrer` for a bundled model name or a checkpoint path (``kwargs`` as :class:`Deblurrer`)."""
    return Deblurrer(name_or_path, **kwargs)
