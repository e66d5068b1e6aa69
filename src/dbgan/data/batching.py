"""Feeding datasets to a loader: the draw sampler, collation and the batch-size check."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dbgan.data.base import _DrawIndexedDataset, _fmt_size
from dbgan.data.errors import BatchSizeError


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
