"""Training: the stages (found by name in :mod:`dbgan.train.registry`), the shared loop, monitoring.

``train(cfg)`` (:mod:`dbgan.train.loop`) runs the stages of ``cfg.scheme``; each stage
declares its config key, data, networks and losses (:class:`dbgan.train.stage.Stage`).
Knows nothing of files on disk beyond the run directory (:mod:`dbgan.train.run_dir`).
See ``docs/architecture.md``.
"""

from dbgan.train.loop import SCHEMES, TrainResult, train

__all__ = ["SCHEMES", "TrainResult", "train"]
