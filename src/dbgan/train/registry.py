"""The training stages by name, and the stages each scheme runs.

The loop looks a stage up here and asks it what it needs (see
:class:`dbgan.train.stage.Stage`); it names no stage itself. A new stage is one class
in :mod:`dbgan.train.stages` plus a line in :data:`STAGES` (and in :data:`SCHEMES` for
the schemes that run it).
"""

from __future__ import annotations

from dbgan.registry import Registry

#: stage name -> its class (imported when first looked up)
STAGES = Registry(
    "stage",
    {
        "blur_pretrain": "dbgan.train.stages:BlurPretrainStage",
        "bgan": "dbgan.train.stages:BganStage",
        "dbgan": "dbgan.train.stages:DbganStage",
        "joint": "dbgan.train.stages:JointStage",
    },
)

#: scheme -> the stages it runs, in order (the choices of ``scheme`` are :data:`dbgan.constants.SCHEMES`)
SCHEMES: dict[str, tuple[str, ...]] = {
    "separate": ("blur_pretrain", "bgan", "dbgan"),
    "joint": ("blur_pretrain", "joint"),
    "synthetic": ("dbgan",),
}
