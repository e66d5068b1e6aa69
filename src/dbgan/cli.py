"""The ``dbgan`` command: argument parsing only; each subcommand calls one library function.

Every command prints what it wrote and exits non-zero with a one-line reason on
bad input (exit 2 for bad input/settings, 1 for a failed run, 130 for an abort).
"""

from __future__ import annotations

import argparse
import errno
import logging
import shlex
import sys
from pathlib import Path


def _range(text: str) -> tuple[float, float]:
    parts = [float(p) for p in text.replace(",", " ").split()]
    if len(parts) == 1:
        return (parts[0], parts[0])
    if len(parts) != 2 or parts[0] > parts[1]:
        raise argparse.ArgumentTypeError(f"expected a number or 'LOW,HIGH', got {text!r}")
    return (parts[0], parts[1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dbgan", description="Deblurring by Realistic Blurring")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="make synthetic blurred pairs from sharp images")
    s.add_argument("sharp_dir")
    s.add_argument("out_dir")
    s.add_argument("--aligned", action="store_true", help="write side-by-side A|B files (A=sharp, B=blurred)")
    s.add_argument("--kernel-size", type=int, default=None, help="kernel size (default: synth.kernel_size, 31)")
    s.add_argument("--intensity", type=_range, default=None,
                   help="motion intensity or LOW,HIGH in [0,1] (default: synth.intensity, 0,1)")
    s.add_argument("--per-image", type=int, default=1, help="blurred versions per sharp image")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save-kernels", action="store_true", help="also write the kernels as images")
    s.add_argument("--config", help="YAML config whose 'synth' section sets the degradation pipeline")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
    s.add_argument("--max-pixels", type=int, default=None,
                   help="decompression-bomb limit in pixels (raise it for huge scans; 0 = no limit)")
    s.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in OUT_DIR")

    t = sub.add_parser("train", help="train a scheme from a YAML config into runs/<name>/")
    t.add_argument("config")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. scheme=joint stages.dbgan.lr=1e-4")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", default=None, help="continue an existing run even if its config changed")
    g.add_argument("--no-resume", dest="resume", action="store_false", help="refuse to continue an existing run")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoints of an existing run and train again from the beginning")

    for cmd, what in (("deblur", "deblur images with a trained DBGAN"), ("blur", "blur sharp images with a trained BGAN")):
        d = sub.add_parser(cmd, help=what)
        if cmd == "deblur":
            d.add_argument("paths", nargs="+", metavar="[CHECKPOINT] INPUT OUTPUT",
                           help="checkpoint .safetensors or run directory, or a bundled model name (or .onnx with "
                                "--onnx), then an image file or folder and the output file or folder; without a checkpoint the bundled "
                                "general model deblurs")
            d.add_argument("--model", default=None,
                           help="a bundled model by name instead of a checkpoint (default without a checkpoint: general)")
        else:
            d.add_argument("checkpoint", help="checkpoint .safetensors or run directory")
            d.add_argument("input", help="image file or folder")
            d.add_argument("output", help="image file or folder")
        d.add_argument("--tile", type=int, default=None, help="tile size (default: automatic from the memory budget)")
        d.add_argument("--overlap", type=int, default=None, help="pixels shared by neighbouring tiles (default 32, at most half the tile)")
        d.add_argument("--device", default="auto")
        d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
        d.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
        d.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16") + (("int8",) if cmd == "deblur" else ()),
                       default="auto",
                       help="auto (default): bf16 where the CPU computes it natively (avx512_bf16/AMX; "
                            "about 2x faster, max error ~2e-3) or the GPU supports it, else fp32; on a CPU the "
                            "int8 model NAME.int8.onnx (dbgan export --int8) when it records a PSNR cost "
                            "below 0.05 dB; bf16 on a CPU without native bf16 runs fp32 with a warning"
                       + ("; int8: the int8 model, run by onnxruntime" if cmd == "deblur" else ""))
        d.add_argument("--max-pixels", type=int, default=None, help="decompression-bomb limit (0 = none)")
        d.add_argument("--quality", type=int, default=None, help="JPEG/WebP quality 1-100 (default 95)")
        if cmd == "deblur":
            d.add_argument("--onnx", action="store_true", help="run an exported ONNX model with onnxruntime")
            d.add_argument("--coarse-levels", type=int, default=0, metavar="N",
                           help="deblur at N coarser scales (1/2, 1/4, ...) first, coarse to fine: for blur wider than "
                                "the model knows (the bundled general model: about 40 px), e.g. high-resolution "
                                "photos; costs on mildly blurred ones (default 0: off; at most 4)")
            d.add_argument("--blind", type=int, default=0, metavar="N",
                           help="camera shake: estimate one motion kernel of up to N px (odd, e.g. 31) from each "
                                "photo and deconvolve it before the model (classical blind deconvolution, "
                                "dbgan.blind); sharpens long shake the model alone leaves; may ring where the "
                                "blur varies over the frame, and costs on noisy photos (default 0: off)")
        else:
            d.add_argument("--seed", type=int, default=0, help="noise seed: same seed, same blur")

    e = sub.add_parser("eval", help="PSNR/SSIM of a deblurrer on held-out pairs")
    e.add_argument("checkpoint")
    e.add_argument("--pairs", help="pairs: DIR/sharp + DIR/blur, DIR/input + DIR/target, GoPro scenes, "
                   "a RealBlur list .txt, or a folder of A|B files")
    e.add_argument("--unpaired", help="folder of real blurred photos: no-reference sharpness before/after")
    e.add_argument("--out", help="report name: R or R.json or R.csv writes R.json and R.csv "
                                  "(with both --pairs and --unpaired, the unpaired report is R_unpaired.json/.csv)")
    e.add_argument("--overwrite", action="store_true", help="replace existing report files")
    e.add_argument("--device", default="auto")
    e.add_argument("--tile", type=int, default=None)
    e.add_argument("--coarse-levels", type=int, default=0, metavar="N", help="as for deblur (default 0: off)")
    e.add_argument("--blind", type=int, default=0, metavar="N", help="as for deblur (default 0: off)")
    e.add_argument("--max-pixels", type=int, default=None, help="decompression-bomb limit (0 = none)")
    e.add_argument("--ssim-window", choices=("gaussian", "uniform"), default="gaussian",
                   help="gaussian: 11x11, sigma 1.5, as published deblurring tables (default); "
                        "uniform: scikit-image's 7x7 window")

    x = sub.add_parser("export", help="export the deblurrer to ONNX (dynamic height/width)")
    x.add_argument("checkpoint")
    x.add_argument("out")
    x.add_argument("--role", default="deblur_g", choices=("deblur_g", "blur_g"))
    x.add_argument("--opset", type=int, default=17)
    x.add_argument("--int8", action="store_true",
                   help="also write OUT's int8 quantisation (OUT with .int8.onnx; onnxruntime static QDQ, "
                        "per-channel weights) calibrated on --calibration")
    x.add_argument("--calibration", metavar="DIR", help="folder of blurred photos to calibrate int8 on")
    x.add_argument("--calibration-crops", type=int, default=16, help="random crops drawn for calibration (default 16)")
    x.add_argument("--crop-size", type=int, default=128, help="side of a calibration crop (default 128)")
    x.add_argument("--seed", type=int, default=0, help="seed of the calibration crops")
    x.add_argument("--eval-pairs", metavar="DIR",
                   help="held-out pairs (not the calibration photos): measure int8's PSNR cost and record it; "
                        "--dtype auto takes the int8 model only when it is below 0.05 dB")

    m = sub.add_parser("demo", help="the bundled general model and its adaptation to a stand-in camera, with an HTML report")
    m.add_argument("--out", default="demo_out")
    m.add_argument("--quick", action="store_true", help="a seconds-long run (for tests)")
    m.add_argument("--config", default=None, help="config to train with (default: configs/adapt.yaml)")

    w = sub.add_parser("serve", help="a local web page to deblur images in the browser (pip install 'dbgan[serve]')")
    w.add_argument("--model", action="append", default=None,
                   help="checkpoint (.safetensors or run folder) or bundled model name to offer; repeatable "
                        "(the bundled models are always offered)")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)")
    w.add_argument("--port", type=int, default=8000)
    w.add_argument("--device", default="auto")
    w.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="as for deblur: auto takes bf16 only where the CPU/GPU computes it natively and faster")
    w.add_argument("--tile", type=int, default=None, help="tile size (default: automatic from the memory budget)")
    w.add_argument("--max-upload-mb", type=float, default=100.0, help="largest accepted upload (MiB)")
    w.add_argument("--max-pixels", type=int, default=60_000_000, help="largest accepted image (pixels per page)")

    f = sub.add_parser("check-folders", help="before adapting: how firmly a sharp and a blurred folder pin the "
                       "camera's brightness and colour (dbgan.tone_uncertainty)")
    f.add_argument("sharp_dir")
    f.add_argument("blurred_dir")
    f.add_argument("--grey", action="store_true", help="read the photos as grey (a grey-scale camera)")
    f.add_argument("--max-pixels", type=int, default=None,
                   help="decompression-bomb limit in pixels (raise it for huge scans; 0 = no limit)")
    f.add_argument("--json", action="store_true", help="print the figures as JSON")

    sub.add_parser("nets", help="list the registered architectures with parameter counts")

    ph = sub.add_parser("photos", help="build the general model's training tiles from installed photo packages")
    ph.add_argument("out_dir")
    return p


def _run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        from dbgan.synth import synthesize

        synth_cfg = None
        if args.config:
            from dbgan.config import load_config

            synth_cfg = load_config(args.config).synth
        res = synthesize(
            args.sharp_dir, args.out_dir, aligned=args.aligned, kernel_size=args.kernel_size,
            intensity=args.intensity, per_image=args.per_image, seed=args.seed,
            save_kernels=args.save_kernels, synth=synth_cfg, skip_bad=args.skip_bad,
            max_pixels=args.max_pixels, overwrite=args.overwrite,
        )
        print(res.summary() if hasattr(res, "summary") else res)
        for path, reason in getattr(res, "skipped", []):
            print(f"unreadable, skipped: {path}: {for_command(args.command, reason)}", file=sys.stderr)
        return 0

    if args.command == "train":
        from dbgan.config import load_config
        from dbgan.train import train

        cfg = load_config(args.config, args.overrides)
        command = "dbgan " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        res = train(cfg, command=command, resume=args.resume, overwrite=args.overwrite)
        for path, reason in res.skipped:
            print(f"unreadable, skipped (data.skip_bad): {path}: {reason}", file=sys.stderr)
        if res.status == "failed":
            print(f"dbgan train: {res.message}", file=sys.stderr)
            return 1
        if res.status == "interrupted":
            print(res.message)
        print(f"run directory: {res.run_dir}")
        if res.checkpoint:
            print(f"checkpoint: {res.checkpoint}")
        print(f"samples: {res.run_dir / 'samples' / 'index.html'}  tensorboard: --logdir {res.run_dir / 'tb'}")
        return 0

    if args.command == "deblur":
        _deblur_paths(args)
    if args.command in ("deblur", "blur"):
        from dbgan.api import resolve_model
        from dbgan.infer import run_folder

        res = run_folder(
            args.checkpoint if getattr(args, "onnx", False) else resolve_model(args.checkpoint), args.input, args.output, mode=args.command, tile=args.tile,
            overlap=args.overlap, device=args.device, onnx=getattr(args, "onnx", False),
            overwrite=args.overwrite, seed=getattr(args, "seed", 0), skip_bad=args.skip_bad,
            dtype=args.dtype, max_pixels=args.max_pixels, quality=args.quality,
            coarse_levels=getattr(args, "coarse_levels", 0), blind=getattr(args, "blind", 0),
        )
        for path in res.written:
            print(f"wrote {path}")
        if res.skipped_existing:
            print(f"skipped {len(res.skipped_existing)} existing outputs (use --overwrite to replace them)")
        for path, reason in res.bad:
            print(f"unreadable, skipped: {path}: {for_command(args.command, reason)}", file=sys.stderr)
        return 0

    if args.command == "eval":
        from dbgan import evaluate as E

        from dbgan.api import resolve_model

        if not args.pairs and not args.unpaired:
            raise ValueError("give --pairs DIR (held-out pairs) and/or --unpaired DIR (real blurred photos)")
        args.checkpoint = resolve_model(args.checkpoint)
        out_paired = args.out if args.pairs else None
        out_unpaired = None
        if args.out and args.unpaired:
            out_unpaired = str(E.unpaired_out(args.out)) if args.pairs else args.out
        written = []  # every report file is checked before any work
        if out_paired:
            written += E.check_report_paths(out_paired, [args.pairs], args.overwrite)
        if out_unpaired:
            written += E.check_report_paths(out_unpaired, [args.unpaired], args.overwrite)
        if args.pairs:
            report = E.evaluate(args.checkpoint, args.pairs, out_paired, device=args.device, tile=args.tile,
                                max_pixels=args.max_pixels, ssim_window=args.ssim_window, overwrite=args.overwrite,
                                coarse_levels=args.coarse_levels, blind=args.blind)
            print(E.format_table(report))
        if args.unpaired:
            report = E.evaluate_unpaired(args.checkpoint, args.unpaired, out_unpaired, device=args.device,
                                         tile=args.tile, max_pixels=args.max_pixels, overwrite=args.overwrite,
                                         coarse_levels=args.coarse_levels, blind=args.blind)
            print(E.format_table(report))
        for path in written:
            print(f"wrote {path}")
        return 0

    if args.command == "export":
        from dbgan.export import export_onnx

        settings = None
        if args.int8:
            from dbgan.quantize import CalibrationSettings, quantize_int8

            if not args.calibration:
                raise ValueError("--int8 needs --calibration DIR (a folder of blurred photos)")
            if args.role != "deblur_g":
                raise ValueError(f"--int8 quantises deblurrers only, not --role {args.role}")
            settings = CalibrationSettings(crops=args.calibration_crops, crop_size=args.crop_size, seed=args.seed)
            from dbgan.io import list_images

            list_images(args.calibration)  # a missing or empty folder is named before any work
        elif args.calibration or args.eval_pairs:
            raise ValueError("--calibration and --eval-pairs go with --int8")
        path = export_onnx(args.checkpoint, args.out, role=args.role, opset=args.opset)
        print(f"wrote {path}")
        if settings is not None:
            from dbgan.cpu_caps import int8_default_rule

            res = quantize_int8(path, args.calibration, settings=settings, eval_pairs=args.eval_pairs)
            print(f"wrote {res.path}")
            if res.cost_db is not None:
                print(f"int8 on {args.eval_pairs}: PSNR {res.psnr_int8:.3f} dB, fp32 {res.psnr_fp32:.3f} dB")
            take, why = int8_default_rule(res.cost_db)
            print(f"--dtype auto will {'use' if take else 'not use'} it: {why}" + ("" if take else "; --dtype int8 will"))
        return 0

    if args.command == "demo":
        from dbgan.demo import run_demo

        report = run_demo(args.out, quick=args.quick, config=args.config)
        print(f"report: {report}")
        return 0

    if args.command == "photos":
        from dbgan.photos import build_photo_folder

        summary = build_photo_folder(args.out_dir)
        print(f"wrote {summary['tiles']} tiles from {summary['images']} images into {args.out_dir} "
              f"(sources and licences: {Path(args.out_dir) / 'SOURCES.json'})")
        return 0

    if args.command == "serve":
        from dbgan.serve import serve

        serve(args.model, host=args.host, port=args.port, device=args.device, dtype=args.dtype, tile=args.tile,
              max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels)
        return 0

    if args.command == "check-folders":
        import json

        from dbgan.io import list_images
        from dbgan.tone_uncertainty import folders_tone_gap

        gap = folders_tone_gap(args.sharp_dir, args.blurred_dir, channels=1 if args.grey else 3, max_pixels=args.max_pixels)
        if gap is None:  # a folder with fewer than two photos (a missing one is named by list_images above)
            folder = next(d for d in (args.sharp_dir, args.blurred_dir) if len(list_images(d)) < 2)
            raise ValueError(f"{folder}: the check needs at least two photos per folder (their spread)")
        print(json.dumps(gap.as_dict(), indent=1) if args.json else gap.summary())
        return 0

    if args.command == "nets":
        from dbgan.nets import describe

        for name, params in describe():
            print(f"{name:14s} {params:>12,d} parameters (default arguments)")
        return 0
    raise AssertionError(args.command)


def _deblur_paths(args: argparse.Namespace) -> None:
    """``dbgan deblur [CHECKPOINT] INPUT OUTPUT [--model NAME]`` -> args.checkpoint/input/output."""
    paths = args.paths
    if len(paths) == 3:
        if args.model:
            raise ValueError("give either a checkpoint or --model, not both")
        args.checkpoint, args.input, args.output = paths
    elif len(paths) == 2:
        from dbgan.models import DEFAULT_MODEL

        if args.onnx:
            raise ValueError("--onnx needs the .onnx file as the first argument")
        args.checkpoint = args.model or DEFAULT_MODEL  # a bundled model's name (resolved below)
        args.input, args.output = paths
    else:
        raise ValueError(f"expected [CHECKPOINT] INPUT OUTPUT, got {len(paths)} paths")


def _one_line(exc: BaseException) -> str:
    """The one-line reason of an error. An error raised in a DataLoader worker arrives as
    "Caught X in DataLoader worker process N. Original Traceback ...": take the original
    message (which names the file) from its last line."""
    text = str(exc)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Caught ") and "Original Traceback" in text:
        _, sep, msg = lines[-1].partition(": ")
        return msg.strip() if sep else lines[-1].strip()
    return lines[0]


#: Library messages name the config settings; each command names its own options instead.
_BOMB_HINT = "data.max_image_pixels (config) or --max-pixels"
_SKIP_HINT = ", or use data.skip_bad"


def for_command(command: str, text: str) -> str:
    """An error message with the hints of ``command``: ``train`` has settings (no
    ``--max-pixels``); ``deblur``/``blur``/``synth`` have ``--skip-bad`` and ``--max-pixels``;
    ``eval`` has ``--max-pixels`` only."""
    if command in ("train", "demo"):
        return text.replace(_BOMB_HINT, "data.max_image_pixels")
    text = text.replace(_BOMB_HINT, "--max-pixels")
    if command in ("deblur", "blur", "synth"):
        return text.replace(_SKIP_HINT, ", or use --skip-bad")
    return text.replace(_SKIP_HINT, "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from dbgan.checkpoint import CheckpointError
    from dbgan.config import ConfigError

    known: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, FileNotFoundError, FileExistsError, NotADirectoryError, ValueError)
    try:
        return _run(args)
    except known as exc:
        print(f"dbgan {args.command}: error: {for_command(args.command, _one_line(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions: the write was atomic, nothing half-written
        hint = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = (
                "; files already written are intact (every write is atomic): free some space and "
                "run the same command again" + (" to resume from the last saved state" if args.command == "train" else "")
            )
        print(f"dbgan {args.command}: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dbgan {args.command}: aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
