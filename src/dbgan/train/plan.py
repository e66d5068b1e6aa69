"""What one training run needs from its config, resolved once.

:meth:`RunPlan.of` reads the config a single time when :func:`dbgan.train.loop.train`
starts: the stages of the scheme, each with its ``stages.<key>`` section, its class from
:data:`dbgan.train.registry.STAGES` and its seed; the loop's own settings
(``train.*``); the config's hash and the metadata every checkpoint carries. The loop
and :class:`dbgan.train.stage_run.StageRun` read the plan, never ``cfg.x.y``; the config
itself goes only to the builders that take it whole (networks, stages, data, the
run directory's ``config.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbgan.config import Config, StageConfig, TrainConfig
from dbgan.train.registry import SCHEMES, STAGES

if TYPE_CHECKING:
    from torch import nn

    from dbgan.train.context import StepContext
    from dbgan.train.stage import Stage


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the run: its place in the plan, its settings and its seed."""

    index: int
    name: str
    settings: StageConfig  # stages.<config_key>: iterations, batch size, schedule, init_from, skip
    seed: int

    @property
    def kind(self) -> type["Stage"]:
        """The stage class (from the registry)."""
        return STAGES.get(self.name)

    @property
    def runs(self) -> bool:
        """False when the stage is switched off (``skip``, or zero iterations)."""
        return not (self.settings.skip or self.settings.iters == 0)

    def build(self, cfg: Config, nets: dict[str, "nn.Module"], ctx: "StepContext") -> "Stage":
        """The stage over the run's networks."""
        return self.kind.build(cfg, nets, ctx, self.seed)


@dataclass(frozen=True)
class RunPlan:
    """The stages of ``cfg.scheme`` and the loop's settings, read from ``cfg`` once."""

    cfg: Config
    stages: tuple[PlannedStage, ...]
    seed: int
    train: TrainConfig  # the loop's settings: logging, validation, saving, bad steps, progress
    config_hash: str
    checkpoint_meta: dict[str, Any]  # scheme, config hash, config and channels, in every checkpoint

    @classmethod
    def of(cls, cfg: Config) -> "RunPlan":
        stages = tuple(
            PlannedStage(i, name, STAGES.get(name).stage_config(cfg), cfg.seed * 7919 + i)
            for i, name in enumerate(SCHEMES[cfg.scheme])
        )
        config_hash = cfg.hash()
        meta = {"scheme": cfg.scheme, "config_hash": config_hash, "config": cfg.to_dict(), "channels": cfg.data.channels}
        return cls(cfg, stages, cfg.seed, cfg.train, config_hash, meta)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.stages)

    def stage(self, name: str) -> PlannedStage:
        for p in self.stages:
            if p.name == name:
                return p
        raise ValueError(f"stage {name!r} is not part of this scheme ({', '.join(self.names)})")
