"""Which brightness statistic pins a camera's exposure and white balance best from two unpaired folders?

    PYTHONPATH=src python benchmarks/tone_statistics.py --extra-photos DIR --seeds 8
    PYTHONPATH=src python benchmarks/tone_statistics.py --extra-photos DIR --seeds 8 --split photos

Any unpaired tone fit compares some statistic of the sharp folder with the same statistic of the blurred
folder. dbgan's fits use the brightness quantiles (histogram matching) or the photos' means (grey world).
Where the two folders hold different scenes, the scenes' own difference moves every statistic; a statistic
that the scenes move less pins the camera better. Without a camera the photos' high quantiles looked about
twice as steady as their mean over the halves split (the light of one shot is on both halves). This
measures it *through* each stand-in camera (``benchmarks/cameras.py``, independent of dbgan.blur), whose
response curve, clipping, noise, blur and JPEG act on what each statistic sees.

For each data seed (``domain_gap.split_photos``) and camera, per channel:

* **scene error**: the statistic of the camera's real-side photos less that of the same camera applied to
  the sharp-side photos (what the statistic would read if the two sides held the same scenes), divided by
  the statistic's response to a change of 0.1 in log exposure (the camera with its exposure times
  ``e^0.1``): the log-exposure error a fit to that statistic makes from the scenes alone. Its mean over the
  channels is the exposure error, the rest the white-balance error;
* **blur shift**: the camera's statistic of the sharp-side photos less the same camera's without its blur, in
  the same units: what a fit that does not model the camera's blur gets wrong (a model that blurs as the camera does
  removes it; dbgan's ``fit_means`` calibrates on the generator's own outputs for this reason).

The statistics are those of dbgan's tone statistics: each channel's 8-pooled display values
(``dbgan.degradation_stats.TONE_POOL``), each photo weighted once. The table gives the RMS over cameras and
seeds. No training: about a minute per seed on two cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cameras as CAMS  # noqa: E402
import domain_gap as DG  # noqa: E402

#: the statistics compared: ``None`` is the mean, a number that quantile of the pooled values
STATISTICS: dict[str, float | None] = {"mean": None, "q0.02": 0.02, "q0.10": 0.10, "q0.50": 0.50,
                                       "q0.90": 0.90, "q0.95": 0.95, "q0.98": 0.98}
VALIDATION = ("compact", "soft_lens", "webcam")
POOL = 8  # dbgan.degradation_stats.TONE_POOL (not imported: the benchmark's cameras stay apart from dbgan)
STEP = 0.1  # the log-exposure change that measures each statistic's response


def pooled(img: np.ndarray, scale: int = POOL) -> np.ndarray:
    """``(blocks, C)``: the means of ``scale x scale`` blocks of an ``H x W x C`` image (the border cut off)."""
    h, w, c = img.shape
    s = max(1, min(scale, h, w))
    a = np.asarray(img, np.float64)[: h // s * s, : w // s * s]
    return a.reshape(h // s, s, w // s, s, c).mean((1, 3)).reshape(-1, c)


def folder_statistics(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each statistic of :data:`STATISTICS` (per channel) of a folder: each photo's own, averaged over the photos."""
    blocks = [pooled(im) for im in images]
    if not blocks:
        raise ValueError("folder_statistics: no photos")
    levels = [q for q in STATISTICS.values() if q is not None]
    per_photo = [dict(zip(levels, np.quantile(b, levels, axis=0))) | {None: b.mean(0)} for b in blocks]  # one sort each
    return {name: np.mean([p[q] for p in per_photo], 0) for name, q in STATISTICS.items()}


def implied_log_errors(stat: np.ndarray, target: np.ndarray, brighter: np.ndarray, step: float = STEP) -> np.ndarray:
    """Per channel, the log-exposure error of a fit that reads ``stat`` where ``target`` is right; ``brighter``
    is the target's value ``step`` log units brighter (its response; floored so a clipped statistic that no
    longer responds reads as a large error, not a division by zero)."""
    slope = np.maximum((np.asarray(brighter) - np.asarray(target)) / step, 1e-3)
    return (np.asarray(stat) - np.asarray(target)) / slope


def unblurred(cam: CAMS.Camera) -> CAMS.Camera:
    """The same camera with neither its blur nor its lens' Gaussian (a one-pixel kernel)."""
    return dataclasses.replace(cam, blur="defocus", defocus_radius=(0.4, 0.4), optics_sigma=0.0)


def camera_case(cam: CAMS.Camera, photos: dict[str, np.ndarray], split: dict, seed: int, ci: int) -> dict:
    """One camera and data seed: per statistic, the per-channel scene errors and blur shifts (log exposure)."""
    view = (lambda a: a[..., :1]) if cam.grey else (lambda a: a)

    def shoot(c: CAMS.Camera, side: str, k: int) -> list[np.ndarray]:  # the same noise and kernels for every variant
        return [view(c.degrade(photos[n], np.random.default_rng([seed, ci, k, i]))) for i, n in enumerate(split[side])]

    real = folder_statistics(shoot(cam, "real", 1))
    target = folder_statistics(shoot(cam, "sharp", 2))
    brighter = folder_statistics(shoot(dataclasses.replace(cam, exposure=cam.exposure * np.exp(STEP)), "sharp", 2))
    sharp = folder_statistics(shoot(unblurred(cam), "sharp", 2))
    return {name: {"scene": implied_log_errors(real[name], target[name], brighter[name]).tolist(),
                   "blur": implied_log_errors(target[name], sharp[name], brighter[name]).tolist()}
            for name in STATISTICS}


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per statistic, RMS over the rows of the exposure error (mean over channels), of the white-balance
    error (each channel less that mean; colour cameras) and of the blur shift's exposure part."""
    out = {}
    for name in STATISTICS:
        scene = [np.asarray(r["stats"][name]["scene"]) for r in rows]
        blur = [np.mean(r["stats"][name]["blur"]) for r in rows]
        wb = np.concatenate([e - e.mean() for e in scene if e.size > 1] or [np.zeros(1)])
        exposure = np.array([e.mean() for e in scene])
        out[name] = {"exposure_rms": float(np.sqrt((exposure**2).mean())), "exposure_mean": float(exposure.mean()),
                     "wb_rms": float(np.sqrt((wb**2).mean())), "blur_shift": float(np.mean(blur))}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=8, help="data seeds 0 .. N-1 (default 8)")
    p.add_argument("--split", default="halves", choices=DG.SPLITS[:2])
    p.add_argument("--cameras", default=",".join(VALIDATION), help="comma list (default: the validation cameras)")
    p.add_argument("--extra-photos", default=None, metavar="DIR", help="the domain-gap benchmark's extra photos (as there)")
    p.add_argument("--train-side", type=int, default=384)
    p.add_argument("--json", default=None, help="write the rows and the summary here")
    args = p.parse_args(argv)
    cams = [CAMS.get(c) for c in args.cameras.split(",")]
    extra = sorted(str(f) for f in Path(args.extra_photos).glob("*.jpg")) if args.extra_photos else []
    rows = []
    for seed in range(args.seeds):
        split = DG.split_photos(seed, extra, args.split)
        photos = DG.train_photos(split["sharp"] + split["real"], args.train_side)
        for ci, cam in enumerate(cams):
            rows.append({"seed": seed, "camera": cam.name, "stats": camera_case(cam, photos, split, seed, ci)})
    summary = summarise(rows)
    sys.stdout.write(f"{args.split}, {args.seeds} seeds, cameras {args.cameras} (log exposure; RMS over camera-seeds)\n"
                     "| statistic | exposure error | white-balance error | blur shift |\n|---|---|---|---|\n")
    for name, s in summary.items():
        sys.stdout.write(f"| {name} | {s['exposure_rms']:.4f} (mean {s['exposure_mean']:+.4f}) | {s['wb_rms']:.4f} "
                         f"| {s['blur_shift']:+.4f} |\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
