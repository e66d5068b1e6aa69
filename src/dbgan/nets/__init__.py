"""Architectures only (nothing here knows about training).

Networks are built by name through :data:`NETWORKS`; modules are imported only
when one of their names is built. ``python -m dbgan.nets`` lists them.
"""

from dbgan.registry import Registry

NETWORKS = Registry(
    "network",
    {
        # generators
        "unet": "dbgan.nets.unet:UNetGenerator",  # pix2pix U-Net (num_downs=8 is "unet_256")
        "resnet_blur": "dbgan.nets.resnet:ResNetBlurGenerator",  # the paper's BGAN
        "rrdb": "dbgan.nets.rrdb:RRDBGenerator",  # the paper's DBGAN
        # discriminators
        "patchgan": "dbgan.nets.discriminators:PatchGANDiscriminator",
        "vgg_disc": "dbgan.nets.discriminators:VGGDiscriminator",
    },
)


def build_network(name: str, **kwargs):
    """Instantiate the network registered as ``name`` with constructor ``kwargs``."""
    return NETWORKS.build(name, **kwargs)
