"""Training speed: our loop (``Stage.step``) against a plain pix2pix-style eager fp32 loop.

What is compared, side by side in one process, interleaved round by round:

* ``plain``: the reference style, written out below exactly as pix2pix's
  ``optimize_parameters`` does it: G forward; D update (D on the pooled
  ``fake.detach()`` and on the real image, one backward, ``optimizer_D.step()``);
  G update (D on ``fake`` *again* with D's parameters frozen, one backward,
  ``optimizer_G.step()``); ``torch.optim.Adam`` with its default (for-loop)
  implementation, fp32, NCHW, and plain ``torch.nn`` convolutions in every layer
  (the small-map GEMM path of ``dbgan.nets.small_conv`` switched off), the U-Net
  decoding the whole padded image when a crop is smaller than 256 (cropped
  decoding of ``dbgan.nets.unet`` switched off).
* ``ours``: ``dbgan.train.loop.make_stage(...).step(batch, it)`` on the same
  ``seed`` preset networks, losses and optimizer settings, under the
  ``train.amp`` / ``train.channels_last`` settings named in the variant.

Two steps are timed: the **blur-pretrain** step (G_blur U-Net 256 with noise map,
conditional 70x70 PatchGAN, vanilla GAN + L1 x100, image pool 10) and the
**joint** step (G_blur + D_blur against real blur, plus G_deblur + D_sharp, the
deblurrer's loss back-propagated into G_blur), at 256x256 batch 1 and
128x128 batch 4. Both loops get the same pre-loaded batches, so the step
timings exclude data loading; the loader's own throughput is measured and
printed separately.

Before timing, the script checks that both loops do the same maths: from the same
initial weights, seeds and batches, ``ours`` at fp32/NCHW and ``plain`` (run in
the G-first order our stage uses, see ``PlainLoop.order``) must give the same
losses step after step; the bf16 variant's first-step losses are compared with
fp32 too.

Usage::

    python benchmarks/train_speed.py --quick      # ~8 minutes on one core of the 2-core CPU
    python benchmarks/train_speed.py              # 12 rounds, 6 variants, checks at both points
    python benchmarks/train_speed.py --threads 0  # torch's default thread count (one per core)

The header prints torch's CPU capability, whether bf16 is native (:mod:`dbgan.cpu_caps`)
and what ``train.amp: auto`` resolves to. On a CPU without native bf16 the bf16
variants are skipped (emulated bf16 is hundreds of times slower) and the quick
defaults become ``plain, ours fp32, ours fp32 CL-D`` (``ours fp32`` is NCHW there:
``train.channels_last: auto`` keeps the discriminators NCHW below AVX512, and CL-D shows
what channels_last discriminators would cost). Emulating an AVX2-only CPU::

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/train_speed.py --quick

Timings on a shared machine are noisy: every figure is the median over rounds of
the per-step time, and the ratio is taken within each round (plain / variant)
and its median printed with its range.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dbgan.config import channels_last_mode, Config, load_config
from dbgan.cpu_caps import channels_last_training_rule, detect as detect_cpu_caps, resolve_amp, torch_capability
from dbgan.device import pick_device
from dbgan.train import loop as L
from dbgan.train.context import DistInfo, StepContext
from dbgan.nets.unet import use_plain_layers
from dbgan.train.pool import ImagePool

# colour photos bundled with scikit-image (no download needed)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


TOL_FP32 = 1e-4  # ours vs plain at fp32: the same maths, up to summation order
TOL_MIXED = 2e-2  # bf16 autocast vs fp32 at the first step

# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = fields.get("Model name", "").strip()
        cores = fields.get("CPU(s)", "").strip()
        flags = fields.get("Flags", "")
        extra = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags.split()]
        return f"{model}, {cores} CPUs ({', '.join(extra) or 'no avx512'})"
    except Exception:  # pragma: no cover - not Linux
        return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not available
        return "n/a"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- data


def write_photos(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Sharp photos and a folder of 'real' blurred photos (the demo's stand-in camera)."""
    from dbgan.blur.degrade import DegradationPipeline
    from dbgan.demo import REAL_DOMAIN
    from dbgan.io import write_image
    from skimage import data as skd

    real = DegradationPipeline.from_config(REAL_DOMAIN)
    sharp_dir, real_dir = root / "sharp", root / "real_blur"
    for i, name in enumerate(PHOTOS):
        img = getattr(skd, name)()[..., :3]
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
        write_image(sharp_dir / f"{name}.png", t)
        blurred, _ = real(t, np.random.default_rng([seed, i]))
        write_image(real_dir / f"{name}.jpg", blurred)
    return sharp_dir, real_dir


def make_config(sharp: Path, real: Path, size: int, batch: int, amp: str = "none", channels_last: bool | str = "none",
                device: str = "cpu") -> Config:
    """The ``seed`` preset at one benchmark point (crop ``size``, batch ``batch``)."""
    overrides = [
        "scheme=joint",
        f"device={device}",
        f"data.sharp_dir={sharp}",
        f"data.real_blur_dir={real}",
        "data.preprocess=resize_and_crop",
        f"data.load_size={round(size * 286 / 256)}",  # pix2pix: load 286, crop 256
        f"data.crop_size={size}",
        "data.num_workers=0",
        f"train.amp={amp}",
        f"train.channels_last={str(channels_last).lower()}",  # "none": the plain loop's nets are NCHW
        "train.progress=false",
        "train.tensorboard=false",
    ]
    overrides += [f"stages.{s}.batch_size={batch}" for s in ("blur_pretrain", "bgan", "dbgan")]
    return load_config("seed", overrides)


def preload(cfg: Config, kind: str, n: int) -> tuple[list[dict], float]:
    """``n`` batches of the stage's data stream, and the loader's seconds per batch."""
    stage = "blur_pretrain" if kind == "blur_pretrain" else "joint"
    ds = L.stage_dataset(cfg, stage)
    it = L.batches(ds, cfg, L.stage_cfg(cfg, stage), 0, L.DistInfo())
    first = next(it)  # opens the files (cached afterwards)
    t0 = time.perf_counter()
    out = [first] + [next(it) for _ in range(n - 1)]
    per_batch = (time.perf_counter() - t0) / max(1, n - 1)
    clean = [{k: v for k, v in b.items() if torch.is_tensor(v)} for b in out]
    return clean, per_batch


def loader_stream(cfg: Config, kind: str, workers: int = 0):
    """The stage's endless batch iterator, as the training loop makes it (decoded photos cached)."""
    stage = "blur_pretrain" if kind == "blur_pretrain" else "joint"
    cfg = copy.deepcopy(cfg)
    cfg.data.num_workers = workers
    ds = L.stage_dataset(cfg, stage)
    it = L.batches(ds, cfg, L.stage_cfg(cfg, stage), 0, L.DistInfo())
    for _ in range(3 + 2 * workers):  # fill the cache / start the workers
        next(it)
    return it


# --------------------------------------------------------------------------- the plain reference loop


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """pix2pix's ``GANLoss('vanilla')``: BCE with logits against a constant target."""
    return nn.BCEWithLogitsLoss()(logits, torch.tensor(target, dtype=logits.dtype, device=logits.device).expand_as(logits))


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad = flag


class PlainLoop:
    """A plain eager fp32 loop in pix2pix's style, for one blur-pretrain or joint step.

    Same networks, losses (vanilla GAN + L1 with the seed preset's weights, the
    discriminator loss as ``BCE(real, 1) + BCE(fake, 0)`` like ours; pix2pix
    halves it, which only rescales D's gradient), image pool and Adam settings
    as ours. ``order="d_first"`` is pix2pix's order (D update, then G update
    against the *updated* D): the timed reference. ``order="g_first"`` updates G
    first against the unchanged D, as our stage does (BasicSR's order), so its
    losses must equal ours: the correctness check. Both orders cost the same.
    """

    def __init__(self, kind: str, cfg: Config, nets: dict[str, nn.Module], pools: dict[str, ImagePool],
                 device: torch.device, order: str = "d_first", fused: bool = False):
        self.kind, self.cfg, self.device, self.order = kind, cfg, device, order
        st = cfg.stages
        adam = dict(fused=True) if fused else {}
        if kind == "blur_pretrain":
            s = st.blur_pretrain
            self.g = {"blur_g": nets["blur_g"]}
            self.d = {"blur": nets["blur_pretrain_d"]}
            self.stage_cfg = {"blur": s}
        else:
            self.g = {"blur_g": nets["blur_g"], "deblur_g": nets["deblur_g"]}
            self.d = {"blur": nets["blur_d"], "sharp": nets["deblur_d"]}
            self.stage_cfg = {"blur": st.bgan, "sharp": st.dbgan}
        lr_of = {"blur_g": self.stage_cfg["blur"], "deblur_g": self.stage_cfg.get("sharp")}
        self.opt_g = {k: torch.optim.Adam(g.parameters(), lr=lr_of[k].lr, betas=tuple(lr_of[k].betas), **adam)
                      for k, g in self.g.items()}
        self.opt_d = {k: torch.optim.Adam(d.parameters(), lr=self.stage_cfg[k].lr, betas=tuple(self.stage_cfg[k].betas),
                                          **adam) for k, d in self.d.items()}
        self.pools = pools

    # -- the forward pass and the two updates
    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        b = {k: v.to(self.device) for k, v in batch.items()}
        logs: dict[str, float] = {}
        if self.kind == "blur_pretrain":
            fake = self.g["blur_g"](b["sharp"])
            # (condition, image) pairs, as pix2pix's conditional discriminator sees them
            pairs = {"blur": (torch.cat([b["sharp"], fake], 1), torch.cat([b["sharp"], b["blur"]], 1))}
        else:
            fake_blur = self.g["blur_g"](b["sharp"])
            deblurred = self.g["deblur_g"](fake_blur)
            pairs = {"blur": (fake_blur, b["real_blur"]), "sharp": (deblurred, b["sharp"])}
        if self.order == "d_first":
            self.update_d(pairs, logs)
            self.update_g(b, pairs, logs)
        else:
            self.update_g(b, pairs, logs)
            self.update_d(pairs, logs)
        return logs

    def update_d(self, pairs, logs) -> None:
        set_requires_grad(list(self.d.values()), True)
        for key, (fake, real) in pairs.items():
            net, opt = self.d[key], self.opt_d[key]
            opt.zero_grad()
            pred_fake = net(self.pools[key].query(fake.detach()))
            pred_real = net(real)
            loss_d = bce(pred_real, 1.0) + bce(pred_fake, 0.0)
            loss_d.backward()
            opt.step()
            logs[f"{key}_d"] = loss_d.item()

    def update_g(self, b, pairs, logs) -> None:
        set_requires_grad(list(self.d.values()), False)
        for opt in self.opt_g.values():
            opt.zero_grad()
        total = 0.0
        for key, (fake, _) in pairs.items():
            s = self.stage_cfg[key]
            adv = bce(self.d[key](fake), 1.0)  # the second D forward on the same fake
            logs[f"{key}_adv_g"] = adv.item()
            total = total + s.w_adv * adv
            img = fake[:, -self.cfg.data.channels:]  # the generated image (a conditional pair holds the condition first)
            if self.kind == "blur_pretrain":
                l1 = F.l1_loss(img, b["blur"])
                logs["content"] = l1.item()
                total = total + s.w_content * l1
            elif key == "blur":  # seed bgan: L1 x100 to the synthetic blur, no content tie
                if s.w_content > 0:
                    raise NotImplementedError("plain joint loop: bgan content tie not written out")
                l1 = F.l1_loss(img, b["blur"])
                logs["synthetic_l1"] = l1.item()
                total = total + s.w_synthetic * l1
            else:
                l1 = F.l1_loss(img, b["sharp"])
                logs["content"] = l1.item()
                total = total + s.w_content * l1
        total.backward()
        for opt in self.opt_g.values():
            opt.step()
        logs["loss_g"] = total.item()


# --------------------------------------------------------------------------- variants


@dataclass
class Variant:
    name: str
    step: Callable[[dict, int], dict]
    holder: object  # keeps the networks alive


def ours(kind: str, cfg: Config, device: torch.device, compile_nets: bool = False) -> tuple[Callable, L.S.Stage, dict]:
    nets, _ = L.build_nets(cfg, device)
    if compile_nets:
        nets = {k: torch.compile(v) for k, v in nets.items()}
    stage = L.make_stage(kind, cfg, nets, StepContext.for_run(cfg, device, DistInfo()))
    return stage.step, stage, nets


def plain(kind: str, cfg: Config, device: torch.device, order: str = "d_first", fused: bool = False,
          pools: dict | None = None) -> tuple[Callable, PlainLoop]:
    nets, _ = L.build_nets(cfg, device)  # same seeded initialisation as ours
    for net in nets.values():  # plain torch.nn convolutions everywhere, the padded U-Net decoded in full
        use_plain_layers(net)
    if pools is None:  # the same pool draws as our stage's pools
        stage = L.make_stage(kind, cfg, nets, device)
        pools = copy.deepcopy(stage.pools)
        del stage
    loop = PlainLoop(kind, cfg, nets, pools, device, order=order, fused=fused)
    return (lambda batch, it: loop.step(batch)), loop


OURS_VARIANTS = {
    # name: (amp, channels_last); "auto" is the default: the discriminators channels_last on CPU
    "ours fp32": ("none", "auto"),
    "ours fp32 CL": ("none", "all"),
    "ours fp32 CL-D": ("none", "discriminators"),  # what auto picks at capability AVX512 (dbgan.cpu_caps)
    "ours fp32 NCHW": ("none", "none"),  # what auto picks below AVX512
    "ours bf16": ("bf16", "auto"),
    "ours bf16 NCHW": ("bf16", "none"),
    "ours bf16 CL": ("bf16", "all"),
    "ours auto": ("auto", "auto"),  # train.amp's default: bf16 where native (dbgan.cpu_caps), else fp32
}


def build_variant(name: str, kind: str, base: Config, device: torch.device) -> Variant:
    if name == "plain":
        step, holder = plain(kind, base, device)
        return Variant(name, step, holder)
    if name == "plain + fused Adam":
        step, holder = plain(kind, base, device, fused=True)
        return Variant(name, step, holder)
    compile_nets = name.endswith("+ compile")
    key = name.replace(" + compile", "")
    amp, cl = OURS_VARIANTS[key]
    if device.type == "cuda" and amp == "bf16":
        amp = "auto"
    cfg = copy.deepcopy(base)
    cfg.train.amp, cfg.train.channels_last = amp, cl
    step, stage, nets = ours(kind, cfg, device, compile_nets)
    return Variant(name, step, (stage, nets))


# --------------------------------------------------------------------------- correctness check


def sync_plain_to_ours(loop: PlainLoop, stage: L.S.Stage) -> None:
    """Give the plain loop our stage's exact state: weights, Adam moments, image pools."""
    d_role = {"blur": "blur_d", "sharp": "deblur_d"}
    for role, net in loop.g.items():
        net.load_state_dict(stage.generators[role].state_dict())
        # a deep copy: load_state_dict keeps the given tensors, which our step would then see changed
        loop.opt_g[role].load_state_dict(copy.deepcopy(stage.optimizers[role].state_dict()))
    for key, net in loop.d.items():
        net.load_state_dict(stage.discriminators[d_role[key]].state_dict())
        loop.opt_d[key].load_state_dict(copy.deepcopy(stage.optimizers[d_role[key]].state_dict()))
    loop.pools = copy.deepcopy(stage.pools)


def max_weight_diff(loop: PlainLoop, stage: L.S.Stage) -> float:
    """Largest |w_plain - w_ours| over each network's weights, relative to that network's largest |w|.

    (Relative to the whole network: the biases start at zero and are ~lr after the
    first step, so a per-tensor ratio would magnify a 1e-7 rounding difference.)
    """
    d_role = {"blur": "blur_d", "sharp": "deblur_d"}
    pairs = [(loop.g[r], stage.generators[r]) for r in loop.g] + [(loop.d[k], stage.discriminators[d_role[k]]) for k in loop.d]
    worst = 0.0
    for a, b in pairs:
        diff = max(float((pa.detach() - pb.detach()).abs().max()) for pa, pb in zip(a.parameters(), b.parameters()))
        scale = max(float(pb.detach().abs().max()) for pb in b.parameters())
        worst = max(worst, diff / max(scale, 1e-12))
    return worst


def first_step_rows(label: str, step_ref: Callable, step_new: Callable, batch: dict) -> list[tuple]:
    """The first step's logged losses of two freshly built stages (same weights, same noise draw)."""
    torch.manual_seed(1000)
    new = step_new(batch, 0)
    torch.manual_seed(1000)
    ref = step_ref(batch, 0)
    return [(label, key, ref[key], new[key]) for key in sorted(set(new) & set(ref)) if not key.endswith("_acc")]


def check_same_maths(kind: str, base: Config, batches: list[dict], device: torch.device, steps: int,
                     bf16_name: str | None) -> list[tuple]:
    """Ours (fp32 NCHW) vs the plain loop (G-first order), step by step; then our small-map GEMM
    layers and cropped U-Net decoding vs torch.nn layers decoding in full, and bf16 vs fp32,
    at step 0.

    The step-by-step comparison checks the loop logic, so ours runs with the same layer
    arithmetic as plain there (the small-map GEMM path and cropped decoding off): a different summation order
    flips a few ReLU and L1 kinks and Adam's first update, ``lr * g / (|g| + eps)``,
    turns a 1e-7 gradient difference in the inner layers' tiny gradients into weight
    differences of up to ``lr``, which says nothing about the loop. The GEMM layers
    and cropped decoding are then compared on their own.

    Before every step the plain loop is given our exact state (weights, Adam moments,
    pool contents and draws) and both draw the same noise, so each step is compared
    from the same starting point: a GAN amplifies a rounding-level difference
    (1e-7 from a different order of gradient accumulation) to 1e-3 within a few steps,
    which would say nothing about whether the two loops compute the same thing. The
    plain loop uses the fused Adam here, as ours does (the for-loop Adam rounds
    differently; the timed plain loop keeps it). Compared: every logged loss, and the
    largest relative weight difference after the step.
    """
    rows = []
    step_o, stage, nets_o = ours(kind, base, device)
    for net in nets_o.values():  # the loop logic first, with the same layer arithmetic as plain
        use_plain_layers(net)
    step_p, loop = plain(kind, base, device, order="g_first", fused=True, pools=copy.deepcopy(stage.pools))
    for i in range(steps):
        b = batches[i % len(batches)]
        sync_plain_to_ours(loop, stage)
        torch.manual_seed(1000 + i)  # the blur generator's noise map
        lp = step_p(b, i)
        torch.manual_seed(1000 + i)
        lo = step_o(b, i)
        for key in sorted(set(lo) & set(lp)):
            rows.append((f"step {i}", key, lp[key], lo[key]))
        rows.append((f"step {i}", "weights after", 0.0, max_weight_diff(loop, stage)))
    del step_o, stage, nets_o, step_p, loop
    gc.collect()
    # the layer arithmetic: our small-map GEMM path, cropped U-Net decoding and channels_last
    # discriminators vs torch.nn NCHW layers decoding in full, at the first step (the forward values; their gradients are
    # compared in tests/test_small_conv.py and tests/test_nets.py)
    cfg = copy.deepcopy(base)
    cfg.train.channels_last = "auto"  # and our default memory format (channels_last discriminators on CPU)
    step_g, stage_g, _ = ours(kind, cfg, device)
    step_n, stage_n, nets_n = ours(kind, base, device)
    for net in nets_n.values():
        use_plain_layers(net)
    rows += first_step_rows("our layers vs torch.nn, step 0", step_n, step_g, batches[0])
    del step_g, stage_g, step_n, stage_n, nets_n
    gc.collect()
    if bf16_name is None:  # no native bf16 here: the mixed-precision check is skipped
        return rows
    # mixed precision vs fp32 at the first step (same weights, same noise)
    amp, cl = OURS_VARIANTS[bf16_name]
    cfg = copy.deepcopy(base)
    cfg.train.amp, cfg.train.channels_last = ("auto" if device.type == "cuda" else amp), cl
    step_b, stage_b, _ = ours(kind, cfg, device)
    step_f, stage_f, _ = ours(kind, base, device)
    rows += first_step_rows(f"{bf16_name} vs fp32, step 0", step_f, step_b, batches[0])
    return rows


# --------------------------------------------------------------------------- timing


def time_variants(variants: list[Variant], batches: list[dict], device: torch.device, rounds: int, steps: int,
                  warmup: int, loader=None, loader_batches: int = 5) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per step of each variant in each round; the order rotates every round.

    ``loader`` (an endless batch iterator) is timed in the same rounds as one more
    entry, ``loader_batches`` batches per round, so its figure is taken under the
    same machine load as the steps.
    """
    it = {v.name: 0 for v in variants}

    def run(v: Variant, n: int) -> tuple[float, float]:
        sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            v.step(batches[it[v.name] % len(batches)], it[v.name])
            it[v.name] += 1
        sync(device)
        return (time.perf_counter() - w0) / n, (time.process_time() - c0) / n

    def run_loader(n: int) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            next(loader)
        return (time.perf_counter() - w0) / n, (time.process_time() - c0) / n

    for v in variants:
        run(v, warmup)
    out: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
    if loader is not None:
        out["loader"] = []
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for v in order:
            out[v.name].append(run(v, steps))
        if loader is not None:
            out["loader"].append(run_loader(loader_batches))
    return out


def summarise(times: list[tuple[float, float]], ref: list[tuple[float, float]] | None, clock: int) -> tuple[float, str]:
    """(median seconds, 'median ratio [min-max]' of ref/this within rounds) for clock 0 (wall) or 1 (CPU)."""
    med = statistics.median(t[clock] for t in times)
    if ref is None:
        return med, "-"
    ratios = [a[clock] / b[clock] for a, b in zip(ref, times)]
    return med, f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer rounds, fewer variants, one check point (minutes)")
    p.add_argument("--points", default=None, help="comma list of SIZExBATCH (default 256x1,128x4)")
    p.add_argument("--kinds", default="blur_pretrain,joint", help="steps to time: blur_pretrain, joint")
    p.add_argument("--variants", default=None,
                   help="comma list among: plain, plain + fused Adam, " + ", ".join(OURS_VARIANTS)
                   + " (append ' + compile' to an ours variant for torch.compile)")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 4 quick, 12 full)")
    p.add_argument("--steps", type=int, default=1, help="steps per variant per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    p.add_argument("--check-steps", type=int, default=None,
                   help="steps of the same-maths check (default: enough for the image pool to start swapping; 0 = skip)")
    p.add_argument("--check-only", action="store_true", help="run the same-maths check and stop")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1; 0 = torch's default, one per core). One thread per "
                        "process keeps the comparison fair on a machine shared with other processes: with two "
                        "threads on two busy cores every parallel region waits for a descheduled thread and all "
                        "variants slow down by a similar constant, which hides the difference in work")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device, 0)
    quick = args.quick
    points = [tuple(int(x) for x in s.split("x")) for s in (args.points or "256x1,128x4").split(",")]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    rounds = args.rounds or (4 if quick else 12)
    default_variants = ["plain", "ours fp32", "ours bf16", "ours bf16 CL"] if quick else [
        "plain", "plain + fused Adam", "ours fp32", "ours fp32 CL", "ours bf16", "ours bf16 CL"]
    if device.type == "cuda":  # bf16 means AMP (train.amp=auto) there
        default_variants = ["plain", "ours fp32", "ours bf16"] if quick else [
            "plain", "plain + fused Adam", "ours fp32", "ours fp32 CL", "ours bf16", "ours bf16 CL"]
    caps = detect_cpu_caps()
    native = device.type != "cpu" or caps.native_bf16
    if not native and not args.variants:  # fp32 candidates instead of the bf16 ones
        default_variants = ["plain", "ours fp32", "ours fp32 CL-D"] if quick else [
            "plain", "plain + fused Adam", "ours fp32", "ours fp32 CL-D", "ours fp32 CL"]
    names = [v.strip() for v in args.variants.split(",")] if args.variants else default_variants
    skipped = [n for n in names if not native and "bf16" in n]
    names = [n for n in names if n not in skipped]
    mixed = [n.replace(" + compile", "") for n in names if "bf16" in n]
    best_mixed = "ours bf16 CL" if "ours bf16 CL" in mixed else (mixed[0] if mixed else "ours bf16 CL")
    if not native:
        best_mixed = None
    auto_amp = resolve_amp("auto", device.type, caps)
    auto_is = {"bf16": "ours bf16", "fp16": "ours bf16", "none": "ours fp32"}[auto_amp]
    # the same-maths check: every point in full mode, one point in quick mode (a batch > 1 one:
    # the image pool of 10 starts swapping images within a few steps there)
    check_points = points if not quick else [next((pt for pt in points if pt[1] > 1), points[0])]

    def check_steps_for(batch: int) -> int:
        if args.check_steps is not None:
            return args.check_steps
        return -(-12 // batch) + 1  # past the pool's first 10 images

    print("== train_speed: our training loop vs a plain pix2pix-style loop")
    print(f"command      : python benchmarks/train_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"date         : {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"device       : {device} -- {device_name(device)}")
    print(f"torch        : {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}, mkldnn {torch.backends.mkldnn.is_available()}")
    print(f"bf16         : {caps.summary()}")
    print(f"train.amp    : auto (the default) resolves to {auto_amp} here, i.e. the variant '{auto_is}'")
    print(f"channels_last: auto (the default) resolves to {channels_last_mode('auto', device.type)} here "
          f"({channels_last_training_rule(torch_capability())[1] if device.type == 'cpu' else 'not a CPU'})")
    if skipped:
        print(f"skipped      : {', '.join(skipped)} (this CPU has no native bf16: {caps.reason})")
    print(f"python       : {platform.python_version()}, numpy {np.__version__}")
    print(f"load average : {load_average()} (other processes on this machine at the start)")
    print("preset       : seed (U-Net 256 generators, norm none, noise map on G_blur; 70x70 PatchGAN; vanilla GAN "
          "+ L1 x100; image pool 10; Adam 2e-4 (0.5, 0.999)); joint: bgan w_synthetic 100, w_content 0")
    print(f"points       : {', '.join(f'{s}x{s} batch {b}' for s, b in points)}; steps timed: {', '.join(kinds)}")
    print(f"variants     : {', '.join(names)}  (channels_last: auto unless named, CL = all, CL-D = discriminators, NCHW = none; bf16 = train.amp=bf16 autocast"
          f"{', AMP auto on CUDA' if device.type == 'cuda' else ''})")
    print(f"timing       : {rounds} rounds x {args.steps} step(s) per variant, order rotated each round, "
          f"{args.warmup} warm-up steps; s/step = median over rounds; ratio = median over rounds of "
          "plain/variant within the round [min-max]; wall clock and process CPU time")
    print(f"check        : {', '.join(f'{s}x{s} b{b} ({check_steps_for(b)} steps)' for s, b in check_points)}")
    print(flush=True)

    results: list[list[str]] = []
    loader_rows: list[list[str]] = []
    check_rows: list[list[str]] = []
    worst: dict[float, float] = {}
    with tempfile.TemporaryDirectory(prefix="dbgan_speed_") as tmp:
        sharp, real = write_photos(Path(tmp), args.seed)
        for size, batch in points:
            base = make_config(sharp, real, size, batch, device=str(device))
            pt = f"{size}x{size} b{batch}"
            for kind in kinds:
                batches, _ = preload(base, kind, 4)
                n_check = check_steps_for(batch) if (size, batch) in check_points else 0
                if n_check:
                    print(f"-- {pt}, {kind}: same-maths check ({n_check} steps)", flush=True)
                    rows = check_same_maths(kind, base, batches, device, n_check, best_mixed)
                    for where, key, a, b in rows:
                        rel = b if key == "weights after" else abs(a - b) / max(abs(a), 1e-8)
                        tol = TOL_MIXED if "vs fp32" in where else TOL_FP32
                        worst[tol] = max(worst.get(tol, 0.0), rel)
                        va, vb = ("-", "-") if key == "weights after" else (f"{a:.6g}", f"{b:.6g}")
                        check_rows.append([pt, kind, where, key, va, vb, f"{rel:.1e}", "ok" if rel <= tol else "DIFFERS"])
                    gc.collect()
                if args.check_only:
                    continue
                print(f"-- {pt}, {kind}: timing {', '.join(names)} + loader", flush=True)
                variants = [build_variant(n, kind, base, device) for n in names]
                times = time_variants(variants, batches, device, rounds, args.steps, args.warmup,
                                      loader=loader_stream(base, kind))
                del variants
                gc.collect()
                ref = times.get("plain")
                for n in names:
                    wall, wall_ratio = summarise(times[n], ref, 0)
                    cpu, cpu_ratio = summarise(times[n], ref, 1)
                    results.append([pt, kind, n, f"{wall:.3f}", f"{1 / wall:.2f}", wall_ratio, f"{cpu:.3f}", cpu_ratio])
                    print(f"   {n:20s} {wall:.3f} s/step ({1 / wall:5.2f} it/s) x{wall_ratio} | CPU {cpu:.3f} s x{cpu_ratio}",
                          flush=True)
                fastest = min(statistics.median(t[0] for t in times[n]) for n in names if n.startswith("ours"))
                lw, _ = summarise(times["loader"], None, 0)
                lc, _ = summarise(times["loader"], None, 1)
                loader_rows.append([pt, kind, f"{1000 * lw:.1f}", f"{1 / lw:.1f}", f"{1000 * lc:.1f}",
                                    f"{100 * lw / fastest:.1f}%"])
                print(f"   loader (main process) {1000 * lw:.1f} ms/batch = {100 * lw / fastest:.1f}% of our fastest step",
                      flush=True)

    print()
    if check_rows:
        print("Same maths (fp32: plain loop in G-first order with fused Adam vs ours, same weights, noise, pool draws "
              "and batches; then ours mixed precision vs ours fp32 at step 0):")
        print(fmt_table(["point", "step", "compared", "loss", "plain / fp32", "ours / mixed", "rel. diff", ""], check_rows))
        print(f"largest relative difference: fp32 ours vs plain {worst.get(TOL_FP32, 0):.1e} (tolerance {TOL_FP32:g}); "
              f"mixed precision vs fp32 {worst.get(TOL_MIXED, 0):.1e} (tolerance {TOL_MIXED:g})")
        print()
    if loader_rows:
        print("Data loader alone (timed in the same rounds; synthetic blur made on the fly, decoded photos cached, "
              "main process, data.num_workers=0):")
        print(fmt_table(["point", "stage data", "ms/batch", "batches/s", "CPU ms/batch", "share of fastest step"],
                        loader_rows))
        print()
    if results:
        print(f"Training step speed ({device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads):")
        print(fmt_table(["point", "step", "loop", "s/step", "it/s", "x plain [range]", "CPU s/step", "CPU x plain"],
                        results))
    print(f"load average at the end: {load_average()}")
    bad = [r for r in check_rows if r[-1] != "ok"]
    if bad:
        print(f"SAME-MATHS CHECK FAILED for {len(bad)} values")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
