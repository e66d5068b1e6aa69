"""Coarse-to-fine deblurring (``coarse_levels``) with the bundled general model: where it helps, where it costs.

    PYTHONPATH=src python benchmarks/coarse_levels.py                   # the three default photos
    PYTHONPATH=src python benchmarks/coarse_levels.py --photos a.jpg b.png --sizes 1024 --json out.json

Large photos (longer side ``--sizes``: 1024 and 2048 px) are blurred by kernels made with
``benchmarks/cameras.py`` (independent of ``dbgan.blur``): camera shake of extent 12, 40
and 80 px, defocus discs of radius 4, 12 and 24 px, and no blur (``--blurs`` picks some); in linear light (gamma 2.2),
then Gaussian noise (std 0.005) and 8-bit quantisation. The bundled ``general`` model
deblurs each with ``coarse_levels`` 0 (the default), 1, 2 and 3
(:mod:`dbgan.infer.pyramid`); PSNR against the sharp photo.

The default photos are three lomiri wallpapers that ``dbgan photos`` installs
(``/usr/share/backgrounds``, see ``dbgan.photos``): the only large photographs here. The
general model was trained on crops of them, but at its own blur (kernels up to 41 px); the
question is only how the result changes with ``coarse_levels`` and with the blur's width.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cameras as CAMS  # noqa: E402

DEFAULT_PHOTOS = ("Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "greentock_by_Peter_Nerlich.jpg")
BLURS = (("shake", 12), ("shake", 40), ("shake", 80), ("disc", 4), ("disc", 12), ("none", 0), ("disc", 24))
LEVELS = (0, 1, 2, 3)
GAMMA, NOISE = 2.2, 0.005


def load_photo(path: Path, side: int) -> np.ndarray:
    """``H x W x 3`` float64 in [0, 1], the longer side resized to ``side`` (Lanczos)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = side / max(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.LANCZOS)
        return np.asarray(im, np.float64) / 255.0


def blur(sharp: np.ndarray, kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """The sharp photo blurred (in linear light), noisy and quantised to 8 bits."""
    if kind == "none":
        out = sharp.copy()
    else:
        k = CAMS.shake_kernel(rng, size, side=size + 9) if kind == "shake" else CAMS.disc_kernel(size)
        out = CAMS.convolve(sharp**GAMMA, k).clip(0, 1) ** (1 / GAMMA)
    out = np.clip(out + rng.normal(0.0, NOISE, out.shape), 0, 1)
    return np.round(out * 255) / 255


def run(photos: list[Path], sizes: list[int], threads: int, blurs=BLURS) -> list[dict]:
    from dbgan.infer import Deblurrer
    from dbgan.metrics import psnr
    from dbgan.models import bundled_model_path

    torch.set_num_threads(threads)
    path = bundled_model_path("general")
    models = {lev: Deblurrer.from_checkpoint(path, device="cpu", coarse_levels=lev) for lev in LEVELS}
    rows = []
    for side in sizes:
        for pi, p in enumerate(photos):
            sharp = load_photo(p, side)
            for kind, size in blurs:
                bi = BLURS.index((kind, size))  # the seed follows the blur, whichever are run
                b = blur(sharp, kind, size, np.random.default_rng([side, pi, bi]))
                x = torch.from_numpy(b).permute(2, 0, 1).float()
                row = {"side": side, "photo": p.name, "blur": f"{kind} {size}" if size else kind, "input": psnr(b, sharp)}
                for lev, model in models.items():
                    out = np.round(model(x).permute(1, 2, 0).numpy().astype(np.float64) * 255) / 255
                    row[f"levels {lev}"] = psnr(out, sharp)
                rows.append(row)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    cols = ["input"] + [f"levels {lev}" for lev in LEVELS]
    out = ["| longer side | blur | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for side in dict.fromkeys(r["side"] for r in rows):
        for b in dict.fromkeys(r["blur"] for r in rows):
            rs = [r for r in rows if r["side"] == side and r["blur"] == b]
            means = [float(np.mean([r[c] for r in rs])) for c in cols]
            best = int(np.argmax(means[1:])) + 1
            out.append(f"| {side} | {b} | " + " | ".join(f"**{m:.2f}**" if i == best else f"{m:.2f}"
                                                          for i, m in enumerate(means)) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", nargs="*", default=None, help="photo files (default: three lomiri wallpapers)")
    ap.add_argument("--sizes", default="1024,2048", help="longer sides, comma-separated")
    ap.add_argument("--blurs", default=None, help="e.g. disc:24,shake:80 (default: all of BLURS)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from dbgan.photos import BACKGROUNDS

    photos = [Path(p) for p in args.photos] if args.photos else [BACKGROUNDS / n for n in DEFAULT_PHOTOS]
    missing = [str(p) for p in photos if not p.is_file()]
    if missing:
        raise SystemExit(f"photos not found: {', '.join(missing)} (apt-get install lomiri-wallpapers-16.04, or give --photos)")
    t0 = time.perf_counter()
    blurs = BLURS
    if args.blurs:
        blurs = tuple((k, int(v)) for k, _, v in (b.partition(":") for b in args.blurs.split(",")))
        unknown = [f"{k}:{v}" for k, v in blurs if (k, v) not in BLURS]
        if unknown:
            raise SystemExit(f"--blurs: unknown {', '.join(unknown)}; known: {', '.join(f'{k}:{v}' for k, v in BLURS)}")
    rows = run(photos, [int(s) for s in args.sizes.split(",")], args.threads, blurs)
    print(f"\nPSNR (dB), mean over {len(photos)} photos; bold: the best coarse_levels ({(time.perf_counter() - t0) / 60:.1f} min)")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
