"""How well can a camera's exposure be found from unpaired photos? No training, seconds per case.

    PYTHONPATH=src python benchmarks/tone_fit.py --seeds 0,1,2,3,4,5,6,7 --cameras compact --extra-photos DIR
    PYTHONPATH=src python benchmarks/tone_fit.py --seeds 0,1,2,3,4,5 --extra-photos DIR   # every camera

For each data seed and stand-in camera of the domain-gap benchmark (the same photo split,
``domain_gap.split_photos``, ``--split photos`` or ``halves``; cameras from ``benchmarks/cameras.py``, independent of
dbgan.blur), the `camera` preset's exposure fit (``camera_ops.fit_log_gain`` through the
generator's tone map, on running quantiles of batches of 4 random 128 px crops, as the
bgan stage keeps them) is run twice:

* **fit**: sharp-side photos against the camera's real-side photos (what BGAN sees);
* **target**: sharp-side photos against the camera applied to *the same* sharp-side
  photos: the best exposure a one-number fit can reach for this camera's tone.

The gap between the two is what the scenes' difference costs. The table gives its RMS over
seeds for the fitted log gain scaled by each ``fit_strength`` (1 = the full fit, 0 = no fit),
and the least-squares best strength. Choose the strength on the validation camera only.

The **response curve** (``fit_curve``, the share of the quantile-matching curve blended into
the start curve): for each ``fit_curve`` in ``CURVES``, ``fit_strength`` in
``CURVE_EXPOSURES`` and (colour cameras) ``fit_wb`` in ``CURVE_WB`` the generator's tone map after :meth:`fit_tone` is compared with the
camera's true one (``Camera.expected_flat``: exposure, white balance, response) at the
sharp photos' own brightness quantiles; the table gives the RMS error over levels, channels
and seeds in display units, and as a PSNR (``20 log10(1 / RMS)``), for the fit on the real
photos and on the target (the same photos through the camera). Choose on the validation
cameras only.

``--tone-from photos`` takes the quantiles from every pixel of every photo (each photo weighted
once; ``stages.bgan.tone_from: photos``) instead of running means over random crops, and
``--fit-space linear`` fits the exposure and white balance on the photos decoded to linear light
(``nets.blur_g.args.fit_space: linear``); compare each against the defaults on the validation
cameras.

``--fit-from means`` (with ``--tone-from photos``) fits the exposure and white balance to the two sets'
linear-light means instead (``nets.blur_g.args.fit_from: means``: each photo's mean for the exposure, its
8th-power mean for the white balance; ``dbgan.degradation_stats.photo_log_means``); the curve is still
matched on the quantiles. Its rows' ``fit`` and ``wb_fit`` are those estimates.

The same for the **white balance** (colour cameras): one gain per channel
(``fit_log_gain(..., per_channel=True)``), less their mean (the log white balance); the
error is the RMS over channels and seeds. The `camera` preset keeps it neutral
(``learn_wb: false``) because of this table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cameras as CAMS  # noqa: E402
import domain_gap as DG  # noqa: E402

STRENGTHS = (1.0, 0.75, 0.5, 0.25, 0.0)
#: ``fit_curve`` values compared (0 = exposure only, the start curve)
CURVES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: ``fit_strength`` values the curve fit is combined with
CURVE_EXPOSURES = (0.5, 0.75, 1.0)
#: ``fit_wb`` values the curve fit is combined with (colour cameras; 0 = neutral white balance)
CURVE_WB = (0.0, 0.5, 1.0)


def _crops(photos: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    out = []
    for _ in range(n):
        im = photos[rng.integers(len(photos))]
        y, x = DG.crop_box(im.shape[0], im.shape[1], size, rng)
        out.append(im[y : y + size, x : x + size])
    return torch.from_numpy(np.stack(out).astype(np.float32)).permute(0, 3, 1, 2)


def running_quantiles(photos: list[np.ndarray], batches: int, rng: np.random.Generator,
                      batch: int = 4, size: int = 128, linearise=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The running brightness quantiles of ``batches`` batches of random crops, kept by the bgan
    stage's own :class:`dbgan.degradation_stats.CameraStats` (``tone_from: crops``), and with
    ``linearise`` (a one-image decoding to linear light) the same in linear light."""
    from dbgan.degradation_stats import CameraStats

    stats = CameraStats(linearise=None if linearise is None else (lambda a, b: (linearise(a), linearise(b))))
    for _ in range(batches):
        x = _crops(photos, batch, size, rng)
        stats.observe_tone(x, x)
    return stats.stats["tone_sharp"], stats.stats.get("tone_sharp_linear")


def bootstrap_quantiles(hists: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
    """``draws x C x levels`` quantiles of bootstrap resamplings of the photos whose histograms are
    ``hists`` (``N x C x bins``; each draw takes ``N`` photos with replacement)."""
    from dbgan.degradation_stats import histogram_quantiles

    n = hists.shape[0]
    weights = [torch.bincount(torch.randint(n, (n,), generator=generator), minlength=n).float() for _ in range(draws)]
    return torch.stack([histogram_quantiles(torch.einsum("n,ncb->cb", w, hists)) for w in weights])


def whole_quantiles(photos: list[np.ndarray], linearise=None, size: int = 128,
                    draws: int = 0, seed: tuple = ()) -> tuple:
    """The same from every pixel of every photo, each photo weighted once and each pixel as often as
    random ``size`` px crops contain it (``tone_from: photos``, as the bgan stage computes it); with
    ``draws``, also ``draws`` bootstrap resamplings of the photos (:func:`evidence_factors`):
    ``(quantiles, linear quantiles | None, draws | None, linear draws | None)``."""
    from dbgan.degradation_stats import histogram_quantiles, photo_histograms

    tensors = [torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)).permute(2, 0, 1) for p in photos]

    def one(transform, k: int) -> tuple:
        hists = photo_histograms(tensors, transform=transform, crop=size)
        gen = torch.Generator().manual_seed(hash((seed, 2 * k)) % 2**31)
        return histogram_quantiles(hists.sum(0)), bootstrap_quantiles(hists, draws, gen) if draws else None

    (q, d), (lq, ld) = one(None, 0), (None, None) if linearise is None else one(linearise, 1)
    return q, lq, d, ld


def subsample(split: dict, per_side: int, seed: int, aligned: bool) -> dict:
    """``split`` with ``per_side`` photos drawn on each side (0: all); ``aligned`` (halves) draws the same
    positions on both sides, so each side keeps the halves of the same photos."""
    if per_side <= 0:
        return split
    rng = np.random.default_rng([seed, 77])
    out = dict(split)
    for side in ("sharp", "real"):
        if per_side > len(split[side]):
            raise ValueError(f"--per-side {per_side}: the {side} side has only {len(split[side])} photos")
        if side == "sharp" or not aligned:
            pick = sorted(rng.choice(len(split[side]), per_side, replace=False))
        out[side] = [split[side][i] for i in pick]
    return out


def fit_case(seed: int, cam_name: str, ci: int, photos: dict[str, np.ndarray], split: dict, batches: int,
             tone_from: str = "crops", fit_space: str = "display", draws: int = 0, fit_from: str = "quantiles") -> dict:
    from dbgan.config import load_config
    from dbgan.nets import build_network
    from dbgan.nets import camera_ops as ops

    cam = CAMS.get(cam_name)
    args = dict(load_config("camera").nets.blur_g.args) | {"tone": "fit", "fit_space": fit_space, "fit_from": fit_from}
    if cam.decode == "identity":  # linear data: what domain_gap.py states for such a camera
        args |= {"input_encoding": "linear", "init_response": "linear"}
    net = build_network("camera_blur", in_channels=1 if cam.grey else 3, **args)
    view = (lambda a: a[..., :1]) if cam.grey else (lambda a: a)
    rng = np.random.default_rng([seed, 11, ci])
    sharp = [view(cam.ground_truth(photos[n])) for n in split["sharp"]]
    real = [view(cam.degrade(photos[n], rng)) for n in split["real"]]
    target = [view(cam.degrade(photos[n], rng)) for n in split["sharp"]]
    linear = fit_space == "linear"
    # the sharp side decodes by input_encoding, the real sides by the inverse start curve
    decode = [(lambda x, k=k: net.linear_views(x, x)[k]) if linear else None for k in (0, 1, 1)]
    boot = None
    if tone_from == "photos":
        quant = [whole_quantiles(p, decode[k], draws=draws, seed=(seed, ci, k)) for k, p in enumerate((sharp, real, target))]
        if draws:  # (full, draws) for the real photos and for the target, as evidence_factors takes them
            (qs, ls, ds, dls), (qr, lr, dr, dlr), (qt, lt, dt, dlt) = quant
            pick = lambda d, i: None if d is None else d[i]  # noqa: E731
            boot = {"fit": [(pick(ds, i), pick(dr, i), pick(dls, i), pick(dlr, i)) for i in range(draws)],
                    "target": [(pick(ds, i), pick(dt, i), pick(dls, i), pick(dlt, i)) for i in range(draws)]}
        quant = [q[:2] for q in quant]
    else:
        quant = [running_quantiles(p, batches, np.random.default_rng([seed, 12, ci, k]), linearise=decode[k])
                 for k, p in enumerate((sharp, real, target))]
    (qs, ls), (qr, lr), (qt, lt) = quant
    tmap, fs = (net.linear_tone_map, ls) if linear else (net.tone_map, qs)
    fit = float(ops.fit_log_gain(tmap, fs, lr if linear else qr))
    best = float(ops.fit_log_gain(tmap, fs, lt if linear else qt))
    means = None
    if fit_from == "means":
        from dbgan.degradation_stats import photo_log_means

        means = [photo_log_means((DG.to_chw(a) for a in p),
                                 transform=lambda x, k=k: net.linear_views(x, x)[min(k, 1)])
                 for k, p in enumerate((sharp, real, target))]
        fit, best = (float((m[0] - means[0][0]).mean()) for m in means[1:])
    row = {"seed": seed, "camera": cam_name, "fit": fit, "target": best, "truth_exposure": cam.truth()["exposure"]}
    row["curve"] = curve_errors(cam, args, 1 if cam.grey else 3, qs, qr, qt, (ls, lr, lt) if linear else None, boot, means)
    if not cam.grey:
        if means is not None:
            wb_fit, wb_best = (m[1] - means[0][1] for m in means[1:])
        else:
            wb_fit, wb_best = (ops.fit_log_gain(tmap, fs, q, per_channel=True) for q in ((lr, lt) if linear else (qr, qt)))
        row["wb_fit"] = (wb_fit - wb_fit.mean()).tolist()
        row["wb_target"] = (wb_best - wb_best.mean()).tolist()
    return row


def curve_errors(cam, args: dict, channels: int, qs: torch.Tensor, qr: torch.Tensor, qt: torch.Tensor,
                 linear: tuple | None = None, boot: dict | None = None, means: tuple | None = None) -> dict:
    """``{"fit"|"target": {"exposure/curve": squared error}}``: the mean squared difference between the
    fitted tone map and the camera's true one at the sharp quantiles ``qs``, for every combination
    (``linear``: the sharp, real and target quantiles in linear light, for ``fit_space: linear``).
    With ``boot`` (bootstrap draws per key, :func:`whole_quantiles`), also each combination scaled by
    :func:`evidence_factors` (keys prefixed ``ev ``), and those factors under ``factors``. ``means``: the
    sharp, real and target sets' :func:`photo_log_means` in linear light, for ``fit_from: means``."""
    from dbgan.nets import build_network

    truth = torch.tensor(np.stack([[cam.expected_flat(float(v))[c] for v in qs[c]] for c in range(channels)]),
                         dtype=torch.float32)
    out: dict = {"fit": {}, "target": {}}
    lin = {"fit": (None, None), "target": (None, None)} if linear is None else {"fit": linear[:2], "target": linear[::2]}
    avg = {"fit": (None, None), "target": (None, None)} if means is None else {"fit": means[:2], "target": means[::2]}
    for key, q in (("fit", qr), ("target", qt)):
        for e, k, w in _combos(channels):
            net = build_network("camera_blur", in_channels=channels,
                                **(args | {"fit_strength": e, "fit_curve": k, "fit_wb": w}))
            net.fit_tone(qs, q, sharp_linear=lin[key][0], real_linear=lin[key][1], sharp_means=avg[key][0],
                         real_means=avg[key][1])
            out[key][_combo_key(e, k, w)] = float(((net.tone_map(qs)[0] - truth) ** 2).mean())
            if boot is None:
                continue
            net = build_network("camera_blur", in_channels=channels,
                                **(args | {"fit_strength": e, "fit_curve": k, "fit_wb": w}))
            factors = evidence_factors(net, (qs, q, *lin[key]), boot[key])
            net.fit_tone(qs, q, sharp_linear=lin[key][0], real_linear=lin[key][1])
            out[key]["ev " + _combo_key(e, k, w)] = float(((net.tone_map(qs)[0] - truth) ** 2).mean())
            out.setdefault("factors", {}).setdefault(key, {})[_combo_key(e, k, w)] = list(factors)
    return out


def evidence_share(estimate: torch.Tensor, draws: torch.Tensor) -> float:
    """The share of ``estimate`` (a fitted change from a neutral start) that its bootstrap ``draws``
    (``B x estimate.shape``) support: ``max(0, 1 - trace(Cov) / |estimate|^2)``, the method-of-moments
    estimate of ``|truth|^2 / (|truth|^2 + trace(Cov))`` (the scalar multiplier of least squared error)."""
    power = float(estimate.double().pow(2).sum())
    spread = float(draws.double().var(0).sum())
    return 0.0 if power <= 0.0 else min(1.0, max(0.0, 1.0 - spread / power))


def evidence_factors(net, full: tuple, draws: list[tuple]) -> list[float]:
    """Scale ``net``'s ``fit_wb``, ``fit_strength`` and ``fit_curve`` by how much of each stage's fit the
    photos can pin (session 17's "evidence" shares; not adopted): stage by stage, as ``fit_tone`` runs
    them, :func:`evidence_share` of the full-sample estimate against its spread over bootstrap
    resamplings of the photos (``full`` and each draw: sharp, real, sharp linear, real linear quantiles)."""
    full = net.tone_sample(*full)
    draws = [net.tone_sample(*d) for d in draws]
    shares = [net.fit_wb, net.fit_strength, net.fit_curve]
    factors = [1.0, 1.0, 1.0]
    net.fit_wb = net.fit_strength = net.fit_curve = 0.0
    if shares[0] > 0:
        factors[0] = evidence_share(net.wb_estimate(full), torch.stack([net.wb_estimate(d) for d in draws]))
        net.fit_wb = shares[0] * factors[0]
    net.fit_tone(full[0], full[1], sharp_linear=full[2], real_linear=full[3])  # the white balance
    factors[1] = evidence_share(net.gain_estimate(full, False), torch.stack([net.gain_estimate(d, False) for d in draws]))
    net.fit_strength = shares[1] * factors[1]
    if shares[2] > 0:
        net.fit_tone(full[0], full[1], sharp_linear=full[2], real_linear=full[3])  # and the exposure
        start = net.start_response()[None].expand(net.black.shape[0], -1)
        est = net.curve_estimate(full, start) - start
        factors[2] = evidence_share(est, torch.stack([net.curve_estimate(d, start) - start for d in draws]))
        net.fit_curve = shares[2] * factors[2]
    return factors


def _combos(channels: int = 3) -> list[tuple[float, float, float]]:
    """(fit_strength, fit_curve, fit_wb) combinations of the curve table (no white balance for grey)."""
    return [(e, k, w) for w in (CURVE_WB if channels > 1 else (0.0,)) for e in CURVE_EXPOSURES for k in CURVES]


def _combo_key(e: float, k: float, w: float) -> str:
    return f"{e:g}/{k:g}" + (f"/wb{w:g}" if w else "")


def _shrinkage(pairs: list[tuple[float, float]]) -> tuple[dict, float]:
    """RMS error of ``s * fit - target`` for each strength, and the least-squares best ``s``."""
    rms = {s: math.sqrt(sum((s * f - g) ** 2 for f, g in pairs) / len(pairs)) for s in STRENGTHS}
    den = sum(f * f for f, _ in pairs)
    return rms, (sum(f * g for f, g in pairs) / den if den > 0 else 1.0)


def summarise(rows: list[dict]) -> dict:
    out = {}
    for cam in dict.fromkeys(r["camera"] for r in rows):
        rs = [r for r in rows if r["camera"] == cam]
        rms, best = _shrinkage([(r["fit"], r["target"]) for r in rs])
        out[cam] = {"seeds": len(rs), "rms": rms, "best_strength": best}
        if "wb_fit" in rs[0]:
            wb_rms, wb_best = _shrinkage([(f, g) for r in rs for f, g in zip(r["wb_fit"], r["wb_target"])])
            out[cam] |= {"wb_rms": wb_rms, "wb_best_strength": wb_best}
        out[cam]["curve"] = {key: {combo: math.sqrt(sum(r["curve"][key][combo] for r in rs) / len(rs))
                                   for combo in rs[0]["curve"][key]} for key in ("fit", "target")}
    return out


def _psnr(rms: float) -> float:
    return 20 * math.log10(1.0 / max(rms, 1e-6))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--cameras", default=",".join(CAMS.CAMERAS))
    ap.add_argument("--extra-photos", default=None, help="a folder of more colour photos (as domain_gap.py)")
    ap.add_argument("--train-side", type=int, default=384)
    ap.add_argument("--batches", type=int, default=300, help="batches of 4 crops folded into the running quantiles")
    ap.add_argument("--split", default="photos", choices=DG.SPLITS, help="as domain_gap.py's --split")
    ap.add_argument("--tone-from", default="crops", choices=("crops", "photos"),
                    help="quantiles of random 128 px crops (running means) or of whole photos (stages.bgan.tone_from)")
    ap.add_argument("--fit-space", default="display", choices=("display", "linear"),
                    help="fit the exposure on the photos' values or decoded to linear light (nets.blur_g.args.fit_space)")
    ap.add_argument("--draws", type=int, default=0,
                    help="with --tone-from photos: bootstrap draws of the photos; adds every combination with "
                         "evidence shares (columns 'ev ...') and its evidence factors")
    ap.add_argument("--per-side", type=int, default=0,
                    help="use only this many photos per side (drawn per seed; with --split halves the same photos' "
                         "halves on both sides): how the fit's error shrinks with more photos")
    ap.add_argument("--fit-from", default="quantiles", choices=("quantiles", "means"),
                    help="with --tone-from photos: fit the exposure and white balance to the quantiles or to the sets' "
                         "linear means (nets.blur_g.args.fit_from)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.fit_from == "means" and (args.tone_from != "photos" or args.draws):
        ap.error("--fit-from means needs --tone-from photos (and no --draws)")
    torch.set_num_threads(1)
    from dbgan.cpu_caps import detect

    print(f"cpu: {detect().summary()} (no timings here; every fit is fp32)", flush=True)
    cams = [c for c in args.cameras.split(",") if c]
    for c in cams:
        CAMS.get(c)  # an unknown name is an error naming it
    extra = sorted(str(p) for p in Path(args.extra_photos).iterdir()) if args.extra_photos else []
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        split = subsample(DG.split_photos(seed, extra, args.split), args.per_side, seed, args.split == "halves")
        photos = DG.train_photos(split["sharp"] + split["real"], args.train_side)
        for ci, cam in enumerate(cams):
            rows.append(fit_case(seed, cam, ci, photos, split, args.batches, args.tone_from, args.fit_space,
                                 args.draws if args.tone_from == "photos" else 0, args.fit_from))
            r = rows[-1]
            print(f"seed {seed} {cam:16s} fitted log gain {r['fit']:+.3f}  target {r['target']:+.3f}  "
                  f"(camera exposure {r['truth_exposure']})", flush=True)
    summary = summarise(rows)
    head = " | ".join(f"strength {s:g}" for s in STRENGTHS)
    print(f"\nRMS error of the log exposure over seeds\ncamera | seeds | {head} | best strength")
    for cam, s in summary.items():
        print(f"{cam} | {s['seeds']} | " + " | ".join(f"{s['rms'][k]:.3f}" for k in STRENGTHS) + f" | {s['best_strength']:.2f}")
    print(f"\nRMS error of the log white balance over channels and seeds\ncamera | seeds | {head} | best strength")
    for cam, s in summary.items():
        if "wb_rms" in s:
            print(f"{cam} | {s['seeds']} | " + " | ".join(f"{s['wb_rms'][k]:.3f}" for k in STRENGTHS)
                  + f" | {s['wb_best_strength']:.2f}")
    combos = [_combo_key(*c) for c in _combos()]
    combos += [f"ev {c}" for c in combos if any(f"ev {c}" in s["curve"]["fit"] for s in summary.values())]
    for key in ("fit", "target"):
        print(f"\nTone map against the camera's ({key}: {'sharp vs real photos' if key == 'fit' else 'the same photos through the camera'});"
              f" RMS error (display units) / its PSNR, over levels, channels and seeds\ncamera | "
              + " | ".join(("evidence x " if c.startswith("ev ") else "") + f"strength {c.removeprefix('ev ').split('/')[0]}, "
                           f"curve {c.split('/')[1]}" + (f", {c.split('/')[2]}" if c.count("/") > 1 else "")
                           for c in combos))
        for cam, s in summary.items():
            print(f"{cam} | " + " | ".join(f"{s['curve'][key][c]:.4f} / {_psnr(s['curve'][key][c]):.1f}" if c in s["curve"][key] else "-"
                                         for c in combos))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
