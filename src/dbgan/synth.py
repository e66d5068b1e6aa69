"""Make a synthetic paired dataset from a folder of sharp images (``dbgan synth``).

Layouts written under ``OUT_DIR`` (the two dataset layouts of ``dbgan.data``):

* default: ``OUT_DIR/sharp/<stem>_<k>.png`` and ``OUT_DIR/blur/<stem>_<k>.png``,
  paired by identical file names;
* ``aligned=True``: ``OUT_DIR/<stem>_<k>.png`` holding ``A|B`` side by side, A
  (left) sharp and B (right) blurred, i.e. ``data.direction: AtoB``.

``k = 0 .. per_image - 1`` are copies of the same sharp image with different
blur. With ``save_kernels`` each kernel goes to ``OUT_DIR/kernels/<stem>_<k>.png``
(scaled so that its maximum is white). Outputs are PNG at the input size; 16-bit
sources stay 16-bit. ``SHARP_DIR`` is only read.

Reproducibility: the random generator of each output is derived from
``(seed, file name, k)``, so a result depends neither on the processing order
nor on which other files sit in the folder.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from dbgan.blur.degrade import DegradationPipeline
from dbgan.config import SynthConfig
from dbgan.io import ImageReadError, list_images, read_image_with_info, write_image

__all__ = ["SynthResult", "synthesize", "image_rng"]

log = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass
class SynthResult:
    """What :func:`synthesize` did.

    Attributes:
        out_dir: the output folder.
        layout: ``"paired"`` (sharp/ + blur/) or ``"aligned"`` (A|B files).
        written: every file written, in order.
        n_images: sharp images read successfully.
        n_pairs: pairs written (``n_images * per_image``).
        skipped: ``(file, reason)`` for unreadable files skipped with ``skip_bad``.
    """

    out_dir: Path
    layout: str
    written: list[Path] = field(default_factory=list)
    n_images: int = 0
    n_pairs: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the command line."""
        text = f"wrote {self.n_pairs} {self.layout} pairs from {self.n_images} images to {self.out_dir}"
        if self.skipped:
            text += f" ({len(self.skipped)} unreadable files skipped)"
        return text


def image_rng(seed: int, name: str, k: int) -> np.random.Generator:
    """The generator of copy ``k`` of the image called ``name`` (its file name) under ``seed``."""
    return np.random.default_rng([int(seed) % (1 << 64), zlib.crc32(name.encode("utf-8")), int(k)])


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _output_stems(files: Sequence[Path]) -> list[str]:
    """Output stems: the file stem, or stem + extension where two files share a stem."""
    stems = [f.stem for f in files]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [
        f"{f.stem}_{f.suffix.lstrip('.').lower()}" if counts[f.stem] > 1 else f.stem for f in files
    ]


def _intensity_range(intensity: Union[float, Sequence[float]]) -> list[float]:
    if isinstance(intensity, (int, float)):
        lo = hi = float(intensity)
    else:
        vals = [float(v) for v in intensity]
        if len(vals) != 2:
            raise ValueError(f"intensity must be a number or (low, high), got {intensity!r}")
        lo, hi = vals
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"intensity must lie in [0, 1] with low <= high, got {intensity!r}")
    return [lo, hi]


def synthesize(
    sharp_dir: PathLike,
    out_dir: PathLike,
    *,
    aligned: bool = False,
    kernel_size: Optional[int] = None,
    intensity: Union[float, Sequence[float], None] = None,
    per_image: int = 1,
    seed: int = 0,
    save_kernels: bool = False,
    synth: Optional[SynthConfig] = None,
    channels: Optional[int] = None,
    progress: bool = True,
    skip_bad: bool = False,
    max_pixels: Optional[int] = None,
    overwrite: bool = False,
) -> SynthResult:
    """Blur every image of ``sharp_dir`` and write a paired dataset to ``out_dir``.

    Args:
        sharp_dir: folder of sharp images (read only, never written).
        out_dir: output folder; must not be ``sharp_dir`` or inside it.
        aligned: write side-by-side ``A|B`` files (A sharp) instead of ``sharp/`` + ``blur/``.
        kernel_size: kernel size in pixels (odd); None takes ``synth.kernel_size`` (31).
        intensity: motion-blur intensity, a number or ``(low, high)`` in ``[0, 1]``;
            None takes ``synth.intensity`` (``(0, 1)``).
        per_image: blurred copies per sharp image (``<stem>_0`` .. ``<stem>_{N-1}``).
        seed: base seed; with the file name and copy index it fixes every random draw.
        save_kernels: also write each kernel to ``out_dir/kernels/``.
        synth: the degradation pipeline (kernel kinds, noise, JPEG...); default
            :class:`~dbgan.config.SynthConfig` (motion blur only).
        channels: None keeps grey grey and colour colour; 1 or 3 converts.
        progress: show a tqdm progress bar.
        skip_bad: skip unreadable images (listed in the log and the result) instead of failing.
        max_pixels: decompression-bomb limit per image (None: :data:`dbgan.io.DEFAULT_MAX_PIXELS`).
        overwrite: replace outputs that exist; otherwise an existing output is refused
            before anything is written (``FileExistsError``).

    Returns:
        A :class:`SynthResult` with the files written and the counts.

    Raises:
        ValueError: bad arguments, or ``out_dir`` is ``sharp_dir`` or lies inside it.
        dbgan.io.ImageReadError: missing/empty ``sharp_dir``, or an unreadable image
            (unless ``skip_bad``).
    """
    if per_image < 1:
        raise ValueError(f"per_image must be >= 1, got {per_image}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    cfg = replace(synth) if synth is not None else SynthConfig()
    if kernel_size is not None:
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd and >= 3, got {kernel_size}")
        cfg.kernel_size = int(kernel_size)
    if intensity is not None:
        cfg.intensity = _intensity_range(intensity)

    sharp = Path(sharp_dir)
    out = Path(out_dir)
    sharp_r, out_r = sharp.resolve(), out.resolve()
    if _is_within(out_r, sharp_r):
        raise ValueError(
            f"output folder {out} is the sharp folder {sharp} or inside it; "
            f"choose an output folder outside {sharp}"
        )
    files = list_images(sharp)  # raises ImageReadError naming the folder if missing/empty
    if aligned:
        targets = {"pair": out}
    else:
        targets = {"sharp": out / "sharp", "blur": out / "blur"}
    if save_kernels:
        targets["kernels"] = out / "kernels"
    for d in targets.values():
        if _is_within(d.resolve(), sharp_r):
            raise ValueError(
                f"output folder {d} would be the sharp folder {sharp} or inside it; "
                f"choose an output folder whose sharp/ is not {sharp}"
            )

    stems = _output_stems(files)
    if not overwrite:
        existing = [
            d / f"{stem}_{k}.png" for stem in stems for k in range(per_image) for d in targets.values()
            if (d / f"{stem}_{k}.png").exists()
        ]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise FileExistsError(
                f"{existing[0]} exists{more}: an earlier synth run wrote here; pass --overwrite to replace "
                "its outputs, or choose another output folder"
            )

    pipeline = DegradationPipeline.from_config(cfg)
    result = SynthResult(out_dir=out, layout="aligned" if aligned else "paired")
    log.info(
        "synth: %d images from %s -> %s (%s, kernel %d, intensity %s, %d per image, seed %d)",
        len(files), sharp, out, result.layout, cfg.kernel_size, cfg.intensity, per_image, seed,
    )

    bar = tqdm(total=len(files) * per_image, desc="synth", unit="pair", disable=not progress)
    try:
        for path, stem in zip(files, stems):
            try:
                img, info = read_image_with_info(path, channels=channels, max_pixels=max_pixels)
            except ImageReadError as exc:
                if not skip_bad:
                    raise
                log.warning("skipping unreadable image: %s", exc)
                result.skipped.append((path, str(exc)))
                bar.update(per_image)
                continue
            bit_depth = 16 if info.bit_depth > 8 else 8
            result.n_images += 1
            for k in range(per_image):
                name = f"{stem}_{k}.png"
                scene, blurred, kernel = pipeline.pair(img, image_rng(seed, path.name, k))
                if aligned:
                    pair = torch.cat([scene, blurred], dim=2)
                    result.written.append(write_image(targets["pair"] / name, pair, bit_depth=bit_depth))
                else:
                    result.written.append(write_image(targets["sharp"] / name, scene, bit_depth=bit_depth))
                    result.written.append(write_image(targets["blur"] / name, blurred, bit_depth=bit_depth))
                if save_kernels:
                    kimg = torch.from_numpy(kernel / max(float(kernel.max()), 1e-12))
                    result.written.append(write_image(targets["kernels"] / name, kimg, bit_depth=8))
                result.n_pairs += 1
                bar.update(1)
    finally:
        bar.close()

    if result.n_images == 0:
        raise ImageReadError(f"{sharp}: none of the {len(files)} images could be read")
    log.info("synth: %s", result.summary())
    return result
