"""Writing images atomically: 8 or 16 bits, grey / RGB / RGBA, PNG, TIFF, JPEG, WebP."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np
import torch

from dbgan.atomic import atomic_write_bytes
from dbgan.io.files import _SIXTEEN_BIT_EXTENSIONS, IMAGE_EXTENSIONS, PathLike


# --------------------------------------------------------------------------- writing


def _to_array(tensor: Union[torch.Tensor, np.ndarray], bit_depth: int, path: Path) -> np.ndarray:
    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(tensor)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{path}: write_image needs a torch.Tensor or numpy array, got {type(tensor).__name__}")
    x = tensor.detach().to("cpu", torch.float32)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"{path}: write_image needs C x H x W with C in 1, 3, 4 (or H x W), got shape {tuple(tensor.shape)}"
        )
    maxval = 255.0 if bit_depth == 8 else 65535.0
    x = torch.nan_to_num(x, nan=0.0).clamp_(0.0, 1.0).mul_(maxval).round_()
    arr = x.numpy().astype(np.uint8 if bit_depth == 8 else np.uint16)
    if arr.shape[0] == 1:
        return arr[0]
    arr = arr.transpose(1, 2, 0)
    if arr.shape[2] == 3:
        arr = arr[..., ::-1]  # RGB -> BGR for OpenCV
    else:
        arr = arr[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def write_image(
    path: PathLike,
    tensor: Union[torch.Tensor, np.ndarray],
    bit_depth: int = 8,
    quality: Optional[int] = None,
) -> Path:
    """Write ``C x H x W`` (or ``H x W``) values in ``[0, 1]`` to an image file, atomically.

    Values are clamped to ``[0, 1]`` and rounded; grey (C = 1) stays grey. The
    format follows the file extension; parent folders are created.

    Args:
        path: target file (.png, .jpg/.jpeg, .tif/.tiff, .bmp, .webp).
        tensor: image values (torch tensor or numpy array).
        bit_depth: 8 or 16 (16 only for PNG and TIFF).
        quality: JPEG/WebP quality 1..100 (default: OpenCV's, 95).

    Returns:
        The path written.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"{path}: unknown image extension {path.suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    if bit_depth not in (8, 16):
        raise ValueError(f"{path}: bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and ext not in _SIXTEEN_BIT_EXTENSIONS:
        raise ValueError(
            f"{path}: {ext} files cannot hold 16 bits per channel; write .png or .tif, or use bit_depth=8"
        )
    arr = _to_array(tensor, bit_depth, path)
    params: list[int] = []
    if quality is not None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"{path}: quality must lie in [1, 100], got {quality}")
        if ext in (".jpg", ".jpeg"):
            params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        elif ext == ".webp":
            params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:  # pragma: no cover - OpenCV codec failure
        raise OSError(f"{path}: OpenCV could not encode the image as {ext}")
    atomic_write_bytes(path, buf.tobytes())
    return path
