"""How much of the brightness bias no unpaired tone fit can remove: the scenes' own difference.

    PYTHONPATH=src python benchmarks/scene_gap.py --extra-photos DIR --seeds 200
    PYTHONPATH=src python benchmarks/scene_gap.py --extra-photos DIR --runs a.json b.json   # + attribution

BGAN finds a camera's exposure and white balance by comparing the sharp-side photos with the
real-side photos. Whatever separates the two sides' *scenes* (before any camera) looks the
same to that comparison as the camera's exposure, and it differs from one data seed to the next.
No method that sees only unpaired photos can tell the two apart.

1. **The scene gap over many data seeds** (``domain_gap.split_photos`` and ``domain_gap.scene_gap``:
   the real side's mean brightness less the sharp side's, per channel, each photo weighted once,
   display units, no camera). It prints, per split, the gap's spread over seeds, its expected size
   on one seed and on the mean of ``--over`` seeds (what the domain-gap checks average: the bias of a
   camera is its mean over the seeds before the absolute value), and the gap's spread over the
   three channels (max - min, like the colour check's; that check averages the spread itself over
   the seeds, so its scene part does not shrink with more seeds). No training, no camera: a few seconds.
   Beside it, the standard error that :func:`dbgan.tone_uncertainty.folder_tone_gap` (what a user's
   bgan run logs with ``tone_from: photos``) gives each seed's two folders alone: it should match the
   spread over seeds where the two folders hold different photos (``photos``), and overstates it where
   they hold halves of the same photos (``halves``: the halves' scenes are related).
2. **Attribution** (``--runs``): the ``domain_gap.py --json`` files of kept runs with the
   ``separate`` and ``oracle`` rows. For every camera-seed the method's bias less the oracle's is
   regressed on that seed's scene gap (mean over channels). The slope says how much of the gap
   reaches the deblurred output; the per-camera mean of what the gap does not explain is the
   method's own, systematic part.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import domain_gap as DG  # noqa: E402


def _seed_splits(seeds: int, extra: list[str], split: str, side: int):
    """``(split lists, photos)`` of data seeds ``0 .. seeds-1``; every photo (or half) is read once."""
    imgs: dict[str, np.ndarray] = {}
    for seed in range(seeds):
        sp = DG.split_photos(seed, extra, split)
        need = [n for n in sp["sharp"] + sp["real"] if n not in imgs]
        if need:
            imgs.update(DG.train_photos(need, side))
        yield sp, imgs


def seed_figures(seeds: int, extra: list[str], split: str, side: int = 384) -> tuple[np.ndarray, np.ndarray]:
    """In one pass over data seeds ``0 .. seeds-1``: their ``seeds x 3`` scene gaps (``domain_gap.scene_gap``),
    and the brightness standard error that ``dbgan.tone_uncertainty.folder_tone_gap`` gives each seed's two
    folders alone (what a user's bgan run logs), to set beside the gaps' spread over the seeds."""
    import torch

    from dbgan.tone_uncertainty import folder_tone_gap

    gaps, ses = [], []
    for sp, imgs in _seed_splits(seeds, extra, split, side):
        gaps.append(DG.scene_gap(sp, imgs))
        means = [torch.tensor(np.array([imgs[n].reshape(-1, imgs[n].shape[-1]).mean(0) for n in sp[k]])) for k in ("sharp", "real")]
        ses.append(folder_tone_gap(*means).brightness_se)
    return np.asarray(gaps, dtype=np.float64), np.asarray(ses, dtype=np.float64)


def seed_gaps(seeds: int, extra: list[str], split: str, side: int = 384) -> np.ndarray:
    """The scene gaps of :func:`seed_figures`."""
    return seed_figures(seeds, extra, split, side)[0]


def predicted_errors(seeds: int, extra: list[str], split: str, side: int = 384) -> np.ndarray:
    """The standard errors of :func:`seed_figures`."""
    return seed_figures(seeds, extra, split, side)[1]


def summarise(gaps: np.ndarray, over: int = 3, draws: int = 20000) -> dict[str, float]:
    """The brightness gap (mean over channels): its spread over seeds, expected ``|gap|`` on one
    seed and on the mean of ``over`` seeds drawn at random (``draws`` draws, fixed generator), and
    the gap's mean spread over the channels (max - min, as the colour check measures a bias)."""
    bright = gaps.mean(1)
    picks = np.random.default_rng(0).integers(0, len(bright), (draws, over))
    return {"seeds": int(len(bright)), "sd": float(bright.std()), "mean": float(bright.mean()),
            "abs_one": float(np.abs(bright).mean()), f"abs_mean_of_{over}": float(np.abs(bright[picks].mean(1)).mean()),
            "colour_spread": float((gaps.max(1) - gaps.min(1)).mean())}


def attribution(runs: list[dict], method: str = "separate") -> dict:
    """Least-squares ``bias(method) - bias(oracle) = slope * gap + intercept`` over the camera-seeds
    of ``domain_gap.py --json`` results, and each camera's mean residual (the method's systematic part)."""
    xs, ys, cams = [], [], []
    for run in runs:
        for i, seed in enumerate(run["seeds"]):  # a camera's rows are in the order of the run's seeds
            g = float(np.mean(run["scene_gap"][str(seed)]))
            for cam, rows in run["results"].items():
                if len(rows.get(method, [])) > i and len(rows.get("oracle", [])) > i:
                    xs.append(g)
                    ys.append(rows[method][i]["bias"] - rows["oracle"][i]["bias"])
                    cams.append(cam)
    if len(xs) < 3:
        raise ValueError(f"attribution needs at least 3 camera-seeds with {method!r} and 'oracle' rows; got {len(xs)}")
    x, y = np.asarray(xs), np.asarray(ys)
    a = np.c_[x, np.ones_like(x)]
    (slope, icpt), *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ np.array([slope, icpt])
    per_cam = {c: float(np.mean([r for r, k in zip(resid + icpt, cams) if k == c])) for c in dict.fromkeys(cams)}
    return {"n": len(xs), "slope": float(slope), "intercept": float(icpt), "r": float(np.corrcoef(x, y)[0, 1]),
            "residual_sd": float(resid.std()), "systematic": per_cam}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=200, help="data seeds 0 .. N-1 (default 200)")
    p.add_argument("--over", type=int, default=3, help="seeds the checks average over (default 3)")
    p.add_argument("--splits", default="halves,photos", help=f"comma list of {', '.join(DG.SPLITS[:2])}")
    p.add_argument("--extra-photos", default=None, metavar="DIR", help="the domain-gap benchmark's extra photos (as there)")
    p.add_argument("--train-side", type=int, default=384)
    p.add_argument("--runs", nargs="*", default=[], metavar="JSON", help="domain_gap.py --json files for the attribution")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    extra = sorted(str(f) for f in Path(args.extra_photos).glob("*.jpg")) if args.extra_photos else []
    out: dict = {"splits": {}}
    for split in args.splits.split(","):
        gaps, se = seed_figures(args.seeds, extra, split, args.train_side)
        s = summarise(gaps, args.over)
        s["predicted_se"] = float(se.mean())
        out["splits"][split] = s
        sys.stdout.write(f"{split}: {s['seeds']} seeds, brightness gap sd {s['sd']:.4f} (mean {s['mean']:+.4f}), "
                         f"E|gap| one seed {s['abs_one']:.4f}, mean of {args.over} seeds {s[f'abs_mean_of_{args.over}']:.4f}; "
                         f"colour spread {s['colour_spread']:.4f}; one seed's folders predict sd {s['predicted_se']:.4f} "
                         f"(dbgan.tone_uncertainty; range {se.min():.4f}-{se.max():.4f})\n")
    if args.runs:
        att = attribution([json.loads(Path(f).read_text()) for f in args.runs])
        out["attribution"] = att
        sys.stdout.write(f"bias(separate) - bias(oracle) = {att['slope']:+.2f} x gap {att['intercept']:+.4f} "
                         f"(r {att['r']:+.2f}, {att['n']} camera-seeds, residual sd {att['residual_sd']:.4f})\n")
        for cam, v in att["systematic"].items():
            sys.stdout.write(f"  {cam}: systematic {v:+.4f}\n")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
