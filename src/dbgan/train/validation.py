"""Validation at the end of a stage and every ``train.val_every`` iterations: figures and sample grids."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import Dataset

from dbgan.nets.common import DescribesCamera
from dbgan.train.monitor import Monitor, spectrum_distance
from dbgan.train.stage import Stage, rng_devices

log = logging.getLogger(__name__)


@torch.no_grad()
def validate(stage: Stage, val_ds: Dataset | None, train_batch: dict, device: torch.device, recent: dict) -> dict[str, Any]:
    """Validation figures for this stage plus the images of its sample grid."""
    from dbgan import metrics as M

    out: dict[str, Any] = {}
    images = stage.sample({k: v.to(device) for k, v in train_batch.items() if torch.is_tensor(v)})
    if "fake_blur" in images and "real_blur" in images:
        out["spectrum_dist_fake_vs_real"] = spectrum_distance(images["fake_blur"], images["real_blur"])
        if "blur" in images:
            out["spectrum_dist_synthetic_vs_real"] = spectrum_distance(images["blur"], images["real_blur"])
    if "blur_d_acc" in recent:
        out["blur_d_acc"] = recent["blur_d_acc"]
    blur_g = stage.generators.get("blur_g", stage.frozen.get("blur_g"))
    if isinstance(blur_g, DescribesCamera):
        out["learnt_camera"] = blur_g.describe()  # camera_blur: what BGAN learnt, in physical units
    folder_gap = getattr(stage, "folder_gap", None)  # tone_from: photos (CameraFit)
    if folder_gap is not None:
        out["folder_tone_gap"] = folder_gap.as_dict()  # how firmly the two folders pin the tone
    deblur = stage.generators.get("deblur_g")
    if deblur is not None and val_ds is not None and len(val_ds) > 0:
        deblur.eval()
        rows = []
        for i in range(len(val_ds)):
            item = val_ds[i]
            blurred = item["blur"].unsqueeze(0).to(device)
            sharp = item["sharp"].unsqueeze(0).to(device)
            pred = deblur(blurred).clamp(0, 1)
            rows.append(
                (
                    M.psnr(blurred[0].cpu(), sharp[0].cpu()),
                    M.psnr(pred[0].cpu(), sharp[0].cpu()),
                    M.ssim(blurred[0].cpu(), sharp[0].cpu()),
                    M.ssim(pred[0].cpu(), sharp[0].cpu()),
                    (pred - sharp).mean(dim=(0, 2, 3)).abs().max().item(),
                )
            )
        n = len(rows)
        out["psnr_input"] = sum(r[0] for r in rows) / n
        out["psnr_output"] = sum(r[1] for r in rows) / n
        out["ssim_input"] = sum(r[2] for r in rows) / n
        out["ssim_output"] = sum(r[3] for r in rows) / n
        out["colour_bias_max"] = sum(r[4] for r in rows) / n
    return {"metrics": out, "images": images}


def validate_and_log(
    stage: Stage, val_ds: Dataset | None, batch: dict, device: torch.device, recent: dict,
    monitor: Monitor, name: str, it: int,
) -> None:
    """Run :func:`validate` (outside the training RNG stream) and log its figures and grid."""
    if not monitor.enabled:
        return
    # validation draws noise (blur generators) from the global RNG: keep it out of the training
    # stream, so a run resumed from a state saved before a validation continues bit-identically
    with torch.random.fork_rng(devices=rng_devices(device)):
        res = validate(stage, val_ds, batch, device, recent)
    monitor.samples(name, it, res["images"], res["metrics"])
    numeric = {f"val_{k}": float(v) for k, v in res["metrics"].items() if isinstance(v, (int, float))}
    if numeric:
        monitor.scalars(name, it, numeric)
    if res["metrics"]:
        log.info("%s %d: %s", name, it, ", ".join(
            f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in res["metrics"].items()))
