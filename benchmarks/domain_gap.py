"""Does BGAN learn a camera it was not built around? dbgan's schemes over a suite of stand-in cameras.

The cameras (``benchmarks/cameras.py``) are written independently of ``dbgan.blur``:
their own shake/defocus/rotation blur, response curves, exposure and white balance,
Poisson-Gaussian noise (some demosaiced or denoised), saturation, ISP sharpening and
JPEG. Three cameras (``cameras.VALIDATION_CAMERAS``: a hand-shake one, ``compact``, a
defocus one, ``soft_lens``, and ``webcam``, whose response is neither sRGB nor any test
camera's) may be used to choose settings; the classical baseline is tuned on the first. The others are test cameras, only reported on (issue 15).

**The user's situation**, for each data seed (the seed draws the photo split, the crops
and every degradation):

* the photos (scikit-image's bundled photos: ``COLOUR_PHOTOS`` and ``GREY_PHOTOS``, grey
  ones as RGB; ``--extra-photos DIR`` adds one's own) are split into three disjoint
  sets: **test photos** (2 colour + 1 grey, held out whole), **sharp-side** photos and
  **real-side** photos (``--split halves``: every training photo cut in two, one half to
  each side, so that the two sides are one scene distribution; ``--split shared``, a
  control that is not the user's situation: every training photo on both sides, so that the
  sides' scene statistics are the same; see ``split_photos``);
* sharp training photos: the sharp-side photos (their luma, for the grey camera);
* unpaired "real" blurred photos: random crops of the *real-side* photos -- other photos
  of the same scene distribution, never the sharp ones -- degraded by the camera;
* test pairs: the whole test photos, degraded ``--test-per-photo`` times by the camera;
* the validation camera's pairs of sharp-side crops: where the classical baseline's
  settings are chosen (and the oracle's training pairs for every camera are made the
  same way, from the sharp-side photos).

**Rows** (the same budget of training-loop iterations ``N`` for every learnt row; a
joint iteration counts once; each row's wall time is printed):

* ``blurred input``;
* ``Wiener``: Wiener deconvolution with a Gaussian PSF, its sigma and noise-to-signal
  ratio chosen on the validation camera's pairs (never on test photos);
* ``(a) synthetic``: the preset's synthetic scheme (dbgan ``N``) -- it never sees the
  camera, so it is trained once per data seed (and once more on grey photos for the
  grey camera) and scored on every camera;
* ``(a') synthetic + linear light``: the same with ``synth.linear_light=true``;
* ``prior only``: the separate scheme with the BGAN stage switched off
  (``stages.bgan.skip=true``: blur_pretrain ``N/6`` -> dbgan ``5N/6``): what the blur
  generator's built-in prior gives without learning from the real photos;
* ``(b) separate``: blur_pretrain ``N/6`` -> bgan ``N/6`` -> dbgan ``2N/3``;
* ``(c) joint``: blur_pretrain ``N/6`` -> joint ``5N/6``;
* ``oracle``: dbgan ``N`` on the camera's own pairs (the supervision a user does not have).

**Figures**: PSNR and SSIM (``dbgan.metrics``, 8-bit quantised outputs), brightness
bias (mean of output - sharp) and colour bias (the spread, max - min, of the
per-channel mean errors), per camera and averaged over the test cameras and seeds; the
issue's pass/fail checks; for every BGAN run the learnt camera (``describe()`` of the
blur generator, when it has one) beside the camera's truth, and the blur-realism figures
of ``dbgan.realism`` (held-out two-sample accuracy, KID) of BGAN's blur and of the
synthetic blur against the real crops.

Usage::

    python benchmarks/domain_gap.py --quick                          # 2 seeds x 6 cameras, 600 iterations
    python benchmarks/domain_gap.py                                  # 3 seeds x 6 cameras, 3000 iterations, more data
    python benchmarks/domain_gap.py --quick --cameras compact --seeds 0 --budget-iters 60   # smoke test
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cameras as CAMS  # noqa: E402  (benchmarks/cameras.py: independent of dbgan.blur)

from dbgan.config import Config, load_config, preset_names  # noqa: E402
from dbgan.demo import fit_longer_side  # noqa: E402

#: colour photos of scikit-image (stereo_motorcycle: the left view only; ``cat`` is ``chelsea``)
COLOUR_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "stereo_motorcycle",
                 "retina", "chelsea", "coffee")
#: grey photos of scikit-image (used as RGB, or as grey by the grey camera)
GREY_PHOTOS = ("grass", "gravel", "brick", "moon", "coins", "clock", "camera", "cell")

LEARNT = ("synthetic", "synthetic_ll", "prior_only", "separate", "joint", "oracle")
#: issue 18's rows, on request (--methods): the bundled general model as it ships (no training), the
#: separate scheme fine-tuning it (the adapt preset's deblurrer and dbgan stage), and that scheme with
#: the same network trained from scratch (the general recipe's learning rate)
GENERAL = ("general", "general_adapt", "adapt_scratch")
CAMERA_FREE = ("synthetic", "synthetic_ll")  # trained without the camera: once per seed and view
LABELS = {
    "input": "blurred input", "wiener": "Wiener (tuned on the validation camera)",
    "tone_oracle": "tone oracle (LUT on the camera's pairs)",
    "synthetic": "(a) synthetic", "synthetic_ll": "(a') synthetic + linear light", "prior_only": "prior only (no BGAN stage)",
    "separate": "(b) separate", "joint": "(c) joint", "oracle": "oracle (the camera's own pairs)",
    "general": "general model (bundled, no training)", "general_adapt": "general + adaptation (separate)",
    "adapt_scratch": "adaptation's network from scratch (separate)",
}
MARGIN = 24  # pixels blurred around each realism crop and then cut away (kernels up to 41 px)

log = logging.getLogger("domain_gap")


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields.get('Model name', '').strip()}, {fields.get('CPU(s)', '').strip()} CPUs"
    except Exception:  # pragma: no cover
        return platform.processor() or platform.machine()


def default_config() -> str:
    """``camera`` once that preset exists, else ``kernel``."""
    return "camera" if "camera" in preset_names() else "kernel"


# --------------------------------------------------------------------------- photos


def photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo (or an image file) as a 3 x H x W float tensor in [0, 1]."""
    if os.sep in name or name.endswith((".png", ".jpg", ".jpeg")):
        from dbgan.io import read_image

        return read_image(Path(name), channels=3)
    from skimage import data as skd

    img = getattr(skd, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity); the left view
        img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = np.ascontiguousarray(img[..., :3])
    scale = 255.0 if img.dtype == np.uint8 else float(img.max() or 1)
    return torch.from_numpy(img.astype(np.float32) / scale).permute(2, 0, 1).contiguous()


#: a training photo's name suffix in the ``halves`` split: ``NAME#half0`` is the first half of
#: photo NAME (left, or top for a portrait photo), ``NAME#half1`` the other
HALF = "#half"
SPLITS = ("photos", "halves", "shared")


def split_photos(seed: int, extra: list[str], split: str = "photos") -> dict[str, list[str]]:
    """Disjoint test / sharp-side / real-side photo lists for one data seed (2 colour + 1 grey test photos).

    ``photos``: every other training photo goes to each side, whole (~14 photos per side, of
    different scenes: the two sides' brightness and colour differ by their scenes).
    ``halves``: every training photo is cut in two across its longer side, one half (drawn at
    random) to each side: still disjoint and unpaired, but the two sides are one scene
    distribution, as for a user whose sharp and blurred photos are of the same kind of scene.
    ``shared``: a control, not the user's situation: every training photo (whole) on both
    sides. The crops stay unpaired, but the two sides' scene statistics are the same, so what
    a method still gets wrong in brightness or colour is not the scenes' difference.
    The test photos are the same in all three.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    rng = np.random.default_rng([seed, 99])
    colour = [str(x) for x in rng.permutation(list(COLOUR_PHOTOS) + extra)]
    grey = [str(x) for x in rng.permutation(GREY_PHOTOS)]
    test = colour[:2] + grey[:1]
    rest_c, rest_g = colour[2:], grey[1:]
    if split == "shared":
        return {"test": test, "sharp": rest_c + rest_g, "real": rest_c + rest_g}
    if split == "halves":
        rest = rest_c + rest_g
        first = rng.integers(0, 2, len(rest))
        return {"test": test, "sharp": [f"{n}{HALF}{k}" for n, k in zip(rest, first)],
                "real": [f"{n}{HALF}{1 - k}" for n, k in zip(rest, first)]}
    sharp = rest_c[0::2] + rest_g[0::2]
    real = rest_c[1::2] + rest_g[1::2]
    return {"test": test, "sharp": sharp, "real": real}


def photo_stem(name: str) -> str:
    """A split entry's file stem (``astronaut``, ``astronaut_half1``)."""
    base, _, half = name.partition(HALF)
    return Path(base).stem + (f"_half{half}" if half else "")


def train_photos(names: list[str], side: int) -> dict[str, np.ndarray]:
    """Split entries as ``H x W x 3`` arrays: each photo (read once, however many of its halves
    are named) with its longer side fitted to ``side``, then (a ``#half`` entry) cut in two
    across that side."""
    whole = {b: to_hwc(fit_longer_side(photo(b), side)) for b in dict.fromkeys(n.partition(HALF)[0] for n in names)}
    out = {}
    for n in names:
        base, _, half = n.partition(HALF)
        img = whole[base]
        h, w = img.shape[:2]
        if not half:
            out[n] = img
        elif w >= h:
            out[n] = img[:, : w // 2] if half == "0" else img[:, w // 2 :]
        else:
            out[n] = img[: h // 2] if half == "0" else img[h // 2 :]
    return out


def train_photo(name: str, side: int) -> np.ndarray:
    """One split entry (:func:`train_photos`)."""
    return train_photos([name], side)[name]


def scene_gap(split: dict[str, list[str]], imgs: dict[str, np.ndarray]) -> list[float]:
    """Per-channel mean brightness of the real-side photos less the sharp-side photos' (each photo
    weighted once, display units, before any camera): how much the two sides' scenes differ. Exposure
    and white balance found by matching the two sides' statistics inherit it (0 for ``shared``)."""
    side = lambda names: np.mean([imgs[n].reshape(-1, imgs[n].shape[-1]).mean(0) for n in names], 0)  # noqa: E731
    return (side(split["real"]) - side(split["sharp"])).tolist()


def to_hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy().astype(np.float64)


def to_chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1).contiguous()


def crop_box(h: int, w: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))


def degraded_crop(cam: CAMS.Camera, img: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, camera) crops of ``size`` px: the camera takes the *whole* photo (its blur, e.g. a
    rotation's, varies over the whole frame; JPEG blocks are aligned to the frame), then a random crop."""
    out = cam.degrade(img, rng)
    y, x = crop_box(img.shape[0], img.shape[1], size, rng)
    return cam.ground_truth(img)[y : y + size, x : x + size], out[y : y + size, x : x + size]


def write_pair(folder: Path, filename: str, sharp: np.ndarray, blurred: np.ndarray) -> None:
    from dbgan.io import write_image

    write_image(folder / "sharp" / filename, to_chw(sharp))
    write_image(folder / "blur" / filename, to_chw(blurred))


def build_seed_data(root: Path, seed: int, cams: list[str], args) -> dict[str, Any]:
    """One data seed's folders: sharp_{colour,grey}/, and per camera real_blur/, oracle/, test/."""
    from dbgan.io import write_image

    split = split_photos(seed, args.extra, args.split)
    train_imgs = train_photos(split["sharp"] + split["real"], args.train_side)
    small = [n for n, im in train_imgs.items() if min(im.shape[:2]) < args.real_crop]
    if small:
        raise ValueError(f"training photos {small} are smaller than --real-crop {args.real_crop} px: raise --train-side")
    test_imgs = {n: to_hwc(fit_longer_side(photo(n), args.test_side)) for n in split["test"]}
    out: dict[str, Any] = {"split": split, "cams": {}, "scene_gap": scene_gap(split, train_imgs)}
    for view in ("colour", "grey"):
        if view == "grey" and not any(CAMS.get(c).grey for c in cams):
            continue
        d = root / f"sharp_{view}"
        probe = next(c for c in CAMS.CAMERAS.values() if c.grey == (view == "grey"))
        for n in split["sharp"]:
            write_image(d / f"{photo_stem(n)}.png", to_chw(probe.ground_truth(train_imgs[n])))
        out[f"sharp_{view}"] = d
    for ci, name in enumerate(cams):
        cam = CAMS.get(name)
        d = {k: root / name / k for k in ("real_blur", "oracle", "test")}
        for i, n in enumerate(split["real"]):
            rng = np.random.default_rng([seed, 1, ci, i])
            for k in range(args.real_per_photo):  # --real-whole: the camera's whole photo, as a user's folder holds it
                blurred = cam.degrade(train_imgs[n], rng) if args.real_whole else degraded_crop(cam, train_imgs[n], args.real_crop, rng)[1]
                write_image(d["real_blur"] / f"{photo_stem(n)}_{k:02d}.png", to_chw(blurred))
        for i, n in enumerate(split["sharp"]):
            rng = np.random.default_rng([seed, 2, ci, i])
            for k in range(args.oracle_per_photo):
                write_pair(d["oracle"], f"{photo_stem(n)}_{k:02d}.png", *degraded_crop(cam, train_imgs[n], args.real_crop, rng))
        for i, n in enumerate(split["test"]):
            img = test_imgs[n]
            for r in range(args.test_per_photo):
                write_pair(d["test"], f"{Path(n).stem}_{r}.png", cam.ground_truth(img), cam.degrade(img, np.random.default_rng([seed, 3, ci, i, r])))
        d["view"] = "grey" if cam.grey else "colour"
        out["cams"][name] = d
    return out


def read_pairs(folder: Path) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    from dbgan.io import read_image

    return [(p.name, read_image(p, channels=3), read_image(folder / "blur" / p.name, channels=3))
            for p in sorted((folder / "sharp").glob("*.png"))]


# --------------------------------------------------------------------------- metrics


def quantise(img: torch.Tensor) -> torch.Tensor:
    """8-bit quantisation, as an output written to a PNG (and as ``dbgan eval`` scores it)."""
    return (img.clamp(0, 1) * 255).round() / 255


def tone_aligned(out: torch.Tensor, sharp: torch.Tensor, degree: int = 3) -> torch.Tensor:
    """``out`` (``C x H x W``) after the global tone map that brings it closest to ``sharp``.

    Per channel, the least-squares polynomial of ``degree`` in the output's value, fitted on
    this image against its ground truth, clipped to [0, 1]. What PSNR measures after it is
    what a global tone correction cannot fix -- blur, noise, artefacts -- so
    ``tone-aligned PSNR`` separates a learnt blur from a learnt exposure or curve (on the
    benchmark's cameras most of the input's error is tone: see ``tone_lut``).
    """
    o = out.double().flatten(1)
    basis = torch.stack([o**k for k in range(degree + 1)], -1)  # C x P x (degree + 1)
    coef = torch.linalg.lstsq(basis, sharp.double().flatten(1)[..., None]).solution
    return (basis @ coef)[..., 0].clamp(0, 1).reshape(out.shape).to(out.dtype)


def tone_lut(pairs, bins: int = 256) -> Callable[[torch.Tensor], torch.Tensor]:
    """The tone-only oracle: per channel, the mean sharp value of each blurred value over ``pairs``.

    Fitted on the camera's own training pairs (the oracle's data, never the test photos), it
    is the best a pointwise map can do: how much of the input-to-oracle gap is global tone
    (exposure, white balance, response) rather than blur. Empty bins are interpolated from
    their filled neighbours (held constant past the ends).
    """
    blur = torch.cat([b.flatten(1) for _, _, b in pairs], 1)
    sharp = torch.cat([s.flatten(1) for _, s, _ in pairs], 1)
    idx = (blur.clamp(0, 1) * (bins - 1)).round().long()
    grid = np.linspace(0, 1, bins)
    lut = torch.zeros(blur.shape[0], bins, dtype=torch.float64)
    for c in range(blur.shape[0]):
        cnt = torch.bincount(idx[c], minlength=bins).double().numpy()
        tot = torch.bincount(idx[c], sharp[c].double(), minlength=bins).numpy()
        seen = cnt > 0
        lut[c] = torch.from_numpy(np.interp(grid, grid[seen], tot[seen] / cnt[seen]) if seen.any() else grid)

    def apply(img: torch.Tensor) -> torch.Tensor:
        i = (img.clamp(0, 1) * (bins - 1)).round().long()
        return torch.stack([lut[c][i[c]] for c in range(img.shape[0])]).to(img.dtype)

    return apply


def score(pairs, restore: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
    """Mean PSNR, tone-aligned PSNR, SSIM, brightness bias and colour-bias spread over the pairs."""
    from dbgan import metrics as M

    ps, pt, ss, bb, cs = [], [], [], [], []
    for _, sharp, blur in pairs:
        with torch.no_grad():
            out = quantise(restore(blur))
        ps.append(M.psnr(out, sharp))
        pt.append(M.psnr(tone_aligned(out, sharp), sharp))
        ss.append(M.ssim(out, sharp))
        cb = M.colour_bias(out, sharp)
        bb.append(float(cb.mean()))
        cs.append(float(cb.max() - cb.min()))
    return {"psnr": float(np.mean(ps)), "psnr_tone": float(np.mean(pt)), "ssim": float(np.mean(ss)), "bias": float(np.mean(bb)),
            "colour": float(np.mean(cs))}


# --------------------------------------------------------------------------- classical baseline


def wiener(params: tuple[float, float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wiener deconvolution per channel with a Gaussian PSF of ``sigma`` px and regularisation ``nsr``
    (:func:`dbgan.classical.wiener_deconvolve`, PSF family ``gaussian_otf``).

    The noise-to-signal ratio follows a 1/f**2 image spectrum (``nsr`` times the discrete
    Laplacian's squared response, zero at DC), so the filter keeps the mean (no brightness
    change of its own) and damps the high frequencies where the noise dominates.
    """
    from dbgan.classical import WienerSetting, wiener_deconvolve

    setting = WienerSetting("gaussian_otf", params[0], params[1])
    return lambda img: wiener_deconvolve(img, setting)


WIENER_GRID = [(s, n) for s in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0) for n in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)]


def tune_wiener(pairs) -> tuple[tuple[float, float], float]:
    best = max(((p, score(pairs, wiener(p))["psnr"]) for p in WIENER_GRID), key=lambda t: t[1])
    return best


# --------------------------------------------------------------------------- training


def method_config(method: str, data: dict, cam: dict | None, view: str, runs: Path, args, seed: int) -> Config:
    n = args.budget_iters
    pre = n // 6
    real_dir = cam["real_blur"] if cam else next(c["real_blur"] for c in data["cams"].values() if c["view"] == view)
    overrides = [
        f"name={method}_{cam['name'] if cam else view}_s{seed}", f"runs_dir={runs}", f"seed={seed}", "device=cpu",
        f"data.sharp_dir={data[f'sharp_{view}']}", f"data.real_blur_dir={real_dir}",
        "train.val_every=0", "train.save_every=0", "train.progress=false", "train.tensorboard=false",
        f"train.amp={args.amp}",
    ]
    base = load_config(args.config, list(args.set))
    if cam is not None and CAMS.get(cam["name"]).decode == "identity" and base.nets.blur_g.name == "camera_blur":
        # what a user of linear data (raw, a microscope) states: the sharp photos are linear, so is the start
        overrides += ["nets.blur_g.args.input_encoding=linear", "nets.blur_g.args.init_response=linear"]
    # a preset without blur pretraining (camera) spends that share of the budget on BGAN
    bgan_iters = 2 * pre if base.stages.blur_pretrain.skip else pre
    if method == "synthetic":
        overrides += ["scheme=synthetic", f"stages.dbgan.iters={n}"]
    elif method == "synthetic_ll":
        overrides += ["scheme=synthetic", f"stages.dbgan.iters={n}", "synth.linear_light=true"]
    elif method == "oracle":
        overrides += ["scheme=synthetic", f"stages.dbgan.iters={n}", f"data.pairs_dir={cam['oracle']}"]
    elif method == "prior_only":
        overrides += ["scheme=separate", f"stages.blur_pretrain.iters={pre}", "stages.bgan.skip=true",
                      f"stages.dbgan.iters={n - pre}"]
    elif method == "separate":
        overrides += ["scheme=separate", f"stages.blur_pretrain.iters={pre}", f"stages.bgan.iters={bgan_iters}",
                      f"stages.dbgan.iters={n - 2 * pre}"]
    elif method in ("general_adapt", "adapt_scratch"):
        overrides += ["scheme=separate", f"stages.blur_pretrain.iters={pre}", f"stages.bgan.iters={bgan_iters}",
                      f"stages.dbgan.iters={n - 2 * pre}", *adapt_overrides(scratch=method == "adapt_scratch")]
    elif method == "joint":
        overrides += ["scheme=joint", f"stages.blur_pretrain.iters={pre}", f"stages.dbgan.iters={n - pre}"]
    else:
        raise ValueError(method)
    return load_config(args.config, overrides + list(args.set))


def adapt_overrides(scratch: bool) -> list[str]:
    """The adapt preset's deblurrer and dbgan stage (fine-tuning the bundled general model), or,
    with ``scratch``, the same network from scratch with the general recipe's optimiser settings."""
    adapt = load_config("adapt")
    recipe = load_config("general").stages.dbgan if scratch else adapt.stages.dbgan
    out = [f"nets.deblur_g={json.dumps({'name': adapt.nets.deblur_g.name, 'args': adapt.nets.deblur_g.args})}"]
    for key in ("lr", "betas", "w_adv", "content", "w_content", "schedule", "ema", "grad_clip"):
        out.append(f"stages.dbgan.{key}={json.dumps(getattr(recipe, key))}")
    # the same training inputs either way: the adapt preset's share of synth kernels, and its kernel families
    out.append(f"stages.dbgan.synthetic_kernels={adapt.stages.dbgan.synthetic_kernels}")
    for key in ("kernels", "kernel_size", "kernel_sizes", "intensity", "linear_length", "defocus_radius", "gaussian_sigma"):
        out.append(f"synth.{key}={json.dumps(getattr(adapt.synth, key))}")
    return out + ["stages.dbgan.init_from=" + ("null" if scratch else "general")]


def stage_iters(cfg: Config) -> str:
    from dbgan.train.loop import SCHEMES as PLAN

    parts = []
    for st in PLAN[cfg.scheme]:
        sc = cfg.stages.dbgan if st == "joint" else getattr(cfg.stages, st)
        parts.append(f"{st} {'skipped' if sc.skip else sc.iters}")
    return " -> ".join(parts)


def train_run(cfg: Config) -> tuple[Path, float]:
    from dbgan.train import train

    t0 = time.perf_counter()
    res = train(cfg, command="benchmarks/domain_gap.py", resume=False)
    if res.status != "done":
        raise RuntimeError(f"{cfg.name}: training did not finish: {res.message}")
    return res.run_dir / "checkpoints" / "latest.safetensors", time.perf_counter() - t0


# --------------------------------------------------------------------------- diagnostics


def learnt_camera(net) -> dict | None:
    """The blur generator's own description of its camera (``describe()``), or kernel statistics, or None."""
    if net is None:
        return None
    if callable(getattr(net, "describe", None)):
        try:
            return dict(net.describe())
        except Exception as exc:  # a diagnostic must not end the benchmark
            return {"describe() failed": repr(exc)}
    if callable(getattr(net, "params_from_noise", None)):
        from dbgan.blur import kernel_extent

        z = torch.randn(512, net.noise_input.noise_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            p = net.params_from_noise(z)
        radius = kernel_extent(p["kernels"].float().numpy())
        out: dict[str, Any] = {"kernel_rms_radius_px": {"mean": float(radius.mean()), "sd": float(radius.std())}}
        if "noise_std" in p:
            out["noise_std"] = float(p["noise_std"].mean())
        if "gamma" in p:
            out["gamma"] = float(p["gamma"])
        return out
    return None


def sample_figure(path: Path, blurrer, sharp_imgs: list, real_imgs: list, seed: int, side: int = 128, rows: int = 4) -> None:
    """``path``: ``rows`` rows of sharp | BGAN | real crops of ``side`` px, 1:1, so blur and noise can be judged."""
    from dbgan.io import write_image
    from dbgan.realism import random_crops

    sharp = random_crops(sharp_imgs, side + 2 * MARGIN, 1, seed=seed + 11)[:rows]
    real = random_crops(real_imgs, side, 1, seed=seed + 12)[:rows]
    with torch.no_grad():
        fake = [blurrer(s, seed=100 + i)[..., MARGIN:-MARGIN, MARGIN:-MARGIN].clamp(0, 1) for i, s in enumerate(sharp)]
    pad = lambda t: torch.nn.functional.pad(t, (4, 4, 4, 4), value=1.0)  # noqa: E731
    lines = [torch.cat([pad(s[..., MARGIN:-MARGIN, MARGIN:-MARGIN]), pad(f), pad(r)], -1)
             for s, f, r in zip(sharp, fake, real)]
    write_image(path, torch.cat(lines, -2))


def realism_rows(ckpt: Path, data: dict, cam: dict, cfg: Config, seed: int, crop: int,
                 by_photo: bool = False, figure: Path | None = None) -> tuple[dict[str, dict], dict | None]:
    """Real crops vs BGAN blur, synthetic blur and linear-light synthetic blur of sharp crops (dbgan.realism).

    The two-sample test's halves are cut by crop (default) or, with ``by_photo``, by source photo.
    """
    from dataclasses import replace

    from dbgan.blur.degrade import DegradationPipeline
    from dbgan.infer import Blurrer
    from dbgan.io import read_image
    from dbgan.realism import random_crops, realism_report

    def photo_groups(paths: list[Path], per: int) -> torch.Tensor:  # the source photo of each crop
        names = sorted({p.stem.rsplit("_", 1)[0] for p in paths})
        return torch.tensor([names.index(p.stem.rsplit("_", 1)[0]) for p in paths]).repeat_interleave(per)

    real_paths = sorted(cam["real_blur"].glob("*.png"))
    real = random_crops([read_image(p, channels=3) for p in real_paths], crop, 2, seed=seed)  # two crops of each
    g_real = photo_groups(real_paths, 2)
    sharp_imgs = [read_image(p, channels=3) for p in sorted(data[f"sharp_{cam['view']}"].glob("*.png"))]
    per = max(1, -(-len(real) // len(sharp_imgs)))
    sharp = random_crops(sharp_imgs, crop + 2 * MARGIN, per, seed=seed + 1)[: len(real)]
    g_sharp = torch.arange(len(sharp_imgs)).repeat_interleave(per)[: len(real)]
    blurrer = Blurrer.from_checkpoint(ckpt, device="cpu", seed=seed)
    cut = lambda t: t[..., MARGIN:-MARGIN, MARGIN:-MARGIN].clamp(0, 1)  # noqa: E731
    with torch.no_grad():
        fakes = torch.stack([cut(blurrer(s, seed=i)) for i, s in enumerate(sharp)])
    if figure is not None:
        sample_figure(figure, blurrer, sharp_imgs, [read_image(p, channels=3) for p in real_paths], seed)
    def report(x: torch.Tensor, gx: torch.Tensor) -> dict:
        return realism_report(real, x, seed=seed, groups_real=g_real if by_photo else None, groups_fake=gx if by_photo else None)

    out = {"BGAN": report(fakes, g_sharp)}
    for label, syn in (("synthetic", cfg.synth), ("synthetic + linear light", replace(cfg.synth, linear_light=True))):
        pipe = DegradationPipeline.from_config(syn)
        blurred = torch.stack([cut(pipe(s, np.random.default_rng([seed, 7, i]))[0].float()) for i, s in enumerate(sharp)])
        out[label] = report(blurred, g_sharp)
    # the floor: the camera itself on the sharp-side photos (its oracle pairs' blurred side), i.e. a perfect
    # blur generator -- what is left above 0.5 / 0 comes from the scenes, not the blur
    own_paths = sorted((cam["oracle"] / "blur").glob("*.png"))
    own = random_crops([read_image(p, channels=3) for p in own_paths], crop, 2, seed=seed + 2)
    out["the camera itself (floor)"] = report(own, photo_groups(own_paths, 2))
    return out, learnt_camera(getattr(blurrer.backend, "net", None))


# --------------------------------------------------------------------------- output


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def mean_sd(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def _mean(v: list[float]) -> float:
    return float(np.mean(v)) if v else float("nan")


def checks(results: dict, test_cams: list[str], methods: list[str]) -> list[tuple[str, str, bool | None]]:
    """The issue's pass/fail checks for the separate and joint schemes, on the test cameras (means over seeds)."""
    def cam_mean(m, c, k):
        return _mean([r.get(k, np.nan) for r in results.get(c, {}).get(m, [])])

    def avg(m, k, f=lambda x: x):
        vals = [f(cam_mean(m, c, k)) for c in test_cams]
        return float(np.mean(vals)) if vals and not any(np.isnan(vals)) else float("nan")

    out = []
    for m in ("separate", "joint"):
        if m not in methods:
            continue
        p = avg(m, "psnr")
        def add(text, value, ok):
            out.append((LABELS[m], f"{text}: {value}", None if ok is None or (isinstance(ok, float) and np.isnan(ok)) else bool(ok)))
        for ctrl, need in (("synthetic_ll", 1.0), ("prior_only", 0.5)):
            if ctrl in methods:
                d = p - avg(ctrl, "psnr")
                add(f"beats {LABELS[ctrl]} by >= {need} dB", f"{d:+.2f} dB", None if np.isnan(d) else d >= need)
        if "oracle" in methods:
            inp, orc = avg("input", "psnr"), avg("oracle", "psnr")
            frac = (p - inp) / (orc - inp) if orc - inp > 1e-9 else float("nan")
            add("closes >= half of the input-to-oracle gap", f"{frac:.2f} of {orc - inp:.2f} dB", None if np.isnan(frac) else frac >= 0.5)
            # the same gap after a global tone map on every row: the blur's share (reported, not one of the checks)
            pt, it_, ot = avg(m, "psnr_tone"), avg("input", "psnr_tone"), avg("oracle", "psnr_tone")
            if not np.isnan(pt) and ot - it_ > 1e-9:
                out.append((LABELS[m], f"tone-aligned: closes {(pt - it_) / (ot - it_):.2f} of the {ot - it_:.2f} dB gap (not a check)", None))
            b, bo = avg(m, "bias", abs), avg("oracle", "bias", abs)
            add("|brightness bias| <= the oracle's", f"{b:.4f} vs {bo:.4f}", None if np.isnan(b) else b <= bo)
            cc, co = avg(m, "colour"), avg("oracle", "colour")
            add("colour-bias spread <= the oracle's", f"{cc:.4f} vs {co:.4f}", None if np.isnan(cc) else cc <= co)
        worst = min(((cam_mean(m, c, "psnr") - cam_mean("input", c, "psnr"), c) for c in test_cams), default=None)
        if worst:
            add("never below the input on any camera", f"worst {worst[1]} {worst[0]:+.2f} dB", worst[0] >= 0)
    # issue 18: the general model beats the input and Wiener on every camera; adaptation adds >= 0.5 dB on average
    if "general" in methods:
        for ctrl in ("input", "wiener"):
            worst = min(((cam_mean("general", c, "psnr") - cam_mean(ctrl, c, "psnr"), c) for c in test_cams), default=None)
            if worst:
                out.append((LABELS["general"], f"beats {LABELS[ctrl]} on every camera: worst {worst[1]} {worst[0]:+.2f} dB",
                            None if np.isnan(worst[0]) else worst[0] > 0))
        if "general_adapt" in methods:
            d = avg("general_adapt", "psnr") - avg("general", "psnr")
            out.append((LABELS["general_adapt"], f"adds >= 0.5 dB over the general model on average: {d:+.2f} dB",
                        None if np.isnan(d) else d >= 0.5))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 seeds x all cameras, 600 iterations, small data (about 40 min on 2 idle cores)")
    p.add_argument("--budget-iters", "--iters", dest="budget_iters", type=int, default=None,
                   help="training-loop iterations of every learnt row (quick 600, full 3000)")
    p.add_argument("--seeds", default=None, help="comma list of data seeds (each also the training seed; quick 0,1; full 0,1,2)")
    p.add_argument("--cameras", default=",".join(CAMS.CAMERAS), help=f"comma list of cameras (default: all: {', '.join(CAMS.CAMERAS)})")
    p.add_argument("--methods", default=",".join(LEARNT), help=f"comma list of learnt rows (default: {', '.join(LEARNT)}; also: {', '.join(GENERAL)})")
    p.add_argument("--config", default=None, help="preset or YAML file (default: camera if it exists, else kernel)")
    p.add_argument("--amp", default="none", help="train.amp for the learnt rows (none | bf16)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every learnt row (repeatable)")
    p.add_argument("--extra-photos", default=None, help="folder of more colour photos (*.png, *.jpg) for the split")
    p.add_argument("--train-side", type=int, default=None, help="longer side of the training photos (quick 256, full 384)")
    p.add_argument("--split", default="photos", choices=SPLITS,
                   help="photos: whole training photos to each side (default); halves: each training photo cut in "
                        "two, one half to each side (the two sides one scene distribution); shared: a control, every "
                        "training photo on both sides (the sides' scene statistics the same)")
    p.add_argument("--real-crop", type=int, default=None,
                   help="side of the real-blur and oracle crops (default: the preset's data.crop_size + 32, at least 96)")
    p.add_argument("--real-per-photo", type=int, default=None, help="real-blur crops per real-side photo (quick 10, full 24)")
    p.add_argument("--real-whole", action="store_true",
                   help="store each of the real side's degradations whole, not as a --real-crop crop (a user's folder "
                        "holds whole photos; with crops the tone statistics see a random, centre-weighted part of each)")
    p.add_argument("--oracle-per-photo", type=int, default=None, help="oracle pairs per sharp-side photo (quick 10, full 24)")
    p.add_argument("--test-side", type=int, default=None, help="longer side of the test photos (quick 192, full 256)")
    p.add_argument("--test-per-photo", type=int, default=None, help="degradations per test photo (quick 2, full 3)")
    p.add_argument("--realism-crop", type=int, default=48, help="crop side for the realism figures")
    p.add_argument("--realism-by-photo", action="store_true",
                   help="cut the two-sample test's halves by source photo, not by crop (needs many photos: with "
                        "scikit-image's 6-7 photos per side it is too noisy)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1; 0 = torch's default)")
    p.add_argument("--keep", default=None, help="keep data and runs in this folder (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write every figure here")
    args = p.parse_args(argv)
    q = args.quick
    args.budget_iters = args.budget_iters or (600 if q else 3000)
    seeds = [int(s) for s in (args.seeds or ("0,1" if q else "0,1,2")).split(",")]
    cams = [c.strip() for c in args.cameras.split(",") if c.strip()]
    for c in cams:
        CAMS.get(c)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in LEARNT + GENERAL]
    if bad:
        p.error(f"unknown method(s) {bad}; known: {', '.join(LEARNT + GENERAL)}")
    args.config = args.config or default_config()
    if args.real_crop is None:  # the training stages crop data.crop_size from the real photos: leave room
        args.real_crop = max(96, load_config(args.config, list(args.set)).data.crop_size + 32)
    args.train_side = args.train_side or (256 if q else 384)
    args.real_per_photo = args.real_per_photo or (10 if q else 24)
    args.oracle_per_photo = args.oracle_per_photo or (10 if q else 24)
    args.test_side = args.test_side or (192 if q else 256)
    args.test_per_photo = args.test_per_photo or (2 if q else 3)
    args.extra = sorted(str(f) for f in Path(args.extra_photos).glob("*") if f.suffix.lower() in (".png", ".jpg", ".jpeg")) \
        if args.extra_photos else []
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    test_cams = [c for c in cams if c not in CAMS.VALIDATION_CAMERAS] or cams

    base = load_config(args.config, list(args.set))
    t_start = time.perf_counter()
    print("== domain_gap: does BGAN learn a camera it was not built around? (stand-in cameras independent of dbgan.blur)")
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
    print(f"config     : {args.config} (blur_g: {base.nets.blur_g.name} {json.dumps(base.nets.blur_g.args)}); train.amp={args.amp}; "
          f"overrides {args.set or 'none'}")
    print(f"budget     : {args.budget_iters} training-loop iterations for every learnt row (wall time reported)")
    print(f"seeds      : {seeds} (data seed = training seed)")
    print(f"cameras    : {cams}; validation cameras {list(CAMS.VALIDATION_CAMERAS)} (Wiener settings chosen on {CAMS.VALIDATION!r}); checks on {test_cams}")
    print(f"photos     : colour {COLOUR_PHOTOS + tuple(args.extra)}; grey {GREY_PHOTOS}; train side {args.train_side}, test side "
          f"{args.test_side}; split {args.split!r}; {args.real_per_photo} real {'whole photos' if args.real_whole else f'crops of {args.real_crop} px'} per real-side photo, "
          f"{args.oracle_per_photo} oracle pairs per sharp-side photo, {args.test_per_photo} degradations per test photo")
    print(f"synthetic  : {json.dumps(base.to_dict()['synth'])}")
    print(flush=True)

    # results[camera][method] = list of per-seed score dicts (+ secs)
    results: dict[str, dict[str, list[dict]]] = {c: {} for c in cams}
    extras: dict[str, Any] = {"splits": {}, "scene_gap": {}, "wiener": {}, "realism": {}, "learnt_camera": {}, "truth": {c: CAMS.get(c).truth() for c in cams}}
    tmp_ctx = tempfile.TemporaryDirectory(prefix="dbgan_gap_") if args.keep is None else None
    root = Path(args.keep) if args.keep else Path(tmp_ctx.name)
    from dbgan.infer import Deblurrer
    from dbgan.models import bundled_model_path

    general = Deblurrer.from_checkpoint(bundled_model_path("general"), device="cpu", tile=None) if "general" in methods else None
    try:
        for seed in seeds:
            t0 = time.perf_counter()
            need = cams if CAMS.VALIDATION in cams else cams + [CAMS.VALIDATION]
            data = build_seed_data(root / f"s{seed}", seed, need, args)
            for c, d in data["cams"].items():
                d["name"] = c
            extras["splits"][seed] = data["split"]
            extras["scene_gap"][seed] = gap = data["scene_gap"]
            print(f"[seed {seed}] photos: test {data['split']['test']}, sharp side {data['split']['sharp']}, "
                  f"real side {data['split']['real']}; scenes: real side - sharp side brightness {np.mean(gap):+.4f}, "
                  f"colour spread {max(gap) - min(gap):.4f}; data written in {time.perf_counter() - t0:.0f} s", flush=True)
            t0 = time.perf_counter()
            val_pairs = read_pairs(data["cams"][CAMS.VALIDATION]["oracle"])
            params, tune_psnr = tune_wiener(val_pairs)
            val_input = score(val_pairs, lambda x: x)["psnr"]
            extras["wiener"][seed] = {"sigma": params[0], "nsr": params[1], "validation_psnr": tune_psnr, "validation_input_psnr": val_input}
            print(f"[seed {seed}] Wiener: sigma {params[0]}, NSR {params[1]} (validation camera pairs: {tune_psnr:.2f} dB, "
                  f"input {val_input:.2f} dB; {time.perf_counter() - t0:.0f} s)", flush=True)
            tests = {c: read_pairs(data["cams"][c]["test"]) for c in cams}
            for c in cams:
                results[c].setdefault("input", []).append(score(tests[c], lambda x: x))
                t0 = time.perf_counter()
                s = score(tests[c], wiener(params))
                s["secs"] = time.perf_counter() - t0
                results[c].setdefault("wiener", []).append(s)
                results[c].setdefault("tone_oracle", []).append(score(tests[c], tone_lut(read_pairs(data["cams"][c]["oracle"]))))
                if general is not None:
                    s = score(tests[c], general)
                    s["secs"] = 0.0
                    results[c].setdefault("general", []).append(s)
            # camera-free rows: once per view
            for m in [m for m in methods if m in CAMERA_FREE]:
                for view in sorted({data["cams"][c]["view"] for c in cams}):
                    cfg = method_config(m, data, None, view, root / f"s{seed}" / "runs", args, seed)
                    print(f"[seed {seed}] training {LABELS[m]} ({view} photos): {stage_iters(cfg)}", flush=True)
                    ckpt, secs = train_run(cfg)
                    deblur = Deblurrer.from_checkpoint(ckpt, device="cpu", tile=None)
                    for c in cams:
                        if data["cams"][c]["view"] == view:
                            s = score(tests[c], deblur)
                            s["secs"] = secs
                            results[c].setdefault(m, []).append(s)
                            print(f"   {c}: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.4f}, bias {s['bias']:+.4f} ({secs / 60:.1f} min)", flush=True)
            for c in cams:
                cam = data["cams"][c]
                for m in [m for m in methods if m not in CAMERA_FREE and m != "general"]:
                    cfg = method_config(m, data, cam, cam["view"], root / f"s{seed}" / "runs", args, seed)
                    print(f"[seed {seed}] {c}: training {LABELS[m]}: {stage_iters(cfg)}", flush=True)
                    ckpt, secs = train_run(cfg)
                    s = score(tests[c], Deblurrer.from_checkpoint(ckpt, device="cpu", tile=None))
                    s["secs"] = secs
                    results[c].setdefault(m, []).append(s)
                    print(f"   PSNR {s['psnr']:.2f} dB (input {results[c]['input'][-1]['psnr']:.2f}), SSIM {s['ssim']:.4f}, "
                          f"bias {s['bias']:+.4f}, colour {s['colour']:.4f} ({secs / 60:.1f} min)", flush=True)
                    if m in ("separate", "joint"):
                        real, learnt = realism_rows(
                            ckpt, data, cam, cfg, seed, args.realism_crop, args.realism_by_photo,
                            figure=root / f"bgan_{m}_{c}_s{seed}.png")
                        extras["realism"].setdefault(c, {}).setdefault(m, []).append(real)
                        extras["learnt_camera"].setdefault(c, {}).setdefault(m, []).append(learnt)
                        print("   realism vs the real crops (two-sample accuracy, 0.5 = indistinguishable; KID): " + "; ".join(
                            f"{k} {v['accuracy']:.2f} / {v['kid']:.3f}" for k, v in real.items()), flush=True)
                        if learnt is not None:
                            print(f"   learnt camera: {json.dumps(learnt, default=str)}", flush=True)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    rows = ["input", "wiener", "tone_oracle"] + methods
    head = ["method", "PSNR (dB)", "tone-aligned PSNR", "SSIM", "brightness bias", "colour spread", "train min"]

    def row_cells(vals: list[dict], m: str) -> list[str]:
        secs = [v["secs"] / 60 for v in vals if "secs" in v]
        return [LABELS[m], mean_sd([v["psnr"] for v in vals], ".2f"), mean_sd([v.get("psnr_tone", np.nan) for v in vals], ".2f"),
                mean_sd([v["ssim"] for v in vals], ".4f"),
                mean_sd([v["bias"] for v in vals], "+.4f"), mean_sd([v["colour"] for v in vals], ".4f"),
                f"{np.mean(secs):.1f}" if secs and m != "wiener" else ("-" if not secs else f"{np.mean(secs) * 60:.1f} s")]

    print()
    for c in cams:
        kind = "VALIDATION camera" if c in CAMS.VALIDATION_CAMERAS else "test camera"
        print(f"{c} ({kind}): {CAMS.get(c).description}")
        print(f"test pairs per seed: {len(tests[c]) if c in tests else '?'}; mean over images, ± sd over {len(seeds)} seed(s)")
        print(fmt_table(head, [row_cells(results[c][m], m) for m in rows if m in results[c]]))
        print()
    print(f"Average over the test cameras {test_cams} and seeds {seeds} (per seed: the mean over cameras; ± sd over seeds):")
    avg_rows = []
    for m in rows:
        per_seed = []
        for i in range(len(seeds)):
            vals = [results[c][m][i] for c in test_cams if m in results[c] and len(results[c][m]) > i]
            if vals:
                d = {k: float(np.mean([v.get(k, np.nan) for v in vals])) for k in ("psnr", "psnr_tone", "ssim", "bias", "colour")}
                if all("secs" in v for v in vals):
                    d["secs"] = float(np.mean([v["secs"] for v in vals]))
                per_seed.append(d)
        if per_seed:
            avg_rows.append(row_cells(per_seed, m))
    print(fmt_table(head, avg_rows))
    print()
    truth_shown = set()
    for c, by_m in extras["learnt_camera"].items():
        for m, lst in by_m.items():
            for seed, learnt in zip(seeds, lst):
                if c not in truth_shown:
                    t = extras["truth"][c]
                    print(f"{c} truth : " + json.dumps({k: t[k] for k in ("response", "decode", "exposure", "wb", "shot_noise",
                                                                           "read_noise", "kernel_length_px", "kernel_rms_radius_px")}))
                    truth_shown.add(c)
                print(f"{c} learnt, {LABELS[m]} seed {seed}: " + (json.dumps(learnt, default=str) if learnt else
                      "(the blur generator has no describe())"))
    if extras["realism"]:
        print()
        print("Blur realism against the real crops (held-out two-sample accuracy, 0.5 = indistinguishable / KID on "
              "hand-made high-pass, brightness and colour features; mean over seeds):")
        rr = []
        for c, by_m in extras["realism"].items():
            for m, lst in by_m.items():
                for k in lst[0]:
                    rr.append([c, LABELS[m], k, f"{_mean([x[k]['accuracy'] for x in lst]):.3f}", f"{_mean([x[k]['kid'] for x in lst]):.3f}"])
        print(fmt_table(["camera", "run", "blur", "two-sample accuracy", "KID"], rr))
    print()
    res_checks = checks(results, test_cams, ["input"] + methods)
    if res_checks:
        print(f"Checks of issue 15 (test cameras {test_cams}, means over seeds):")
        for who, what, ok in res_checks:
            print(f"  [{'PASS' if ok else ('FAIL' if ok is False else ' -- ')}] {who}: {what}")
        gaps = list(extras["scene_gap"].values())
        print(f"  (the two sides' scenes differ by: brightness {_mean([abs(np.mean(g)) for g in gaps]):.4f}, colour spread "
              f"{_mean([max(g) - min(g) for g in gaps]):.4f}, means over seeds of |real side - sharp side|; a tone "
              "fitted by matching the sides' statistics inherits them)")
    print(f"total time: {(time.perf_counter() - t_start) / 60:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "seeds": seeds, "cameras": cams, "test_cameras": test_cams, "results": results,
            "checks": [{"run": w, "check": t, "pass": ok} for w, t, ok in res_checks], **extras,
        }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
