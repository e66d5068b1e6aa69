"""ONNX export with dynamic batch, height and width, and an onnxruntime runner.

Exporters
---------
The generators pad their input to ``size_multiple`` internally with shape
arithmetic written for symbolic shapes (``torch.sym_min`` + ``F.pad``). Two ways
to keep that padding dynamic in the exported graph:

* ``exporter="torchscript"`` (the legacy ``torch.onnx.export(..., dynamo=False)``
  with ``dynamic_axes``), used by default for dbgan generators: the network is
  wrapped in :class:`ExportWrapper`, which runs the generator's own noise input
  and ``body`` but does the pad-to-multiple itself with ``Range``/``Gather`` index
  arithmetic (reflect as far as the image allows, then replicate: exactly
  :func:`dbgan.nets.common.pad_to_multiple`), because the TorchScript tracer would
  freeze ``F.pad`` amounts to the example's values (and rejects ``torch.sym_min``
  on traced sizes). About ten times faster to export than the alternative and it
  writes any opset from 11 (default 17).
* ``exporter="dynamo"`` (``torch.export``-based, ``dynamo=True`` with
  ``Dim.AUTO`` dynamic shapes): exports the network's forward unchanged, padding
  included, but takes several seconds even for a tiny net and writes opset 18 or
  newer (onnx's converter has no ``Pad`` adapter down to 17). Used for networks
  that are not dbgan generators, and as a fallback when the TorchScript export fails.

Whatever the exporter, :func:`export_onnx` then runs the model with onnxruntime at
a size different from the example (odd height and width, batch 2) and compares
it with PyTorch.

Blur generators with noise are exported with a second input ``noise`` (the
output of ``sample_noise``: a half-resolution map or a vector); the model's
metadata records how to draw it so that :class:`OnnxRunner` samples exactly what
the PyTorch network would for the same ``torch.Generator``.

Metadata (``metadata_props``): ``dbgan.role``, ``dbgan.in_channels``,
``dbgan.out_channels``, ``dbgan.size_multiple``, ``dbgan.noise`` (JSON),
``dbgan.exporter`` and the source checkpoint's ``dbgan.stage`` / ``dbgan.iter`` /
``dbgan.checkpoint`` (file name) / ``dbgan.checkpoint_sha256``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from dbgan.atomic import atomic_write_bytes
from dbgan.infer.backends import OnnxRunner, onnx_path_for, sample_noise_from_spec  # noqa: F401 - re-exported
from dbgan.infer.common import ExportError
from dbgan.nets.common import ImageGenerator, SamplesNoise, image_layout

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Default opset (TorchScript exporter); the dynamo exporter writes at least :data:`MIN_DYNAMO_OPSET`.
DEFAULT_OPSET = 17
MIN_DYNAMO_OPSET = 18
#: Opsets accepted by :func:`export_onnx` (others are refused, never silently replaced).
MIN_OPSET = 11


def max_opset() -> int:
    """The newest opset this PyTorch's exporters write."""
    try:
        from torch.onnx import _constants

        return int(getattr(_constants, "ONNX_MAX_OPSET", 20))
    except Exception:  # noqa: BLE001 - private module moved: keep a safe bound
        return 20

#: Largest dimension declared for the dynamic axes.
_MAX_DIM = 1 << 16


def _noise_spec(net: nn.Module, example: Tensor) -> Optional[dict[str, Any]]:
    """How ``net.sample_noise`` draws (None: no noise): standard normal of a shape derived from the image."""
    if not isinstance(net, SamplesNoise):
        return None
    noise = net.sample_noise(example, torch.Generator().manual_seed(0))
    if noise is None:
        return None
    if noise.dim() == 4:
        h, w = example.shape[-2:]
        sy, sx = round(h / noise.shape[-2]), round(w / noise.shape[-1])
        return {"kind": "map", "channels": int(noise.shape[1]), "scale": [int(sy), int(sx)]}
    if noise.dim() == 2:
        return {"kind": "vector", "channels": int(noise.shape[1])}
    raise ExportError(f"cannot export noise of shape {tuple(noise.shape)} (expected a map or a vector)")


@contextlib.contextmanager
def _quiet_exporter():
    """Route the exporter's prints and warnings to the debug log (library code never prints)."""
    out, err = io.StringIO(), io.StringIO()
    names = ("torch", "torch.onnx", "torch._dynamo", "torch._guards", "torch.export", "torch.fx", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
        text = (out.getvalue() + err.getvalue()).strip()
        if text:
            log.debug("exporter output:\n%s", text)


def _pad_index(size: Tensor | int, total: Tensor | int) -> Tensor:
    """Source index of each of ``total`` positions: identity, then reflection, then the edge (replicate)."""
    i = torch.arange(total)
    return torch.where(i < size, i, torch.clamp(2 * (size - 1) - i, min=0))


class ExportWrapper(nn.Module):
    """A dbgan generator's forward with a pad-to-multiple the TorchScript tracer keeps dynamic.

    Runs ``net.noise_input`` (noise appended as channels), pads image and noise
    channels to ``net.size_multiple`` with index arithmetic on the traced sizes
    (same values as :func:`dbgan.nets.common.pad_to_multiple`), ``net.body``, and
    crops back. Only for generators built on :class:`dbgan.nets.common.ImageGenerator`.
    """

    def __init__(self, net: ImageGenerator):
        super().__init__()
        self.net = net
        self.multiple = int(net.size_multiple)
        self.in_channels = int(net.in_channels)

    def forward(self, x: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        xn = self.net.noise_input(x, noise)
        m = self.multiple
        if m > 1:
            hp = (h + m - 1) // m * m
            wp = (w + m - 1) // m * m
            xn = xn.index_select(2, _pad_index(h, hp)).index_select(3, _pad_index(w, wp))
        y = self.net.body(xn, xn[:, : self.in_channels])
        return y[:, :, :h, :w]


def _is_dbgan_generator(net: nn.Module) -> bool:
    return isinstance(net, ImageGenerator)


def _export_torchscript(net: nn.Module, example: Tensor, noise: Optional[Tensor], opset: int):
    import onnx

    names = ["input"] + (["noise"] if noise is not None else [])
    axes: dict[str, dict[int, str]] = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}
    if noise is not None:
        axes["noise"] = {0: "batch", 2: "noise_h", 3: "noise_w"} if noise.dim() == 4 else {0: "batch"}
    args = (example,) if noise is None else (example, noise)
    buf = io.BytesIO()
    with _quiet_exporter():
        torch.onnx.export(
            ExportWrapper(net).eval(), args, buf, dynamo=False, opset_version=opset, input_names=names,
            output_names=["output"], dynamic_axes=axes, do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def _export_dynamo(net: nn.Module, example: Tensor, noise: Optional[Tensor], opset: int):
    if opset < MIN_DYNAMO_OPSET:
        log.warning("the dynamo exporter writes opset %d or newer: opset %d raised to %d",
                    MIN_DYNAMO_OPSET, opset, MIN_DYNAMO_OPSET)
    from torch.export import Dim

    auto = Dim.AUTO
    shapes: dict[str, Any] = {"x": {0: auto, 2: auto, 3: auto}}
    args: tuple[Tensor, ...] = (example,)
    names = ["input"]
    if noise is not None:
        args = (example, noise)
        names.append("noise")
        shapes["noise"] = {0: auto, 2: auto, 3: auto} if noise.dim() == 4 else {0: auto}
    with _quiet_exporter():
        program = torch.onnx.export(
            net, args, None, dynamo=True, opset_version=max(opset, MIN_DYNAMO_OPSET), input_names=names,
            output_names=["output"], dynamic_shapes=shapes, verbose=False, optimize=True,
            external_data=False,
        )
    return program.model_proto


def export_onnx(
    checkpoint: Union[PathLike, nn.Module],
    out_path: PathLike,
    *,
    role: str = "deblur_g",
    opset: int = DEFAULT_OPSET,
    example_size: int = 64,
    exporter: str = "auto",
    check: bool = True,
    tolerance: float = 1e-4,
) -> Path:
    """Export a checkpoint's generator to ONNX with dynamic batch, height and width.

    Args:
        checkpoint: checkpoint ``.safetensors`` / run directory, or a network module.
        out_path: the ``.onnx`` file (written atomically; parent folders created).
        role: ``deblur_g`` or ``blur_g``.
        opset: ONNX opset (the dynamo exporter raises values below 18 to 18).
        example_size: side of the example image used for tracing.
        exporter: ``"auto"`` (TorchScript for dbgan generators, else or on failure
            dynamo), ``"torchscript"`` or ``"dynamo"``; see the module docstring.
        check: run the exported model with onnxruntime at an odd size different from
            the example (``example_size + 13`` x ``example_size + 29``) and compare with
            PyTorch; raise :class:`ExportError` when they differ by more than ``tolerance``.

    Returns:
        The path written.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise ExportError(f"{out_path}: the output file must end in .onnx")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= max_opset():
        raise ExportError(f"opset must lie in [{MIN_OPSET}, {max_opset()}], got {opset!r}")
    meta: dict[str, str] = {"dbgan.role": role}
    if isinstance(checkpoint, nn.Module):
        net = checkpoint.eval()
    else:
        from dbgan.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        net = ckpt.build(role)
        meta["dbgan.stage"] = str(ckpt.meta.get("stage"))
        meta["dbgan.iter"] = str(ckpt.meta.get("iter"))
        meta["dbgan.checkpoint"] = ckpt.path.name
        from dbgan.models import sha256_file

        # lets a runner tell an export of this very file from one of an older checkpoint of the same name
        meta["dbgan.checkpoint_sha256"] = sha256_file(ckpt.path)
    net = net.to("cpu").float().eval()
    unsupported = net.onnx_unsupported if isinstance(net, ImageGenerator) else None
    if unsupported:
        raise ExportError(f"{role} ({type(net).__name__}) cannot be exported to ONNX: {unsupported}")
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ExportError(f"exporter must be auto, torchscript or dynamo, got {exporter!r}")
    layout = image_layout(net)  # a plain module without channels: RGB in, as many out
    in_ch = int(layout.in_channels or 3)
    gen = torch.Generator().manual_seed(0)
    # batch 2: torch.export specialises dimensions of size 1
    example = torch.rand(2, in_ch, example_size, example_size, generator=gen)
    spec = _noise_spec(net, example)
    noise = sample_noise_from_spec(spec, example, gen)
    meta.update({
        "dbgan.in_channels": str(in_ch),
        "dbgan.out_channels": str(int(layout.out_channels or in_ch)),
        "dbgan.size_multiple": str(layout.size_multiple),
        "dbgan.noise": json.dumps(spec),
    })
    use = exporter
    if use == "auto":
        use = "torchscript" if _is_dbgan_generator(net) else "dynamo"
    if use == "torchscript" and not _is_dbgan_generator(net):
        raise ExportError(f"{type(net).__name__} is not a dbgan generator; use exporter='dynamo'")
    try:
        model = (_export_torchscript if use == "torchscript" else _export_dynamo)(net, example, noise, opset)
    except Exception as exc:  # the exporters raise many types
        if exporter != "auto" or use == "dynamo":
            raise ExportError(f"ONNX export of {role} ({type(net).__name__}) failed: {exc}") from exc
        log.warning("TorchScript export failed (%s); trying the dynamo exporter", str(exc).splitlines()[0])
        use = "dynamo"
        try:
            model = _export_dynamo(net, example, noise, opset)
        except Exception as exc2:
            raise ExportError(f"ONNX export of {role} ({type(net).__name__}) failed: {exc2}") from exc2
    meta["dbgan.exporter"] = use
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    data = model.SerializeToString()
    if check:
        _check_export(data, net, spec, in_ch, example_size, tolerance, out_path)
    atomic_write_bytes(out_path, data)
    opset_written = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    log.info("exported %s to %s (%s exporter, opset %d, %.1f MB)", role, out_path, use, opset_written, len(data) / 1e6)
    return out_path


def _check_export(data: bytes, net: nn.Module, spec: Optional[dict], in_ch: int, size: int, tol: float, where: Path) -> None:
    runner = OnnxRunner(data)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, in_ch, size + 13, size + 29, generator=gen)
    noise = sample_noise_from_spec(spec, x, gen)
    with torch.inference_mode():
        ref = net(x) if noise is None else net(x, noise)
    got = runner(x, noise)
    if tuple(got.shape) != tuple(ref.shape):
        raise ExportError(f"{where}: exported model gives shape {tuple(got.shape)} at {tuple(x.shape)}, PyTorch {tuple(ref.shape)}")
    err = float((got - ref).abs().max())
    if not err <= tol:
        raise ExportError(f"{where}: exported model differs from PyTorch by {err:.2e} (> {tol:.0e}) at {tuple(x.shape)}")
    log.debug("export check at %s: max |onnx - torch| = %.2e", tuple(x.shape), err)


