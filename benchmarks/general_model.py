"""The bundled general model: held-out photos through stand-in cameras, 12-MP speed, ONNX agreement.

    PYTHONPATH=src python benchmarks/general_model.py                 # all three sections
    PYTHONPATH=src python benchmarks/general_model.py --only cameras  # or speed, onnx
    PYTHONPATH=src python benchmarks/general_model.py --only cameras --adapted runs/adapt/checkpoints/latest.safetensors

cameras: held-out scikit-image photos (never trained on: chelsea, coffee, camera,
    motorcycle_right; whole photos) degraded by each camera of the domain-gap benchmark
    (benchmarks/cameras.py, written independently of dbgan.blur) and by the demo's
    stand-in camera; PSNR/SSIM against the camera's ground truth of the blurred input, of
    Wiener deconvolution with the PSF family, size and balance fitted per camera on
    calibration pairs of *other* photos (:mod:`dbgan.classical`; an advantage the network
    does not get), and of the general model (and of an adapted checkpoint when given);
    also tone-aligned PSNR (benchmarks/domain_gap.py), which no camera tone can move.
    ``--draws K`` degrades each photo K times (the margins of one draw are within its noise).
speed: one 12-megapixel photo (4000 x 3000) deblurred with the bundled model in a
    fresh process; wall time and the process's peak resident memory (tiled;
    ``--coarse-levels N`` coarse to fine).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks: cameras, domain_gap

HELDOUT = ("chelsea", "coffee", "camera", "motorcycle_right")
CALIBRATION = ("astronaut", "rocket", "immunohistochemistry")


def _cameras() -> dict:
    """Every camera of the domain-gap benchmark (benchmarks/cameras.py, written independently of
    dbgan.blur) plus the demo's stand-in camera (made with dbgan.blur): name -> degrade(sharp, rng)."""
    import cameras as CAMS

    from dbgan.blur import DegradationPipeline
    from dbgan.demo import REAL_DOMAIN

    def wrap(cam):
        def degrade(img: torch.Tensor, rng) -> tuple[torch.Tensor, torch.Tensor]:
            x = img.permute(1, 2, 0).numpy().astype(np.float64)
            out = cam.degrade(x, rng)
            truth = cam.ground_truth(x)
            as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)  # noqa: E731
            return as_t(truth), as_t(out)
        return degrade

    out = {name: wrap(cam) for name, cam in CAMS.CAMERAS.items()}
    demo = DegradationPipeline(REAL_DOMAIN)
    out["demo stand-in"] = lambda img, rng: (img, demo(img, rng)[0])
    return out


def _photo(name: str) -> torch.Tensor:
    from dbgan.demo import _photo as demo_photo

    return demo_photo(name)


def _quantise(t: torch.Tensor) -> torch.Tensor:
    return (t.clamp(0, 1) * 255).round() / 255


def _scores(sharp: torch.Tensor, img: torch.Tensor) -> tuple[float, float, float]:
    """PSNR, SSIM and tone-aligned PSNR (``domain_gap.tone_aligned``: after the per-image global
    tone curve closest to the ground truth, so a camera's exposure and response, which no
    general deblurrer can know, cost nothing and what is left is blur, noise and artefacts)."""
    from domain_gap import tone_aligned

    from dbgan.metrics import psnr, ssim

    a, b = img.permute(1, 2, 0).numpy(), sharp.permute(1, 2, 0).numpy()
    toned = tone_aligned(img, sharp).permute(1, 2, 0).numpy()
    return psnr(a, b), ssim(a, b), psnr(toned, b)


def cameras(adapted: str | None, model: str | None = None, draws: int = 1, only: list[str] | None = None,
            blind: list[float] | None = None, blind_after: bool = False) -> dict:
    """Every camera's (or ``only`` these cameras') held-out photos, each degraded ``draws`` times (the
    first draw is the one the model card's table was made with); mean PSNR / SSIM / tone-aligned PSNR
    of each row. ``blind``: also blind deconvolution (:mod:`dbgan.blind`, one kernel estimated per
    photo) at each of these ``tv`` weights, alone and followed by the general model; ``blind_after``:
    also the other order, the kernel estimated on the general model's output and deconvolved there."""
    if draws < 1:
        raise ValueError(f"--draws must be >= 1, got {draws}")
    from dbgan.blind import BlindSetting, deconvolve, photo_kernel
    from dbgan.classical import fit_wiener, wiener_deconvolve
    from dbgan.infer import Deblurrer
    from dbgan.models import bundled_model_path

    general = Deblurrer.from_checkpoint(model or bundled_model_path("general"), device="cpu")
    adapt = Deblurrer.from_checkpoint(adapted, device="cpu") if adapted else None
    test = [(n, _photo(n)) for n in HELDOUT]
    calib = [(n, _photo(n)) for n in CALIBRATION]
    results = {}
    cams = _cameras()
    unknown = sorted(set(only or []) - set(cams))
    if unknown:
        raise ValueError(f"--cameras: unknown {', '.join(unknown)}; known: {', '.join(cams)}")
    for ci, (cam, degrade) in enumerate(cams.items()):
        if only and cam not in only:
            continue  # ci stays the camera's place in the full list, so its draws do not change
        pairs = [degrade(img, np.random.default_rng([ci, 1000 + i])) for i, (_, img) in enumerate(calib)]
        setting = fit_wiener([(s[:, :192, :192], _quantise(b[:, :192, :192])) for s, b in pairs])
        rows = {"input": [], "wiener": [], "general": []} | ({"adapted": []} if adapt else {})
        for i, d in ((i, d) for i in range(len(test)) for d in range(draws)):
            img = test[i][1]
            sharp, b = degrade(img, np.random.default_rng([ci, i] if d == 0 else [ci, i, d]))
            b = _quantise(b)
            rows["input"].append(_scores(sharp, b))
            rows["wiener"].append(_scores(sharp, _quantise(wiener_deconvolve(b, setting))))
            rows["general"].append(_scores(sharp, _quantise(general(b))))
            if adapt:
                rows["adapted"].append(_scores(sharp, _quantise(adapt(b))))
            if blind:
                kernel = photo_kernel(b, BlindSetting())
                for tv in blind:
                    d = _quantise(deconvolve(b, kernel, tv))
                    rows.setdefault(f"blind {tv:g}", []).append(_scores(sharp, d))
                    rows.setdefault(f"blind {tv:g} + general", []).append(_scores(sharp, _quantise(general(d))))
                if blind_after:
                    g = _quantise(general(b))
                    k_after = photo_kernel(g, BlindSetting())
                    for tv in blind:
                        rows.setdefault(f"general + blind {tv:g}", []).append(_scores(sharp, _quantise(deconvolve(g, k_after, tv))))
        results[cam] = {k: {"psnr": float(np.mean([r[0] for r in v])), "ssim": float(np.mean([r[1] for r in v])),
                            "psnr_tone": float(np.mean([r[2] for r in v])),
                            "psnr_each": [round(r[0], 2) for r in v]} for k, v in rows.items()}
        results[cam]["wiener_setting"] = str(setting)
        r = results[cam]
        print(f"{cam:16s} (PSNR / SSIM / tone-aligned PSNR) input " + _fmt(r["input"]) + "  wiener "
              + _fmt(r["wiener"]) + f" ({setting})  general " + _fmt(r["general"])
              + ("  adapted " + _fmt(r["adapted"]) if adapt else "")
              + "".join(f"  {k} " + _fmt(v) for k, v in r.items() if "blind" in k), flush=True)
    for key, label in (("psnr", "PSNR"), ("psnr_tone", "tone-aligned PSNR")):
        margins_in = [r["general"][key] - r["input"][key] for r in results.values()]
        margins_w = [r["general"][key] - r["wiener"][key] for r in results.values()]
        print(f"{label}: general - input: min {min(margins_in):+.2f} dB, mean {np.mean(margins_in):+.2f} dB; "
              f"general - wiener: min {min(margins_w):+.2f} dB, mean {np.mean(margins_w):+.2f} dB")
    return results


def _fmt(r: dict) -> str:
    return f"{r['psnr']:6.2f} / {r['ssim']:.4f} / {r['psnr_tone']:6.2f}"


_SPEED_CHILD = r"""
import resource, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from dbgan.infer import Deblurrer
from dbgan.models import bundled_model_path
from dbgan.demo import _photo
img = torch.nn.functional.interpolate(_photo("chelsea")[None], size=(3000, 4000), mode="bilinear")[0].clamp(0, 1)
d = Deblurrer.from_checkpoint(bundled_model_path("general"), device="cpu", tile=int(sys.argv[2]), overlap=32,
                              dtype=sys.argv[3], coarse_levels=int(sys.argv[4]), blind=int(sys.argv[5]))
d(img[:, :256, :256])  # warm-up
t0 = time.perf_counter(); out = d(img); dt = time.perf_counter() - t0
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, tuple(out.shape))
"""


def speed(threads: int, tile: int, dtype: str, coarse_levels: int = 0, blind: int = 0) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", _SPEED_CHILD, str(threads), str(tile), dtype, str(coarse_levels), str(blind)],
                         capture_output=True, text=True, env=env, check=True)
    dt, peak, shape = res.stdout.strip().splitlines()[-1].split(" ", 2)
    out = {"seconds": float(dt), "peak_rss_gib": float(peak), "shape": shape, "threads": threads, "tile": tile,
           "dtype": dtype, "coarse_levels": coarse_levels, "blind": blind}
    print(f"12 MP (4000x3000) deblur: {float(dt):.1f} s, peak RSS {float(peak):.2f} GiB "
          f"({threads} threads, tile {tile}, {dtype}, coarse_levels {coarse_levels}, blind {blind})", flush=True)
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
    ap.add_argument("--draws", type=int, default=1, help="degradations per held-out photo and camera (more: less noise)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "int8"))
    ap.add_argument("--coarse-levels", type=int, default=0, help="speed: deblur coarse to fine (dbgan.infer.pyramid)")
    ap.add_argument("--cameras", default=None, help="cameras: only these (comma list; default: all)")
    ap.add_argument("--blind", default=None, metavar="TV,TV",
                    help="cameras: add blind deconvolution (dbgan.blind) at these tv weights, alone and + general")
    ap.add_argument("--speed-blind", type=int, default=0, metavar="N", help="speed: with dbgan deblur --blind N")
    ap.add_argument("--blind-after", action="store_true", help="with --blind: also the general model first, then blind")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dbgan.cpu_caps import detect, resolve_dtype

    caps = detect()
    print(f"cpu: {caps.summary()}; --dtype {args.dtype} runs {resolve_dtype(args.dtype, 'cpu', caps)} "
          "(int8 where the model ships a qualifying int8 file)", flush=True)
    out = {}
    parts = args.only.split(",")
    if "cameras" in parts:
        out["cameras"] = cameras(args.adapted, args.model, args.draws, args.cameras.split(",") if args.cameras else None,
                                 [float(t) for t in args.blind.split(",")] if args.blind else None, args.blind_after)
    if "speed" in parts:
        out["speed"] = speed(args.threads, args.tile, args.dtype, args.coarse_levels, args.speed_blind)
    if "onnx" in parts:
        out["onnx"] = onnx_agreement()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
