"""Speed of dbgan.blur: kernel generation and FFT blurring, side by side with plain baselines.

Prints, in one run:

* motion kernels per second: our batched generator (``motion_kernels``) vs a
  per-kernel loop in the style of the original ``motionblur`` package (Python
  loops for steps and angles, PIL line drawing per segment, PIL Gaussian blur
  and Lanczos resize);
* 1024x1024 RGB images blurred per second: our batched ``fft_blur`` (backend
  ``auto`` and ``torch``) vs ``scipy.signal.fftconvolve(mode="same")`` per
  channel on the same kernels.

Timings are the best of several interleaved rounds (robust to other load on
the machine). Usage::

    python benchmarks/blur_speed.py --quick
    python benchmarks/blur_speed.py --size 1024 --batch 8 --kernels 2000
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from scipy.signal import fftconvolve

from dbgan.blur import fft_blur, motion_kernels


# --------------------------------------------------------------------------- baseline kernels


def loop_style_motion_kernel(size: int, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """One camera-shake kernel the way the original ``motionblur`` package makes it.

    Python loops draw step lengths and angles one at a time, PIL draws the polyline
    on a 2x canvas, then PIL blurs and resizes. (Written for this comparison.)
    """
    eps = 0.1
    big = 2 * size
    diagonal = math.hypot(big, big)
    max_len = 0.75 * diagonal * (rng.uniform() + rng.uniform(0, intensity**2))
    steps: list[float] = []
    while sum(steps) < max_len:
        step = rng.beta(1, 30) * (1 - intensity + eps) * diagonal
        if step < max_len:
            steps.append(step)
    max_angle = rng.uniform(0, intensity * math.pi)
    jitter = rng.beta(2, 20)
    angles = [rng.uniform(-max_angle, max_angle)]
    while len(angles) < len(steps):
        angle = rng.triangular(0, intensity * max_angle, max_angle + eps)
        angle *= -np.sign(angles[-1]) if rng.uniform() < jitter else np.sign(angles[-1])
        angles.append(angle)
    path = np.cumsum(np.asarray(steps) * np.exp(1j * np.asarray(angles)))
    path -= path.mean()
    path *= np.exp(1j * rng.uniform(0, math.pi))
    path += (big + 1j * big) / 2
    canvas = Image.new("L", (big, big))
    draw = ImageDraw.Draw(canvas)
    pts = [(z.real, z.imag) for z in path]
    for a, b in zip(pts[:-1], pts[1:]):  # per-segment drawing
        draw.line([a, b], fill=255, width=max(1, int(diagonal / 150)))
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=max(1, int(diagonal * 0.01))))
    canvas = canvas.resize((size, size), resample=Image.LANCZOS)
    k = np.asarray(canvas, dtype=np.float32)
    s = k.sum()
    return k / s if s > 0 else k


# --------------------------------------------------------------------------- timing


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of ``repeats`` calls, after a warm-up."""
    fn()
    wall = cpu = math.inf
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int, repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall and CPU time per function over interleaved rounds (fair under fluctuating load)."""
    wall = {k: math.inf for k in fns}
    cpu = {k: math.inf for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            w, c = best_time(fn, repeats)
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer kernels/images/rounds (about a minute)")
    ap.add_argument("--size", type=int, default=1024, help="image height and width")
    ap.add_argument("--batch", type=int, default=None, help="images per batched call (default 8, quick 4)")
    ap.add_argument("--kernel-size", type=int, default=31)
    ap.add_argument("--kernels", type=int, default=None, help="kernels to generate (default 2000, quick 300)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 6, quick 4)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (4 if args.quick else 8)
    n_kernels = args.kernels or (300 if args.quick else 2000)
    rounds = args.rounds or (4 if args.quick else 6)
    ks = args.kernel_size
    n_loop = max(20, n_kernels // 10)

    print("configuration")
    print(f"  python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    print(
        f"  cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"cuda {torch.cuda.is_available()}"
    )
    from dbgan.cpu_caps import detect as detect_cpu_caps

    print(f"  {detect_cpu_caps().summary()} (every path here is fp32)")
    print(f"  kernels: size {ks}, intensity U(0, 1); batched n={n_kernels}, loop n={n_loop}")
    print(f"  blur: {batch} RGB images {args.size}x{args.size} float32, kernel {ks}x{ks}, one kernel per image")
    print(f"  timing: best of {rounds} interleaved rounds{' (quick)' if args.quick else ''}")

    # ---- kernels
    def ours_kernels() -> None:
        motion_kernels(n_kernels, ks, (0.0, 1.0), np.random.default_rng(0))

    def loop_kernels() -> None:
        rng = np.random.default_rng(0)
        for _ in range(n_loop):
            loop_style_motion_kernel(ks, float(rng.uniform()), rng)

    t, tc = interleaved({"ours": ours_kernels, "loop": loop_kernels}, rounds, 1)
    k_ours, k_loop = n_kernels / t["ours"], n_loop / t["loop"]
    kc_ours, kc_loop = n_kernels / tc["ours"], n_loop / tc["loop"]

    # ---- blur
    gen = torch.Generator().manual_seed(0)
    imgs = torch.rand(batch, 3, args.size, args.size, generator=gen)
    kernels = motion_kernels(batch, ks, (0.0, 1.0), np.random.default_rng(1))
    imgs_np = imgs.numpy()

    def scipy_path() -> np.ndarray:
        out = np.empty_like(imgs_np)
        for i in range(batch):
            for c in range(3):
                out[i, c] = fftconvolve(imgs_np[i, c], kernels[i], mode="same")
        return out

    fns: dict[str, Callable[[], object]] = {
        "ours auto": lambda: fft_blur(imgs, kernels),
        "ours torch.fft": lambda: fft_blur(imgs, kernels, backend="torch"),
        "scipy per-channel": scipy_path,
    }
    if torch.cuda.is_available():
        imgs_gpu, kern_gpu = imgs.cuda(), torch.from_numpy(kernels).cuda()

        def gpu() -> None:
            fft_blur(imgs_gpu, kern_gpu)
            torch.cuda.synchronize()

        fns["ours torch.fft cuda"] = gpu
    # same result on the interior
    p = ks // 2
    diff = np.abs(fft_blur(imgs, kernels).numpy() - scipy_path())[..., p:-p, p:-p].max()
    tb, tbc = interleaved(fns, rounds, 1)
    ips = {k: batch / v for k, v in tb.items()}
    ipc = {k: batch / v for k, v in tbc.items()}
    base, base_c = ips["scipy per-channel"], ipc["scipy per-channel"]

    head = f"{'wall: per s':>12}{'ratio':>8}{'CPU time: per s':>18}{'ratio':>8}"
    print("\n(wall = elapsed time; CPU time = work done by all threads of this process,")
    print(" which is less sensitive to other load on the machine but hides multi-threading)")
    print(f"\n{'motion kernels':<34}{head}")
    for name, v, vc in (
        ("ours, batched (vectorised)", k_ours, kc_ours),
        ("loop + per-segment PIL drawing", k_loop, kc_loop),
    ):
        print(f"  {name:<32}{v:>12.1f}{v / k_loop:>7.1f}x{vc:>18.1f}{vc / kc_loop:>7.1f}x")
    print(f"\n{f'{args.size}x{args.size} RGB images blurred':<34}{head}")
    for name, v in ips.items():
        vc = ipc[name]
        print(f"  {name:<32}{v:>12.2f}{v / base:>7.2f}x{vc:>18.2f}{vc / base_c:>7.2f}x")
    print(f"  (max interior difference ours vs scipy: {diff:.2e})")
    best = max(v for k, v in ips.items() if "cuda" not in k)
    verdict = "met" if best / base >= 3 else "NOT met on this machine"
    print(f"\ntarget: batched CPU path >= 3x scipy per-channel (wall): {best / base:.2f}x ({verdict})")


if __name__ == "__main__":
    main()
