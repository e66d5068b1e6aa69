"""The built-in end-to-end job: the bundled general deblurrer, and its adaptation to a camera.

``dbgan demo`` (what ``make demo`` runs):

1. splits scikit-image's colour photos into training and held-out images and cuts crops;
2. makes a stand-in "real blur" domain (defocus/Gaussian/motion blur in linear light with
   saturated highlights, sensor noise and JPEG) -- **a stand-in for the user's own real
   blurred photos**, which dbgan never sees paired with sharp ones;
3. adapts the bundled general model to that camera with ``configs/adapt.yaml``
   (blur-pretrain and BGAN learn the camera's blur from the unpaired photos; DBGAN
   fine-tunes the general model, ``stages.dbgan.init_from: general``, on BGAN's blur);
4. deblurs the held-out images (blurred by the stand-in camera) and, when present, the
   real photos in ``../shared/realblur-samples/`` with the general model and the adapted
   one, beside Wiener deconvolution (:mod:`dbgan.classical`);
5. writes ``report.html`` (images beside it): blurred | Wiener | general | adapted | sharp
   for the held-out images, 100% crops of the real photos, a metrics table, loss curves,
   synthetic vs BGAN vs real blur samples, and the commands to do the same on one's own data.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dbgan.config import SynthConfig, load_config

log = logging.getLogger(__name__)

TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "immunohistochemistry", "hubble_deep_field", "coffee")
HELDOUT_PHOTOS = ("chelsea", "motorcycle_right")

#: The stand-in "real" camera: blur in linear light, clipped highlights, noise, JPEG.
REAL_DOMAIN = SynthConfig(
    kernels=["defocus", "gaussian", "motion"],
    kernel_size=15,
    intensity=[0.3, 0.8],
    defocus_radius=[1.5, 3.5],
    gaussian_sigma=[1.0, 2.0],
    linear_light=True,
    gamma=2.2,
    highlight_gain=[1.0, 1.4],
    noise_sigma=[0.003, 0.01],
    jpeg_quality=[75, 95],
)


def realblur_samples_dir() -> Path | None:
    """``../shared/realblur-samples`` next to the repository, if it is there."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "realblur-samples"
        if cand.is_dir():
            return cand
    return None


def _photo(name: str) -> torch.Tensor:
    from skimage import data as skd

    if name.startswith("motorcycle_"):  # the stereo pair ships as one call
        left, right, _ = skd.stereo_motorcycle()
        img = left if name.endswith("left") else right
    else:
        img = getattr(skd, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1).float() / 255.0


def fit_longer_side(img: torch.Tensor, side: int) -> torch.Tensor:
    """Shrink (antialiased) so that the longer side is ``side``; never enlarge."""
    h, w = img.shape[-2:]
    scale = side / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = torch.nn.functional.interpolate(img[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp(0, 1)


def prepare_data(root: Path, quick: bool, seed: int = 0) -> dict[str, Path]:
    """Write sharp crops, stand-in real blurred crops (other crops: unpaired) and held-out pairs."""
    from dbgan.blur.degrade import DegradationPipeline
    from dbgan.io import write_image

    rng = np.random.default_rng(seed)
    real = DegradationPipeline.from_config(REAL_DOMAIN)
    dirs = {k: root / k for k in ("sharp", "real_blur", "heldout/sharp", "heldout/blur")}
    crop, per_image = (64, 3) if quick else (160, 12)
    photos = TRAIN_PHOTOS[:3] if quick else TRAIN_PHOTOS
    for name in photos:
        img = fit_longer_side(_photo(name), 512)
        h, w = img.shape[-2:]
        for k in range(per_image):
            y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            write_image(dirs["sharp"] / f"{name}_{k:02d}.png", img[:, y : y + crop, x : x + crop])
            # an unrelated crop of the same kind of scene, blurred by the stand-in camera
            y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            blurred, _ = real(img[:, y : y + crop, x : x + crop], np.random.default_rng([seed, 1, k, len(name)]))
            write_image(dirs["real_blur"] / f"{name}_{k:02d}.jpg", blurred)
    for i, name in enumerate(HELDOUT_PHOTOS[:1] if quick else HELDOUT_PHOTOS):
        img = fit_longer_side(_photo(name), 96 if quick else 320)
        blurred, _ = real(img, np.random.default_rng([seed, 2, i]))
        write_image(dirs["heldout/sharp"] / f"{name}.png", img)
        write_image(dirs["heldout/blur"] / f"{name}.png", blurred)
    return dirs


def _img_tag(path: Path, base: Path, alt: str, width: int | None = None) -> str:
    """An <img> that works without a server: embedded as base64 when small, else relative."""
    style = f" width='{width}'" if width else ""
    if path.stat().st_size < 600_000:
        data = base64.b64encode(path.read_bytes()).decode()
        mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
        return f"<img src='data:{mime};base64,{data}' alt='{html.escape(alt)}'{style}>"
    return f"<img src='{html.escape(str(path.relative_to(base)))}' alt='{html.escape(alt)}'{style}>"


def plot_losses(csv_path: Path, out_png: Path) -> Path | None:
    """Loss curves (one panel per stage) from a run's ``losses.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not csv_path.is_file():
        return None
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    with csv_path.open() as fh:
        for row in csv.DictReader(fh):
            series.setdefault(row["stage"], {}).setdefault(row["key"], []).append((int(row["iter"]), float(row["value"])))
    stages = [s for s in ("blur_pretrain", "bgan", "dbgan", "joint") if s in series]
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.6), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for key, pts in sorted(series[stage].items()):
            if key.startswith("val_") or key.endswith("_acc") or key == "skipped":
                continue
            xs, ys = zip(*sorted(pts))
            ax.plot(xs, ys, label=key)
        ax.set_title(stage)
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def _side_by_side(paths: list[Path], out: Path) -> Path:
    from dbgan.io import read_image, write_image

    imgs = [read_image(p, channels=3) for p in paths]
    h = max(i.shape[1] for i in imgs)
    padded = [torch.nn.functional.pad(i, (4, 4, 0, h - i.shape[1]), value=1.0) for i in imgs]
    write_image(out, torch.cat(padded, 2))
    return out


def _heldout_pairs(dirs) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    from dbgan.io import list_images, read_image

    return [(p.name, read_image(dirs["heldout/sharp"] / p.name, channels=3), read_image(p, channels=3))
            for p in list_images(dirs["heldout/blur"])]


def _calibration_pairs(quick: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The stand-in camera on crops of training photos: what the Wiener baseline is fitted on."""
    from dbgan.blur.degrade import DegradationPipeline

    real = DegradationPipeline.from_config(REAL_DOMAIN)
    pairs = []
    for i, name in enumerate(TRAIN_PHOTOS[:1] if quick else TRAIN_PHOTOS[:3]):
        img = fit_longer_side(_photo(name), 512)[:, :96, :96] if quick else fit_longer_side(_photo(name), 512)[:, 64:256, 64:256]
        pairs.append((img, real(img, np.random.default_rng([7, i]))[0]))
    return pairs


def _psnr_ssim(out: torch.Tensor, sharp: torch.Tensor) -> tuple[float, float]:
    from dbgan.metrics import psnr, ssim

    a = ((out.clamp(0, 1) * 255).round() / 255).permute(1, 2, 0).numpy()
    b = sharp.permute(1, 2, 0).numpy()
    return psnr(a, b), ssim(a, b)


def run_demo(out_dir: str | Path = "demo_out", quick: bool = False, config: str | None = None) -> Path:
    """Run the demo (see the module docstring); return the path of ``report.html``."""
    from dbgan.classical import fit_wiener, wiener_deconvolve
    from dbgan.infer import Deblurrer
    from dbgan.io import write_image
    from dbgan.models import bundled_model_path
    from dbgan.train import train

    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("1/5 preparing data in %s", out / "data")
    dirs = prepare_data(out / "data", quick)
    overrides = [
        f"data.sharp_dir={dirs['sharp']}",
        f"data.real_blur_dir={dirs['real_blur']}",
        f"data.val_dir={out / 'data' / 'heldout'}",
        f"runs_dir={out / 'runs'}",
        "name=demo",
    ]
    if quick:
        overrides += ["stages.blur_pretrain.iters=2", "stages.bgan.iters=2", "stages.dbgan.iters=2",
                      "data.crop_size=32", "data.load_size=32", "train.val_every=0", "train.save_every=0"]
    cfg = load_config(config or "adapt", overrides)
    log.info("2/5 adapting to the stand-in camera: the '%s' scheme (%s)", cfg.scheme, config or "configs/adapt.yaml")
    res = train(cfg, command="dbgan demo" + (" --quick" if quick else ""), resume=True)
    if res.status != "done":
        raise RuntimeError(f"demo training did not finish: {res.message}")
    ckpt = res.run_dir / "checkpoints" / "latest.safetensors"

    log.info("3/5 deblurring held-out images: Wiener, general, adapted")
    models = {"general": Deblurrer.from_checkpoint(bundled_model_path("general"), device="cpu"),
              "adapted": Deblurrer.from_checkpoint(ckpt, device="cpu")}
    setting = fit_wiener(_calibration_pairs(quick))
    methods = {"Wiener": lambda img: wiener_deconvolve(img, setting), **models}
    columns = ["input", *methods]
    heldout = []
    for name, sharp, blurred in _heldout_pairs(dirs):
        outs = {"input": blurred, **{m: f(blurred) for m, f in methods.items()}}
        for m, img in outs.items():
            write_image(out / "heldout" / m / name, img)
        scores = {m: _psnr_ssim(img, sharp) for m, img in outs.items()}
        heldout.append({"name": name, **{f"psnr_{m}": v[0] for m, v in scores.items()},
                        **{f"ssim_{m}": v[1] for m, v in scores.items()}})
    mean = {k: float(np.mean([r[k] for r in heldout])) for k in heldout[0] if k != "name"} if heldout else {}
    report = {"count": len(heldout), "images": heldout, "mean": mean, "wiener": str(setting),
              "adapted_checkpoint": str(ckpt), "general_model": str(bundled_model_path("general"))}
    from dbgan.atomic import atomic_write_text

    atomic_write_text(out / "metrics.json", json.dumps(report, indent=1))

    real_rows = []
    real_dir = realblur_samples_dir()
    if real_dir is not None and not quick:
        log.info("4/5 deblurring the real photos in %s", real_dir)
        coarse = Deblurrer(models["general"].backend, coarse_levels=REAL_COARSE_LEVELS)  # the loaded network, reused
        blind = Deblurrer(models["general"].backend, blind=REAL_BLIND)
        real_rows = deblur_real_photos(real_dir, out / "realblur", {**methods, COARSE_COLUMN: coarse, BLIND_COLUMN: blind})
    log.info("5/5 writing the report")
    return write_report(out, dirs, columns, report, res.run_dir, real_dir if real_rows else None, real_rows,
                        time.time() - t0, quick)


#: the real photos are also deblurred coarse to fine (dbgan.infer.pyramid; the level that did best on validation
#: photos with blur 25-80 px wide, benchmarks/coarse_levels.py): their blur is wider than the held-out images'
REAL_COARSE_LEVELS = 1
COARSE_COLUMN = f"general-coarse{REAL_COARSE_LEVELS}"
#: and with camera shake of up to this many px estimated from each photo and deconvolved first (dbgan.blind;
#: the street scenes' shake is 10-20 px long)
REAL_BLIND = 31
BLIND_COLUMN = f"general-blind{REAL_BLIND}"


def adaptation_note(mean: dict[str, float]) -> str | None:
    """An HTML paragraph that says why, when the adapted model scores below the general one here."""
    general, adapted = mean.get("psnr_general"), mean.get("psnr_adapted")
    if general is None or adapted is None or adapted >= general:
        return None
    return (f"<p><b>Here the adaptation scores below the general model</b> ({adapted:.2f} against {general:.2f} dB). "
            "The stand-in's unpaired sets are small (crops of a handful of photos), and their brightness differs "
            "by chance more than this camera shifts it, so BGAN learns a tone the camera does not have; fine-tuning "
            "on so few photos also costs fine texture (the model card of the general model, and docs/benchmarks.md, section 2, "
            "session 16, give the measurements). On the domain-gap benchmark's cameras, whose tone differs from the "
            "general model's, adaptation adds 2.7 dB on average. Adapt with many photos on each side, of the same kind of scene, "
            "and keep the general model where the camera's tone is already right.</p>")


def busiest_crop(img: torch.Tensor, size: int) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the ``size`` px square of ``img`` (``C x H x W``) with the most edge energy
    (mean gradient magnitude of the channel mean): chosen on the blurred input only, the same for every method."""
    h, w = img.shape[-2:]
    if h <= size and w <= size:
        return 0, 0
    g = img.float().mean(0)
    mag = torch.zeros_like(g)
    mag[:, :-1] += (g[:, 1:] - g[:, :-1]).abs()
    mag[:-1, :] += (g[1:, :] - g[:-1, :]).abs()
    step = max(1, size // 4)
    sums = torch.nn.functional.avg_pool2d(mag[None, None], kernel_size=(min(size, h), min(size, w)), stride=step)[0, 0]
    k = int(torch.argmax(sums))
    return (k // sums.shape[1]) * step, (k % sums.shape[1]) * step


def deblur_real_photos(real_dir: Path, out: Path, methods: dict) -> list[dict[str, Any]]:
    """Every method on every real photo; writes full outputs and 100% crops (where the input has the
    most edges, see :func:`busiest_crop`); no-reference sharpness."""
    from dbgan.io import ImageReadError, list_images, read_image, write_image
    from dbgan.metrics import sharpness

    rows = []
    for path in list_images(real_dir):
        try:
            img = read_image(path)
        except ImageReadError as exc:
            log.warning("skipping %s", exc)
            continue
        outs = {"input": img, **{m: f(img).clamp(0, 1) for m, f in methods.items()}}
        h, w = img.shape[-2:]
        c = min(256, h, w)
        y, x = busiest_crop(img, c)
        row: dict[str, Any] = {"name": path.name, "crops": [], "columns": list(outs), "crop": [x, y, c]}
        for m, o in outs.items():
            write_image(out / m / f"{path.stem}.png", o)
            crop = write_image(out / "crops" / f"{path.stem}_{m}.png", o[:, y : y + c, x : x + c])
            row["crops"].append(crop)
            row[f"sharpness_{m}"] = sharpness(o.permute(1, 2, 0).numpy() if o.shape[0] == 3 else o[0].numpy())
        rows.append(row)
    return rows


def write_report(out: Path, dirs, columns: list[str], report: dict, run_dir: Path, real_dir, real_rows,
                 seconds: float, quick: bool) -> Path:
    from dbgan.atomic import atomic_write_text

    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>dbgan demo report</title>",
        "<style>body{font-family:sans-serif;max-width:1700px;margin:1em auto;padding:0 1em}"
        "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "code,pre{background:#f4f4f4}</style></head><body>",
        "<h1>dbgan demo: the bundled general deblurrer, and its adaptation to a camera</h1>",
        f"<p>Adapted the bundled <b>general</b> model to a camera in {seconds / 60:.1f} minutes"
        f"{' (quick mode: a smoke test, not a result)' if quick else ''}. The camera here is a "
        "<b>stand-in</b>: photos degraded by a simulated camera (blur in linear light, clipped highlights, "
        "sensor noise, JPEG). dbgan saw its blurred photos only unpaired, as it would see yours: BGAN learnt "
        "the camera's blur from them, and the general model was fine-tuned on BGAN's blur of sharp photos "
        f"(<code>configs/adapt.yaml</code>). Wiener deconvolution uses the PSF fitted on calibration pairs of "
        f"this camera ({html.escape(report.get('wiener', ''))}): an advantage the networks do not get.</p>",
        "<h2>Held-out images: " + " | ".join(columns + ["sharp"]) + "</h2>",
    ]
    for row in report.get("images", []):
        name = row["name"]
        files = [out / "heldout" / m / name for m in columns] + [dirs["heldout/sharp"] / name]
        if all(p.is_file() for p in files):
            png = _side_by_side(files, figs / f"heldout_{Path(name).stem}.png")
            parts.append(f"<p>{html.escape(name)}</p>" + _img_tag(png, out, f"{name}: " + ", ".join(columns + ['sharp'])))
    parts.append("<h2>Metrics on held-out images (against sharp)</h2><table><tr><th>image</th>"
                 + "".join(f"<th>PSNR {m}</th>" for m in columns) + "".join(f"<th>SSIM {m}</th>" for m in columns)
                 + "</tr>")
    rows = [(row, "td") for row in report.get("images", [])]
    if report.get("mean"):
        rows.append((dict(report["mean"], name="mean"), "th"))
    for row, td in rows:
        parts.append(f"<tr><{td}>{html.escape(row['name'])}</{td}>"
                     + "".join(f"<{td}>{row[f'psnr_{m}']:.2f}</{td}>" for m in columns)
                     + "".join(f"<{td}>{row[f'ssim_{m}']:.4f}</{td}>" for m in columns) + "</tr>")
    parts.append("</table>")
    note = adaptation_note(report.get("mean", {}))
    if note:
        parts.append(note)
    if real_dir is not None:
        real_cols = real_rows[0].get("columns", columns)
        parts.append(f"<h2>Real blurred photos ({html.escape(str(real_dir))})</h2><p>No ground truth. 100% crops "
                     "(256 x 256 pixels, not resized, where the blurred input has the most edges; the same place for "
                     "every column): " + " | ".join(real_cols) + ". Wiener uses the "
                     "stand-in camera's PSF (these photos come from other cameras). The next column runs the general "
                     f"model coarse to fine (<code>dbgan deblur --coarse-levels {REAL_COARSE_LEVELS}</code>, the level "
                     "chosen on validation photos with blur 25-80 px wide): for blur wider than the model handles at full "
                     "size, as in the 2048 px grey series and the defocused portraits; on mild blur it over-sharpens "
                     "(benchmarks/coarse_levels.py). The last column first estimates one camera-shake kernel of up to "
                     f"{REAL_BLIND} px from each photo and deconvolves it, then runs the general model "
                     f"(<code>dbgan deblur --blind {REAL_BLIND}</code>, classical blind deconvolution, dbgan.blind): "
                     "the camera shake of the street scenes comes out visibly sharper, and defocus too; moving people "
                     "stay smeared (one kernel fits the camera's shake only), strong edges get a light halo, and on noisy "
                     "photos it costs PSNR, so it is off by default (docs/benchmarks.md, section 6). No-reference "
                     "sharpness (mean gradient energy) below each.</p>")
        for row in real_rows:
            cols = row.get("columns", columns)
            png = _side_by_side(row["crops"], figs / f"real_{Path(row['name']).stem}.png")
            parts.append(f"<p>{html.escape(row['name'])}: sharpness "
                         + ", ".join(f"{m} {row[f'sharpness_{m}']:.4g}" for m in cols) + "</p>"
                         + _img_tag(png, out, f"{row['name']}: " + ", ".join(cols)))
    curves = plot_losses(run_dir / "losses.csv", figs / "losses.png")
    if curves:
        parts.append("<h2>Loss curves of the adaptation</h2>" + _img_tag(curves, out, "loss curves"))
    grids = sorted((run_dir / "samples").glob("*.png"))
    if grids:
        parts.append("<h2>Synthetic blur vs BGAN blur vs real blur</h2><p>Columns as labelled in each stage's grid "
                     "(sharp | synthetic blur | generated blur | real blur | deblurred; each row is one crop, the real "
                     "blur column is an unrelated photo).</p>")
        for g in grids:
            parts.append(f"<p>{html.escape(g.stem)}</p>" + _img_tag(g, out, g.stem))
    parts.append(
        "<h2>Do the same on your own data</h2><pre>"
        "dbgan deblur my_blurry/ deblurred/                   # the bundled general model, no training\n"
        "dbgan deblur --coarse-levels 1 my_blurry/ deblurred/  # blur wider than ~25 px: coarse to fine\n"
        "dbgan deblur --blind 31 my_blurry/ deblurred/         # long camera shake: estimate the kernel first\n"
        "dbgan train adapt name=mine data.sharp_dir=my_sharp data.real_blur_dir=my_blurry   # adapt it to your camera\n"
        "dbgan deblur runs/mine/checkpoints/latest.safetensors my_blurry/ deblurred/\n"
        "dbgan eval runs/mine/checkpoints/latest.safetensors --pairs my_heldout_pairs/ --out report.json\n"
        "dbgan export runs/mine/checkpoints/latest.safetensors deblur.onnx</pre>"
        f"<p>Run directory of this demo: <code>{html.escape(str(run_dir))}</code> (TensorBoard: "
        f"<code>tensorboard --logdir {html.escape(str(run_dir / 'tb'))}</code>).</p></body></html>"
    )
    path = out / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path
