"""The built-in end-to-end job: the whole method on scikit-image's bundled photos.

``dbgan demo`` (what ``make demo`` runs):

1. splits scikit-image's colour photos into training and held-out images and cuts crops;
2. makes a stand-in "real blur" domain that differs from our synthetic motion blur
   (defocus/Gaussian/motion blur in linear light with saturated highlights, sensor
   noise and JPEG) -- **a stand-in for the user's own real blurred photos**, which
   dbgan never sees paired with sharp ones;
3. trains the ``separate`` scheme with ``configs/demo.yaml`` (blur-pretrain on our
   synthetic motion blur, BGAN against the unpaired stand-in real blur, DBGAN on
   BGAN's output);
4. deblurs the held-out images (blurred in the stand-in real domain) and, when
   present, the real photos in ``../shared/realblur-samples/``;
5. writes ``report.html`` (images beside it): blurred | deblurred | sharp for the
   held-out images, a metrics table, loss curves, synthetic vs BGAN vs real blur
   samples, and the commands to do the same on one's own data.
"""

from __future__ import annotations

import base64
import csv
import html
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


def run_demo(out_dir: str | Path = "demo_out", quick: bool = False, config: str | None = None) -> Path:
    """Run the whole method on built-in photos; return the path of ``report.html``."""
    from dbgan.evaluate import evaluate
    from dbgan.infer import run_folder
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
    cfg = load_config(config or "demo", overrides)
    log.info("2/5 training the '%s' scheme (%s)", cfg.scheme, config or "configs/demo.yaml")
    res = train(cfg, command="dbgan demo" + (" --quick" if quick else ""), resume=True)
    if res.status != "done":
        raise RuntimeError(f"demo training did not finish: {res.message}")
    ckpt = res.run_dir / "checkpoints" / "latest.safetensors"

    log.info("3/5 deblurring held-out images")
    deblurred = out / "heldout_deblurred"
    run_folder(ckpt, dirs["heldout/blur"], deblurred, mode="deblur", overwrite=True, progress=False)
    report = evaluate(ckpt, out / "data" / "heldout", out / "metrics.json", progress=False)

    real_rows = []
    real_dir = realblur_samples_dir()
    if real_dir is not None and not quick:
        log.info("4/5 deblurring the real photos in %s", real_dir)
        real_out = out / "realblur_deblurred"
        run_folder(ckpt, real_dir, real_out, mode="deblur", overwrite=True, progress=False, skip_bad=True)
        from dbgan.evaluate import evaluate_unpaired

        real_rows = evaluate_unpaired(ckpt, real_dir, None, progress=False).get("images", [])
    log.info("5/5 writing the report")
    path = write_report(out, dirs, deblurred, report, res.run_dir, real_dir if real_rows else None, real_rows, time.time() - t0, quick)
    return path


def write_report(out: Path, dirs, deblurred: Path, report: dict, run_dir: Path, real_dir, real_rows, seconds: float, quick: bool) -> Path:
    from dbgan.atomic import atomic_write_text

    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>dbgan demo report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}"
        "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "code,pre{background:#f4f4f4}</style></head><body>",
        "<h1>dbgan demo: deblurring by realistic blurring</h1>",
        f"<p>Trained the <b>separate</b> scheme on scikit-image's photos in {seconds / 60:.1f} minutes"
        f"{' (quick mode: a smoke test, not a result)' if quick else ''}. The 'real blur' here is a "
        "<b>stand-in</b>: photos degraded by a simulated camera (blur in linear light, clipped highlights, "
        "sensor noise, JPEG) that differs from dbgan's synthetic motion blur. dbgan saw those blurred photos "
        "only unpaired, as it would see yours.</p>",
        "<h2>Held-out images: blurred | deblurred | sharp</h2>",
    ]
    for row in report.get("images", []):
        name = row["name"]
        triple = [dirs["heldout/blur"] / name, deblurred / name, dirs["heldout/sharp"] / name]
        if all(p.is_file() for p in triple):
            png = _side_by_side(triple, figs / f"heldout_{Path(name).stem}.png")
            parts.append(f"<p>{html.escape(name)}</p>" + _img_tag(png, out, f"{name}: blurred, deblurred, sharp"))
    parts.append("<h2>Metrics on held-out images (against sharp)</h2>")
    parts.append("<table><tr><th>image</th><th>PSNR input</th><th>PSNR output</th><th>SSIM input</th><th>SSIM output</th></tr>")
    for row in report.get("images", []):
        parts.append(
            f"<tr><td>{html.escape(row['name'])}</td><td>{row['psnr_in']:.2f}</td><td>{row['psnr_out']:.2f}</td>"
            f"<td>{row['ssim_in']:.4f}</td><td>{row['ssim_out']:.4f}</td></tr>"
        )
    mean = report.get("mean", {})
    if mean:
        parts.append(
            f"<tr><th>mean</th><th>{mean['psnr_in']:.2f}</th><th>{mean['psnr_out']:.2f}</th>"
            f"<th>{mean['ssim_in']:.4f}</th><th>{mean['ssim_out']:.4f}</th></tr>"
        )
    parts.append("</table>")
    curves = plot_losses(run_dir / "losses.csv", figs / "losses.png")
    if curves:
        parts.append("<h2>Loss curves</h2>" + _img_tag(curves, out, "loss curves"))
    grids = sorted((run_dir / "samples").glob("*.png"))
    if grids:
        parts.append("<h2>Synthetic blur vs BGAN blur vs real blur</h2><p>Columns as labelled in each stage's grid "
                     "(sharp | synthetic blur | generated blur | real blur | deblurred; each row is one crop, the real "
                     "blur column is an unrelated photo).</p>")
        for g in grids:
            parts.append(f"<p>{html.escape(g.stem)}</p>" + _img_tag(g, out, g.stem))
    if real_dir is not None:
        parts.append(f"<h2>Real blurred photos ({html.escape(str(real_dir))})</h2><p>No ground truth: "
                     "no-reference sharpness (mean gradient energy) before and after.</p><table>"
                     "<tr><th>photo</th><th>sharpness before</th><th>after</th></tr>")
        for row in real_rows:
            parts.append(f"<tr><td>{html.escape(str(row.get('name')))}</td><td>{row.get('sharpness_in', 0):.4g}</td>"
                         f"<td>{row.get('sharpness_out', 0):.4g}</td></tr>")
        parts.append("</table>")
    parts.append(
        "<h2>Do the same on your own data</h2><pre>"
        "dbgan synth my_sharp/ pairs/ --per-image 2          # optional: look at the synthetic blur\n"
        "dbgan train configs/demo.yaml name=mine data.sharp_dir=my_sharp data.real_blur_dir=my_blurry\n"
        "dbgan deblur runs/mine/checkpoints/latest.safetensors my_blurry/ deblurred/\n"
        "dbgan eval runs/mine/checkpoints/latest.safetensors --pairs my_heldout_pairs/ --out report.json\n"
        "dbgan export runs/mine/checkpoints/latest.safetensors deblur.onnx</pre>"
        f"<p>Run directory of this demo: <code>{html.escape(str(run_dir))}</code> (TensorBoard: "
        f"<code>tensorboard --logdir {html.escape(str(run_dir / 'tb'))}</code>).</p></body></html>"
    )
    path = out / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path
