"""The draw-indexed dataset base class: header checks, caching, bad-file handling, per-draw RNG.

See :mod:`dbgan.data.datasets` for how draws map to items."""

from __future__ import annotations

import logging
import operator
import zlib
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dbgan.config import DataConfig
from dbgan.data.errors import DatasetError
from dbgan.data.transforms import center_params, draw_params, resize, resize_target
from dbgan.io import ImageReadError, looks_complete, probe_size, read_image


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

    def whole_image(self, idx: int) -> torch.Tensor:
        """Entry ``idx``'s (first) image whole: decoded and, for training, resized as
        ``data.preprocess`` does before cropping (what the crops are cut from)."""
        return self._images(idx)[1][0]

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
