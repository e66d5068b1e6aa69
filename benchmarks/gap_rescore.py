"""Score the runs ``domain_gap.py --keep DIR`` kept, again, with every metric it now reports.

Nothing is trained: each kept run's last checkpoint deblurs its camera's test photos, and
``domain_gap.score`` scores them (PSNR, tone-aligned PSNR, SSIM, brightness and colour
bias); the blurred input and the tone-only oracle (``domain_gap.tone_lut`` on the camera's
own training pairs) are added per camera and seed. Use it to put a new metric or control
on runs that took hours to train.

    python benchmarks/gap_rescore.py KEEP_DIR[=method,method] [KEEP_DIR ...] [--json FILE] [--variants [--wise A]]

``--variants`` adds, for every kept adapted run (``separate``, ``general_adapt``) that holds its BGAN,
three post-hoc rows that need no training (session 18; none ships): ``+wise``, its weights moved
``--wise`` of the way back to the bundled general model's (WiSE-FT); ``+lut``, a per-channel tone
LUT after it, fitted on BGAN's own pairs (crops of the seed's sharp training photos, BGAN's
degradation of them, the deblurrer's outputs; ``domain_gap.tone_lut``); and ``+wise+lut``.

``=method,...`` takes only those rows from that folder (when several folders hold a run of
the same method, camera and seed, the first one named wins). The folders of one command line
must hold the same data (the same ``--cameras`` list and seeds), as ``domain_gap.py`` builds it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cameras as CAMS  # noqa: E402
import domain_gap as G  # noqa: E402

VIEWS = ("colour", "grey")
#: the post-hoc rows of ``--variants``: suffix -> label suffix
VARIANTS = {"+wise": "moved toward the general model (WiSE-FT)", "+lut": "+ tone LUT from BGAN's pairs",
            "+wise+lut": "moved toward the general model + tone LUT from BGAN's pairs"}
ADAPTED = ("separate", "general_adapt")


def parse_run(name: str) -> tuple[str, str, int] | None:
    """``(method, camera or view, seed)`` of a run folder named ``{method}_{camera}_s{seed}``."""
    names = "|".join(re.escape(n) for n in (*CAMS.CAMERAS, *VIEWS))
    m = re.fullmatch(rf"(.+?)_({names})_s(\d+)", name)  # lazy: "oracle_microscope_grey" is not a "grey" run
    return (m.group(1), m.group(2), int(m.group(3))) if m else None


def kept_runs(folder: Path, methods: set[str] | None) -> list[tuple[str, str, int, Path]]:
    """Every finished run under ``folder/s*/runs``: ``(method, camera or view, seed, checkpoint)``."""
    out = []
    for ckpt in sorted(folder.glob("s*/runs/*/checkpoints/latest.safetensors")):
        parsed = parse_run(ckpt.parent.parent.name)
        if parsed and (methods is None or parsed[0] in methods):
            out.append((*parsed, ckpt))
    return out


def interpolated(ckpt: Path, start: dict, share: float):
    """The deblurrer of ``ckpt`` (EMA weights) with its floating-point weights at ``share`` of the way
    from ``start`` (the bundled model's state) to its own: ``(1 - share) * start + share * own``."""
    from dbgan.checkpoint import load_checkpoint

    net = load_checkpoint(ckpt).build("deblur_g")
    own = net.state_dict()
    net.load_state_dict({k: (1 - share) * start[k] + share * v if v.is_floating_point() else v for k, v in own.items()})
    return net.eval()


def bgan_pairs(run_dir: Path, seed_dir: Path, per_photo: int = 4, crop: int = 128, seed: int = 0):
    """``(sharp, degraded)`` ``N x 3 x crop x crop`` batches: random crops of the seed's sharp training
    photos (``seed_dir/sharp_colour``, or ``sharp_grey`` for a grey BGAN) and the run's last BGAN
    checkpoint's degradation of them (8-bit, as a photo file), or ``None`` when the run kept no BGAN."""
    import torch

    from dbgan.checkpoint import load_checkpoint
    from dbgan.io import read_image

    found = sorted(run_dir.glob("checkpoints/bgan_*.safetensors"))
    if not found:
        return None
    bgan = load_checkpoint(found[-1]).build("blur_g")
    gen = torch.Generator().manual_seed(seed)
    crops = []
    for path in sorted((seed_dir / ("sharp_grey" if bgan.in_channels == 1 else "sharp_colour")).glob("*.png")):
        img = read_image(path, channels=3)
        h, w = img.shape[-2:]
        for _ in range(per_photo):
            y, x = (int(torch.randint(0, n - crop + 1, (), generator=gen)) for n in (h, w))
            crops.append(img[:, y : y + crop, x : x + crop])
    sharp = torch.stack(crops)
    inp = sharp[:, :1] if bgan.in_channels == 1 else sharp
    torch.manual_seed(seed)
    with torch.no_grad():
        fake = torch.cat([bgan(inp[i : i + 8]) for i in range(0, len(inp), 8)]).expand(-1, 3, -1, -1)
    return sharp, G.quantise(fake)


def variant_rows(ckpt: Path, own, seed_dir: Path, start: dict, share: float) -> dict:
    """``{suffix: restore}`` of :data:`VARIANTS` for one kept adapted run (``own``: its deblurrer, loaded
    from ``ckpt``); empty without its BGAN."""
    import torch

    from dbgan.infer import Deblurrer

    pairs = bgan_pairs(ckpt.parent.parent, seed_dir)
    if pairs is None:
        return {}
    sharp, fake = pairs
    wise = Deblurrer(interpolated(ckpt, start, share), device="cpu", tile=None)
    out = {"+wise": wise}
    for suffix, net in (("+lut", own), ("+wise+lut", wise)):
        with torch.no_grad():
            outs = [G.quantise(net(f)) for f in fake]
        lut = G.tone_lut([("", s, o) for s, o in zip(sharp, outs)])
        out[suffix] = lambda x, net=net, lut=lut: lut(net(x))
    return out


def rescore(specs: list[str], general: bool = False, variants: float | None = None) -> dict:
    """``results[camera][method]`` = per-seed score dicts (seed order), as ``domain_gap.main`` keeps them."""
    from dbgan.checkpoint import CheckpointError
    from dbgan.infer import Deblurrer

    from dbgan.models import bundled_model_path

    bundled = Deblurrer.from_checkpoint(bundled_model_path("general"), device="cpu", tile=None) if general else None
    if variants is not None:
        from dbgan.checkpoint import load_checkpoint

        start = load_checkpoint(bundled_model_path("general")).build("deblur_g").state_dict()
    by_seed: dict[str, dict[str, dict[int, dict]]] = {}
    tests: dict[tuple[str, int], list] = {}
    for spec in specs:
        folder, _, only = spec.partition("=")
        folder = Path(folder)
        if not folder.is_dir():
            raise SystemExit(f"gap_rescore: no such folder: {folder}")
        methods = set(only.split(",")) if only else None
        for seed_dir in sorted(folder.glob("s*")):
            seed = int(seed_dir.name[1:]) if seed_dir.name[1:].isdigit() else None
            for cam_dir in sorted(p for p in seed_dir.iterdir() if p.name in CAMS.CAMERAS and (p / "test").is_dir()):
                c = cam_dir.name
                if (c, seed) in tests:
                    continue
                tests[c, seed] = G.read_pairs(cam_dir / "test")
                rows = by_seed.setdefault(c, {})
                rows.setdefault("input", {})[seed] = G.score(tests[c, seed], lambda x: x)
                rows.setdefault("tone_oracle", {})[seed] = G.score(tests[c, seed], G.tone_lut(G.read_pairs(cam_dir / "oracle")))
                if bundled is not None:
                    rows.setdefault("general", {})[seed] = G.score(tests[c, seed], bundled)
        for method, target, seed, ckpt in kept_runs(folder, methods):
            cams = [target] if target in CAMS.CAMERAS else [c for c, s in tests if s == seed and CAMS.get(c).grey == (target == "grey")]
            net = None
            for c in cams:
                if (c, seed) not in tests or seed in by_seed[c].get(method, {}):
                    continue
                try:
                    net = net or Deblurrer.from_checkpoint(ckpt, device="cpu", tile=None)
                except CheckpointError as e:  # a run still training (or stopped) before its deblurring stage
                    print(f"skipped {ckpt.parent.parent.name}: {e}", flush=True)
                    break
                by_seed[c].setdefault(method, {})[seed] = s = G.score(tests[c, seed], net)
                print(f"{c} s{seed} {method}: PSNR {s['psnr']:.2f}, tone-aligned {s['psnr_tone']:.2f} ({ckpt.parent.parent.name})",
                      flush=True)
                if variants is not None and method in ADAPTED:
                    for suffix, restore in variant_rows(ckpt, net, folder / f"s{seed}", start, variants).items():
                        by_seed[c].setdefault(method + suffix, {})[seed] = s = G.score(tests[c, seed], restore)
                        print(f"{c} s{seed} {method}{suffix}: PSNR {s['psnr']:.2f}, tone-aligned {s['psnr_tone']:.2f}", flush=True)
    return {c: {m: [v[s] for s in sorted(v)] for m, v in rows.items()} for c, rows in by_seed.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="domain_gap.py --keep folders, each optionally =method,method")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--general", action="store_true", help="add the bundled general model's row")
    p.add_argument("--variants", action="store_true", help="add the post-hoc rows of adapted runs (see the docstring)")
    p.add_argument("--wise", type=float, default=0.5, help="--variants: the share of the adapted weights kept (default 0.5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: two threads on busy cores were 30x slower)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not 0.0 <= args.wise <= 1.0:
        p.error(f"--wise must be in [0, 1], got {args.wise}")
    results = rescore(args.folders, general=args.general, variants=args.wise if args.variants else None)
    labels = G.LABELS | {m + suffix: f"{G.LABELS[m]} {text}" for m in ADAPTED for suffix, text in VARIANTS.items()}
    cams = sorted(results)
    test_cams = [c for c in cams if c not in CAMS.VALIDATION_CAMERAS]
    methods = sorted({m for rows in results.values() for m in rows} - {"input", "tone_oracle"})
    methods = [m for m in methods if all(results[c].get(m) for c in results)] + \
        [m for m in methods if not all(results[c].get(m) for c in results)]
    order = ["input", "tone_oracle", *[m for m in labels if m in methods]]
    head = ["camera", "row", "seeds", "PSNR (dB), per seed", "tone-aligned PSNR (dB)", "brightness bias"]
    table = []
    for c in cams:
        for m in order:
            vals = results[c].get(m, [])
            if vals:
                table.append([c, labels[m], str(len(vals)), " / ".join(f"{v['psnr']:.2f}" for v in vals),
                              " / ".join(f"{v['psnr_tone']:.2f}" for v in vals), " / ".join(f"{v['bias']:+.4f}" for v in vals)])
    for m in order:
        per_cam = [results[c][m] for c in test_cams if results[c].get(m)]
        if len(per_cam) == len(test_cams) and per_cam:
            table.append(["mean of the test cameras", labels[m], "", f"{np.mean([np.mean([v['psnr'] for v in x]) for x in per_cam]):.2f}",
                          f"{np.mean([np.mean([v['psnr_tone'] for v in x]) for x in per_cam]):.2f}", ""])
    print(G.fmt_table(head, table))
    res_checks = G.checks(results, test_cams, ["input", *methods]) if test_cams else []
    for who, what, ok in res_checks:
        print(f"  [{'PASS' if ok else ('FAIL' if ok is False else ' -- ')}] {who}: {what}")
    if args.json:
        Path(args.json).write_text(json.dumps({"folders": args.folders, "results": results,
                                               "checks": [{"run": w, "check": t, "pass": ok} for w, t, ok in res_checks]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
