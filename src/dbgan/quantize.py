"""Static int8 quantisation of an exported ONNX deblurrer, and the PSNR it costs.

:func:`quantize_int8` turns the fp32 ``.onnx`` that :func:`dbgan.export.export_onnx`
wrote into ``NAME.int8.onnx`` beside it (:func:`dbgan.infer.backends.int8_path_for`)
with onnxruntime's static quantisation:

* QDQ format (``QuantizeLinear`` / ``DequantizeLinear`` pairs around every quantised
  operator; onnxruntime fuses them into integer kernels at load time);
* weights int8 per output channel, activations uint8 per tensor (x86's u8s8 dot
  products: ``VPDPBUSD`` with VNNI, ``VPMADDUBSW`` on plain AVX2);
* activation ranges from min/max calibration on a fixed number of seeded random crops
  of a folder of *blurred* photos (what the deblurrer sees), read with :mod:`dbgan.io`.

With ``eval_pairs`` (a held-out pairs folder in any layout :func:`dbgan.evaluate.evaluate`
reads, never the calibration photos) the fp32 and the int8 model are both evaluated and
the mean PSNR difference is recorded in the quantised model's metadata
(:data:`META_COST`). :func:`dbgan.cpu_caps.int8_default_rule` reads it: ``--dtype auto``
takes the int8 model only when that cost is recorded and below 0.05 dB; without
``eval_pairs`` nothing is recorded and int8 stays opt-in (``--dtype int8``).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

from dbgan.atomic import atomic_write_bytes
from dbgan.infer.backends import int8_path_for
from dbgan.infer.common import ExportError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: metadata keys written into the quantised model
META_PRECISION = "dbgan.precision"
META_COST = "dbgan.int8.psnr_cost_db"
META_PSNR_FP32 = "dbgan.int8.psnr_fp32"
META_PSNR_INT8 = "dbgan.int8.psnr_int8"
META_PAIRS = "dbgan.int8.eval_pairs"
META_CALIBRATION = "dbgan.int8.calibration"


@dataclass(frozen=True)
class CalibrationSettings:
    """How the calibration crops are drawn: ``crops`` crops of ``crop_size`` pixels, seeded by ``seed``."""

    crops: int = 16
    crop_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("crops", "crop_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ExportError(f"calibration {name} must be an integer, got {value!r}")
        if self.crops < 1:
            raise ExportError(f"calibration crops must be >= 1, got {self.crops}")
        if self.crop_size < 16:
            raise ExportError(f"calibration crop_size must be >= 16, got {self.crop_size}")


@dataclass(frozen=True)
class Int8Result:
    """What :func:`quantize_int8` wrote and measured (``psnr_*`` None without ``eval_pairs``)."""

    path: Path
    psnr_fp32: Optional[float] = None
    psnr_int8: Optional[float] = None

    @property
    def cost_db(self) -> Optional[float]:
        """fp32 PSNR minus int8 PSNR on the held-out pairs (positive: int8 is worse)."""
        if self.psnr_fp32 is None or self.psnr_int8 is None:
            return None
        return self.psnr_fp32 - self.psnr_int8


def calibration_crops(folder: PathLike, settings: CalibrationSettings, channels: int = 3) -> list[np.ndarray]:
    """``settings.crops`` random crops (``1 x channels x s x s`` float32) of the images in ``folder``.

    Images are read with :mod:`dbgan.io` (sorted by name); crop ``k`` takes image
    ``k mod n`` at a position drawn from ``numpy.random.default_rng(seed)``, so the
    same folder and settings always give the same crops. An image smaller than the
    crop is taken whole.

    Raises:
        dbgan.io.ImageReadError: the folder is missing, holds no image, or an image is unreadable
            (the message names the folder or the file).
    """
    from dbgan.io import list_images, read_image

    files = list_images(folder)
    images = [read_image(f, channels=channels) for f in files]
    rng = np.random.default_rng(settings.seed)
    out = []
    s = settings.crop_size
    for k in range(settings.crops):
        img = images[k % len(images)]
        h, w = img.shape[-2:]
        ch, cw = min(s, h), min(s, w)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        out.append(np.ascontiguousarray(img[None, :, y : y + ch, x : x + cw].numpy(), dtype=np.float32))
    log.info("calibration: %d crops of %dx%d from %d image(s) in %s (seed %d)", len(out), s, s, len(files), folder, settings.seed)
    return out


class _CalibrationReader:
    """onnxruntime's ``CalibrationDataReader`` protocol over prepared crops."""

    def __init__(self, input_name: str, crops: list[np.ndarray]):
        self._input_name = input_name
        self._crops = crops
        self._it: Iterator[np.ndarray] = iter(crops)

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        crop = next(self._it, None)
        return None if crop is None else {self._input_name: crop}

    def rewind(self) -> None:
        self._it = iter(self._crops)

    def __iter__(self) -> "_CalibrationReader":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


class _OrtRootFilter(logging.Filter):
    """onnxruntime's quantiser logs advice on the root logger: send it to this module's debug log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "onnxruntime" in (record.pathname or ""):
            log.debug("onnxruntime: %s", record.getMessage())
            return False
        return True


def _set_props(model: Any, props: dict[str, str]) -> None:
    kept = {p.key: p.value for p in model.metadata_props if p.key not in props}
    del model.metadata_props[:]
    for key, value in {**kept, **props}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def _mean_psnr(model: Union[Path, bytes], eval_pairs: PathLike) -> float:
    from dbgan.evaluate import evaluate
    from dbgan.infer import Deblurrer, OnnxBackend
    from dbgan.infer.backends import OnnxRunner

    import torch

    # as many onnxruntime threads as torch is allowed (a 1-thread benchmark stays on 1 thread)
    runner = Deblurrer(OnnxBackend(OnnxRunner(model, device="cpu", threads=torch.get_num_threads())))
    return float(evaluate(runner, eval_pairs, progress=False)["mean"]["psnr_out"])


def quantize_int8(
    fp32_path: PathLike,
    calibration: PathLike,
    out_path: Optional[PathLike] = None,
    *,
    settings: CalibrationSettings = CalibrationSettings(),
    eval_pairs: Optional[PathLike] = None,
) -> Int8Result:
    """Quantise an exported fp32 ONNX model to int8 (QDQ, per-channel weights, u8 activations).

    Args:
        fp32_path: the ``.onnx`` written by :func:`dbgan.export.export_onnx`.
        calibration: a folder of blurred photos (see :func:`calibration_crops`).
        out_path: the quantised model (default ``NAME.int8.onnx`` beside ``fp32_path``).
        settings: how many crops of which size, and the seed.
        eval_pairs: held-out pairs (not the calibration photos) to measure the PSNR cost
            on; recorded in the metadata, where ``--dtype auto`` reads it.

    Returns:
        The path written and the measured PSNRs.

    Raises:
        ExportError: missing or unreadable fp32 model, or a failed quantisation (names the file).
        dbgan.io.ImageReadError: a bad calibration folder (names it or the file).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from dbgan.infer.backends import OnnxRunner

    fp32_path = Path(fp32_path)
    out = Path(out_path) if out_path is not None else int8_path_for(fp32_path)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: the output file must end in .onnx")
    if out.resolve() == fp32_path.resolve():
        raise ExportError(f"{out}: the int8 model would overwrite the fp32 model it is made from")
    runner = OnnxRunner(fp32_path, device="cpu")  # names the file when missing or unreadable
    if runner.precision != "fp32":
        raise ExportError(f"{fp32_path}: already a {runner.precision} model; quantise the fp32 export")
    crops = calibration_crops(calibration, settings, runner.in_channels)
    if runner.noise_spec:
        raise ExportError(f"{fp32_path}: a model with a noise input ({runner.role}); only deblurrers are quantised")
    with tempfile.TemporaryDirectory(prefix="dbgan_int8_") as tmp:
        q = Path(tmp) / "int8.onnx"
        quiet = _OrtRootFilter()
        logging.getLogger().addFilter(quiet)
        try:
            quantize_static(
                str(fp32_path), str(q), _CalibrationReader(runner.input_names[0], crops),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, reduce_range=True,
            )
        except Exception as exc:  # onnxruntime raises many types
            raise ExportError(f"{fp32_path}: int8 quantisation failed: {exc}") from exc
        finally:
            logging.getLogger().removeFilter(quiet)
        model = onnx.load(str(q))
    props = {p.key: p.value for p in onnx.load(str(fp32_path), load_external_data=False).metadata_props}
    props[META_PRECISION] = "int8"
    props[META_CALIBRATION] = f"{Path(calibration).name}: {settings.crops} crops of {settings.crop_size}, seed {settings.seed}"
    _set_props(model, props)
    result = Int8Result(out)
    if eval_pairs is not None:
        data = model.SerializeToString()
        p32, p8 = _mean_psnr(fp32_path, eval_pairs), _mean_psnr(data, eval_pairs)
        result = Int8Result(out, p32, p8)
        _set_props(model, {META_COST: f"{p32 - p8:.4f}", META_PSNR_FP32: f"{p32:.4f}",
                           META_PSNR_INT8: f"{p8:.4f}", META_PAIRS: Path(eval_pairs).name})
        log.info("int8 on %s: PSNR %.3f dB (fp32 %.3f dB), cost %.3f dB", eval_pairs, p8, p32, p32 - p8)
    else:
        log.info("no eval pairs: the int8 model's PSNR cost is not recorded, so --dtype auto will not pick it")
    atomic_write_bytes(out, model.SerializeToString())
    log.info("wrote int8 model %s", out)
    return result
