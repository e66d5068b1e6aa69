"""Constants and allowed-value lists, each defined once.

The config validator (:mod:`dbgan.config`) and the code that acts on a value both
read the list from here, so a new choice is added in one place. No imports: any
module may use this one.
"""

from __future__ import annotations

#: ITU-R BT.601 luma weights (R, G, B): RGB -> grey in io, inference, metrics and losses.
LUMA = (0.299, 0.587, 0.114)

#: Training schemes (``scheme``); the stages each runs are in :mod:`dbgan.train.registry`.
SCHEMES = ("separate", "joint", "synthetic")
#: ``data.preprocess``
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "none")
#: ``data.direction`` (side-by-side A|B files: which half is the blurred input)
DIRECTIONS = ("AtoB", "BtoA")
#: ``train.amp``
AMP_MODES = ("none", "bf16", "fp16", "auto")
#: ``train.backend``
DIST_BACKENDS = ("auto", "nccl", "gloo")
#: ``train.channels_last`` (besides true / false)
CHANNELS_LAST_MODES = ("auto", "discriminators", "all", "none")
#: ``losses.perceptual.weights``
PERCEPTUAL_WEIGHTS = ("pretrained", "random")
#: ``losses.perceptual.criterion``
PERCEPTUAL_CRITERIA = ("l1", "mse")
#: ``stages.<stage>.schedule``
SCHEDULES = ("constant", "linear", "cosine")
#: ``stages.<stage>.gan_mode`` (``rbl``: the relativistic blur loss)
GAN_MODES = ("vanilla", "lsgan", "hinge", "rbl")
#: where the bgan stage takes the brightness quantiles its camera statistics and tone fit use
TONE_SOURCES = ("crops", "photos")
#: ``stages.<stage>.content``
CONTENT_LOSSES = ("l1", "mse", "charbonnier")
#: ``synth.kernels`` entries
KERNEL_KINDS = ("motion", "linear", "defocus", "gaussian")
