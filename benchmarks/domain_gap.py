"""The paper's central experiment at CPU scale: does learning the blur beat synthetic blur
on a blur domain the synthetic kernels do not cover?

Data (all from scikit-image's bundled photos, made afresh in a temporary folder):

* **sharp training photos**: ``TRAIN_PHOTOS`` (colour and grey-as-RGB), resized so
  that their longer side is ``--train-side`` pixels; training crops are cut on the fly.
* **unpaired "real" blurred photos**: other random crops of the *same training
  photos*, degraded by :data:`dbgan.demo.REAL_DOMAIN` -- the stand-in camera
  (defocus / Gaussian / motion blur in linear light, clipped highlights, sensor
  noise, JPEG). dbgan sees them only unpaired.
* **held-out test pairs**: ``TEST_PHOTOS`` (never used in training), each degraded
  ``--test-per-photo`` times by the same real domain (other seeds).
* the **synthetic** blur is ``configs/demo.yaml``'s ``synth`` section (motion,
  Gaussian and defocus kernels applied to gamma-encoded values; no noise, no JPEG),
  unchanged.

Schemes, trained with ``dbgan.train.train`` on ``configs/demo.yaml`` (small U-Nets
and PatchGANs, 64 px crops, batch 4), with an **equal budget of training-loop
iterations** (every stage's iterations count, a joint iteration counts once;
the wall time of each run is printed so the compute can be compared too):

* ``(a) synthetic``: dbgan on synthetic pairs for ``N`` iterations;
* ``(b) separate``: blur_pretrain ``N/6`` -> bgan ``N/6`` -> dbgan ``2N/3``;
* ``(c) joint``: blur_pretrain ``N/6`` -> joint ``5N/6``;
* ``oracle`` (``--no-oracle`` to skip): dbgan on pairs made by the *real* domain's own
  degradation, same budget -- the supervision one does not have in practice; an upper reference.

Classical baselines, their parameters picked on **synthetic pairs of the training
photos** (the training-domain data a user has), never on the test pairs:
unsharp masking (radius, amount) and Richardson-Lucy deconvolution with a Gaussian
PSF (sigma, iterations).

Reported: PSNR / SSIM (``dbgan.metrics``, 8-bit quantised outputs as ``dbgan eval``
writes them) of the blurred input, each method, against the sharp test images, and
blur statistics (noise level, sharpness) of synthetic, BGAN-generated and real blur
on the test photos, to explain the result.

Usage::

    python benchmarks/domain_gap.py --quick     # ~10 minutes on 2 CPU cores (3000 iterations, 1 seed)
    python benchmarks/domain_gap.py             # ~2 hours (12000 iterations, 3 seeds, larger data)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dbgan.config import Config, SynthConfig, load_config
from dbgan.demo import fit_longer_side

#: colour photos (and grey ones, as RGB) used for training; none of them is a test photo
TRAIN_PHOTOS = (
    "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "stereo_motorcycle", "retina",
    "grass", "gravel", "brick", "moon", "coins", "clock",
)
#: held-out photos: the real-domain test pairs are made from these only
TEST_PHOTOS = ("chelsea", "coffee", "camera")

SCHEMES = ("synthetic", "separate", "joint")
LABELS = {"synthetic": "(a) synthetic", "separate": "(b) separate", "joint": "(c) joint", "oracle": "oracle (real-domain pairs)"}

log = logging.getLogger("domain_gap")


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields.get('Model name', '').strip()}, {fields.get('CPU(s)', '').strip()} CPUs"
    except Exception:  # pragma: no cover
        return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- data


def photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo as a 3 x H x W float tensor in [0, 1] (grey repeated to RGB)."""
    from skimage import data as skd

    img = getattr(skd, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity); the left view
        img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = np.ascontiguousarray(img[..., :3])
    scale = 255.0 if img.dtype == np.uint8 else float(img.max() or 1)
    return torch.from_numpy(img.astype(np.float32) / scale).permute(2, 0, 1).contiguous()


def random_crop(img: torch.Tensor, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """A ``crop x crop`` window of ``img`` at a position drawn from ``rng`` (row, then column)."""
    h, w = img.shape[-2:]
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return img[:, y : y + crop, x : x + crop].contiguous()


def write_pair(folder: Path, filename: str, sharp: torch.Tensor, blurred: torch.Tensor) -> None:
    """``folder/sharp/filename`` and ``folder/blur/filename``."""
    from dbgan.io import write_image

    write_image(folder / "sharp" / filename, sharp)
    write_image(folder / "blur" / filename, blurred)


def build_data(root: Path, args, synth: SynthConfig, real: SynthConfig) -> dict[str, Path]:
    """Write sharp/, real_blur/ (unpaired), test/{sharp,blur}, tune/{sharp,blur} (synthetic) and oracle pairs."""
    from dbgan.blur.degrade import DegradationPipeline
    from dbgan.io import write_image

    real_pipe = DegradationPipeline.from_config(real)
    syn_pipe = DegradationPipeline.from_config(synth)
    # one generator per purpose, so that the data do not depend on which options are on
    rng_real, rng_tune, rng_oracle = (np.random.default_rng([args.data_seed, 0, k]) for k in range(3))
    d = {k: root / k for k in ("sharp", "real_blur", "test", "tune", "oracle")}
    crop = args.real_crop
    for i, name in enumerate(TRAIN_PHOTOS):
        img = fit_longer_side(photo(name), args.train_side)
        write_image(d["sharp"] / f"{name}.png", img)
        for k in range(args.real_per_photo):
            # an independent crop of the same photo, blurred by the stand-in camera: unpaired
            blurred, _ = real_pipe(random_crop(img, crop, rng_real), np.random.default_rng([args.data_seed, 1, i, k]))
            write_image(d["real_blur"] / f"{name}_{k:02d}.png", blurred)
        for k in range(args.tune_per_photo):
            # synthetic pairs of training photos: what the classical baselines are tuned on
            sharp = random_crop(img, crop, rng_tune)
            write_pair(d["tune"], f"{name}_{k:02d}.png", sharp, syn_pipe(sharp, np.random.default_rng([args.data_seed, 3, i, k]))[0])
        if args.oracle:
            for k in range(args.real_per_photo):
                sharp = random_crop(img, crop, rng_oracle)
                write_pair(d["oracle"], f"{name}_{k:02d}.png", sharp, real_pipe(sharp, np.random.default_rng([args.data_seed, 4, i, k]))[0])
    for i, name in enumerate(TEST_PHOTOS):
        img = fit_longer_side(photo(name), args.test_side)
        for r in range(args.test_per_photo):
            write_pair(d["test"], f"{name}_{r}.png", img, real_pipe(img, np.random.default_rng([args.data_seed, 2, i, r]))[0])
    return d


def read_pairs(folder: Path) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    from dbgan.io import read_image

    return [
        (p.name, read_image(p, channels=3), read_image(folder / "blur" / p.name, channels=3))
        for p in sorted((folder / "sharp").glob("*.png"))
    ]


# --------------------------------------------------------------------------- metrics


def quantise(img: torch.Tensor) -> torch.Tensor:
    """8-bit quantisation, as an output written to a PNG (and as ``dbgan eval`` scores it)."""
    return (img.clamp(0, 1) * 255).round() / 255


def score(pairs, restore: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
    from dbgan import metrics as M

    ps, ss = [], []
    for _, sharp, blur in pairs:
        out = quantise(restore(blur))
        ps.append(M.psnr(out, sharp))
        ss.append(M.ssim(out, sharp))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


# --------------------------------------------------------------------------- classical baselines


def unsharp(params: tuple[float, float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Unsharp masking: ``x + amount * (x - gaussian(x, radius))``, clipped to [0, 1]."""
    from scipy.ndimage import gaussian_filter

    radius, amount = params

    def run(img: torch.Tensor) -> torch.Tensor:
        x = img.numpy().astype(np.float64)
        blurred = gaussian_filter(x, sigma=(0, radius, radius), mode="reflect")
        return torch.from_numpy(np.clip(x + amount * (x - blurred), 0, 1).astype(np.float32))

    return run


def gaussian_psf(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    ax = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    return k / k.sum()


def richardson_lucy(params: tuple[float, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    from skimage.restoration import richardson_lucy as rl

    sigma, iters = params
    psf = gaussian_psf(sigma)

    def run(img: torch.Tensor) -> torch.Tensor:
        x = img.numpy().astype(np.float64)
        pad = psf.shape[0]
        out = []
        for c in x:  # reflect-pad against ringing at the borders, deconvolve, crop back
            cp = np.pad(c, pad, mode="reflect")
            out.append(rl(cp, psf, num_iter=iters, clip=True)[pad:-pad, pad:-pad])
        return torch.from_numpy(np.stack(out).astype(np.float32))

    return run


UNSHARP_GRID = [(r, a) for r in (0.5, 1.0, 1.5, 2.0, 3.0) for a in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)]
RL_GRID = [(s, n) for s in (0.5, 0.8, 1.0, 1.3, 1.6, 2.0) for n in (3, 6, 10, 20)]


def tune(tune_pairs, make, grid) -> tuple[Any, dict[str, float]]:
    """The grid point with the best mean PSNR on the (synthetic, training-photo) tuning pairs."""
    best = None
    for params in grid:
        s = score(tune_pairs, make(params))
        if best is None or s["psnr"] > best[1]["psnr"]:
            best = (params, s)
    return best


# --------------------------------------------------------------------------- training


def scheme_config(scheme: str, d: dict[str, Path], runs: Path, args, seed: int) -> Config:
    n = args.iters
    pre, bgan = n // 6, n // 6
    overrides = [
        f"name={scheme}_s{seed}",
        f"runs_dir={runs}",
        f"seed={seed}",
        "device=cpu",
        f"data.sharp_dir={d['sharp']}",
        f"data.real_blur_dir={d['real_blur']}",
        "train.val_every=0",
        "train.save_every=0",
        "train.progress=false",
        "train.tensorboard=false",
        f"train.amp={args.amp}",
    ]
    if scheme == "synthetic":
        overrides += ["scheme=synthetic", f"stages.dbgan.iters={n}"]
    elif scheme == "oracle":  # supervised on real-domain pairs (not available in practice)
        overrides += ["scheme=synthetic", f"stages.dbgan.iters={n}", f"data.pairs_dir={d['oracle']}"]
    elif scheme == "separate":
        overrides += ["scheme=separate", f"stages.blur_pretrain.iters={pre}", f"stages.bgan.iters={bgan}",
                      f"stages.dbgan.iters={n - pre - bgan}"]
    elif scheme == "joint":
        overrides += ["scheme=joint", f"stages.blur_pretrain.iters={pre}", f"stages.dbgan.iters={n - pre}"]
    else:
        raise ValueError(scheme)
    return load_config(args.config, overrides + list(args.set))


def stage_iters(cfg: Config) -> str:
    from dbgan.train.loop import SCHEMES as PLAN

    parts = []
    for st in PLAN[cfg.scheme]:
        it = cfg.stages.dbgan.iters if st == "joint" else getattr(cfg.stages, st).iters
        parts.append(f"{st} {it}")
    return " -> ".join(parts)


def train_scheme(cfg: Config) -> tuple[Path, float]:
    from dbgan.train import train

    t0 = time.perf_counter()
    res = train(cfg, command="benchmarks/domain_gap.py", resume=False)
    if res.status != "done":
        raise RuntimeError(f"{cfg.name}: training did not finish: {res.message}")
    return res.run_dir / "checkpoints" / "latest.safetensors", time.perf_counter() - t0


# --------------------------------------------------------------------------- blur statistics


def noise_sigma(img: torch.Tensor) -> float:
    """Immerkaer's fast noise estimate on the luma of one ``C x H x W`` image (:func:`dbgan.losses.noise_level`)."""
    from dbgan.losses import noise_level

    with torch.no_grad():
        return float(noise_level(img[None]))


def degradation_summary(net) -> str | None:
    """Gamma, noise level and kernel size a kernel-predicting blur generator gives for random ``z``."""
    if net is None or not callable(getattr(net, "params_from_noise", None)):
        return None
    from dbgan.blur import kernel_extent

    z = torch.randn(512, net.noise_input.noise_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p = net.params_from_noise(z)
    radius = kernel_extent(p["kernels"].float().numpy())
    parts = [f"kernel RMS radius {radius.mean():.2f} ± {radius.std():.2f} px"]
    if "noise_std" in p:
        parts.append(f"noise std {float(p['noise_std'].mean()):.4f} ± {float(p['noise_std'].std()):.4f}")
    if "gamma" in p:
        parts.append(f"gamma {float(p['gamma']):.2f}")
    return ", ".join(parts)


def blur_stats(images: list[torch.Tensor], sharp: list[torch.Tensor] | None = None) -> dict[str, float]:
    """High-frequency residual (:func:`noise_sigma`), sharpness (mean gradient energy) and PSNR to sharp."""
    from dbgan import metrics as M

    out = {
        "hf": float(np.mean([noise_sigma(im) for im in images])),
        "sharpness": float(np.mean([M.sharpness(im) for im in images])),
        "psnr_vs_sharp": float("nan"),
    }
    if sharp is not None:
        out["psnr_vs_sharp"] = float(np.mean([M.psnr(im, s) for im, s in zip(images, sharp)]))
    return out


# --------------------------------------------------------------------------- output


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def mean_sd(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short training, one seed (about 10 minutes on 2 cores)")
    p.add_argument("--iters", type=int, default=None, help="training-loop iterations per scheme (quick 3000, full 12000)")
    p.add_argument("--seeds", default=None, help="comma list of training seeds (quick 0; full 0,1,2)")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="comma list of synthetic, separate, joint")
    p.add_argument("--oracle", action=argparse.BooleanOptionalAction, default=None,
                   help="also train on real-domain pairs (an upper reference; default: on)")
    p.add_argument("--config", default="demo", help="base preset or YAML file (default: demo)")
    p.add_argument("--amp", default="none", help="train.amp for the runs (none | bf16)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every scheme (repeatable), e.g. stages.bgan.w_adv=0")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--train-side", type=int, default=None, help="longer side of the training photos (quick 256, full 384)")
    p.add_argument("--real-crop", type=int, default=96, help="side of the unpaired real-blur crops")
    p.add_argument("--real-per-photo", type=int, default=None, help="real-blur crops per training photo (quick 8, full 24)")
    p.add_argument("--tune-per-photo", type=int, default=2, help="synthetic tuning pairs per training photo")
    p.add_argument("--test-side", type=int, default=None, help="longer side of the test photos (quick 192, full 256)")
    p.add_argument("--test-per-photo", type=int, default=None, help="real-domain degradations per test photo (quick 3, full 4)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1: the demo nets are too small to gain from a second thread, "
                        "and one thread is not slowed down by other processes on a shared machine; 0 = torch's default)")
    p.add_argument("--keep", default=None, help="keep data and runs in this folder (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    quick = args.quick
    args.iters = args.iters or (3000 if quick else 12000)
    seeds = [int(s) for s in (args.seeds or ("0" if quick else "0,1,2")).split(",")]
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    args.oracle = True if args.oracle is None else args.oracle
    args.train_side = args.train_side or (256 if quick else 384)
    args.real_per_photo = args.real_per_photo or (8 if quick else 24)
    args.test_side = args.test_side or (192 if quick else 256)
    args.test_per_photo = args.test_per_photo or (3 if quick else 4)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from dbgan.demo import REAL_DOMAIN

    base = load_config(args.config, list(args.set))
    synth = base.synth
    t_start = time.perf_counter()
    print("== domain_gap: synthetic vs learned blur, tested on a blur domain the synthetic kernels do not cover")
    print(f"command    : python benchmarks/domain_gap.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"date       : {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine    : {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; python {platform.python_version()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    from dbgan.cpu_caps import detect as detect_cpu_caps

    caps = detect_cpu_caps()
    print(f"bf16       : {caps.summary()}")
    if args.amp in ("bf16", "auto") and not caps.native_bf16:
        print(f"skipped    : train.amp={args.amp} (this CPU has no native bf16: {caps.reason}); the runs use train.amp=none")
        args.amp = "none"
    print(f"base config: {args.config} (nets: {json.dumps({k: v['name'] + ' ' + json.dumps(v['args']) for k, v in base.to_dict()['nets'].items()})})")
    print(f"overrides  : {args.set or 'none'}")
    print(f"budget     : {args.iters} training-loop iterations per scheme (equal iterations; wall time reported)")
    print(f"seeds      : {seeds} (training); data seed {args.data_seed}")
    print(f"train data : {len(TRAIN_PHOTOS)} photos {TRAIN_PHOTOS}, longer side {args.train_side}; "
          f"{args.real_per_photo} unpaired real-blur crops of {args.real_crop} px per photo")
    print(f"test pairs : {TEST_PHOTOS} x {args.test_per_photo} real-domain degradations, longer side {args.test_side}")
    print(f"synthetic  : {json.dumps(base.to_dict()['synth'])}")
    print(f"real domain: {json.dumps(REAL_DOMAIN.__dict__)}")
    print(flush=True)

    tmp_ctx = tempfile.TemporaryDirectory(prefix="dbgan_gap_") if args.keep is None else None
    root = Path(args.keep) if args.keep else Path(tmp_ctx.name)
    try:
        d = build_data(root / "data", args, synth, REAL_DOMAIN)
        test = read_pairs(d["test"])
        tune_pairs = read_pairs(d["tune"])
        print(f"data written: {len(list(d['sharp'].glob('*.png')))} sharp photos, {len(list(d['real_blur'].glob('*.png')))} "
              f"real-blur crops, {len(test)} test pairs, {len(tune_pairs)} synthetic tuning pairs", flush=True)

        rows: dict[str, dict[str, Any]] = {}
        s = score(test, lambda x: x)
        rows["blurred input"] = {"psnr": [s["psnr"]], "ssim": [s["ssim"]], "note": "no restoration"}
        # classical baselines: parameters from the synthetic tuning pairs only
        us_params, us_tune = tune(tune_pairs, unsharp, UNSHARP_GRID)
        s = score(test, unsharp(us_params))
        rows["unsharp mask"] = {"psnr": [s["psnr"]], "ssim": [s["ssim"]],
                                "note": f"radius {us_params[0]}, amount {us_params[1]} (best PSNR on synthetic training pairs: "
                                        f"{us_tune['psnr']:.2f} dB)"}
        rl_params, rl_tune = tune(tune_pairs, richardson_lucy, RL_GRID)
        s = score(test, richardson_lucy(rl_params))
        rows["Richardson-Lucy"] = {"psnr": [s["psnr"]], "ssim": [s["ssim"]],
                                   "note": f"Gaussian PSF sigma {rl_params[0]}, {rl_params[1]} iterations (best PSNR on "
                                           f"synthetic training pairs: {rl_tune['psnr']:.2f} dB)"}
        print(f"classical baselines done ({time.perf_counter() - t_start:.0f} s)", flush=True)

        from dbgan.infer import Blurrer, Deblurrer

        runs = root / "runs"
        ckpts: dict[str, list[Path]] = {}
        all_schemes = schemes + (["oracle"] if args.oracle else [])
        for seed in seeds:
            for scheme in all_schemes:
                cfg = scheme_config(scheme, d, runs, args, seed)
                print(f"-- training {LABELS[scheme]} seed {seed}: {stage_iters(cfg)}", flush=True)
                ckpt, secs = train_scheme(cfg)
                deblur = Deblurrer.from_checkpoint(ckpt, device="cpu", tile=None)
                s = score(test, deblur)
                row = rows.setdefault(LABELS[scheme], {"psnr": [], "ssim": [], "secs": [], "note": stage_iters(cfg)})
                row["psnr"].append(s["psnr"])
                row["ssim"].append(s["ssim"])
                row["secs"].append(secs)
                ckpts.setdefault(scheme, []).append(ckpt)
                print(f"   PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.4f}, trained in {secs / 60:.1f} min", flush=True)

        # what blur did each scheme's deblurrer learn from? statistics on the test photos' sharp images
        from dbgan.blur.degrade import DegradationPipeline

        from dbgan.io import read_image

        # (1) training side, unpaired -- what a user can check without any pairs: BGAN's output on
        # sharp training crops against the unpaired real-blur crops (other crops of the same photos)
        tune_sharp = [s for _, s, _ in tune_pairs]
        real_crops = [read_image(p, channels=3) for p in sorted(d["real_blur"].glob("*.png"))]
        train_stats = [
            ["sharp training crops", *_stat_cells(blur_stats(tune_sharp))],
            ["real blur crops (unpaired)", *_stat_cells(blur_stats(real_crops))],
            ["synthetic blur of the sharp crops", *_stat_cells(blur_stats([b for _, _, b in tune_pairs], tune_sharp))],
        ]
        # (2) test side (diagnosis only; nothing is chosen from it)
        sharp_imgs = [s for _, s, _ in test]
        syn_pipe = DegradationPipeline.from_config(synth)
        test_stats = [
            ["sharp test images", *_stat_cells(blur_stats(sharp_imgs))],
            ["real blur (the test inputs)", *_stat_cells(blur_stats([b for _, _, b in test], sharp_imgs))],
            ["synthetic blur of the test images", *_stat_cells(blur_stats(
                [syn_pipe(s, np.random.default_rng([args.data_seed, 5, i]))[0].float() for i, s in enumerate(sharp_imgs)],
                sharp_imgs))],
        ]
        learnt_rows: list[str] = []
        for scheme in ("separate", "joint"):
            if scheme in ckpts:
                blurrer = Blurrer.from_checkpoint(ckpts[scheme][0], device="cpu", seed=0)
                label = f"BGAN blur, {LABELS[scheme]} seed {seeds[0]}"
                fakes = [blurrer(s, seed=i).clamp(0, 1) for i, s in enumerate(tune_sharp)]
                train_stats.append([label, *_stat_cells(blur_stats(fakes, tune_sharp))])
                fakes = [blurrer(s, seed=i).clamp(0, 1) for i, s in enumerate(sharp_imgs)]
                test_stats.append([label, *_stat_cells(blur_stats(fakes, sharp_imgs))])
                learnt = degradation_summary(getattr(blurrer.backend, "net", None))
                if learnt:
                    learnt_rows.append(f"{label}: {learnt}")
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    print()
    print(f"Held-out real-domain test pairs ({len(test)} images; mean over images"
          f"{', mean ± sd over ' + str(len(seeds)) + ' training seeds' if len(seeds) > 1 else ''}):")
    table = []
    for name, r in rows.items():
        secs = f"{statistics.mean(r['secs']) / 60:.1f}" if r.get("secs") else "-"
        table.append([name, mean_sd(r["psnr"], ".2f"), mean_sd(r["ssim"], ".4f"), secs, r["note"]])
    print(fmt_table(["method", "PSNR (dB)", "SSIM", "train min", "settings"], table))
    print()
    head = ["images", "HF residual", "sharpness", "PSNR vs sharp"]
    print("Blur statistics, training side (unpaired: available without any pairs). HF residual: Immerkaer's noise")
    print("estimate on the luma (noise, JPEG and artefacts raise it); sharpness: dbgan.metrics.sharpness:")
    print(fmt_table(head, train_stats))
    print()
    print("Blur statistics on the test photos (diagnosis only):")
    print(fmt_table(head, test_stats))
    print()
    if learnt_rows:
        print("What the kernel-predicting BGANs learnt (512 random noise vectors; the stand-in camera: gamma "
              f"{REAL_DOMAIN.gamma if REAL_DOMAIN.linear_light else 1.0}, noise std {REAL_DOMAIN.noise_sigma}):")
        for line in learnt_rows:
            print("  " + line)
        print()
    best_learned = max((statistics.mean(rows[LABELS[s]]["psnr"]), s) for s in ("separate", "joint") if LABELS[s] in rows) \
        if any(LABELS[s] in rows for s in ("separate", "joint")) else None
    if best_learned and LABELS["synthetic"] in rows:
        a = statistics.mean(rows[LABELS["synthetic"]]["psnr"])
        verdict = "above" if best_learned[0] > a else "NOT above"
        print(f"expected result: (b) or (c) above (a) in PSNR -- best learned-blur scheme {LABELS[best_learned[1]]} "
              f"{best_learned[0]:.2f} dB vs (a) {a:.2f} dB: {verdict}")
    print(f"total time: {(time.perf_counter() - t_start) / 60:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "train_stats": train_stats, "test_stats": test_stats}, indent=1, default=str))
    return 0


def _stat_cells(s: dict[str, float]) -> list[str]:
    p = s["psnr_vs_sharp"]
    return [f"{s['hf']:.4f}", f"{s['sharpness']:.4f}", "-" if np.isnan(p) else f"{p:.2f}"]


if __name__ == "__main__":
    sys.exit(main())
