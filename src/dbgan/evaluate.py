"""Evaluate a deblurrer: PSNR/SSIM on held-out pairs, no-reference sharpness on real photos.

:func:`evaluate` (``dbgan eval CHECKPOINT --pairs DIR``) deblurs every blurred
image of a pair folder at full size and reports, per image and on average, PSNR
and SSIM of the *input* against the sharp image and of the *output* against it,
and the gain. :func:`evaluate_unpaired` (``--unpaired DIR``) reports the
no-reference :func:`dbgan.metrics.sharpness` of real blurred photos before and
after deblurring.

Pair layouts are those of :mod:`dbgan.data.layouts` (the same reader as
training): ``DIR/sharp/`` + ``DIR/blur/``, ``DIR/input/`` + ``DIR/target/``,
GoPro's ``scene/blur|blur_gamma|sharp``, a RealBlur ``gt blur`` list file, or
side-by-side ``A|B`` files (A, the left half, sharp). Files without a partner are
listed in the report's ``unmatched`` instead of stopping the evaluation.

The output is rounded to the input's bit depth before it is measured, so the
figures are those of the image ``dbgan deblur`` writes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from torch import Tensor

from dbgan import metrics
from dbgan.atomic import atomic_write_text

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Columns of the per-image CSV of :func:`evaluate`.
PAIRED_COLUMNS = ["name", "width", "height", "channels", "psnr_in", "ssim_in", "psnr_out", "ssim_out", "psnr_gain", "ssim_gain", "colour_bias_out"]
#: Columns of the per-image CSV of :func:`evaluate_unpaired`.
UNPAIRED_COLUMNS = ["name", "width", "height", "channels", "sharpness_in", "sharpness_out", "sharpness_ratio", "laplacian_in", "laplacian_out", "brisque_in", "brisque_out"]

#: How ``ssim_window`` is described in reports.
SSIM_WINDOWS = {"gaussian": "11x11 Gaussian window, sigma 1.5 (Wang et al. 2004; published deblurring tables)",
                "uniform": "7x7 uniform window (scikit-image default)"}


def _deblurrer(checkpoint: Any, device: str, tile: Optional[int], dtype: str, coarse_levels: int = 0, blind: int = 0):
    from dbgan.infer import Deblurrer
    from dbgan.infer.pyramid import refuse_for_ready_runner

    if isinstance(checkpoint, Deblurrer):
        refuse_for_ready_runner(coarse_levels, blind)
        return checkpoint
    return Deblurrer.from_checkpoint(checkpoint, device=device, tile=tile, dtype=dtype, coarse_levels=coarse_levels,
                                     blind=blind)


def quantise(img: Tensor, bit_depth: int) -> Tensor:
    """Round ``[0, 1]`` values to the levels of an 8- or 16-bit file (as :func:`dbgan.io.write_image` does)."""
    if bit_depth not in (8, 16):
        return img.clamp(0.0, 1.0)
    levels = 255.0 if bit_depth == 8 else 65535.0
    return img.clamp(0.0, 1.0).mul(levels).round().div(levels)


def _load_pair(
    sharp_path: Optional[Path], blur_path: Path, channels: Optional[int], max_pixels: Optional[int] = None
) -> tuple[Tensor, Tensor, int]:
    from dbgan.io import ImageReadError, read_image_with_info

    if sharp_path is None:
        ab, info = read_image_with_info(blur_path, channels=channels, max_pixels=max_pixels)
        w = ab.shape[-1]
        if w < 2:
            raise ImageReadError(f"{blur_path}: too narrow to be a side-by-side A|B image")
        half = w // 2
        if w % 2:
            log.warning("%s: odd width %d; using the left and right %d columns as A and B", blur_path, w, half)
        return ab[:, :, :half].contiguous(), ab[:, :, w - half :].contiguous(), info.bit_depth
    blur, info = read_image_with_info(blur_path, channels=channels, max_pixels=max_pixels)
    sharp, _ = read_image_with_info(sharp_path, channels=blur.shape[0], max_pixels=max_pixels)
    if sharp.shape != blur.shape:
        raise ImageReadError(
            f"{blur_path}: size {blur.shape[2]}x{blur.shape[1]} differs from its sharp image "
            f"{sharp_path} ({sharp.shape[2]}x{sharp.shape[1]})"
        )
    return sharp, blur, info.bit_depth


def report_paths(out: PathLike) -> tuple[Path, Path]:
    """The (JSON, CSV) files of a report asked for as ``out``.

    ``r``, ``r.json`` and ``r.csv`` all give ``r.json`` + ``r.csv`` (two distinct files);
    any other ending is refused (``--out photo.png`` is a mistake, not a report name).
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".json", ".csv"):
        out = out.with_suffix("")
    elif suffix:
        raise ValueError(f"{out}: a report name must end in .json or .csv (both files are written), got {out.suffix!r}")
    if not out.name:
        raise ValueError(f"{out}: not a file name for a report")
    return out.with_name(out.name + ".json"), out.with_name(out.name + ".csv")


def unpaired_out(out: PathLike) -> Path:
    """Where ``dbgan eval --pairs ... --unpaired ... --out r.json`` puts the unpaired report: ``r_unpaired.json``."""
    json_path, _ = report_paths(out)
    return json_path.with_name(json_path.stem + "_unpaired.json")


def check_report_paths(out: PathLike, inputs: list[PathLike], overwrite: bool = False) -> tuple[Path, Path]:
    """Refuse report files that would land inside an input folder, or replace a file without ``overwrite``.

    Returns:
        The (JSON, CSV) paths, as :func:`report_paths`.
    """
    paths = report_paths(out)
    for p in paths:
        rp = p.resolve()
        for folder in inputs:
            fr = Path(folder).resolve()
            if rp == fr or fr in rp.parents:
                raise ValueError(f"{p}: the report would land inside the input folder {folder}; choose --out outside it")
        if p.is_dir():
            raise ValueError(f"{p}: is a folder; --out names the report file")
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists; pass --overwrite to replace it, or choose another --out")
    return paths


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def evaluate(
    checkpoint: Any,
    pairs_dir: PathLike,
    out: Optional[PathLike] = None,
    *,
    device: str = "auto",
    tile: Optional[int] = None,
    channels: Optional[int] = None,
    progress: bool = True,
    dtype: str = "fp32",
    max_pixels: Optional[int] = None,
    ssim_window: str = "gaussian",
    overwrite: bool = False,
    coarse_levels: int = 0,
    blind: int = 0,
) -> dict[str, Any]:
    """PSNR/SSIM of a deblurrer on held-out pairs (see the module docstring for layouts).

    Args:
        checkpoint: checkpoint path / run directory, or a :class:`dbgan.infer.Deblurrer`.
        pairs_dir: a dataset folder or list file in a layout of :mod:`dbgan.data.layouts`.
        out: report ``.json`` to write (atomically), with a ``.csv`` of the same stem beside it
            (see :func:`report_paths`); never inside ``pairs_dir``.
        overwrite: replace existing report files (otherwise refused before any work).
        device, tile, dtype, coarse_levels, blind: inference settings (see :class:`dbgan.infer.Deblurrer`).
        channels: read images as 1 (grey) or 3 (RGB) channels; None keeps each
            blurred file's own (the sharp image is converted to match).
        progress: tqdm progress bar.
        ssim_window: ``"gaussian"`` (default; comparable with published tables) or
            ``"uniform"`` (see :func:`dbgan.metrics.ssim`).

    Returns:
        ``{"kind": "paired", "layout", "ssim", "pairs_dir", "checkpoint", "count", "images": [...],
        "mean": {psnr_in, ssim_in, psnr_out, ssim_out, psnr_gain, ssim_gain, colour_bias_out},
        "unmatched": [...]}``; per image the columns of :data:`PAIRED_COLUMNS`.
    """
    from tqdm.auto import tqdm

    from dbgan.data.layouts import find_pairs

    if out is not None:
        check_report_paths(out, [pairs_dir], overwrite)

    if ssim_window not in SSIM_WINDOWS:
        raise ValueError(f"ssim_window must be one of {', '.join(SSIM_WINDOWS)}, got {ssim_window!r}")
    found = find_pairs(pairs_dir, strict=False)
    layout, unmatched = found.layout, found.unmatched
    if unmatched:
        log.warning("%s: %d file(s) without a partner: %s", pairs_dir, len(unmatched), ", ".join(unmatched[:5]))
    runner = _deblurrer(checkpoint, device, tile, dtype, coarse_levels, blind)
    rows: list[dict[str, Any]] = []
    for pair in tqdm(found.pairs, desc="eval", unit="img", disable=not progress or len(found.pairs) < 2):
        name, sharp_path, blur_path = pair.name, pair.sharp, pair.blur
        sharp, blur, bit_depth = _load_pair(sharp_path, blur_path, channels, max_pixels)
        restored = quantise(runner(blur), bit_depth)
        row = {
            "name": name,
            "width": int(blur.shape[2]),
            "height": int(blur.shape[1]),
            "channels": int(blur.shape[0]),
            "psnr_in": metrics.psnr(blur, sharp),
            "ssim_in": metrics.ssim(blur, sharp, window=ssim_window),
            "psnr_out": metrics.psnr(restored, sharp),
            "ssim_out": metrics.ssim(restored, sharp, window=ssim_window),
            "colour_bias_out": [float(v) for v in metrics.colour_bias(restored, sharp)],
        }
        row["psnr_gain"] = row["psnr_out"] - row["psnr_in"]
        row["ssim_gain"] = row["ssim_out"] - row["ssim_in"]
        rows.append(row)
        log.debug("%s: PSNR %.3f -> %.3f, SSIM %.4f -> %.4f", name, row["psnr_in"], row["psnr_out"], row["ssim_in"], row["ssim_out"])
    mean = {k: _mean([r[k] for r in rows]) for k in ("psnr_in", "ssim_in", "psnr_out", "ssim_out", "psnr_gain", "ssim_gain")}
    nch = {len(r["colour_bias_out"]) for r in rows}
    mean["colour_bias_out"] = (
        [float(v) for v in np.mean([r["colour_bias_out"] for r in rows], axis=0)] if len(nch) == 1 else None
    )
    report = {
        "kind": "paired",
        "layout": layout,
        "ssim": SSIM_WINDOWS[ssim_window],
        "pairs_dir": str(pairs_dir),
        "checkpoint": _describe(checkpoint),
        "coarse_levels": runner.coarse_levels,
        "blind": getattr(runner, "blind", 0),
        "count": len(rows),
        "images": rows,
        "mean": mean,
        "unmatched": unmatched,
    }
    if out is not None:
        write_report(report, out, PAIRED_COLUMNS)
    return report


def evaluate_unpaired(
    checkpoint: Any,
    folder: PathLike,
    out: Optional[PathLike] = None,
    *,
    device: str = "auto",
    tile: Optional[int] = None,
    channels: Optional[int] = None,
    progress: bool = True,
    dtype: str = "fp32",
    max_pixels: Optional[int] = None,
    overwrite: bool = False,
    coarse_levels: int = 0,
    blind: int = 0,
) -> dict[str, Any]:
    """No-reference sharpness of real blurred photos before and after deblurring.

    Per image: :func:`dbgan.metrics.sharpness` (mean Sobel gradient energy of the
    luma) of input and output and their ratio (> 1: sharper), the variance of
    the Laplacian of both, and :func:`dbgan.metrics.brisque` of both (lower is
    better; unlike the two sharpness measures it also rises with noise and ringing);
    means over the folder. Arguments as :func:`evaluate`.
    """
    from tqdm.auto import tqdm

    from dbgan.io import list_images, read_image_with_info

    if out is not None:
        check_report_paths(out, [folder], overwrite)
    files = list_images(folder)
    runner = _deblurrer(checkpoint, device, tile, dtype, coarse_levels, blind)
    rows = []
    for path in tqdm(files, desc="eval", unit="img", disable=not progress or len(files) < 2):
        img, info = read_image_with_info(path, channels=channels, max_pixels=max_pixels)
        restored = quantise(runner(img), info.bit_depth)
        s_in, s_out = metrics.sharpness(img), metrics.sharpness(restored)
        rows.append({
            "name": path.name,
            "width": int(img.shape[2]),
            "height": int(img.shape[1]),
            "channels": int(img.shape[0]),
            "sharpness_in": s_in,
            "sharpness_out": s_out,
            "sharpness_ratio": s_out / s_in if s_in > 0 else float("inf"),
            "laplacian_in": metrics.sharpness(img, "laplacian"),
            "laplacian_out": metrics.sharpness(restored, "laplacian"),
            "brisque_in": metrics.brisque(img),
            "brisque_out": metrics.brisque(restored),
        })
    mean = {k: _mean([r[k] for r in rows]) for k in UNPAIRED_COLUMNS[4:]}
    report = {
        "kind": "unpaired",
        "folder": str(folder),
        "checkpoint": _describe(checkpoint),
        "coarse_levels": runner.coarse_levels,
        "blind": getattr(runner, "blind", 0),
        "count": len(rows),
        "images": rows,
        "mean": mean,
    }
    if out is not None:
        write_report(report, out, UNPAIRED_COLUMNS)
    return report


def _describe(checkpoint: Any) -> str:
    return str(checkpoint) if isinstance(checkpoint, (str, Path)) else type(checkpoint).__name__


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_report(report: dict[str, Any], out: PathLike, columns: list[str]) -> tuple[Path, Path]:
    """Write ``report`` as JSON (non-finite numbers as ``"inf"`` / null) and a per-image CSV beside it.

    The files are :func:`report_paths` of ``out``. The CSV has one row per image plus a
    ``mean`` row; list values (colour bias) are joined with spaces. Both writes are atomic.
    """
    json_path, csv_path = report_paths(out)
    json_text = json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)

    def cell(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return " ".join(f"{x:.6g}" for x in v)
        if isinstance(v, float):
            return f"{v:.6f}" if math.isfinite(v) else str(v)
        return "" if v is None else str(v)

    for row in report["images"]:
        writer.writerow([cell(row.get(c)) for c in columns])
    writer.writerow([cell(report["mean"].get(c, "mean" if c == "name" else None)) for c in columns])
    atomic_write_text(json_path, json_text)
    atomic_write_text(csv_path, buf.getvalue())
    log.info("wrote %s and %s", json_path, csv_path)
    return json_path, csv_path


def format_table(report: dict[str, Any], max_rows: int = 50) -> str:
    """A plain-text table of a report from :func:`evaluate` or :func:`evaluate_unpaired` (for the CLI)."""

    def f(v: Any, nd: int) -> str:
        if v is None:
            return "-"
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"  # as the JSON report writes it
        if isinstance(v, float) and math.isnan(v):
            return "-"  # null in the JSON report
        return f"{v:.{nd}f}"

    rows = report["images"]
    if report.get("kind") == "unpaired":
        head = ["image", "sharp in", "sharp out", "ratio", "lapvar in", "lapvar out", "BRISQUE in", "BRISQUE out"]
        body = [[r["name"], f(r["sharpness_in"], 4), f(r["sharpness_out"], 4), f(r["sharpness_ratio"], 3),
                 f(r["laplacian_in"], 5), f(r["laplacian_out"], 5), f(r.get("brisque_in"), 2),
                 f(r.get("brisque_out"), 2)] for r in rows[:max_rows]]
        m = report["mean"]
        foot = ["mean", f(m["sharpness_in"], 4), f(m["sharpness_out"], 4), f(m["sharpness_ratio"], 3),
                f(m["laplacian_in"], 5), f(m["laplacian_out"], 5), f(m.get("brisque_in"), 2), f(m.get("brisque_out"), 2)]
    else:
        head = ["image", "PSNR in", "PSNR out", "gain", "SSIM in", "SSIM out", "gain"]
        body = [[r["name"], f(r["psnr_in"], 2), f(r["psnr_out"], 2), f(r["psnr_gain"], 2),
                 f(r["ssim_in"], 4), f(r["ssim_out"], 4), f(r["ssim_gain"], 4)] for r in rows[:max_rows]]
        m = report["mean"]
        foot = ["mean", f(m["psnr_in"], 2), f(m["psnr_out"], 2), f(m["psnr_gain"], 2),
                f(m["ssim_in"], 4), f(m["ssim_out"], 4), f(m["ssim_gain"], 4)]
    table = [head] + body + [foot]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r))

    sep = "  ".join("-" * w for w in widths)
    out = [line(head), sep] + [line(r) for r in body]
    if len(rows) > max_rows:
        out.append(f"... {len(rows) - max_rows} more (see the report file)")
    out += [sep, line(foot)]
    if report.get("kind") == "unpaired":
        out.append("BRISQUE: lower is better (no-reference; brisque package's bundled model)")
    else:
        out.append(f"SSIM: {report.get('ssim', SSIM_WINDOWS['gaussian'])}")
        bias = report["mean"].get("colour_bias_out")
        if bias:
            out.append("mean colour bias of outputs (output - sharp, per channel): " + " ".join(f"{b:+.4f}" for b in bias))
        if report.get("unmatched"):
            out.append(f"{len(report['unmatched'])} file(s) without a partner were skipped")
    return "\n".join(out)
