"""Datasets: paired folders, side-by-side ``A|B`` files, synthetic pairs, unpaired folders.

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

import logging
import operator
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dbgan.config import DataConfig, SynthConfig
from dbgan.constants import DIRECTIONS
from dbgan.data.errors import BatchSizeError, DatasetError
from dbgan.data.transforms import (
    apply_params,
    center_params,
    crop_box,
    draw_params,
    flip,
    resize,
    resize_target,
)
from dbgan.io import ImageReadError, list_images, looks_complete, probe_size, read_image

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "PairedFolderDataset",
    "AlignedDataset",
    "SyntheticPairDataset",
    "UnpairedDataset",
    "DrawSampler",
    "collate",
    "check_batchable",
    "make_pair_dataset",
    "make_val_dataset",
    "make_unpaired_dataset",
]

_LOG = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 1 << 30
"""Default per-dataset cache budget (bytes of decoded float32 images)."""

Size = tuple[int, int]


# --------------------------------------------------------------------------- helpers


def _salt(tag: str) -> int:
    return zlib.crc32(tag.encode())


def _seed_int(seed: int) -> int:
    return int(seed) % (1 << 64)  # SeedSequence wants non-negative entropy


def _fmt_size(size: Sequence[int]) -> str:
    return f"{size[-2]}x{size[-1]} (HxW)"


def _list_names(paths: Sequence[Any], limit: int = 5) -> str:
    names = [str(p) for p in paths[:limit]]
    more = len(paths) - limit
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


class _ImageCache:
    """Decoded images by entry index, up to a byte budget (no eviction: first come, first kept)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self.used = 0
        self._items: dict[int, tuple[Size, tuple[torch.Tensor, ...]]] = {}

    def get(self, key: int) -> Optional[tuple[Size, tuple[torch.Tensor, ...]]]:
        return self._items.get(key)

    def put(self, key: int, orig: Size, images: tuple[torch.Tensor, ...]) -> None:
        nbytes = sum(t.numel() * t.element_size() for t in images)
        if key in self._items or self.used + nbytes > self.max_bytes:
            return
        self._items[key] = (orig, images)
        self.used += nbytes

    def __len__(self) -> int:
        return len(self._items)


# --------------------------------------------------------------------------- base


class _DrawIndexedDataset(Dataset):
    """Shared machinery: entries of files, scan, cache, draw -> (file, rng), bad-file fallback.

    Subclasses set ``self.root`` and call :meth:`_setup` with their entries (tuples
    of paths read together), then implement :meth:`_decode` (read and check one
    entry, return same-sized images) and :meth:`_make_item`.
    """

    _tag = "pair"

    def __init__(self, cfg: DataConfig, seed: int, train: bool, cache_bytes: int):
        self.cfg = cfg
        self.seed = int(seed)
        self.train = bool(train)
        self.skipped: list[tuple[Path, str]] = []
        self.entries: list[tuple[Path, ...]] = []
        self.sizes: list[Optional[Size]] = []  # size of each item's images before resizing (None: unknown)
        self._cache = _ImageCache(cache_bytes)
        self._bad: set[int] = set()
        self._perm_epoch: int = -1
        self._perm: np.ndarray = np.zeros(0, dtype=np.int64)
        self._salt = _salt(self._tag)

    # ---- construction

    def _read(self, path: Path) -> torch.Tensor:
        return read_image(path, channels=self.cfg.channels, max_pixels=self.cfg.max_image_pixels)

    def _probe_or_read(self, path: Path) -> Optional[Size]:
        """Header size; a full decode when the header is unreadable or too big, when the file
        looks cut short (the decoder then raises :class:`ImageReadError` naming the file), and
        for validation with ``skip_bad``."""
        size = probe_size(path)
        too_big = size is not None and size[0] * size[1] > self.cfg.max_image_pixels
        if size is None or too_big or not looks_complete(path) or (self.cfg.skip_bad and not self.train):
            img = self._read(path)  # raises ImageReadError naming the file
            size = (int(img.shape[-2]), int(img.shape[-1]))
        return size

    def _entry_size(self, entry: tuple[Path, ...], sizes: list[Optional[Size]]) -> Optional[Size]:
        """Check the header sizes of one entry (layout errors raise); return the item image size."""
        return sizes[0]

    def _setup(self, entries: list[tuple[Path, ...]], what: str) -> None:
        limit = self.cfg.val_max if (not self.train and self.cfg.val_max > 0) else 0
        for entry in entries:
            if limit and len(self.entries) >= limit:
                break
            sizes: list[Optional[Size]] = []
            bad = False
            for path in entry:
                try:
                    sizes.append(self._probe_or_read(path))
                except ImageReadError as exc:
                    if not self.cfg.skip_bad:
                        raise
                    self.skipped.append((path, str(exc)))
                    _LOG.warning("skipping unreadable file %s: %s", path, exc)
                    bad = True
                    break
            if bad:
                continue
            size = self._entry_size(entry, sizes)
            if size is not None and self.train:
                self._check_crop(entry[0], size)
            self.entries.append(entry)
            self.sizes.append(size)
        if not self.entries:
            raise DatasetError(
                f"no usable {what} in {self.root}"
                + (f" ({len(self.skipped)} unreadable files skipped)" if self.skipped else "")
            )
        _LOG.info(
            "%s: %d %s from %s%s%s",
            type(self).__name__,
            len(self.entries),
            what,
            self.root,
            "" if self.train else " (validation)",
            f", {len(self.skipped)} skipped" if self.skipped else "",
        )

    def _check_crop(self, path: Path, size: Size) -> None:
        """Raise :class:`ImageTooSmallError` now rather than mid-training (``preprocess: crop``)."""
        draw_params(size[0], size[1], self.cfg, np.random.default_rng(0), name=str(path))

    # ---- indexing

    @property
    def num_files(self) -> int:
        return len(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        return [e[0].name for e in self.entries]

    def permutation(self, epoch: int) -> np.ndarray:
        """The file order of one epoch of ``len(self)`` draws."""
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([_seed_int(self.seed), self._salt, 0, int(epoch)])
            self._perm = rng.permutation(len(self.entries))
            self._perm_epoch = int(epoch)
        return self._perm

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator of one item: seeded by (seed, draw) in training, (seed, index) in validation."""
        stream = 1 if self.train else 2
        return np.random.default_rng([_seed_int(self.seed), self._salt, stream, int(index)])

    def file_index(self, index: int) -> int:
        """Entry index that ``self[index]`` reads (before any bad-file fallback)."""
        n = len(self.entries)
        if self.train:
            epoch, pos = divmod(index, n)
            return int(self.permutation(epoch)[pos])
        return index

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = operator.index(index)
        n = len(self.entries)
        if index < 0 or (not self.train and index >= n):
            raise IndexError(f"{type(self).__name__} index {index} out of range (len {n})")
        rng = self.item_rng(index)
        if self.train:
            epoch, pos = divmod(index, n)
            order = self.permutation(epoch)
        else:
            pos, order = index, np.arange(n)
        for step in range(n):
            idx = int(order[(pos + step) % n])
            if idx in self._bad:
                continue
            try:
                orig, images = self._images(idx)
            except ImageReadError as exc:
                if not self.cfg.skip_bad:
                    raise
                self._bad.add(idx)
                self.skipped.append((self.entries[idx][0], str(exc)))
                _LOG.warning("skipping unreadable file (%s); using the next file instead", exc)
                continue
            return self._make_item(idx, orig, images, rng)
        raise DatasetError(f"every file of {self.root} failed to read")

    # ---- loading

    def _decode(self, idx: int) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _images(self, idx: int) -> tuple[Size, tuple[torch.Tensor, ...]]:
        """Decoded images of one entry (resized for training), through the cache."""
        hit = self._cache.get(idx)
        if hit is not None:
            return hit
        images = self._decode(idx)
        orig = (int(images[0].shape[-2]), int(images[0].shape[-1]))
        if self.train:
            target = resize_target(orig[0], orig[1], self.cfg)
            if target is not None:
                images = tuple(resize(img, target) for img in images)
        self._cache.put(idx, orig, images)
        return orig, images

    def _params(self, idx: int, orig: Size, rng: np.random.Generator) -> dict[str, Any]:
        if self.train:
            return draw_params(orig[0], orig[1], self.cfg, rng, name=str(self.entries[idx][0]))
        return center_params(orig[0], orig[1], self.cfg.val_crop)

    def _make_item(
        self, idx: int, orig: Size, images: tuple[torch.Tensor, ...], rng: np.random.Generator
    ) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        mode = "train" if self.train else "val"
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, {mode})"


# --------------------------------------------------------------------------- paired folders


def _match_pairs(sharp: list[Path], blur: list[Path], root: Path) -> list[tuple[Path, Path]]:
    """Pair files by name; files whose extensions differ pair by stem when the stem is unique."""
    blur_by_name = {p.name: p for p in blur}
    sharp_names = {p.name for p in sharp}
    pairs: dict[Path, Path] = {s: blur_by_name[s.name] for s in sharp if s.name in blur_by_name}
    rest_s = [s for s in sharp if s.name not in blur_by_name]
    rest_b = [b for b in blur if b.name not in sharp_names]
    b_by_stem: dict[str, list[Path]] = {}
    for b in rest_b:
        b_by_stem.setdefault(b.stem, []).append(b)
    s_stem_count: dict[str, int] = {}
    for s in rest_s:
        s_stem_count[s.stem] = s_stem_count.get(s.stem, 0) + 1
    unmatched_s = []
    for s in rest_s:
        cands = b_by_stem.get(s.stem, [])
        if len(cands) == 1 and s_stem_count[s.stem] == 1:
            pairs[s] = cands[0]
        elif cands:
            raise DatasetError(
                f"{root}: cannot pair {s.name} unambiguously: blur/ has {_list_names([c.name for c in cands])} "
                "with the same stem; keep one file per name"
            )
        else:
            unmatched_s.append(s)
    used_b = set(pairs.values())
    unmatched_b = [b for b in blur if b not in used_b]
    if unmatched_s or unmatched_b:
        parts = []
        if unmatched_s:
            parts.append(f"sharp/ files without a partner in blur/: {_list_names([p.name for p in unmatched_s])}")
        if unmatched_b:
            parts.append(f"blur/ files without a partner in sharp/: {_list_names([p.name for p in unmatched_b])}")
        raise DatasetError(
            f"{root}: {'; '.join(parts)} (files pair by equal name, or equal stem when the "
            "extensions differ)"
        )
    return [(s, pairs[s]) for s in sharp]


class PairedFolderDataset(_DrawIndexedDataset):
    """Pairs from ``root/sharp`` and ``root/blur``, matched by file name.

    ``sharp/001.png`` pairs with ``blur/001.png``; when no file of that exact name
    exists, a file with the same stem and another extension (``blur/001.jpg``)
    is taken if it is the only one. A file without partner, an ambiguous stem or
    a pair of different sizes is an error naming the files.

    Args:
        root: folder holding ``sharp/`` and ``blur/``.
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
        for sub in ("sharp", "blur"):
            if not (self.root / sub).is_dir():
                raise DatasetError(
                    f"{self.root} has no '{sub}' subfolder: a paired folder needs {self.root}/sharp "
                    f"and {self.root}/blur with matching file names (side-by-side A|B files go in "
                    "data.aligned_dir)"
                )
        pairs = _match_pairs(list_images(self.root / "sharp"), list_images(self.root / "blur"), self.root)
        self._setup(pairs, "pairs")

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
            "name": self.entries[idx][0].name,
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
        blurred, kernel = self.pipeline(region, rng)
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


# --------------------------------------------------------------------------- sampling and batching


class DrawSampler(Sampler[int]):
    """Feeds draw numbers to a draw-indexed dataset: ``k*world_size + rank`` for ``k = start, start+1, ...``.

    ``start`` is the number of draws this rank already consumed (``iters_done *
    batch_size`` on resume). With ``num_draws=None`` the sampler is endless;
    give the loop its own stopping rule.
    """

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1, num_draws: Optional[int] = None):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.start, self.rank, self.world_size, self.num_draws = int(start), int(rank), int(world_size), num_draws

    def __iter__(self) -> Iterator[int]:
        k = self.start
        while self.num_draws is None or k < self.start + self.num_draws:
            yield k * self.world_size + self.rank
            k += 1

    def __len__(self) -> int:
        if self.num_draws is None:
            raise TypeError("an endless DrawSampler has no length")
        return int(self.num_draws)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of items into a batch (tensors -> ``N x C x H x W``, other values -> lists).

    Raises:
        BatchSizeError: images differ in size (``data.preprocess: none`` or whole-image
            validation with a batch size above 1).
    """
    if not items:
        raise ValueError("collate needs at least one item")
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], torch.Tensor):
            shapes = [tuple(v.shape) for v in values]
            if len(set(shapes)) > 1:
                j = next(i for i, s in enumerate(shapes) if s != shapes[0])
                names = [str(it.get("name", f"#{i}")) for i, it in enumerate(items)]
                raise BatchSizeError(
                    f"images of one batch differ in size ({names[0]}: {shapes[0]}, {names[j]}: {shapes[j]}): "
                    "with data.preprocess=none (and in whole-image validation) each image keeps its own "
                    "size, so batch_size must be 1; set the stage's batch_size=1 or use "
                    "data.preprocess=crop / resize_and_crop"
                )
            out[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        else:
            out[key] = values
    return out


def check_batchable(dataset: Dataset, batch_size: int) -> None:
    """Fail before training when ``batch_size > 1`` but the dataset's images differ in size.

    Only ``data.preprocess: none`` (and validation without ``val_crop``) keeps
    image sizes; sizes known from the headers are compared.

    Raises:
        BatchSizeError: naming ``data.preprocess`` and the batch size.
    """
    if batch_size <= 1 or not isinstance(dataset, _DrawIndexedDataset):
        return
    cfg = dataset.cfg
    keeps_size = (cfg.preprocess == "none") if dataset.train else cfg.val_crop <= 0
    if not keeps_size:
        return
    known = {s for s in dataset.sizes if s is not None}
    if len(known) > 1:
        a, b = sorted(known)[:2]
        raise BatchSizeError(
            f"data.preprocess={cfg.preprocess} keeps each image whole and {dataset.root} has images "
            f"of different sizes ({_fmt_size(a)}, {_fmt_size(b)}, ...), so batch_size={batch_size} "
            "cannot stack them: set batch_size=1 or data.preprocess=crop / resize_and_crop"
        )


# --------------------------------------------------------------------------- factories


def make_pair_dataset(
    cfg: DataConfig, synth_cfg: SynthConfig, seed: int, train: bool = True, **kwargs: Any
) -> _DrawIndexedDataset:
    """The training pairs the config names: ``pairs_dir`` > ``aligned_dir`` > synthetic from ``sharp_dir``.

    Extra keyword arguments (``cache_bytes``) go to the dataset.
    """
    if cfg.pairs_dir:
        return PairedFolderDataset(cfg.pairs_dir, cfg, seed, train=train, **kwargs)
    if cfg.aligned_dir:
        return AlignedDataset(cfg.aligned_dir, cfg, seed, train=train, **kwargs)
    if cfg.sharp_dir:
        return SyntheticPairDataset(cfg.sharp_dir, cfg, synth_cfg, seed, train=train, **kwargs)
    raise DatasetError(
        "no training pairs: set data.pairs_dir (DIR/sharp + DIR/blur), data.aligned_dir "
        "(side-by-side A|B files) or data.sharp_dir (synthetic blur on the fly)"
    )


def make_val_dataset(cfg: DataConfig, seed: int, **kwargs: Any) -> Optional[_DrawIndexedDataset]:
    """Validation pairs from ``data.val_dir`` (``None`` when unset).

    The layout is detected: a ``sharp/`` or ``blur/`` subfolder means paired
    folders, otherwise side-by-side ``A|B`` files.
    """
    if not cfg.val_dir:
        return None
    root = Path(cfg.val_dir)
    if not root.is_dir():
        raise DatasetError(f"data.val_dir {root} is not a folder")
    if (root / "sharp").is_dir() or (root / "blur").is_dir():
        return PairedFolderDataset(root, cfg, seed, train=False, **kwargs)
    return AlignedDataset(root, cfg, seed, train=False, **kwargs)


def make_unpaired_dataset(
    root: str | Path, cfg: DataConfig, seed: int, key: str = "real_blur", train: bool = True, **kwargs: Any
) -> UnpairedDataset:
    """A plain folder of images (real blurred photos by default)."""
    return UnpairedDataset(root, cfg, seed, key=key, train=train, **kwargs)
