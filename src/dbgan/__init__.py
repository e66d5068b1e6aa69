"""dbgan: Deblurring by Realistic Blurring (Zhang et al., CVPR 2020) as a toolkit.

Learn a blur generator (BGAN) that turns sharp images into realistic blur from
unpaired real blurred photos, then train a deblurrer (DBGAN) on its output.

``from dbgan import Deblurrer, load_model`` is the Python API (:mod:`dbgan.api`);
it is imported on first use, so ``import dbgan`` stays light.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["Deblurrer", "load_model", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Deblurrer", "load_model"):
        from dbgan import api

        return getattr(api, name)
    raise AttributeError(f"module 'dbgan' has no attribute {name!r}")
