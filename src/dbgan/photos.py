"""The training photos of the bundled general model, built from packages installable offline.

``dbgan photos OUT`` writes ``OUT/`` (a plain folder of sharp 256 x 256 PNG tiles, the
``data.sharp_dir`` of ``configs/general.yaml``) from:

* Debian's ``lomiri-wallpapers-16.04`` and ``lomiri-wallpapers-20.04`` (photographs from
  the Ubuntu wallpaper contests) and ``gnome-backgrounds`` (3-D renders with sharp edges),
  read from ``/usr/share/backgrounds`` where ``apt-get install`` puts them;
* scikit-image's bundled images (``skimage/data``), minus the ones held out for evaluation.

Every image is written at several scales (its longer side at each of :data:`SCALES`,
never enlarged) and cut into non-overlapping tiles; nearly flat tiles are dropped. The
photos are few, so the scales stand in for many cameras' resolutions, and the training
recipe adds random crops, flips, exposure, colour strength, grey scenes and a broad
degradation distribution (``configs/general.yaml``).

The Debian packages ``mate-backgrounds`` and ``plasma-workspace-wallpapers`` are never
used: they are reserved for independent evaluation. Nothing here downloads anything.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

BACKGROUNDS = Path("/usr/share/backgrounds")

#: never used for training: reserved for independent evaluation
RESERVED_PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers")


@dataclass(frozen=True)
class Source:
    package: str  # Debian package or "scikit-image"
    licence: str
    files: tuple[str, ...]  # paths under /usr/share/backgrounds, or skimage.data names
    scales: tuple[int, ...] | None = None  # longer sides to write (default: SCALES)


SOURCES = (
    Source("lomiri-wallpapers-16.04", "CC-BY-4.0", (
        "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg", "friends_by_Aitzol_Berasategi.jpg",
        "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg", "sunset_by_Aitzol_Berasategi.jpg",
        "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg",
    )),
    Source("lomiri-wallpapers-16.04", "CC-BY-SA-4.0", (
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "analogpattern_by_Peter_Nerlich.jpg",
        "free_by_Peter_Nerlich.jpg", "greentock_by_Peter_Nerlich.jpg",
    )),
    Source("lomiri-wallpapers-16.04", "CC0-1.0", ("seeding_by_Clements_Engelhardt.jpg",)),
    Source("lomiri-wallpapers-20.04", "CC-BY-SA-3.0", ("Kleiber_by_Lukas_Baubkus.jpg",)),
    Source("gnome-backgrounds", "CC-BY-SA-3.0", (
        "gnome/pixels-l.webp", "gnome/pixels-d.webp", "gnome/licorice-l.webp", "gnome/licorice-d.webp",
    ), scales=(1024, 640)),
    # scikit-image's bundled images (skimage/data; the terms are in each loader's docstring)
    Source("scikit-image", "public domain (NASA, SpaceX)", ("astronaut", "rocket", "hubble_deep_field")),
    Source("scikit-image", "CC0-1.0", ("retina", "brick", "grass", "gravel", "cell", "horse")),
    Source("scikit-image", "no known copyright restrictions", ("immunohistochemistry", "coins")),
    Source("scikit-image", "not stated (shipped in scikit-image, BSD-3-Clause)", ("moon",)),
)

#: scikit-image images never trained on (the demo's and the tests' held-out photos)
HELDOUT_SKIMAGE = ("chelsea", "coffee", "camera", "motorcycle_left", "motorcycle_right")

#: longer side of each copy of an image (never enlarged)
SCALES = (2400, 1600, 1024, 640, 400)
TILE = 256
MIN_STD = 0.02  # tiles flatter than this (grey-level std) are dropped


def _load(src: Source, name: str) -> torch.Tensor:
    """One image as ``3 x H x W`` float in ``[0, 1]`` (grey images repeated to 3 channels)."""
    if src.package == "scikit-image":
        from skimage import data as skd

        arr = np.asarray(getattr(skd, name)())
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
    else:
        path = BACKGROUNDS / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: install the photos with `apt-get install {src.package}` "
                "(see src/dbgan/models/general.md)"
            )
        from dbgan.io import open_with_pillow

        with open_with_pillow(path) as im:
            arr = np.asarray(im.convert("RGB"))
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    arr = arr[..., :3]
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float() / scale


def _resize_longer(img: torch.Tensor, side: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    if side >= max(h, w):
        return img
    s = side / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    out = torch.nn.functional.interpolate(img[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp(0, 1)


def build_photo_folder(out: str | Path, scales: tuple[int, ...] = SCALES, tile: int = TILE) -> dict:
    """Write the training tiles into ``out`` and ``out/SOURCES.json``; return the summary.

    Raises FileNotFoundError naming the missing file and the package to install.
    """
    from dbgan.io import write_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"tile": tile, "scales": list(scales), "sources": [], "tiles": 0, "images": 0}
    for src in SOURCES:
        for name in src.files:
            img = _load(src, name)
            stem = Path(name).stem.replace("/", "_")
            n_tiles = 0
            longer = max(img.shape[-2:])
            for side in sorted({min(side, longer) for side in (src.scales or scales)}, reverse=True):
                scaled = _resize_longer(img, side)
                h, w = scaled.shape[-2:]
                for y in range(0, h - tile + 1, tile):
                    for x in range(0, w - tile + 1, tile):
                        t = scaled[:, y : y + tile, x : x + tile]
                        if float(t.mean(0).std()) < MIN_STD:
                            continue
                        write_image(out / f"{stem}_{side}_{y:04d}_{x:04d}.png", t)
                        n_tiles += 1
            summary["sources"].append({"package": src.package, "file": name, "licence": src.licence,
                                       "size": list(img.shape[-2:]), "tiles": n_tiles})
            summary["tiles"] += n_tiles
            summary["images"] += 1
            log.info("%s %s: %d tiles", src.package, name, n_tiles)
    (out / "SOURCES.json").write_text(json.dumps(summary, indent=1))
    return summary
