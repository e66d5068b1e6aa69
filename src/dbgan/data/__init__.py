"""Datasets and paired-safe transforms.

Training datasets are draw-indexed (``dataset[draw]`` for any draw >= 0) so that
training is exactly resumable and independent of the number of workers; see
:mod:`dbgan.data.datasets`. Transforms draw their parameters once and apply
them to both images of a pair; see :mod:`dbgan.data.transforms`.
"""

from dbgan.data.base import (
    DEFAULT_CACHE_BYTES,
)
from dbgan.data.batching import (
    DrawSampler,
    check_batchable,
    collate,
)
from dbgan.data.datasets import (
    AlignedDataset,
    PairedFolderDataset,
    SyntheticPairDataset,
    UnpairedDataset,
)
from dbgan.data.factories import (
    make_pair_dataset,
    make_unpaired_dataset,
    make_val_dataset,
)
from dbgan.data.errors import BatchSizeError, DatasetError, ImageTooSmallError
from dbgan.data.layouts import LAYOUTS, Pair, PairSet, find_pairs
from dbgan.data.transforms import apply_params, center_params, draw_params, resize, resize_target

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "AlignedDataset",
    "BatchSizeError",
    "DatasetError",
    "DrawSampler",
    "ImageTooSmallError",
    "LAYOUTS",
    "Pair",
    "PairSet",
    "PairedFolderDataset",
    "SyntheticPairDataset",
    "UnpairedDataset",
    "apply_params",
    "center_params",
    "check_batchable",
    "collate",
    "draw_params",
    "find_pairs",
    "make_pair_dataset",
    "make_unpaired_dataset",
    "make_val_dataset",
    "resize",
    "resize_target",
]
