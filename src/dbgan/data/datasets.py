"""Datasets: paired files (layouts in :mod:`dbgan.data.layouts`), side-by-side ``A|B`` files, synthetic pairs, unpaired folders.

Draw-indexed training
---------------------
Training datasets are indexed by a *draw* number, not by a file index, so that
training resumes exactly and gives the same batches whatever the number of
DataLoader workers. ``dataset[draw]`` accepts any non-negative int:

* the file is ``perm_e[draw % n]`` where ``perm_e`` is a permutation of the
  ``n`` files seeded by ``(seed, draw // n)``: each "epoch" of ``n`` draws
  visits every file once, in a fresh order;
* every random choice of that item (crop, flip, synthetic blur) comes from a
  generator seeded by ``(seed, draw)``.

So the same ``(seed, draw)`` gives an identical item, in any access order, in
any process. ``len(dataset)`` is the number of files ``n``. The training loop
feeds draws ``k, k+1, ...`` (under DDP rank ``r`` of ``world`` gets
``k*world + r``): see :class:`DrawSampler`. Generators are also salted per
dataset kind, so a pair dataset and an unpaired dataset built with the same
seed do not crop the same way.

Validation (``train=False``)
----------------------------
Plain indices ``0 .. len-1`` over the first ``data.val_max`` files (sorted by
name; ``val_max <= 0`` means all), no resizing, no flip; a centre crop to
``data.val_crop`` when it is > 0 (clipped to the image), else the whole image.

Items
-----
Pairs: ``{"sharp": C x H x W, "blur": C x H x W, "name": str}``; unpaired:
``{key: C x H x W, "name": str}``; ``float32`` in ``[0, 1]`` with
``C = data.channels`` (grey files are converted to RGB and back, alpha dropped
by :func:`dbgan.io.read_image`). Returned tensors never share memory with the
cache.

Cache
-----
Each dataset object keeps decoded images (resized already, for
``resize_and_crop`` / ``scale_width``) in memory after their first load, up to
``cache_bytes`` (default 1 GiB; ``0`` disables it; images past the budget are
simply re-read). Training sets of photos are small, so this removes decoding
from the loop. The cache belongs to the object (no global state); each
DataLoader worker holds its own copy, so the worst case is ``cache_bytes`` per
worker and dataset.

Bad files
---------
At construction every file's header is read (cheap, with Pillow), and for PNG
and JPEG its last bytes (a truncated file is then fully decoded), to report
damaged files and layout errors up front: a pair of different sizes, an
odd-width ``A|B`` file, an image smaller than the crop (``preprocess: crop``).
With ``data.skip_bad``
unreadable files are skipped and listed in ``dataset.skipped`` as
``(path, reason)``; without it the :class:`dbgan.io.ImageReadError` naming
the file is raised at construction (a file whose header Pillow cannot read is
fully decoded with :func:`dbgan.io.read_image` to decide; validation sets,
being small, are fully decoded with ``skip_bad``). A file that still fails later,
at load time, is logged and replaced by the next file of the same
permutation (deterministically); that happens inside a worker process, so it
shows in the log rather than in ``dataset.skipped``. Without ``skip_bad`` that
:class:`dbgan.io.ImageReadError` propagates with the file name. Layout errors
(unpaired file, size mismatch, odd width, too small) are never skipped: they
mean the folder is not what the config says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from dbgan.config import DataConfig, SynthConfig
from dbgan.constants import DIRECTIONS
from dbgan.data.base import _DrawIndexedDataset, _fmt_size, DEFAULT_CACHE_BYTES, Size
from dbgan.data.errors import DatasetError
from dbgan.data.layouts import find_pairs
from dbgan.data.transforms import apply_params, crop_box, flip
from dbgan.io import list_images

__all__ = [
    "PairedFolderDataset",
    "AlignedDataset",
    "SyntheticPairDataset",
    "UnpairedDataset",
]

# --------------------------------------------------------------------------- paired folders


class PairedFolderDataset(_DrawIndexedDataset):
    """Pairs of sharp and blurred files in any layout of :mod:`dbgan.data.layouts`.

    ``root/sharp`` + ``root/blur`` (``sharp/001.png`` pairs with ``blur/001.png``,
    or with the only ``blur/001.*`` when no file of that exact name exists),
    ``root/input`` + ``root/target``, GoPro's ``scene/blur|blur_gamma|sharp`` or a
    RealBlur list file. A file without partner, an ambiguous stem or a pair of
    different sizes is an error naming the files; an unknown layout lists the
    accepted ones. Item names are the layout's pair names (``scene/file`` for GoPro).

    Args:
        root: the dataset folder (or list file).
        cfg: data section of the config.
        seed: run seed (see the module docstring for how draws use it).
        train: random crops/flips and draw indexing; ``False`` for validation.
        cache_bytes: per-object cache budget of decoded images.
    """

    def __init__(
        self,
        root: str | Path,
        cfg: DataConfig,
        seed: int = 0,
        train: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        super().__init__(cfg, seed, train, cache_bytes)
        self.root = Path(root)
        found = find_pairs(self.root, strict=True, allow_aligned=False)
        self.layout = found.layout
        self._pair_names = {(p.sharp, p.blur): p.name for p in found.pairs}
        self._setup([(p.sharp, p.blur) for p in found.pairs], "pairs")

    def names(self) -> list[str]:
        return [self._pair_names[e] for e in self.entries]

    def _entry_size(self, entry: tuple[Path, ...], sizes: list[Optional[Size]]) -> Optional[Size]:
        if sizes[0] is not None and sizes[1] is not None and sizes[0] != sizes[1]:
            raise self._mismatch(entry, sizes[0], sizes[1])
        return sizes[0] if sizes[0] is not None else sizes[1]

    def _mismatch(self, entry: tuple[Path, ...], a: Sequence[int], b: Sequence[int]) -> DatasetError:
        return DatasetError(
            f"pair size mismatch: {entry[0]} is {_fmt_size(a)} but {entry[1]} is {_fmt_size(b)}; "
            "the images of a pair must be aligned pixel for pixel"
        )

    def _decode(self, idx: int) -> tuple[torch.Tensor, ...]:
        sharp_path, blur_path = self.entries[idx]
        sharp, blur = self._read(sharp_path), self._read(blur_path)
        if sharp.shape[-2:] != blur.shape[-2:]:
            raise self._mismatch(self.entries[idx], sharp.shape, blur.shape)
        return sharp, blur

    def _make_item(self, idx, orig, images, rng):
        params = self._params(idx, orig, rng)
        return {
            "sharp": apply_params(images[0], params),
            "blur": apply_params(images[1], params),
            "name": self._pair_names[self.entries[idx]],
        }


# --------------------------------------------------------------------------- aligned A|B files


class AlignedDataset(_DrawIndexedDataset):
    """Side-by-side ``A|B`` files (pix2pix layout), split at ``width // 2``.

    ``cfg.direction == "AtoB"``: A (left half) is sharp, B (right half) blurred;
    ``"BtoA"`` swaps them. An odd width is an error naming the file (the halves
    would not be the same size).

    Args: as :class:`PairedFolderDataset`, with ``root`` a plain folder of images.
    """

    def __init__(
        self,
        root: str | Path,
        cfg: DataConfig,
        seed: int = 0,
        train: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        super().__init__(cfg, seed, train, cache_bytes)
        if cfg.direction not in DIRECTIONS:
            raise DatasetError(f"data.direction must be AtoB or BtoA, got {cfg.direction!r}")
        self.root = Path(root)
        self._setup([(p,) for p in list_images(self.root)], "A|B files")

    def _odd(self, path: Path, size: Sequence[int]) -> DatasetError:
        return DatasetError(
            f"{path} is {_fmt_size(size)}: an A|B file needs an even width (two halves of equal "
            "size side by side); is this folder really side-by-side pairs (data.aligned_dir)?"
        )

    def _entry_size(self, entry: tuple[Path, ...], sizes: list[Optional[Size]]) -> Optional[Size]:
        size = sizes[0]
        if size is None:
            return None
        if size[1] % 2:
            raise self._odd(entry[0], size)
        return size[0], size[1] // 2

    def _decode(self, idx: int) -> tuple[torch.Tensor, ...]:
        path = self.entries[idx][0]
        img = self._read(path)
        w = img.shape[-1]
        if w % 2:
            raise self._odd(path, img.shape)
        a, b = img[..., : w // 2].contiguous(), img[..., w // 2 :].contiguous()
        return (a, b) if self.cfg.direction == "AtoB" else (b, a)

    def _make_item(self, idx, orig, images, rng):
        params = self._params(idx, orig, rng)
        return {
            "sharp": apply_params(images[0], params),
            "blur": apply_params(images[1], params),
            "name": self.entries[idx][0].name,
        }


# --------------------------------------------------------------------------- synthetic pairs


class SyntheticPairDataset(_DrawIndexedDataset):
    """Sharp images blurred on the fly by :class:`dbgan.blur.degrade.DegradationPipeline`.

    Every draw gets a new kernel and noise (from the item generator, so a draw is
    reproducible). For speed the blur is applied *after* cropping, but to a
    region extended by a margin of ``synth.kernel_size // 2`` pixels on each side
    (clipped to the image), then trimmed to the crop: inside the image the crop's
    borders carry real neighbouring content, as if the whole photo had been
    blurred; only at the photo's own edges does the pipeline's boundary handling
    (reflect padding) show. Flips are applied to both images after blurring (the kernel is random
    anyway, so this is the same distribution as flipping first).

    Args:
        sharp_dir: plain folder of sharp images.
        cfg: data section; synth_cfg: the degradation pipeline.
        seed, train, cache_bytes: as :class:`PairedFolderDataset`.
        return_kernel: also return ``"kernel"`` (the ``float32`` kernel array) per item.
    """

    def __init__(
        self,
        sharp_dir: str | Path,
        cfg: DataConfig,
        synth_cfg: SynthConfig,
        seed: int = 0,
        train: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        return_kernel: bool = False,
    ):
        super().__init__(cfg, seed, train, cache_bytes)
        from dbgan.blur.degrade import DegradationPipeline  # blur/ is only needed here

        self.root = Path(sharp_dir)
        self.synth_cfg = synth_cfg
        self.pipeline = DegradationPipeline.from_config(synth_cfg)
        self.margin = int(synth_cfg.kernel_size) // 2
        self.return_kernel = return_kernel
        self._setup([(p,) for p in list_images(self.root)], "sharp images")

    def _decode(self, idx: int) -> tuple[torch.Tensor, ...]:
        return (self._read(self.entries[idx][0]),)

    def _make_item(self, idx, orig, images, rng):
        params = self._params(idx, orig, rng)
        img = images[0]
        H, W = img.shape[-2:]
        top, left, ch, cw = params["crop"] if params["crop"] is not None else (0, 0, H, W)
        m = self.margin
        t0, l0 = max(0, top - m), max(0, left - m)
        t1, l1 = min(H, top + ch + m), min(W, left + cw + m)
        region = img[..., t0:t1, l0:l1].contiguous()
        region, blurred, kernel = self.pipeline.pair(region, rng)  # scene augmentation changes the sharp too
        blurred = torch.as_tensor(blurred, dtype=torch.float32)
        if blurred.shape != region.shape:
            raise RuntimeError(
                f"degradation pipeline returned {tuple(blurred.shape)} for an input of {tuple(region.shape)}"
            )
        box = (top - t0, left - l0, ch, cw)
        sharp = crop_box(region, box)
        blur = crop_box(blurred, box)
        if params["flip"]:
            sharp, blur = flip(sharp), flip(blur)
        else:
            sharp = sharp.clone(memory_format=torch.contiguous_format)
            blur = blur.clone(memory_format=torch.contiguous_format)
        item: dict[str, Any] = {"sharp": sharp, "blur": blur, "name": self.entries[idx][0].name}
        if self.return_kernel:
            item["kernel"] = np.asarray(kernel, dtype=np.float32)
        return item


# --------------------------------------------------------------------------- unpaired


class UnpairedDataset(_DrawIndexedDataset):
    """A plain folder of single images: real blurred photos (``key="real_blur"``) or sharp ones.

    Transforms are drawn per image. Items are ``{key: C x H x W, "name": str}``.

    Args:
        root: folder of images.
        cfg, seed, train, cache_bytes: as :class:`PairedFolderDataset`.
        key: item key of the image (also salts the generators, so two unpaired
            datasets with the same seed crop differently).
    """

    def __init__(
        self,
        root: str | Path,
        cfg: DataConfig,
        seed: int = 0,
        key: str = "real_blur",
        train: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self._tag = f"unpaired:{key}"
        super().__init__(cfg, seed, train, cache_bytes)
        self.key = key
        self.root = Path(root)
        self._setup([(p,) for p in list_images(self.root)], "images")

    def _decode(self, idx: int) -> tuple[torch.Tensor, ...]:
        return (self._read(self.entries[idx][0]),)

    def _make_item(self, idx, orig, images, rng):
        params = self._params(idx, orig, rng)
        return {self.key: apply_params(images[0], params), "name": self.entries[idx][0].name}


