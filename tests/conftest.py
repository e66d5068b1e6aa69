"""Shared pytest fixtures: generic ones, and those more than one test file uses."""

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


@pytest.fixture
def camera_stage(sample_images, tmp_path):
    """``make(*overrides) -> (cfg, bgan stage, generator)`` for the camera preset at a tiny size."""
    import torch

    from dbgan.config import load_config
    from dbgan.train import loop as L

    folder = sample_images[0].parent

    def make(*overrides: str):
        cfg = load_config(
            "camera",
            [f"data.sharp_dir={folder}", f"data.real_blur_dir={folder}", f"runs_dir={tmp_path / 'runs'}",
             "data.crop_size=48", "data.load_size=48", "nets.blur_g.args.kernel_size=15",
             "nets.blur_d.args.ndf=4", "nets.blur_d.args.scales=2", *overrides],
        )
        nets, _ = L.build_nets(cfg, torch.device("cpu"))
        return cfg, L.make_stage("bgan", cfg, nets, torch.device("cpu")), nets["blur_g"]

    return make
