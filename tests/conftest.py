"""Shared pytest fixtures (generic only: keep feature-specific fixtures in their test files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _small_photos(width: int = 96) -> dict[str, np.ndarray]:
    """scikit-image's bundled colour photos, downscaled to ``width`` pixels wide (uint8 H x W x 3)."""
    import cv2
    import skimage.data

    photos = {}
    for name in ("astronaut", "coffee", "chelsea"):
        img = getattr(skimage.data, name)()
        h, w = img.shape[:2]
        height = max(8, round(h * width / w))
        photos[name] = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return photos


@pytest.fixture(scope="session")
def sample_arrays() -> dict[str, np.ndarray]:
    """Three small RGB photos (astronaut, coffee, chelsea; 96 px wide) as uint8 arrays."""
    return _small_photos()


@pytest.fixture
def sample_images(tmp_path: Path, sample_arrays: dict[str, np.ndarray]) -> list[Path]:
    """The three sample photos written as 8-bit RGB PNGs to ``tmp_path/photos/``; returns their paths."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for name, arr in sample_arrays.items():
        path = folder / f"{name}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return sorted(paths)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny nets gain nothing from threads, and on a shared CPU spinning worker threads cost a lot."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
