"""The datasets a config asks for: training pairs, validation pairs, unpaired folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from dbgan.config import DataConfig, SynthConfig
from dbgan.data.base import _DrawIndexedDataset
from dbgan.data.datasets import AlignedDataset, PairedFolderDataset, SyntheticPairDataset, UnpairedDataset
from dbgan.data.errors import DatasetError
from dbgan.data.layouts import find_pairs


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
        "no training pairs: set data.pairs_dir (DIR/sharp + DIR/blur, DIR/input + DIR/target, GoPro "
        "scenes or a RealBlur list), data.aligned_dir "
        "(side-by-side A|B files) or data.sharp_dir (synthetic blur on the fly)"
    )


def make_val_dataset(cfg: DataConfig, seed: int, **kwargs: Any) -> Optional[_DrawIndexedDataset]:
    """Validation pairs from ``data.val_dir`` (``None`` when unset).

    Any layout of :mod:`dbgan.data.layouts`: paired files, or, for a plain folder
    of images, side-by-side ``A|B`` files.
    """
    if not cfg.val_dir:
        return None
    root = Path(cfg.val_dir)
    if not root.exists():
        raise DatasetError(f"data.val_dir {root} does not exist")
    if find_pairs(root, strict=False).layout == "aligned":
        return AlignedDataset(root, cfg, seed, train=False, **kwargs)
    return PairedFolderDataset(root, cfg, seed, train=False, **kwargs)


def make_unpaired_dataset(
    root: str | Path, cfg: DataConfig, seed: int, key: str = "real_blur", train: bool = True, **kwargs: Any
) -> UnpairedDataset:
    """A plain folder of images (real blurred photos by default)."""
    return UnpairedDataset(root, cfg, seed, key=key, train=train, **kwargs)
