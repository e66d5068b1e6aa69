"""Names shared by the inference modules: error types, dtype names, path type and defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import torch

PathLike = Union[str, Path]
DType = Literal["auto", "fp32", "bf16", "fp16", "int8"]

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

#: Overlap of neighbouring tiles when none is given (at most half the tile).
DEFAULT_OVERLAP = 32
#: Smallest tile accepted (smaller tiles are all seam and no context).
MIN_TILE = 32
#: A tile plan is refused past this many tiles per image ...
MAX_TILES = 4096
#: ... or when its tiles cover the image this many times over (tiny tiles, huge overlap).
MAX_TILE_WORK = 16.0

#: Upper bound of the automatic ``tile_batch`` (CUDA; CPU and MPS use 1 because
#: batching tiles does not speed up CPU convolutions and costs memory).
MAX_AUTO_TILE_BATCH = 8


class InferenceError(ValueError):
    """Bad input to inference: a path that would overwrite its input, a missing model, bad settings."""


class ExportError(ValueError):
    """The network cannot be exported, or the exported model does not match PyTorch."""
