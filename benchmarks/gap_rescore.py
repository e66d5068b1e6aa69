"""Score the runs ``domain_gap.py --keep DIR`` kept, again, with every metric it now reports.

Nothing is trained: each kept run's last checkpoint deblurs its camera's test photos, and
``domain_gap.score`` scores them (PSNR, tone-aligned PSNR, SSIM, brightness and colour
bias); the blurred input and the tone-only oracle (``domain_gap.tone_lut`` on the camera's
own training pairs) are added per camera and seed. Use it to put a new metric or control
on runs that took hours to train.

    python benchmarks/gap_rescore.py KEEP_DIR[=method,method] [KEEP_DIR ...] [--json FILE]

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


def rescore(specs: list[str], general: bool = False) -> dict:
    """``results[camera][method]`` = per-seed score dicts (seed order), as ``domain_gap.main`` keeps them."""
    from dbgan.checkpoint import CheckpointError
    from dbgan.infer import Deblurrer

    from dbgan.models import bundled_model_path

    bundled = Deblurrer.from_checkpoint(bundled_model_path("general"), device="cpu", tile=None) if general else None
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
    return {c: {m: [v[s] for s in sorted(v)] for m, v in rows.items()} for c, rows in by_seed.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="domain_gap.py --keep folders, each optionally =method,method")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--general", action="store_true", help="add the bundled general model's row")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: two threads on busy cores were 30x slower)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = rescore(args.folders, general=args.general)
    cams = sorted(results)
    test_cams = [c for c in cams if c not in CAMS.VALIDATION_CAMERAS]
    methods = sorted({m for rows in results.values() for m in rows} - {"input", "tone_oracle"})
    methods = [m for m in methods if all(results[c].get(m) for c in results)] + \
        [m for m in methods if not all(results[c].get(m) for c in results)]
    order = ["input", "tone_oracle", *[m for m in G.LABELS if m in methods]]
    head = ["camera", "row", "seeds", "PSNR (dB), per seed", "tone-aligned PSNR (dB)", "brightness bias"]
    table = []
    for c in cams:
        for m in order:
            vals = results[c].get(m, [])
            if vals:
                table.append([c, G.LABELS[m], str(len(vals)), " / ".join(f"{v['psnr']:.2f}" for v in vals),
                              " / ".join(f"{v['psnr_tone']:.2f}" for v in vals), " / ".join(f"{v['bias']:+.4f}" for v in vals)])
    for m in order:
        per_cam = [results[c][m] for c in test_cams if results[c].get(m)]
        if len(per_cam) == len(test_cams) and per_cam:
            table.append(["mean of the test cameras", G.LABELS[m], "", f"{np.mean([np.mean([v['psnr'] for v in x]) for x in per_cam]):.2f}",
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
