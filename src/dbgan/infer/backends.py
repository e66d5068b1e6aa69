"""Backends that run one batch of tiles: PyTorch (:class:`TorchBackend`) and onnxruntime
(:class:`OnnxBackend` over :class:`OnnxRunner`, which also serves :mod:`dbgan.export`'s checks)."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from dbgan.infer.common import DEFAULT_BYTES_PER_PIXEL, DTYPES, ExportError, InferenceError, PathLike
from dbgan.infer.memprofile import estimate_bytes_per_pixel
from dbgan.nets.common import ImageGenerator, SamplesNoise, image_layout

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- backends


class Backend(Protocol):
    """What runs one batch of (already padded) tiles: ``N x in_channels x h x w`` CPU float32 -> CPU float32."""

    in_channels: int
    out_channels: int
    size_multiple: int
    device: torch.device
    #: True when the backend pads to ``size_multiple`` itself (a dbgan generator): the runner
    #: then hands it an untiled image unpadded
    pads_itself: bool

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
        dtype: ``"fp32"`` (no autocast), ``"bf16"`` or ``"fp16"`` (autocast), or ``"auto"``
            (see :mod:`dbgan.cpu_caps`: bf16 where the CPU/GPU computes it natively, else fp32;
            a bf16 request on a CPU without native bf16 runs fp32 with a warning).
        channels_last: convert the net and its inputs to channels_last memory format.
    """

    def __init__(self, net: nn.Module, device: torch.device, dtype: str = "fp32", channels_last: bool = False):
        from dbgan.cpu_caps import resolve_dtype

        dtype = resolve_dtype(dtype, device.type)  # auto -> fastest safe; bf16 without native bf16 -> fp32
        if dtype == "int8":
            raise InferenceError("dtype int8 runs the quantised ONNX model (dbgan export --int8), not a PyTorch network; "
                                 "use Deblurrer.from_checkpoint(..., dtype='int8')")
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
        layout = image_layout(net)  # a plain module without channels: RGB in, as many out
        self.in_channels = int(layout.in_channels or 3)
        self.out_channels = int(layout.out_channels or self.in_channels)
        self.size_multiple = layout.size_multiple
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
        self.pads_itself = False
        self._bpp = bytes_per_pixel

    def session(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def sample_noise(self, x: Tensor, generator: Optional[torch.Generator]) -> Optional[Tensor]:
        return self.runner.sample_noise(x, generator)

    def __call__(self, x: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        return self.runner(x, noise)

    def bytes_per_pixel(self) -> float:
        return self._bpp if self._bpp is not None else DEFAULT_BYTES_PER_PIXEL


def onnx_path_for(checkpoint: PathLike, role: str = "deblur_g") -> Path:
    """Where an export of ``role`` sits beside ``checkpoint``: ``NAME.onnx`` (deblur_g) or ``NAME.<role>.onnx``."""
    p = Path(checkpoint)
    return p.with_suffix(".onnx") if role == "deblur_g" else p.with_suffix(f".{role}.onnx")


def int8_path_for(onnx_file: PathLike) -> Path:
    """Where the int8 quantisation of an fp32 export sits: ``NAME.int8.onnx`` beside ``NAME.onnx``."""
    p = Path(onnx_file)
    return p.with_suffix(".int8.onnx")


def sample_noise_from_spec(spec: Optional[dict[str, Any]], x: Tensor, generator: Optional[torch.Generator]) -> Optional[Tensor]:
    """Draw noise as recorded by :func:`export_onnx` (the same values ``NoiseInput.sample`` gives)."""
    if not spec:
        return None
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if spec["kind"] == "map":
        sy, sx = spec["scale"]
        shape: tuple[int, ...] = (n, spec["channels"], -(-h // sy), -(-w // sx))
    else:
        shape = (n, spec["channels"])
    return torch.randn(shape, generator=generator, dtype=torch.float32)


# --------------------------------------------------------------------------- ONNX runner


def _default_providers(device: Optional[str]) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    want = (device or "auto").lower()
    order = ["CPUExecutionProvider"]
    if want == "auto" or want.startswith("cuda"):
        order = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if want.startswith("cuda") and "CUDAExecutionProvider" not in available:
            raise InferenceError(f"device {device!r} requested but onnxruntime has no CUDA provider")
    return [p for p in order if p in available] or available


class OnnxRunner:
    """An exported dbgan model in an onnxruntime session, callable on ``N x C x H x W`` float32.

    Args:
        path: the ``.onnx`` file (or its bytes).
        providers: onnxruntime execution providers (default: CUDA if available and
            ``device`` allows, else CPU).
        device: ``auto`` / ``cpu`` / ``cuda`` (used when ``providers`` is None).
        threads: onnxruntime's intra-op threads (None: its default, one per physical core).

    Calling it with a numpy array returns a numpy array, with a tensor a CPU tensor.
    Blur models with a ``noise`` input draw it with :meth:`sample_noise` when none is given.
    """

    def __init__(self, path: Union[PathLike, bytes], providers: Optional[Sequence[str]] = None, device: Optional[str] = None,
                 threads: Optional[int] = None):
        import onnxruntime as ort

        self.path = None if isinstance(path, bytes) else Path(path)
        if self.path is not None and not self.path.is_file():
            raise ExportError(f"{self.path}: ONNX model not found")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise InferenceError(f"threads must be a positive integer, got {threads!r}")
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        src = path if isinstance(path, bytes) else str(self.path)
        try:
            self.session = ort.InferenceSession(src, opts, providers=list(providers or _default_providers(device)))
        except Exception as exc:
            raise ExportError(f"{self.path or 'ONNX model'}: onnxruntime cannot load it ({exc})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        shape1 = inputs[0].shape[1] if len(inputs[0].shape) == 4 else None
        self.role = props.get("dbgan.role")
        self.in_channels = int(props.get("dbgan.in_channels", shape1 if isinstance(shape1, int) else 3))
        self.out_channels = int(props.get("dbgan.out_channels", self.in_channels))
        self.size_multiple = int(props.get("dbgan.size_multiple", 1))
        self.noise_spec = json.loads(props.get("dbgan.noise", "null"))
        self.uses_cuda = "CUDAExecutionProvider" in self.session.get_providers()
        #: sha256 of the checkpoint file exported (None: exported from a module, or an older export)
        self.checkpoint_sha256: Optional[str] = props.get("dbgan.checkpoint_sha256")
        #: ``fp32`` for an export, ``int8`` for its quantisation (:mod:`dbgan.quantize`)
        self.precision = props.get("dbgan.precision", "fp32")
        cost = props.get("dbgan.int8.psnr_cost_db")
        #: the int8 model's recorded PSNR cost on held-out pairs in dB (None: not measured)
        self.int8_cost_db: Optional[float] = None
        try:
            self.int8_cost_db = float(cost) if cost is not None else None
        except ValueError:
            log.warning("%s: unreadable dbgan.int8.psnr_cost_db %r ignored", self.path or "ONNX model", cost)

    def sample_noise(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Optional[Tensor]:
        """Noise for image batch ``x`` as the source network draws it (None for models without noise)."""
        if len(self.input_names) < 2:
            return None
        return sample_noise_from_spec(self.noise_spec, x, generator)

    def __call__(self, x: Union[np.ndarray, Tensor], noise: Union[np.ndarray, Tensor, None] = None) -> Union[np.ndarray, Tensor]:
        as_tensor = isinstance(x, Tensor)
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy() if as_tensor else np.ascontiguousarray(x, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[1] != self.in_channels:
            raise ValueError(f"expected N x {self.in_channels} x H x W input, got shape {arr.shape}")
        feed = {self.input_names[0]: arr}
        if len(self.input_names) > 1:
            if noise is None:
                noise = self.sample_noise(torch.from_numpy(arr))
            nz = noise.detach().to("cpu", torch.float32).contiguous().numpy() if isinstance(noise, Tensor) else np.asarray(noise, np.float32)
            feed[self.input_names[1]] = nz
        elif noise is not None:
            raise ValueError("this model takes no noise input")
        out = self.session.run(None, feed)[0]
        return torch.from_numpy(out) if as_tensor else out
