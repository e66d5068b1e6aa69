"""Architectures only (nothing here knows about training).

Networks are built by name through :data:`NETWORKS`; modules are imported only
when one of their names is built. ``python -m dbgan.nets`` lists them and
:func:`describe` returns ``[(name, parameter count)]``.

Conventions (every network): ``float32`` ``N x C x H x W`` inputs in ``[0, 1]``;
attributes ``in_channels``, ``out_channels`` and ``size_multiple``. Generators
accept any H, W (they reflect-pad to ``size_multiple`` and crop back);
discriminators return raw logits. ``PadToMultiple`` / ``pad_to_multiple`` /
``crop_to`` are re-exported lazily from :mod:`dbgan.nets.common`.
"""

from dbgan.registry import Registry

NETWORKS = Registry(
    "network",
    {
        # generators
        "unet": "dbgan.nets.unet:UNetGenerator",  # pix2pix U-Net (num_downs=8 is "unet_256")
        "resnet_blur": "dbgan.nets.resnet:ResNetBlurGenerator",  # the paper's BGAN
        "rrdb": "dbgan.nets.rrdb:RRDBGenerator",  # the paper's DBGAN
        "kernel_blur": "dbgan.nets.kernel_blur:KernelBlurGenerator",  # BGAN that predicts kernels + noise
        "nafnet": "dbgan.nets.nafnet:NAFNetGenerator",  # compact NAFNet-style deblurrer (the general model)
        "camera_blur": "dbgan.nets.camera_blur:CameraBlurGenerator",  # BGAN that is a learnable camera
        # discriminators
        "patchgan": "dbgan.nets.discriminators:PatchGANDiscriminator",
        "vgg_disc": "dbgan.nets.discriminators:VGGDiscriminator",
        "degradation_d": "dbgan.nets.degradation_disc:DegradationDiscriminator",  # judges blur/noise/tone, not content
    },
    # ranges of constructor arguments (checked for configs and checkpoint metadata before
    # anything is built); integers not listed here lie in registry.DEFAULT_INT_RANGE
    limits={
        "in_channels": (1, 4), "out_channels": (1, 4),
        "ngf": (1, 1024), "ndf": (1, 1024), "nf": (1, 1024), "gc": (1, 1024), "hidden": (1, 4096),
        "num_downs": (1, 10), "n_layers": (1, 8), "n_blocks": (0, 64), "nb": (0, 64),
        "noise_nc": (0, 64), "noise_dim": (0, 1024), "kernel_size": (1, 255), "pool_size": (1, 64),
        "init_sigma": (0.0, 1e3), "init_noise": (0.0, 1.0), "init_gamma": (0.1, 10.0), "gamma_lr_scale": (0.0, 1e3),
    },
)


def build_network(name: str, **kwargs):
    """Instantiate the network registered as ``name`` with constructor ``kwargs``."""
    return NETWORKS.build(name, **kwargs)


def describe(names: list[str] | None = None) -> list[tuple[str, int]]:
    """``[(name, parameter count)]`` of the registered architectures at their default arguments.

    The networks are built on PyTorch's ``meta`` device, so nothing is allocated
    and even the 54 M-parameter U-Net is counted instantly.

    Args:
        names: architectures to describe (default: all registered, sorted).
    """
    import torch

    out = []
    for name in names if names is not None else NETWORKS.names():
        with torch.device("meta"):
            net = NETWORKS.build(name)
        out.append((name, sum(p.numel() for p in net.parameters())))
    return out


_LAZY = {"PadToMultiple", "pad_to_multiple", "crop_to"}


def __getattr__(name: str):
    # re-exports from dbgan.nets.common, imported on first use so that
    # ``import dbgan.nets`` (the registry table) does not import torch
    if name in _LAZY:
        from dbgan.nets import common

        return getattr(common, name)
    raise AttributeError(f"module 'dbgan.nets' has no attribute {name!r}")
