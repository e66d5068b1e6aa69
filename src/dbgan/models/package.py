"""Turn a training checkpoint into a bundled model: deblurrer weights only, plus checksum.

    python -m dbgan.models.package runs/general/checkpoints/latest.safetensors --name general

writes ``src/dbgan/models/general.safetensors`` (the ``deblur_g`` weights: the EMA
average when the checkpoint has one, or with ``--weights raw`` the trained weights,
stored as ``deblur_g``, in float32) and
``general.json`` (the checkpoint's metadata, the source checkpoint's stage and
iteration, and ``sha256`` of the new file). The model card (``general.md``) is
written by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dbgan.models import _folder, sha256_file


def package_checkpoint(src: str | Path, name: str, out_dir: str | Path | None = None,
                       extra: dict[str, Any] | None = None, weights: str = "ema") -> Path:
    """Write ``<out_dir>/<name>.safetensors`` + ``.json`` from checkpoint ``src``; return the path.

    ``weights``: ``"ema"`` (the EMA average when the checkpoint has one) or ``"raw"`` (the
    trained weights themselves: better than an EMA whose decay is long against the run,
    which still holds much of the initial weights).
    """
    from dbgan.atomic import atomic_write_text
    from dbgan.checkpoint import load_checkpoint, save_checkpoint

    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    ckpt = load_checkpoint(src)
    role = "deblur_g_ema" if weights == "ema" and "deblur_g_ema" in ckpt.roles else "deblur_g"
    state = {k: v.float().contiguous() for k, v in ckpt.state_dict(role).items()}
    meta = {k: ckpt.meta[k] for k in ("stage", "iter", "config_hash", "config") if k in ckpt.meta}
    meta["nets"] = {"deblur_g": ckpt.meta["nets"]["deblur_g"]}
    meta["source"] = {"checkpoint": Path(src).name, "weights": role}
    out = Path(out_dir) if out_dir is not None else _folder()
    path = out / f"{name}.safetensors"
    save_checkpoint(path, {"deblur_g": state}, meta)
    info = json.loads(path.with_suffix(".json").read_text())
    info["name"] = name
    info["sha256"] = sha256_file(path)
    info["size_bytes"] = path.stat().st_size
    if extra:
        info.update(extra)
    atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=2, sort_keys=True, default=str))
    for f in (path, path.with_suffix(".json")):
        f.chmod(0o644)  # package data: readable by everyone (the atomic writer's temp files are 0600)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="package a checkpoint's deblurrer as a bundled model")
    ap.add_argument("checkpoint")
    ap.add_argument("--name", default="general")
    ap.add_argument("--out-dir", default=None, help="default: the dbgan.models package folder")
    ap.add_argument("--weights", default="ema", choices=("ema", "raw"))
    args = ap.parse_args(argv)
    path = package_checkpoint(args.checkpoint, args.name, args.out_dir, weights=args.weights)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB) and {path.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
