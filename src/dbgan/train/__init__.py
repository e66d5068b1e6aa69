"""Training: stages (one class each), the shared loop, monitoring.

Knows nothing of files on disk beyond the run directory.
"""

from dbgan.train.loop import SCHEMES, TrainResult, train

__all__ = ["SCHEMES", "TrainResult", "train"]
