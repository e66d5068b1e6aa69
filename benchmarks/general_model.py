"""The bundled general model: held-out photos through stand-in cameras, 12-MP speed, ONNX agreement.

    PYTHONPATH=src python benchmarks/general_model.py                 # all three sections
    PYTHONPATH=src python benchmarks/general_model.py --only cameras  # or speed, onnx
    PYTHONPATH=src python benchmarks/general_model.py --only cameras --adapted runs/adapt/checkpoints/latest.safetensors

cameras: held-out scikit-image photos (never trained on: chelsea, coffee, camera,
    motorcycle_right) degraded by each stand-in camera of :data:`CAMERAS`; PSNR/SSIM of
    the blurred input, of Wiener deconvolution with the PSF family, size and balance
    fitted per camera on calibration pairs of *other* photos (:mod:`dbgan.classical`),
    and of the general model (and of an adapted checkpoint when given).
speed: one 12-megapixel photo (4000 x 3000) deblurred with the bundled model in a
    fresh process; wall time and the process's peak resident memory (tiled).
onnx: the bundled model exported to ONNX; outputs of torch and onnxruntime on a
    512 x 384 photo, largest absolute difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HELDOUT = ("chelsea", "coffee", "camera", "motorcycle_right")
CALIBRATION = ("astronaut", "rocket", "immunohistochemistry")


def _cameras():
    from dbgan.config import SynthConfig
    from dbgan.demo import REAL_DOMAIN

    common = dict(linear_light=True, gamma=2.2, jpeg_quality=[85, 95], noise_sigma=[0.003, 0.008])
    return {
        "demo stand-in": REAL_DOMAIN,
        "phone shake": SynthConfig(kernels=["motion"], kernel_size=21, intensity=[0.2, 0.6], **common),
        "long shake": SynthConfig(kernels=["motion"], kernel_size=35, intensity=[0.6, 1.0],
                                  highlight_gain=[1.0, 1.5], **common),
        "defocus": SynthConfig(kernels=["defocus"], kernel_size=15, defocus_radius=[2.0, 4.0], **common),
        "soft lens, shot noise": SynthConfig(kernels=["gaussian"], kernel_size=15, gaussian_sigma=[1.2, 2.2],
                                             linear_light=True, poisson_peak=800.0, jpeg_quality=[90, 95]),
    }


def _photo(name: str) -> torch.Tensor:
    from dbgan.demo import _photo as demo_photo

    return demo_photo(name)


def _crops(names, size: int = 256, per: int = 2, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        img = _photo(name)
        h, w = img.shape[-2:]
        for k in range(per):
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            out.append((f"{name}_{k}", img[:, y : y + size, x : x + size].contiguous()))
    return out


def _quantise(t: torch.Tensor) -> torch.Tensor:
    return (t.clamp(0, 1) * 255).round() / 255


def _scores(sharp: torch.Tensor, img: torch.Tensor) -> tuple[float, float]:
    from dbgan.metrics import psnr, ssim

    a, b = img.permute(1, 2, 0).numpy(), sharp.permute(1, 2, 0).numpy()
    return psnr(a, b), ssim(a, b)


def cameras(adapted: str | None, model: str | None = None) -> dict:
    from dbgan.blur import DegradationPipeline
    from dbgan.classical import fit_wiener, wiener_deconvolve
    from dbgan.infer import Deblurrer
    from dbgan.models import bundled_model_path

    general = Deblurrer.from_checkpoint(model or bundled_model_path("general"), device="cpu")
    adapt = Deblurrer.from_checkpoint(adapted, device="cpu") if adapted else None
    test, calib = _crops(HELDOUT), _crops(CALIBRATION, per=2, seed=1)
    results = {}
    for ci, (cam, cfg) in enumerate(_cameras().items()):
        pipe = DegradationPipeline(cfg)
        blur = lambda img, k: _quantise(pipe(img, np.random.default_rng([ci, k]))[0])  # noqa: E731
        setting = fit_wiener([(s, blur(s, 1000 + i)) for i, (_, s) in enumerate(calib)])
        rows = {"input": [], "wiener": [], "general": []} | ({"adapted": []} if adapt else {})
        for i, (_, sharp) in enumerate(test):
            b = blur(sharp, i)
            rows["input"].append(_scores(sharp, b))
            rows["wiener"].append(_scores(sharp, wiener_deconvolve(b, setting)))
            rows["general"].append(_scores(sharp, _quantise(general(b))))
            if adapt:
                rows["adapted"].append(_scores(sharp, _quantise(adapt(b))))
        results[cam] = {k: {"psnr": float(np.mean([r[0] for r in v])), "ssim": float(np.mean([r[1] for r in v])),
                            "psnr_each": [round(r[0], 2) for r in v]} for k, v in rows.items()}
        results[cam]["wiener_setting"] = str(setting)
        r = results[cam]
        print(f"{cam:24s} input {r['input']['psnr']:6.2f}  wiener {r['wiener']['psnr']:6.2f} ({setting})  "
              f"general {r['general']['psnr']:6.2f}" + (f"  adapted {r['adapted']['psnr']:6.2f}" if adapt else ""),
              flush=True)
    margins_in = [r["general"]["psnr"] - r["input"]["psnr"] for r in results.values()]
    margins_w = [r["general"]["psnr"] - r["wiener"]["psnr"] for r in results.values()]
    print(f"general - input: min {min(margins_in):+.2f} dB, mean {np.mean(margins_in):+.2f} dB; "
          f"general - wiener: min {min(margins_w):+.2f} dB, mean {np.mean(margins_w):+.2f} dB")
    return results


_SPEED_CHILD = r"""
import resource, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from dbgan.infer import Deblurrer
from dbgan.models import bundled_model_path
from dbgan.demo import _photo
img = torch.nn.functional.interpolate(_photo("chelsea")[None], size=(3000, 4000), mode="bilinear")[0].clamp(0, 1)
d = Deblurrer.from_checkpoint(bundled_model_path("general"), device="cpu", tile=int(sys.argv[2]), overlap=32,
                              dtype=sys.argv[3])
d(img[:, :256, :256])  # warm-up
t0 = time.perf_counter(); out = d(img); dt = time.perf_counter() - t0
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, tuple(out.shape))
"""


def speed(threads: int, tile: int, dtype: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", _SPEED_CHILD, str(threads), str(tile), dtype],
                         capture_output=True, text=True, env=env, check=True)
    dt, peak, shape = res.stdout.strip().splitlines()[-1].split(" ", 2)
    out = {"seconds": float(dt), "peak_rss_gib": float(peak), "shape": shape, "threads": threads, "tile": tile,
           "dtype": dtype}
    print(f"12 MP (4000x3000) deblur: {float(dt):.1f} s, peak RSS {float(peak):.2f} GiB "
          f"({threads} threads, tile {tile}, {dtype})", flush=True)
    return out


def onnx_agreement() -> dict:
    import tempfile

    from dbgan.export import OnnxRunner, export_onnx
    from dbgan.infer import Deblurrer
    from dbgan.models import bundled_model_path

    img = torch.nn.functional.interpolate(_photo("coffee")[None], size=(384, 512), mode="bilinear")[0].clamp(0, 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(bundled_model_path("general"), Path(tmp) / "general.onnx")
        ort = OnnxRunner(path, device="cpu")
        net = Deblurrer.from_checkpoint(bundled_model_path("general"), device="cpu").backend
        with torch.no_grad():
            a = net(img[None])
        b = ort(img[None])
    diff = float((a - b).abs().max())
    print(f"torch vs onnxruntime on a 512x384 photo: max |diff| = {diff:.2e}", flush=True)
    return {"max_abs_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="cameras,speed,onnx")
    ap.add_argument("--adapted", default=None, help="an adapted checkpoint to add as a column")
    ap.add_argument("--model", default=None, help="evaluate this checkpoint as the general model (default: bundled)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--dtype", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    parts = args.only.split(",")
    if "cameras" in parts:
        out["cameras"] = cameras(args.adapted, args.model)
    if "speed" in parts:
        out["speed"] = speed(args.threads, args.tile, args.dtype)
    if "onnx" in parts:
        out["onnx"] = onnx_agreement()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
