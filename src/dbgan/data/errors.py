"""Errors raised by ``dbgan.data`` (all ``ValueError`` so the CLI reports them in one line)."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset folder has the wrong layout: missing subfolder, unpaired file, size mismatch."""


class ImageTooSmallError(DatasetError):
    """An image is smaller than the training crop (names the file, its size and the config key)."""


class BatchSizeError(DatasetError):
    """Images of different sizes were put in one batch (``data.preprocess: none`` with batch_size > 1)."""
