""":func:`run_folder`: what ``dbgan deblur`` / ``dbgan blur`` call on a file or a folder."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from dbgan.infer.common import DType, InferenceError, PathLike
from dbgan.infer.pyramid import refuse_for_ready_runner
from dbgan.infer.runner import Blurrer, Deblurrer, _ImageRunner

log = logging.getLogger(__name__)

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
    overlap: Optional[int] = None,
    device: str = "auto",
    onnx: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
    dtype: DType = "fp32",
    memory_budget_mb: Optional[float] = None,
    max_pixels: Optional[int] = None,
    quality: Optional[int] = None,
    coarse_levels: int = 0,
    blind: int = 0,
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
        quality: JPEG / WebP quality 1..100 (None: 95).
        coarse_levels: deblur mode: coarse-to-fine levels (:mod:`dbgan.infer.pyramid`; 0: none).
        blind: deblur mode: the largest camera shake (px, odd) to estimate and deconvolve first
            (:mod:`dbgan.blind`; 0: off).

    Files are read and written by :mod:`dbgan.imagefile`: a multi-page TIFF is
    processed page by page into a stack of the same length; EXIF and ICC profiles
    are carried over; outputs keep the input's channels (grey stays grey) and bit
    depth (16-bit PNG/TIFF in gives 16-bit out, float TIFF in gives float TIFF out,
    where the output format allows it). Every write is atomic.

    Raises:
        InferenceError: the output would overwrite an input, or bad settings.
        dbgan.io.ImageReadError: missing input, empty folder, unreadable image.
        dbgan.checkpoint.CheckpointError: unreadable checkpoint.
    """
    from tqdm.auto import tqdm

    from dbgan.imagefile import output_bit_depth, read_pages, write_pages
    from dbgan.io import ImageReadError

    if mode not in ("deblur", "blur"):
        raise InferenceError(f"mode must be 'deblur' or 'blur', got {mode!r}")
    if quality is not None and not 1 <= int(quality) <= 100:
        raise InferenceError(f"quality must lie in [1, 100], got {quality}")
    if coarse_levels and mode != "deblur":
        raise InferenceError(f"coarse_levels is for deblurring, not mode {mode!r}")
    if blind and mode != "deblur":
        raise InferenceError(f"blind is for deblurring, not mode {mode!r}")
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
        refuse_for_ready_runner(coarse_levels, blind)
    else:
        cls = Deblurrer if mode == "deblur" else Blurrer
        extra = {"coarse_levels": coarse_levels, "blind": blind} if mode == "deblur" else {}
        runner = cls.from_checkpoint(
            checkpoint, device=device, dtype=dtype, tile=tile, overlap=overlap, onnx=onnx,
            memory_budget_mb=memory_budget_mb, **extra,
        )
    bar = tqdm(todo, desc=mode, unit="img", disable=not progress or len(todo) < 2, dynamic_ncols=True)
    for src, dst in bar:
        try:
            pages, info, meta = read_pages(src, max_pixels=max_pixels)
        except ImageReadError as exc:
            msg = str(exc)
            if not skip_bad:
                if str(src) not in msg:
                    raise ImageReadError(f"{src}: {msg}") from None
                raise
            log.warning("skipping unreadable %s", msg)
            result.bad.append((src, msg))
            continue
        if len(pages) > 1 and dst.suffix.lower() not in (".tif", ".tiff"):
            raise InferenceError(f"{src}: a {len(pages)}-page TIFF stack needs a .tif output, not {dst.name}")
        if mode == "blur":  # page k > 0 of a stack gets its own seed
            res = [runner(p, seed=file_seed(seed, src.name if k == 0 else f"{src.name}#{k}"))  # type: ignore[call-arg]
                   for k, p in enumerate(pages)]
        else:
            res = [runner(p) for p in pages]
        write_pages(dst, res, bit_depth=output_bit_depth(info.bit_depth, dst), quality=quality, meta=meta)
        result.written.append(dst)
        log.debug("wrote %s", dst)
    return result
