"""Where a kept separate run's brightness and colour bias comes from. No training, a minute per run.

    PYTHONPATH=src python benchmarks/tone_decompose.py KEEP_DIR [--method separate] [--calibrate S [--anchor fit]] [--json F]

For every kept run of ``domain_gap.py --keep`` (``{method}_{camera}_s{seed}`` with its BGAN checkpoint), on
the camera's own paired training crops (every ``--every``-th ``oracle/`` pair: sharp crop, the camera's photo
of it), per channel, the mean of:

* ``camera``: the camera's photo less the sharp crop (what BGAN should reproduce);
* ``bgan``: BGAN's degradation of the same sharp crops less the sharp crop (8-bit, as the deblurrer sees it);
* ``bgan - camera``: BGAN's tone error on these scenes (the scenes cancel: both degrade the same crops);
* ``D(bgan)``: the run's deblurrer on BGAN's degradations, less the sharp crops (how well it inverts BGAN);
* ``D(camera)``: the deblurrer on the camera's photos, less the sharp crops (the bias on the training scenes);
* ``test D``, ``test oracle``, ``test LUT``: on the held-out test pairs, the deblurrer's, the oracle run's
  (when kept) and the tone-only oracle's bias (a per-channel LUT fitted on the camera's own pairs).

When the deblurrer inverts BGAN well, ``D(camera)`` is about ``-(bgan - camera)``: the bias is BGAN's tone.

``--calibrate S`` adds ``bgan - camera`` after ``camera_blur``'s ``fit_means`` calibration at share ``S``
(``--anchor``: ``means_anchor``) applied to the kept BGAN as it is (the tone fit from the seed's two photo
folders, the calibration on 32 fixed crops of the sharp photos): what the calibration would have changed,
without training again (docs/benchmarks.md, section 2, session 20).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cameras as CAMS  # noqa: E402
import domain_gap as G  # noqa: E402
import gap_rescore as R  # noqa: E402


def channel_shift(outs, sharp) -> np.ndarray:
    """Per-channel mean of ``outs`` less ``sharp`` (two lists of ``C x H x W`` tensors, or ``N x C x H x W``)."""
    return np.mean([(o.double() - s.double()).mean((1, 2)).numpy() for o, s in zip(outs, sharp)], 0)


def calibrated(bgan, spec: dict, seed_dir: Path, camera: str, share: float, anchor: str, crops: int = 32, seed: int = 5):
    """A copy of the kept ``camera_blur`` BGAN (``spec``: its checkpoint's name and args) with
    ``fit_means=share`` (``means_anchor=anchor``), its tone fitted to the seed's two photo folders and
    calibrated on ``crops`` fixed crops of the sharp photos."""
    from dbgan.degradation_stats import photo_quantiles
    from dbgan.io import read_image
    from dbgan.nets import build_network
    from dbgan.train.camera_fit import fixed_crops

    if spec["name"] != "camera_blur" or spec["args"].get("tone") != "fit":
        raise SystemExit(f"tone_decompose: --calibrate needs a camera_blur BGAN with tone: fit, got {spec['name']}")
    net = build_network("camera_blur", **(spec["args"] | {"fit_means": share, "means_anchor": anchor}))
    state = bgan.state_dict() | {"mean_cal": torch.zeros(bgan.in_channels)}
    net.load_state_dict(state)
    net.eval()
    view = "grey" if CAMS.get(camera).grey else "colour"
    sharp = [read_image(p, channels=3)[: net.in_channels] for p in sorted((seed_dir / f"sharp_{view}").glob("*.png"))]
    real = [read_image(p, channels=3)[: net.in_channels] for p in sorted((seed_dir / camera / "real_blur").glob("*.png"))]
    qs, qr = photo_quantiles(sharp, crop=128), photo_quantiles(real, crop=128)
    gen = torch.Generator().manual_seed(seed)
    sample = fixed_crops(lambda i: sharp[i], len(sharp), crops, 128, gen)
    with torch.no_grad():
        net.fit_tone(qs, qr)
        net.calibrate_means(sample, net.noise_input.sample(sample, generator=gen), qs, qr)
    return net


def decompose(keep: Path, seed: int, camera: str, method: str = "separate", every: int = 4,
              calibrate: float | None = None, anchor: str = "start") -> dict[str, list[float]] | None:
    """The rows of the module docstring for one kept run (``None`` when it or its BGAN is not kept)."""
    from dbgan.checkpoint import load_checkpoint
    from dbgan.infer import Deblurrer

    seed_dir = keep / f"s{seed}"
    run = seed_dir / "runs" / f"{method}_{camera}_s{seed}"
    found = sorted(run.glob("checkpoints/bgan_*.safetensors"))
    if not found or not (run / "checkpoints" / "latest.safetensors").is_file():
        return None
    ckpt = load_checkpoint(found[-1])
    bgan = ckpt.build("blur_g")
    net = Deblurrer.from_checkpoint(run / "checkpoints" / "latest.safetensors", device="cpu", tile=None)
    pairs = G.read_pairs(seed_dir / camera / "oracle")
    sharp, cam = [p[1] for p in pairs[::every]], [p[2] for p in pairs[::every]]

    def degrade(g):
        torch.manual_seed(0)
        with torch.no_grad():
            return [G.quantise(g(s[: g.in_channels][None])[0].expand(3, -1, -1)) for s in sharp]

    fake = degrade(bgan)
    test = G.read_pairs(seed_dir / camera / "test")
    with torch.no_grad():
        rows = {"camera": channel_shift(cam, sharp), "bgan": channel_shift(fake, sharp)}
        rows["bgan - camera"] = rows["bgan"] - rows["camera"]
        rows["D(bgan)"] = channel_shift([G.quantise(net(f)) for f in fake], sharp)
        rows["D(camera)"] = channel_shift([G.quantise(net(b)) for b in cam], sharp)
        rows["test D"] = channel_shift([G.quantise(net(b)) for _, _, b in test], [s for _, s, _ in test])
        oracle = seed_dir / "runs" / f"oracle_{camera}_s{seed}" / "checkpoints" / "latest.safetensors"
        if oracle.is_file():
            onet = Deblurrer.from_checkpoint(oracle, device="cpu", tile=None)
            rows["test oracle"] = channel_shift([G.quantise(onet(b)) for _, _, b in test], [s for _, s, _ in test])
        lut = G.tone_lut(pairs)
        rows["test LUT"] = channel_shift([lut(b) for _, _, b in test], [s for _, s, _ in test])
    if calibrate is not None:
        rows[f"bgan - camera, fit_means {calibrate:g} ({anchor})"] = (
            channel_shift(degrade(calibrated(bgan, ckpt.net_spec("blur_g"), seed_dir, camera, calibrate, anchor)), sharp) - rows["camera"])
    return {k: [float(x) for x in v] for k, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("keep", help="a domain_gap.py --keep folder")
    p.add_argument("--method", default="separate", help="the kept rows to decompose (default separate)")
    p.add_argument("--every", type=int, default=4, help="use every N-th oracle pair (default 4)")
    p.add_argument("--calibrate", type=float, default=None, help="add the row after fit_means at this share")
    p.add_argument("--anchor", default="start", choices=("start", "fit"), help="--calibrate's means_anchor")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    keep = Path(args.keep)
    if not keep.is_dir():
        raise SystemExit(f"tone_decompose: no such folder: {keep}")
    out: dict[str, dict] = {}
    for method, camera, seed, _ in R.kept_runs(keep, {args.method}):
        rows = decompose(keep, seed, camera, method, args.every, args.calibrate, args.anchor)
        if rows is None:
            continue
        out[f"{camera}_s{seed}"] = rows
        print(f"== {method} {camera} s{seed}", flush=True)
        for k, v in rows.items():
            print(f"  {k:36s} " + " ".join(f"{x:+.4f}" for x in v) + f"  | mean {np.mean(v):+.4f}, spread {max(v) - min(v):.4f}",
                  flush=True)
    if not out:
        raise SystemExit(f"tone_decompose: no kept {args.method} run with its BGAN under {keep}")
    if args.json:
        Path(args.json).write_text(json.dumps({"folder": str(keep), "method": args.method, "runs": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
