"""The training data of a stage: one draw-indexed dataset, and endless batches from it.

Every item is a pure function of ``(seed, draw)``, so a run resumed at iteration ``i``
continues the data stream exactly by starting the sampler at draw ``i * batch_size``.
"""

from __future__ import annotations

import signal
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from dbgan.config import Config, ConfigError, StageConfig
from dbgan.train.context import DistInfo
from dbgan.train.registry import STAGES


class CombinedDataset(Dataset):
    """Merge the items of several draw-indexed datasets (e.g. pairs + real blur)."""

    def __init__(self, parts: list[tuple[Dataset, tuple[str, ...]]]):
        self.parts = parts

    def __len__(self) -> int:
        return max(len(ds) for ds, _ in self.parts)

    def __getitem__(self, draw: int) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for ds, keys in self.parts:
            got = ds[draw]
            item.update({k: got[k] for k in keys})
        return item


def stage_dataset(cfg: Config, stage: str) -> "CombinedDataset":
    """The training data stage ``stage`` needs (its :meth:`~dbgan.train.stage.Stage.data_needs`)."""
    from dbgan.data import make_pair_dataset, make_unpaired_dataset

    needs = STAGES.get(stage).data_needs(cfg)
    parts: list[tuple[Dataset, tuple[str, ...]]] = []
    if needs.synthetic or not cfg.data.sharp_dir:
        parts.append((make_pair_dataset(cfg.data, cfg.synth, cfg.seed, train=True), ("sharp", "blur")))
    else:
        parts.append((make_unpaired_dataset(cfg.data.sharp_dir, cfg.data, cfg.seed, key="sharp"), ("sharp",)))
    if needs.real == "required" or (needs.real == "optional" and cfg.data.real_blur_dir):
        if not cfg.data.real_blur_dir:
            raise ConfigError(f"stage '{stage}' needs real blurred photos: set 'data.real_blur_dir'")
        parts.append(
            (make_unpaired_dataset(cfg.data.real_blur_dir, cfg.data, cfg.seed + 1, key="real_blur"), ("real_blur",))
        )
    return CombinedDataset(parts)


def check_stage_dataset(ds: "CombinedDataset", batch_size: int) -> None:
    """Raise if a part of ``ds`` cannot fill a batch of ``batch_size`` (too few images, sizes differ)."""
    from dbgan.data import check_batchable

    for part, _ in ds.parts:
        check_batchable(part, batch_size)


def _worker_ignores_sigint(worker_id: int) -> None:
    """DataLoader worker init: leave Ctrl-C to the main process, which saves and then stops the
    workers (a worker that died of SIGINT would turn a clean interrupt into a crash)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batches(ds: Dataset, cfg: Config, stage_cfg: StageConfig, start_iter: int, info: DistInfo) -> Iterator[dict]:
    """Endless batches starting at iteration ``start_iter`` (exact resume: nothing else to restore)."""
    from dbgan.data import DrawSampler, check_batchable, collate

    for part, _ in getattr(ds, "parts", [(ds, ())]):
        check_batchable(part, stage_cfg.batch_size)
    # The loader draws a base seed for its workers when an iterator is made; from its own
    # generator, not the global RNG: resuming makes the iterator at another point of the run,
    # and a draw from the global stream would shift the generators' noise (no exact resume).
    # Items do not depend on it: each is a pure function of (seed, draw).
    loader_rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + start_iter * 131 + info.rank)
    loader = DataLoader(
        ds,
        batch_size=stage_cfg.batch_size,
        generator=loader_rng,
        sampler=DrawSampler(start_iter * stage_cfg.batch_size, info.rank, info.world),
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        worker_init_fn=_worker_ignores_sigint if cfg.data.num_workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
    return iter(loader)
