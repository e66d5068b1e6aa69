"""Choose the general model's network by measurement: speed per step and early loss.

Each candidate trains for ``--steps`` steps on the same stream of synthetic pairs from
``configs/general.yaml`` (batch 8, 128 px crops, one thread, Adam as in the config), then
deblurs the same 16 validation crops (another seed). Prints seconds per step, the mean
loss of the last quarter of the steps, the validation PSNR gain over the blurred input and
the parameter count / weight size.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/general_net_choice.py --steps 60
"""

from __future__ import annotations

import argparse
import time

import torch


CANDIDATES = {
    "nafnet w16 [1,1,2,2] m2": ("nafnet", {"width": 16, "enc_blocks": [1, 1, 2, 2], "middle_blocks": 2, "sca": False}),
    "nafnet w24 [1,1,1,1] m1": ("nafnet", {"width": 24, "enc_blocks": [1, 1, 1, 1], "middle_blocks": 1, "sca": False}),
    "nafnet s2 w32 [1,1,2] m2": ("nafnet", {"width": 32, "enc_blocks": [1, 1, 2], "middle_blocks": 2, "sca": False,
                                           "shuffle": 2}),
    "nafnet s2 w24 [1,2,2] m2": ("nafnet", {"width": 24, "enc_blocks": [1, 2, 2], "middle_blocks": 2, "sca": False,
                                           "shuffle": 2}),
    "unet residual d6 ngf32": ("unet", {"num_downs": 6, "ngf": 32, "residual": True}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--config", default="general")
    ap.add_argument("--only", default="", help="semicolon-separated candidate names (default: all)")
    ap.add_argument("--amp", default="none", choices=("none", "bf16"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from dbgan.cpu_caps import detect

    caps = detect()
    print(f"cpu: {caps.summary()}")
    if args.amp == "bf16" and not caps.native_bf16:
        print("skipped: --amp bf16 (no native bf16 here, it would be emulated); timing fp32 instead", flush=True)
        args.amp = "none"
    from dbgan.config import load_config
    from dbgan.data import collate
    from dbgan.data.datasets import SyntheticPairDataset
    from dbgan.losses import content_loss
    from dbgan.metrics import psnr_torch as psnr
    from dbgan.nets import build_network

    cfg = load_config(args.config)
    bs = cfg.stages.dbgan.batch_size
    ds = SyntheticPairDataset(cfg.data.sharp_dir, cfg.data, cfg.synth, seed=0)
    val = SyntheticPairDataset(cfg.data.sharp_dir, cfg.data, cfg.synth, seed=12345)
    t0 = time.perf_counter()
    batches = [collate([ds[i * bs + j] for j in range(bs)]) for i in range(args.steps)]
    vb = collate([val[j] for j in range(16)])
    print(f"data: {(time.perf_counter() - t0) / (args.steps * bs) * 1000:.1f} ms per pair")
    base = float(psnr(vb["blur"], vb["sharp"]).mean())
    names = [n for n in CANDIDATES if not args.only or n in args.only.split(";")]
    for name in names:
        arch, kw = CANDIDATES[name]
        torch.manual_seed(0)
        net = build_network(arch, **kw)
        n_params = sum(p.numel() for p in net.parameters())
        opt = torch.optim.Adam(net.parameters(), lr=cfg.stages.dbgan.lr, betas=tuple(cfg.stages.dbgan.betas))
        losses = []
        t0 = time.perf_counter()
        for b in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                out = net(b["blur"])
                loss = content_loss("charbonnier", out.float(), b["sharp"], eps=1e-3)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        dt = (time.perf_counter() - t0) / len(batches)
        net.eval()
        with torch.no_grad():
            gain = float(psnr(net(vb["blur"]).clamp(0, 1), vb["sharp"]).mean()) - base
        tail = losses[-max(1, len(losses) // 4):]
        print(f"{name:26s} {dt:6.3f} s/step  loss(last quarter) {sum(tail) / len(tail):.4f}  "
              f"val gain {gain:+.2f} dB  {n_params / 1e6:.2f} M params ({n_params * 4 / 2**20:.1f} MiB fp32)")


if __name__ == "__main__":
    main()
