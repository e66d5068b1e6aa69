"""Inference speed and peak memory: the plain path against dbgan's inference paths.

For 1024x1024 and 2048x2048 RGB images and the seed preset's U-Net
(``unet``, ``num_downs=8``, ``ngf=64``, 54 M parameters, random weights), prints
side by side the time and peak memory of

* ``plain``: ``net(x)`` in eager fp32 on the whole image (what a naive script does);
* ``fp32 + channels_last``: :class:`dbgan.infer.Deblurrer` in fp32 with
  channels_last, tiles only when the memory budget requires them (what
  ``dbgan deblur --dtype auto`` runs on a CPU without native bf16; marked ``= auto``);
* ``tiled fp32``: the same with 512-pixel tiles, overlap 32;
* ``bf16 + channels_last``: bf16 autocast (``--dtype auto`` on a CPU with native
  bf16; skipped, with a message, on a CPU without: emulated bf16 is hundreds of
  times slower, see :mod:`dbgan.cpu_caps`);
* ``onnxruntime``: the exported model through the same tiling code, on the
  whole image, and as a bare ``.onnx`` file gets it by default (tiles planned
  from the conservative activation estimate ``DEFAULT_BYTES_PER_PIXEL``; with
  the checkpoint beside it the network's own estimate is used instead);

as ratios to ``plain``; then plain, default and bf16 on an 1100x800 image, which
the U-Net pads to 1280x1024, each of the last two also with the padding decoded
(``plain`` decodes the whole padded image, dbgan's paths only the image:
cropped decoding); and the peak memory of a 4096x4096
image through the default (automatically tiled) path. Peak memory is the RSS high-water mark of
the configuration's own process
(``VmHWM`` of ``/proc/self/status``, which starts afresh at ``exec``, unlike
``ru_maxrss``), so configurations do not contaminate each other;
``activations`` is the peak minus the RSS after the network and the image were
created. Every path runs in a process of its own that builds the net and the
image and warms up once; the timed runs are then interleaved across the paths
(round robin) and the best is reported, so a busy moment on a shared machine
hurts every path alike. ``--quick``: two rounds at 1024, one run without
warm-up at 2048 (without the two 512-tile paths).

``--int8`` times instead a trained model (``--model``, default the bundled ``general``)
at 1024² (``--sizes``): plain eager fp32, the torch ``--dtype auto`` path, onnxruntime
fp32 and its int8 quantisation (:mod:`dbgan.quantize`, calibrated on blurred training
photos), and prints int8's PSNR change on held-out pairs (photos never trained nor
calibrated on, blurred by the demo's stand-in camera); skipped, saying so, without
onnxruntime. ``--keep DIR`` keeps the exports and the photos (how the bundled
``general.int8.onnx`` was made). ``--threads N`` applies to torch and onnxruntime alike.

The header prints the CPU, torch's CPU capability and whether bf16 is native.
To see an AVX2-only CPU on a newer one, emulate it (onnxruntime is not capped)::

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/infer_speed.py --quick

Targets on the 2-core development CPU: the fastest path at least 3x faster than
``plain`` at 1024, and 4096x4096 under 2 GiB peak.

    python benchmarks/infer_speed.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NET = {"num_downs": 8, "ngf": 64}
GIB = 2**30


def _rss_peak_bytes() -> int:
    """This process's RSS high-water mark.

    ``VmHWM`` from ``/proc/self/status`` (per address space, so it starts afresh at
    ``exec``); ``getrusage``'s ``ru_maxrss`` is kept across ``exec`` on Linux and
    would report the parent's peak for a child that uses less.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _rss_now_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _rss_peak_bytes()


# --------------------------------------------------------------------------- child


def serve(spec: dict) -> None:
    """Child process: build the configuration, warm up, then run once per ``run`` line on stdin.

    Protocol (one JSON object per stdout line): ``{"ready": base_rss}`` after the
    warm-up, ``{"time": seconds}`` per ``run``, ``{"peak": bytes, "plan": ...}`` on ``quit``.
    """
    import torch

    from dbgan.nets import build_network

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    if spec.get("model"):  # a trained checkpoint (--int8): its deblur_g
        from dbgan.checkpoint import load_checkpoint

        net = load_checkpoint(spec["model"]).build("deblur_g").eval()
    else:
        net = build_network("unet", **NET).eval()
    h, w = spec["size"] if isinstance(spec["size"], list) else (spec["size"], spec["size"])
    img = torch.rand(3, h, w, generator=torch.Generator().manual_seed(1))
    kind = spec["kind"]
    d = None
    if kind == "plain":
        from dbgan.nets.unet import use_plain_layers

        use_plain_layers(net)  # plain torch.nn convolutions everywhere, the padded image decoded in full (U-Net)
        x = img[None]

        def run():
            with torch.inference_mode():
                return net(x)
    else:
        from dbgan.infer import Deblurrer, OnnxBackend

        if kind == "onnx":
            from dbgan.export import OnnxRunner

            del net
            d = Deblurrer(OnnxBackend(OnnxRunner(spec["onnx"], device="cpu", threads=spec.get("threads") or None)),
                          tile=spec.get("tile"))
        else:
            if spec.get("full_decoding"):
                from dbgan.nets.unet import set_cropped_decoding

                set_cropped_decoding(net, False)
            d = Deblurrer(net, device="cpu", dtype=spec.get("dtype", "fp32"), channels_last=spec.get("channels_last"), tile=spec.get("tile"))

        def run():
            return d(img)

    def say(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    base = _rss_now_bytes()
    for _ in range(spec["warmup"]):
        run()
    say({"ready": base})
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            t = time.perf_counter()
            out = run()
            say({"time": time.perf_counter() - t})
            del out
        elif cmd == "quit":
            break
    plan = None
    if d is not None and d.last_plan is not None:
        p = d.last_plan
        plan = "whole image" if p.single else f"{p.count} tiles of {p.tile_w}x{p.tile_h}"
    say({"peak": _rss_peak_bytes(), "base": base, "plan": plan})


class Child:
    """A configuration in its own process, driven line by line (so repeats can be interleaved)."""

    def __init__(self, spec: dict):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.times: list[float] = []
        self.error: str | None = None
        self.result: dict = {}
        self._read("ready")

    def _read(self, key: str) -> dict | None:
        if self.error:
            return None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.error = f"child exited with {self.proc.returncode}"
            return None
        obj = json.loads(line)
        if key not in obj:
            self.error = f"unexpected reply {line.strip()[:80]}"
            return None
        return obj

    def run(self) -> None:
        if self.error:
            return
        self.proc.stdin.write("run\n")
        r = self._read("time")
        if r:
            self.times.append(r["time"])

    def finish(self) -> None:
        if not self.error:
            self.proc.stdin.write("quit\n")
            self.result = self._read("peak") or {}
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


# --------------------------------------------------------------------------- parent


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _fmt_mem(b: float) -> str:
    return f"{b / GIB:.2f} GiB" if b >= GIB else f"{b / 2**20:.0f} MiB"


def _time_table(configs: list, size, rounds: int, quick_big: bool, threads: int) -> None:
    """Time ``configs`` (name, child spec) at ``size``, interleaved, and print the table against the first."""
    children: list[tuple[str, Child]] = []
    for name, spec in configs:
        if quick_big and (spec.get("tile") == 512 or name == "onnxruntime (auto tiles)"):
            continue  # --quick: the 2048 tiled paths are the slowest and only show the tiling cost again
        spec = {**spec, "size": size, "warmup": 0 if quick_big else 1, "threads": threads}
        children.append((name, Child(spec)))  # started one at a time: warm-ups do not overlap
    for _ in range(rounds):  # interleaved, so a busy moment hurts every path alike
        for _name, ch in children:
            ch.run()
    for _name, ch in children:
        ch.finish()
    print(f"  {'path':44s} {'time':>8s} {'speed-up':>9s} {'peak RSS':>10s} {'activations':>12s} {'mem ratio':>9s}  plan")
    plain = children[0][1]
    plain_ok = not plain.error and plain.times and plain.result
    for name, ch in children:
        if ch.error or not ch.times or not ch.result:
            print(f"  {name:44s} failed: {ch.error}")
            continue
        t = min(ch.times)
        peak = ch.result["peak"]
        act = peak - ch.result["base"]
        speed = f"{min(plain.times) / t:.2f}x" if plain_ok else "-"
        mem = f"{peak / plain.result['peak']:.2f}" if plain_ok else "-"
        print(f"  {name:44s} {t:7.2f}s {speed:>9s} {_fmt_mem(peak):>10s} {_fmt_mem(act):>12s} {mem:>9s}  {ch.result.get('plan') or ''}")


#: photos the int8 model is calibrated on (blurred training photos of the general model)
CALIB_PHOTOS = ("astronaut", "rocket", "immunohistochemistry")


def _int8_data(root: Path) -> tuple[Path, Path]:
    """Blurred calibration photos, and held-out pairs (photos never trained on nor calibrated on),
    both degraded by dbgan's synthetic stand-in camera (:data:`dbgan.demo.REAL_DOMAIN`), seeded."""
    import numpy as np

    from dbgan.blur import DegradationPipeline
    from dbgan.demo import REAL_DOMAIN, _photo
    from dbgan.io import write_image
    from dbgan.photos import HELDOUT_SKIMAGE

    assert not set(CALIB_PHOTOS) & set(HELDOUT_SKIMAGE)
    pipe = DegradationPipeline(REAL_DOMAIN)
    calib, pairs = root / "calibration", root / "pairs"
    for i, name in enumerate(CALIB_PHOTOS):
        write_image(calib / f"{name}.png", pipe(_photo(name), np.random.default_rng([7, i]))[0])
    for i, name in enumerate(HELDOUT_SKIMAGE):
        sharp = _photo(name)
        write_image(pairs / "sharp" / f"{name}.png", sharp)
        write_image(pairs / "blur" / f"{name}.png", pipe(sharp, np.random.default_rng([8, i]))[0])
    return calib, pairs


def int8_table(model: str, sizes: list, repeats: int, threads: int, auto: str, keep: str | None = None) -> None:
    """``--int8``: the model's int8 quantisation against torch and onnxruntime fp32, and its PSNR cost."""
    try:
        import onnxruntime
    except ImportError:
        print("  int8: skipped (onnxruntime is not installed: pip install 'dbgan[onnx]')")
        return
    import torch

    from dbgan.api import resolve_model
    from dbgan.cpu_caps import int8_default_rule
    from dbgan.export import export_onnx
    from dbgan.photos import HELDOUT_SKIMAGE
    from dbgan.quantize import CalibrationSettings, quantize_int8

    if threads:
        torch.set_num_threads(threads)  # the PSNR evaluation runs here
    ckpt = resolve_model(model)
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="dbgan_int8_"))
    if keep and tmp.exists() and any(tmp.iterdir()):
        raise SystemExit(f"{tmp}: --keep needs a new or empty folder")
    try:
        calib, pairs = _int8_data(tmp)
        settings = CalibrationSettings()
        t = time.perf_counter()
        fp32 = export_onnx(ckpt, tmp / "model.onnx")
        res = quantize_int8(fp32, calib, settings=settings, eval_pairs=pairs)
        print(f"  int8: {model} exported and quantised in {time.perf_counter() - t:.1f} s (onnxruntime "
              f"{onnxruntime.__version__}: static QDQ, per-channel int8 weights, uint8 activations, "
              f"{settings.crops} calibration crops of {settings.crop_size} px from {', '.join(CALIB_PHOTOS)}, seed {settings.seed})")
        print(f"  int8 PSNR on {len(HELDOUT_SKIMAGE)} held-out pairs ({', '.join(HELDOUT_SKIMAGE)}; demo stand-in camera): "
              f"fp32 {res.psnr_fp32:.3f} dB, int8 {res.psnr_int8:.3f} dB, change {-res.cost_db:+.3f} dB")
        take, why = int8_default_rule(res.cost_db)
        print(f"  --dtype auto {'takes' if take else 'does not take'} the int8 model where it sits beside the checkpoint: {why}")
        if os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("ATEN_CPU_CAPABILITY"):
            print("  onnx: onnxruntime picks its own instruction set (MLAS; VNNI for int8 where the CPU has it); "
                  "ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY do not cap it")
        whole = 1 << 16
        configs = [
            ("plain (eager fp32, whole image)", {"kind": "plain", "model": str(ckpt)}),
            (f"torch auto ({auto} + channels_last)" + ("" if take else " = auto"),
             {"kind": "deblurrer", "dtype": "auto", "model": str(ckpt)}),
            ("onnxruntime fp32 (whole image)", {"kind": "onnx", "onnx": str(fp32), "tile": whole}),
            ("onnxruntime int8 (whole image)" + (" = auto" if take else ""), {"kind": "onnx", "onnx": str(res.path), "tile": whole}),
        ]
        for size in sizes:
            if not isinstance(size, int):
                continue
            print(f"\n{size}x{size} RGB, {model} (best of {repeats} interleaved runs after 1 warm-up)")
            _time_table(configs, size, repeats, False, threads)
    finally:
        if keep:
            print(f"\n  kept in {tmp}: model.onnx, model.int8.onnx, calibration/, pairs/")
        else:
            for p in sorted(tmp.rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
            tmp.rmdir()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 rounds at 1024, a single run without warm-up at 2048 (without the 512-tile paths)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per configuration (default 3, quick 2)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the children (0: torch's default)")
    ap.add_argument("--no-onnx", action="store_true", help="skip onnxruntime")
    ap.add_argument("--sizes", default=None,
                    help="comma list: N (N x N, every path) or WxH (plain, default and bf16, with and without "
                         "cropped decoding); default 1024,2048,1100x800 and the 4096x4096 memory check")
    ap.add_argument("--int8", action="store_true",
                    help="only the int8 comparison: --model's int8 quantisation against plain, torch auto and "
                         "onnxruntime fp32 (default size 1024), and its PSNR change on held-out pairs")
    ap.add_argument("--model", default="general", help="--int8: bundled model name or checkpoint (default general)")
    ap.add_argument("--keep", metavar="DIR", help="--int8: keep the exports, calibration photos and pairs in DIR")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(json.loads(args.serve))
        return 0

    import torch

    from dbgan.cpu_caps import detect, resolve_dtype
    from dbgan.nets import build_network

    caps = detect()
    auto = resolve_dtype("auto", "cpu", caps)
    repeats = args.repeats or (2 if args.quick else 3)
    if args.int8:
        print("dbgan inference benchmark: int8")
        print(f"  CPU: {_cpu_name()}, {os.cpu_count()} logical cores, torch {torch.__version__} "
              f"({args.threads or torch.get_num_threads()} threads; onnxruntime the same), python {platform.python_version()}")
        print(f"  {caps.summary()}")
        print(f"  load average at start: {os.getloadavg()[0]:.1f}")
        sizes = [int(v) for v in (args.sizes or "1024").split(",")]
        int8_table(args.model, sizes, repeats, args.threads, auto, args.keep)
        return 0
    torch.manual_seed(0)
    net = build_network("unet", **NET).eval()
    params = sum(p.numel() for p in net.parameters())
    print("dbgan inference benchmark")
    print(f"  CPU: {_cpu_name()}, {os.cpu_count()} logical cores, torch {torch.__version__} "
          f"({args.threads or torch.get_num_threads()} threads), python {platform.python_version()}")
    print(f"  {caps.summary()}")
    print(f"  dbgan deblur --dtype auto (the default) runs {auto} + channels_last here")
    print(f"  net: unet {NET} ({params / 1e6:.1f} M parameters, random weights), RGB input, CPU")
    print("  timing: best of interleaved runs (one process per path, driven in turn); memory: peak RSS of that process")
    try:
        load = os.getloadavg()[0]
        print(f"  load average at start: {load:.1f} (other processes share the cores: timings are noisy)")
    except OSError:
        pass

    tmp = Path(tempfile.mkdtemp(prefix="dbgan_bench_"))
    onnx_path = None
    if not args.no_onnx:
        try:
            from dbgan.export import export_onnx

            t = time.perf_counter()
            onnx_path = str(export_onnx(net, tmp / "unet.onnx", check=False))
            print(f"  onnx: exported in {time.perf_counter() - t:.1f} s (onnxruntime "
                  f"{__import__('onnxruntime').__version__}, CPU provider)")
            if os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("ATEN_CPU_CAPABILITY"):
                print("  onnx: onnxruntime picks its own instruction set; ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY "
                      "do not cap it, so its figures here are not those of the emulated CPU")
        except Exception as exc:  # benchmark: report and go on
            print(f"  onnx: export failed ({exc}); skipping onnxruntime")
    del net

    mark = " = auto" if auto == "fp32" else ""
    bf16_mark = " = auto" if auto == "bf16" else ""
    configs = [
        ("plain (eager fp32, whole image)", {"kind": "plain"}),
        (f"fp32 + channels_last, auto tiles{mark}", {"kind": "deblurrer", "dtype": "fp32"}),
        ("tiled fp32 (512, overlap 32)", {"kind": "deblurrer", "tile": 512}),
        (f"bf16 + channels_last{bf16_mark}", {"kind": "deblurrer", "dtype": "bf16", "channels_last": True}),
    ]
    if onnx_path:
        configs.append(("onnxruntime (whole image)", {"kind": "onnx", "onnx": onnx_path, "tile": 1 << 16}))
        configs.append(("onnxruntime (auto tiles)", {"kind": "onnx", "onnx": onnx_path}))

    odd_configs = [
        configs[0],
        configs[1],
        ("fp32 + channels_last, padding decoded too", {"kind": "deblurrer", "full_decoding": True}),
        configs[3],
        ("bf16 + channels_last, padding decoded too", {**configs[3][1], "full_decoding": True}),
    ]
    if not caps.native_bf16:  # emulated bf16 is hundreds of times slower: never start it
        print(f"  skipped: the bf16 paths (this CPU has no native bf16: {caps.reason})")
        configs = [c for c in configs if c[1].get("dtype") != "bf16"]
        odd_configs = [c for c in odd_configs if c[1].get("dtype") != "bf16"]
    sizes: list = [int(v) if "x" not in v else [int(v.split("x")[1]), int(v.split("x")[0])] for v in (args.sizes or "1024,2048,1100x800").split(",")]
    for size in sizes:
        quick_big = args.quick and size == 2048
        rounds = 1 if quick_big else repeats
        label = f"{size}x{size}" if isinstance(size, int) else (
            f"{size[1]}x{size[0]} (padded to {-(-size[1] // 256) * 256}x{-(-size[0] // 256) * 256} inside the U-Net)")
        print(f"\n{label} RGB ({'1 run, no warm-up' if quick_big else f'best of {rounds} interleaved runs after 1 warm-up'})")
        _time_table(configs if isinstance(size, int) else odd_configs, size, rounds, quick_big, args.threads)

    if not args.sizes:  # the memory check runs with the default sizes only
        print("\n4096x4096 RGB, default path (fp32, automatic tiling from the 1 GiB activation budget)")
        big = Child({"kind": "deblurrer", "size": 4096, "warmup": 0, "threads": args.threads})
        big.run()
        big.finish()
        if big.error or not big.result:
            print(f"  failed: {big.error}")
        else:
            peak = big.result["peak"]
            verdict = "under" if peak < 2 * GIB else "OVER"
            print(f"  time {big.times[0]:.1f} s, peak RSS {_fmt_mem(peak)} ({verdict} the 2 GiB target), {big.result['plan']}")
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
