"""Monitoring: TensorBoard scalars and images, a loss CSV, sample grids and ``samples/index.html``.

Only rank 0 writes. Nothing here changes training.
"""

from __future__ import annotations

import csv
import html
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dbgan.atomic import atomic_write_text

log = logging.getLogger(__name__)

#: Column order of the sample grids (whatever a stage provides, in this order).
GRID_COLUMNS = ("sharp", "blur", "fake_blur", "real_blur", "deblurred")
GRID_TITLES = {
    "sharp": "sharp",
    "blur": "synthetic blur",
    "fake_blur": "generated blur (BGAN)",
    "real_blur": "real blur (unpaired)",
    "deblurred": "deblurred",
}


def radial_log_spectrum(x: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """Radially averaged log power spectrum of the luma, averaged over a batch -> (bins,)."""
    x = x.float().mean(1)  # N x H x W luma proxy
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho").abs() ** 2, dim=(-2, -1)).mean(0)
    h, w = power.shape
    yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device), indexing="ij"
    )
    r = torch.sqrt(yy**2 + xx**2).clamp(max=1.0 - 1e-6)
    idx = (r * bins).long().flatten()
    sums = torch.zeros(bins, device=x.device).index_add_(0, idx, power.flatten())
    counts = torch.zeros(bins, device=x.device).index_add_(0, idx, torch.ones_like(power.flatten()))
    return torch.log(sums / counts.clamp(min=1) + 1e-10)


def spectrum_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of the radial log power spectra of two image batches.

    A realism figure for generated blur: 0 when both sets have the same frequency
    fall-off (how much detail survives the blur), larger when they differ.
    """
    if a.shape[-2:] != b.shape[-2:]:
        size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
        a, b = a[..., : size[0], : size[1]], b[..., : size[0], : size[1]]
    return float((radial_log_spectrum(a) - radial_log_spectrum(b)).abs().mean())


def make_grid(images: dict[str, torch.Tensor], max_rows: int = 4) -> tuple[torch.Tensor, list[str]]:
    """Rows = batch items, columns = :data:`GRID_COLUMNS` present in ``images``."""
    cols = [k for k in GRID_COLUMNS if k in images]
    if not cols:
        raise ValueError("no images to put in a grid")
    h = max(images[k].shape[-2] for k in cols)
    w = max(images[k].shape[-1] for k in cols)
    rows = min(min(images[k].shape[0] for k in cols), max_rows)
    pad = 2
    tiles = []
    for r in range(rows):
        row = []
        for k in cols:
            img = images[k][r].detach().float().cpu().clamp(0, 1)
            if img.shape[0] == 1:
                img = img.expand(3, -1, -1)
            img = F.pad(img, (0, w - img.shape[-1], 0, h - img.shape[-2]))
            row.append(F.pad(img, (pad, pad, pad, pad), value=1.0))
        tiles.append(torch.cat(row, dim=2))
    return torch.cat(tiles, dim=1), [GRID_TITLES[k] for k in cols]


class Monitor:
    """Writes what a run shows: TensorBoard, ``losses.csv``, sample grids, ``samples/index.html``.

    Args:
        run_dir: the run directory.
        enabled: False on ranks other than 0 (then every method does nothing).
        tensorboard: also write TensorBoard events under ``run_dir/tb``.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tb"))
            except Exception as exc:  # tensorboard missing or broken: keep training
                log.warning("TensorBoard disabled: %s", exc)
        self.csv_path = self.run_dir / "losses.csv"
        self.samples_dir = self.run_dir / "samples"
        self.entries_path = self.samples_dir / "entries.json"

    def truncate(self, stage: str, start_iter: int) -> None:
        """On resume, drop logged rows of ``stage`` at or after ``start_iter`` (they are redone)."""
        if not self.enabled or not self.csv_path.is_file():
            return
        with self.csv_path.open() as fh:
            rows = [r for r in csv.DictReader(fh) if _well_formed(r)]  # a kill can cut the last row
        keep = [r for r in rows if not (r["stage"] == stage and int(r["iter"]) >= start_iter)]
        text = "stage,iter,key,value\n" + "".join(f"{r['stage']},{r['iter']},{r['key']},{r['value']}\n" for r in keep)
        atomic_write_text(self.csv_path, text)

    def scalars(self, stage: str, it: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.csv_path.is_file()
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        cut = not new and _ends_without_newline(self.csv_path)
        with self.csv_path.open("a") as fh:
            if new:
                fh.write("stage,iter,key,value\n")
            elif cut:  # a previous append was cut short: do not glue onto that partial row
                fh.write("\n")
            for key, value in values.items():
                fh.write(f"{stage},{it},{key},{value:.6g}\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{stage}/{key}", value, it)

    def samples(self, stage: str, it: int, images: dict[str, torch.Tensor], metrics: dict[str, Any]) -> Path | None:
        """Save a grid PNG for this evaluation step and rebuild ``samples/index.html``."""
        if not self.enabled or not images:
            return None
        from dbgan.io import write_image

        grid, titles = make_grid(images)
        name = f"{stage}_{it:06d}.png"
        path = self.samples_dir / name
        write_image(path, grid)
        if self.writer is not None:
            self.writer.add_image(f"{stage}/samples", grid, it)
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{stage}/val_{key}", value, it)
            self.writer.flush()
        entries = json.loads(self.entries_path.read_text()) if self.entries_path.is_file() else []
        entries = [e for e in entries if e["file"] != name]
        entries.append({"stage": stage, "iter": it, "file": name, "columns": titles, "metrics": metrics})
        atomic_write_text(self.entries_path, json.dumps(entries, indent=1))
        atomic_write_text(self.samples_dir / "index.html", render_index(self.run_dir.name, entries))
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _well_formed(row: dict[str, Any]) -> bool:
    try:
        int(row["iter"])
        float(row["value"])
    except (TypeError, ValueError, KeyError):
        return False
    return bool(row.get("stage")) and bool(row.get("key"))


def _ends_without_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return False
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def _cell(value: Any) -> str:
    """A metric as the index page shows it: floats to 4 significant digits, also inside dicts and lists
    (``learnt_camera``, ``folder_tone_gap``)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value)


def render_index(run_name: str, entries: list[dict[str, Any]]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>dbgan samples: {html.escape(run_name)}</title>",
        "<style>body{font-family:sans-serif;margin:1em}img{max-width:100%;image-rendering:pixelated}"
        "table{border-collapse:collapse}td{padding:2px 8px}</style></head><body>",
        f"<h1>Samples of run {html.escape(run_name)}</h1>",
        "<p>Each row of a grid is one training image; newest evaluation step first.</p>",
    ]
    for e in reversed(entries):
        parts.append(f"<h2>{html.escape(e['stage'])}, iteration {e['iter']}</h2>")
        parts.append("<p>columns: " + " | ".join(html.escape(c) for c in e["columns"]) + "</p>")
        if e["metrics"]:
            cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_cell(v))}</td></tr>"
                            for k, v in e["metrics"].items())
            parts.append(f"<table>{cells}</table>")
        parts.append(f"<img src='{html.escape(e['file'])}' alt='{html.escape(e['stage'])} samples'>")
    parts.append("</body></html>")
    return "\n".join(parts)
