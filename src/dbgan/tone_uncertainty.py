"""How firmly two unpaired photo folders pin a camera's brightness and colour.

BGAN finds a camera's exposure and white balance by comparing the sharp folder with the blurred
folder. When the two folders show different scenes, whatever separates their *scenes* looks the
same to that comparison as the camera does, and no method that sees only unpaired photos can tell
the two apart. :func:`folder_tone_gap` says how large that part can be for a user's own folders:
the difference of the two folders' mean photo (each photo weighted once) and its standard error
from the photos' own spread, for the brightness (mean over channels) and for each channel's
colour (the channel less the brightness).

On the domain-gap benchmark's photo pool (``benchmarks/scene_gap.py``, 200 data seeds) the standard
error of one data seed's folders predicted the brightness gap's spread over the seeds to 2% (0.0499
against 0.0490) when the two folders hold different photos (its ``photos`` split). Folders whose
photos are related, such as halves of the same photos or frames of one video, differ less than it
says (twice less for the ``halves`` split).

Pure functions on per-photo means; :func:`photo_means` takes them as another reader reads the photos
(the bgan stage), and :func:`folders_tone_gap` reads two folders for a check before training::

    dbgan check-folders my_sharp my_blurry
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

#: how many standard errors a difference must exceed before it is called the camera's
DISTINGUISHABLE_AT = 2.0


@dataclass(frozen=True)
class FolderToneGap:
    """The blurred folder's mean photo less the sharp folder's, with standard errors (display units, 0-1)."""

    sharp_photos: int
    real_photos: int
    brightness: float  # mean over channels
    brightness_se: float
    colour: tuple[float, ...]  # per channel, less the brightness (empty for grey photos)
    colour_se: tuple[float, ...]

    @property
    def brightness_distinguishable(self) -> bool:
        """Whether the brightness difference exceeds :data:`DISTINGUISHABLE_AT` standard errors."""
        return abs(self.brightness) > DISTINGUISHABLE_AT * self.brightness_se

    def as_dict(self) -> dict:
        return asdict(self) | {"brightness_distinguishable": self.brightness_distinguishable}

    def summary(self) -> str:
        """One sentence for the log."""
        text = (f"the blurred folder's mean brightness less the sharp folder's is {self.brightness:+.4f} +/- "
                f"{self.brightness_se:.4f} (standard error from the scenes of {self.sharp_photos} sharp and "
                f"{self.real_photos} blurred photos)")
        if self.colour_se:
            text += f"; colour +/- {max(self.colour_se):.4f} (largest channel)"
        if not self.brightness_distinguishable:
            text += (". If the two folders show different scenes, the camera's brightness change cannot be told "
                     "from theirs: the fitted exposure may be off by about that much; more photos narrow it as "
                     "1 / sqrt(photos), and photos of the same scenes on both sides remove it "
                     "(configs/adapt_same_scenes.yaml)")
        return text


def photo_mean(img: Tensor) -> Tensor:
    """The per-channel mean of a ``C x H x W`` photo (float64, ``C``, on the CPU)."""
    return img.detach().double().mean((-2, -1)).cpu()


def photo_means(images: Iterable[Tensor], sink: list[Tensor]) -> Iterator[Tensor]:
    """Yield each ``C x H x W`` image of ``images`` unchanged, appending its :func:`photo_mean` to
    ``sink``: the means are taken while another reader consumes the photos."""
    for img in images:
        sink.append(photo_mean(img))
        yield img


def folders_tone_gap(sharp_dir, real_dir, channels: int = 3, max_pixels: int | None = None) -> FolderToneGap | None:
    """:func:`folder_tone_gap` of two image folders (``dbgan.io.list_images``; each photo read once, as
    ``channels``; ``max_pixels`` as :func:`dbgan.io.read_image`)."""
    from dbgan.io import list_images, read_image

    means = [torch.stack([photo_mean(read_image(p, channels=channels, max_pixels=max_pixels)) for p in list_images(d)])
             for d in (sharp_dir, real_dir)]
    return folder_tone_gap(*means)


def _diff_se(a: Tensor, b: Tensor) -> tuple[float, float]:
    """``mean(b) - mean(a)`` of two 1-D samples and its standard error (sample variances)."""
    var = a.var(unbiased=True) / a.numel() + b.var(unbiased=True) / b.numel()
    return float(b.mean() - a.mean()), math.sqrt(float(var))


def folder_tone_gap(sharp_means: Tensor, real_means: Tensor) -> FolderToneGap | None:
    """The two folders' tone gap from their photos' per-channel means (``N x C`` and ``M x C``);
    ``None`` when either folder has fewer than two photos (no spread to measure)."""
    if sharp_means.ndim != 2 or real_means.ndim != 2 or sharp_means.shape[1] != real_means.shape[1]:
        raise ValueError(f"folder_tone_gap: expected N x C and M x C means with one C, got "
                         f"{tuple(sharp_means.shape)} and {tuple(real_means.shape)}")
    if len(sharp_means) < 2 or len(real_means) < 2:
        return None
    s, r = sharp_means.double(), real_means.double()
    bright, bright_se = _diff_se(s.mean(1), r.mean(1))
    colour = [_diff_se(s[:, c] - s.mean(1), r[:, c] - r.mean(1)) for c in range(s.shape[1])] if s.shape[1] > 1 else []
    return FolderToneGap(len(s), len(r), bright, bright_se, tuple(c[0] for c in colour), tuple(c[1] for c in colour))
