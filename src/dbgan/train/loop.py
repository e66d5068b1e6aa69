"""The one training loop shared by every stage and scheme.

``train(cfg)`` runs the stages of ``cfg.scheme`` in order into ``runs/<name>/``:

=========== ==========================================================
scheme      stages
=========== ==========================================================
separate    blur_pretrain -> bgan -> dbgan (G_blur frozen)
joint       blur_pretrain -> joint (bgan + dbgan together; uses
            ``stages.bgan`` for the blur side and ``stages.dbgan`` for the
            deblur side, iteration count and batch size)
synthetic   dbgan on synthetic pairs (the baseline without BGAN)
=========== ==========================================================

Resume is exact: the data stream is indexed by a draw counter (every item is a
pure function of ``(seed, draw)``), the learning rate is a function of the
iteration, and the resume state holds the optimizers, image pools, AMP scaler
and RNG states. Checkpoints are written before their resume state, both
atomically, so a run killed at any moment resumes from the last complete pair.

Data parallel training: under ``torchrun`` every rank draws its own share of the
data stream and gradients are averaged with ``all_reduce`` before each optimizer
step (the effect of ``DistributedDataParallel``; done explicitly because a GAN
step back-propagates two losses through one discriminator forward, which DDP's
one-backward-per-forward hooks do not support). Only rank 0 logs and saves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dbgan import atomic
from dbgan.checkpoint import CheckpointError, load_checkpoint, safe_torch_load, save_checkpoint
from dbgan.config import Config, ConfigError, StageConfig, channels_last_mode, save_config
from dbgan.device import pick_device
from dbgan.nets import build_network
from dbgan.train.monitor import Monitor, spectrum_distance
from dbgan.train import stages as S

log = logging.getLogger(__name__)

SCHEMES = {
    "separate": ("blur_pretrain", "bgan", "dbgan"),
    "joint": ("blur_pretrain", "joint"),
    "synthetic": ("dbgan",),
}


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # "done" | "interrupted" | "failed"
    checkpoint: Path | None
    message: str = ""
    iters: dict[str, int] = field(default_factory=dict)
    bad_steps: int = 0
    ranks_consistent: bool | None = None  # under torchrun: all ranks ended with identical weights
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable files (data.skip_bad)


# --------------------------------------------------------------------------- environment


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(cfg: Config, device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = cfg.train.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def autocast_factory(amp: str, device: torch.device):
    """(context factory, GradScaler or None) for ``train.amp``."""
    if amp == "auto":
        amp = "none"
        if device.type == "cuda":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "none":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("'train.amp: fp16' needs a CUDA device; use bf16 on CPU")
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    return (lambda: torch.autocast(device_type=device.type, dtype=dtype)), scaler


def make_grad_sync(info: DistInfo):
    if not info.enabled:
        return None

    def sync(params: list[nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= info.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    return sync


# --------------------------------------------------------------------------- data


class CombinedDataset(Dataset):
    """Merge the items of several draw-indexed datasets (e.g. pairs + real blur)."""

    def __init__(self, parts: list[tuple[Dataset, tuple[str, ...]]]):
        self.parts = parts

    def __len__(self) -> int:
        return max(len(ds) for ds, _ in self.parts)

    def __getitem__(self, draw: int) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for ds, keys in self.parts:
            got = ds[draw]
            item.update({k: got[k] for k in keys})
        return item


def stage_dataset(cfg: Config, stage: str) -> Dataset:
    """The training data a stage needs, as one draw-indexed dataset."""
    from dbgan.data import make_pair_dataset, make_unpaired_dataset

    bgan_syn = cfg.stages.bgan.w_synthetic > 0
    needs_synthetic = stage == "blur_pretrain" or cfg.scheme == "synthetic" or (
        stage in ("bgan", "joint") and bgan_syn
    )
    needs_real = stage in ("bgan", "joint")
    parts: list[tuple[Dataset, tuple[str, ...]]] = []
    if needs_synthetic or not cfg.data.sharp_dir:
        parts.append((make_pair_dataset(cfg.data, cfg.synth, cfg.seed, train=True), ("sharp", "blur")))
    else:
        parts.append((make_unpaired_dataset(cfg.data.sharp_dir, cfg.data, cfg.seed, key="sharp"), ("sharp",)))
    if needs_real or (cfg.data.real_blur_dir and stage == "dbgan" and cfg.scheme != "synthetic"):
        if not cfg.data.real_blur_dir:
            raise ConfigError(f"stage '{stage}' needs real blurred photos: set 'data.real_blur_dir'")
        parts.append(
            (make_unpaired_dataset(cfg.data.real_blur_dir, cfg.data, cfg.seed + 1, key="real_blur"), ("real_blur",))
        )
    return CombinedDataset(parts)


def _worker_ignores_sigint(worker_id: int) -> None:
    """DataLoader worker init: leave Ctrl-C to the main process, which saves and then stops the
    workers (a worker that died of SIGINT would turn a clean interrupt into a crash)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batches(ds: Dataset, cfg: Config, stage_cfg: StageConfig, start_iter: int, info: DistInfo) -> Iterator[dict]:
    """Endless batches starting at iteration ``start_iter`` (exact resume: nothing else to restore)."""
    from dbgan.data import DrawSampler, check_batchable, collate

    for part, _ in getattr(ds, "parts", [(ds, ())]):
        check_batchable(part, stage_cfg.batch_size)
    # The loader draws a base seed for its workers when an iterator is made; from its own
    # generator, not the global RNG: resuming makes the iterator at another point of the run,
    # and a draw from the global stream would shift the generators' noise (no exact resume).
    # Items do not depend on it: each is a pure function of (seed, draw).
    loader_rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + start_iter * 131 + info.rank)
    loader = DataLoader(
        ds,
        batch_size=stage_cfg.batch_size,
        generator=loader_rng,
        sampler=DrawSampler(start_iter * stage_cfg.batch_size, info.rank, info.world),
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        worker_init_fn=_worker_ignores_sigint if cfg.data.num_workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
    return iter(loader)


# --------------------------------------------------------------------------- networks


def net_specs(cfg: Config) -> dict[str, dict[str, Any]]:
    """Effective constructor arguments of every role (channels filled in from the data)."""
    c = cfg.data.channels
    specs = {}
    for role in ("blur_g", "blur_d", "deblur_g", "deblur_d"):
        spec = getattr(cfg.nets, role)
        args = dict(spec.args)
        args["in_channels"] = c
        if role.endswith("_g"):
            args["out_channels"] = c
        specs[role] = {"name": spec.name, "args": args}
    return specs


def build_nets(cfg: Config, device: torch.device) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """Build the two generators and the discriminators each stage uses, seeded per role."""
    specs = net_specs(cfg)
    cond = dict(specs["blur_d"], args={**specs["blur_d"]["args"], "in_channels": 2 * cfg.data.channels})
    specs["blur_pretrain_d"] = cond if cfg.stages.blur_pretrain.conditional_d else specs["blur_d"]
    cl_mode = channels_last_mode(cfg.train.channels_last, device.type)
    nets = {}
    for i, (role, spec) in enumerate(sorted(specs.items())):
        torch.manual_seed(cfg.seed * 1000 + i)  # each net's init independent of the others
        try:
            net = build_network(spec["name"], **spec["args"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"'nets.{role.replace('blur_pretrain_d', 'blur_d')}': {exc}") from None
        net = net.to(device)
        if cl_mode == "all" or (cl_mode == "discriminators" and role.endswith("_d")):
            net = net.to(memory_format=torch.channels_last)
        nets[role] = net
    return nets, specs


def make_stage(name: str, cfg: Config, nets: dict[str, nn.Module], device: torch.device) -> S.Stage:
    st = cfg.stages
    seed = cfg.seed * 7919 + list(SCHEMES[cfg.scheme]).index(name)
    if name == "blur_pretrain":
        return S.BlurPretrainStage(cfg, st.blur_pretrain, device, seed, nets["blur_g"], nets["blur_pretrain_d"])
    if name == "bgan":
        return S.BganStage(cfg, st.bgan, device, seed, nets["blur_g"], nets["blur_d"])
    if name == "dbgan":
        blur_g = nets["blur_g"] if cfg.scheme == "separate" else None
        return S.DbganStage(cfg, st.dbgan, device, seed, nets["deblur_g"], nets["deblur_d"], blur_g)
    if name == "joint":
        return S.JointStage(
            cfg, st.bgan, st.dbgan, device, seed, nets["blur_g"], nets["blur_d"], nets["deblur_g"], nets["deblur_d"]
        )
    raise ValueError(name)


def stage_cfg(cfg: Config, name: str) -> StageConfig:
    return cfg.stages.dbgan if name == "joint" else getattr(cfg.stages, name)


# --------------------------------------------------------------------------- run directory


class RunDir:
    """Paths and bookkeeping of ``runs/<name>/`` (checkpoints, resume states, pruning)."""

    _pat = re.compile(r"^(blur_pretrain|bgan|dbgan|joint)_(\d+)$")

    def __init__(self, root: Path, plan: tuple[str, ...]):
        self.root = root
        self.ckpt = root / "checkpoints"
        self.state = root / "state"
        self.plan = plan

    def name(self, stage: str, it: int) -> str:
        return f"{stage}_{it:06d}"

    def states(self) -> list[tuple[int, int, Path]]:
        """Resume states as (stage index, iter, path), oldest first; ignores stray files."""
        out = []
        if self.state.is_dir():
            for p in self.state.glob("*.pt"):
                m = self._pat.match(p.stem)
                if m and m.group(1) in self.plan:
                    out.append((self.plan.index(m.group(1)), int(m.group(2)), p))
        return sorted(out)

    def latest_state(self) -> dict[str, Any] | None:
        """Newest resume state whose checkpoint loads (a damaged newest one falls back)."""
        for idx, it, path in reversed(self.states()):
            try:
                state = safe_torch_load(path)
                load_checkpoint(self.ckpt / f"{path.stem}.safetensors")
            except CheckpointError as exc:
                log.warning("ignoring resume state %s: %s", path, exc)
                continue
            return state
        return None

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temporary files left by writes that a kill interrupted (``.NAME.*.tmp``).

        They were never renamed into place, so nothing refers to them; they only take space.
        """
        removed = []
        for folder in (self.root, self.ckpt, self.state):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        p.unlink()
                        removed.append(p)
        if removed:
            log.info("removed %d temporary files of interrupted writes in %s", len(removed), self.root)
        return removed

    def link_latest(self, name: str) -> None:
        for ext in (".safetensors", ".json"):
            src = self.ckpt / f"{name}{ext}"
            tmp = self.ckpt / f".latest{ext}.tmp"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                os.link(src, tmp)
            except OSError:  # no hard links on this file system: an atomic copy instead
                atomic.atomic_write_bytes(self.ckpt / f"latest{ext}", src.read_bytes())
                continue
            os.replace(tmp, self.ckpt / f"latest{ext}")

    def prune(self, stage: str, keep: int, final_iters: int) -> None:
        """Keep the newest ``keep`` states/checkpoints of ``stage`` (its final one always)."""
        items = [(it, p) for idx, it, p in self.states() if p.stem.startswith(stage + "_")]
        for it, p in items[:-keep] if keep else []:
            if it == final_iters:
                continue
            for f in (p, self.ckpt / f"{p.stem}.safetensors", self.ckpt / f"{p.stem}.json"):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()


# --------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(stage: S.Stage, val_ds: Dataset | None, train_batch: dict, device: torch.device, recent: dict) -> dict[str, Any]:
    """Validation figures for this stage plus the images of its sample grid."""
    from dbgan import metrics as M

    out: dict[str, Any] = {}
    images = stage.sample({k: v.to(device) for k, v in train_batch.items() if torch.is_tensor(v)})
    if "fake_blur" in images and "real_blur" in images:
        out["spectrum_dist_fake_vs_real"] = spectrum_distance(images["fake_blur"], images["real_blur"])
        if "blur" in images:
            out["spectrum_dist_synthetic_vs_real"] = spectrum_distance(images["blur"], images["real_blur"])
    if "blur_d_acc" in recent:
        out["blur_d_acc"] = recent["blur_d_acc"]
    deblur = stage.generators.get("deblur_g")
    if deblur is not None and val_ds is not None and len(val_ds) > 0:
        deblur.eval()
        rows = []
        for i in range(len(val_ds)):
            item = val_ds[i]
            blurred = item["blur"].unsqueeze(0).to(device)
            sharp = item["sharp"].unsqueeze(0).to(device)
            pred = deblur(blurred).clamp(0, 1)
            rows.append(
                (
                    M.psnr(blurred[0].cpu(), sharp[0].cpu()),
                    M.psnr(pred[0].cpu(), sharp[0].cpu()),
                    M.ssim(blurred[0].cpu(), sharp[0].cpu()),
                    M.ssim(pred[0].cpu(), sharp[0].cpu()),
                    (pred - sharp).mean(dim=(0, 2, 3)).abs().max().item(),
                )
            )
        n = len(rows)
        out["psnr_input"] = sum(r[0] for r in rows) / n
        out["psnr_output"] = sum(r[1] for r in rows) / n
        out["ssim_input"] = sum(r[2] for r in rows) / n
        out["ssim_output"] = sum(r[3] for r in rows) / n
        out["colour_bias_max"] = sum(r[4] for r in rows) / n
    return {"metrics": out, "images": images}


# --------------------------------------------------------------------------- the loop


class _Interrupt:
    """SIGINT handler that asks the loop to save and stop at the next iteration boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading_main():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt received: saving a resume state after this iteration (Ctrl-C again to abort)")

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(
    cfg: Config,
    command: str | None = None,
    resume: bool | None = None,
    stop_at: tuple[str, int] | None = None,
) -> TrainResult:
    """Train ``cfg.scheme`` into ``cfg.run_dir``; resume if a resume state exists.

    Args:
        cfg: the validated config.
        command: the command line, recorded in ``config.yaml``.
        resume: True continues an existing run even if its config changed; None
            (default) continues only if the stored config hash matches and
            refuses otherwise; False refuses to touch an existing run.
        stop_at: ``(stage, iteration)``: save a resume state there and stop as if
            interrupted (for job schedulers with time slots, and for tests).
    """
    device_probe = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    info = init_distributed(cfg, device_probe)
    device = pick_device(cfg.device, info.local_rank)
    plan = SCHEMES[cfg.scheme]
    run = RunDir(cfg.run_dir, plan)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False

    # ---- resume decision (before any file is written)
    state = run.latest_state() if run.root.exists() else None
    if state is not None:
        stored = state.get("config_hash")
        if resume is False:
            raise ConfigError(f"{run.root} already holds a run; choose another 'name' or remove it")
        if resume is None and stored != cfg.hash():
            raise ConfigError(
                f"{run.root} holds a run with a different config; pass --resume to continue it "
                "with this config, or choose another 'name'"
            )
    elif run.root.exists() and any(run.ckpt.glob("*.safetensors")) and resume is None:
        log.warning("%s has checkpoints but no usable resume state: starting from the beginning", run.root)

    # ---- build everything before writing (bad settings fail early)
    nets, specs = build_nets(cfg, device)
    autocast, scaler = autocast_factory(cfg.train.amp, device)
    start_stage = plan.index(state["stage"]) if state is not None else 0
    # every stage's data is read (headers) and checked now: a missing folder, an image smaller
    # than the crop or a bad file of the last stage must not surface after hours of the first
    datasets = _stage_datasets(cfg, plan, start_stage)
    val_ds = None
    if cfg.data.val_dir:
        from dbgan.data import make_val_dataset

        val_ds = make_val_dataset(cfg.data, cfg.seed)
    # the lists of skipped unreadable files (data.skip_bad), not the datasets: their caches
    # are freed when their stage ends
    skipped_lists = [part.skipped for ds in datasets.values() for part, _ in ds.parts if hasattr(part, "skipped")]
    if val_ds is not None:
        skipped_lists.append(val_ds.skipped)
    if info.enabled:
        for net in nets.values():
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, 0)
    monitor = Monitor(run.root, enabled=info.main, tensorboard=cfg.train.tensorboard)
    if info.main:
        run.root.mkdir(parents=True, exist_ok=True)
        run.remove_stale_temp_files()
        save_config(cfg, run.root / "config.yaml", command)

    start_iter = 0
    if state is not None:
        start_iter = int(state["iter"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        log.info("resuming %s at %s iteration %d", run.root, state["stage"], start_iter)
    else:
        torch.manual_seed(cfg.seed + 104729 * info.rank)

    result = TrainResult(run.root, "done", None)
    last_ckpt: Path | None = None
    with _Interrupt() as interrupt:
        for si, name in enumerate(plan):
            scfg = stage_cfg(cfg, name)
            if si < start_stage:
                continue
            stage = make_stage(name, cfg, nets, device)
            stage.autocast, stage.scaler, stage.grad_sync = autocast, scaler, make_grad_sync(info)
            _build_loss_networks(stage, cfg, device)
            it0 = 0
            if state is not None and si == start_stage:
                ckpt = load_checkpoint(run.ckpt / f"{run.name(name, start_iter)}.safetensors")
                stage.load_networks(ckpt)
                stage.load_state_dict(state["stage_state"])
                it0 = start_iter
                last_ckpt = ckpt.path
                try:
                    monitor.truncate(name, it0)
                except (ValueError, TypeError, KeyError) as exc:  # a log line cut short by a kill
                    log.warning("%s is damaged (%s); its rows are kept as they are", monitor.csv_path, exc)
            elif scfg.init_from:
                ckpt = load_checkpoint(scfg.init_from)
                stage.load_networks(ckpt)
                log.info("%s: generators initialised from %s", name, ckpt.path)
            if scfg.skip or scfg.iters == 0:
                log.info("stage %s skipped", name)
                continue
            if it0 >= scfg.iters:
                result.iters[name] = it0
                continue
            stop = stop_at[1] if stop_at is not None and stop_at[0] == name else None
            outcome = _run_stage(
                name, stage, scfg, cfg, it0, run, monitor, val_ds, device, info, specs, interrupt, result, stop,
                ds=datasets.pop(name, None), last_good=last_ckpt,
            )
            last_ckpt = outcome or last_ckpt
            result.checkpoint = last_ckpt
            if result.status != "done":
                break
    monitor.close()
    seen: dict[str, str] = {}
    for skipped in skipped_lists:  # at construction, or (without workers) when drawn
        for path, why in skipped:
            seen.setdefault(str(path), why)
    result.skipped = [(Path(p), why) for p, why in sorted(seen.items())]
    if info.enabled:
        result.ranks_consistent = _ranks_consistent(nets)
        dist.barrier()
    if result.checkpoint is None:
        result.checkpoint = last_ckpt
    return result


def _stage_datasets(cfg: Config, plan: tuple[str, ...], start_stage: int) -> dict[str, Dataset]:
    """The training data of every stage still to run, built and checked up front."""
    from dbgan.data import check_batchable

    out: dict[str, Dataset] = {}
    for si, name in enumerate(plan):
        scfg = stage_cfg(cfg, name)
        if si < start_stage or scfg.skip or scfg.iters == 0:
            continue
        ds = stage_dataset(cfg, name)
        for part, _ in getattr(ds, "parts", [(ds, ())]):
            check_batchable(part, scfg.batch_size)
        out[name] = ds
    return out


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _build_loss_networks(stage: S.Stage, cfg: Config, device: torch.device) -> None:
    """Build the perceptual loss's VGG now, outside the training RNG stream.

    Built lazily at the first step, its initialisation would draw from the global RNG at the
    first step *after a resume* too, so a resumed run would draw different noise than an
    uninterrupted one. Random weights (tests) are seeded from ``cfg.seed``.
    """
    subs = [stage] + [s for s in (getattr(stage, "bgan", None), getattr(stage, "dbgan", None)) if isinstance(s, S.Stage)]
    for sub in subs:
        if sub.scfg.w_perceptual > 0:
            with torch.random.fork_rng(devices=_rng_devices(device)):
                torch.manual_seed(cfg.seed)
                sub.perceptual  # noqa: B018 - the property builds and caches the module


class _NonFiniteWeights(RuntimeError):
    """A network holds NaN/inf weights: they must not overwrite the last good checkpoint."""


def _finite_weights(stage: S.Stage) -> str | None:
    """The first network role holding a non-finite floating-point tensor, or None."""
    for role, net in stage.networks().items():
        tensors = net.state_dict() if isinstance(net, nn.Module) else net
        for key, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"{role}.{key}"
    return None


def _ranks_consistent(nets: dict[str, nn.Module]) -> bool:
    """True when every rank holds bit-identical weights (a data-parallel sanity check)."""
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for n in nets.values() for p in n.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(flat.numel(), dtype=torch.float64)).sum()])
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _run_stage(
    name, stage, scfg, cfg, it0, run, monitor, val_ds, device, info, specs, interrupt, result, stop,
    ds: Dataset | None = None, last_good: Path | None = None,
) -> Path | None:
    from tqdm import tqdm

    ds = ds if ds is not None else stage_dataset(cfg, name)
    data = batches(ds, cfg, scfg, it0, info)
    bar = tqdm(
        total=scfg.iters, initial=it0, desc=name, disable=not (cfg.train.progress and info.main),
        dynamic_ncols=True, leave=True,
    )
    bad_in_row = 0
    recent: dict[str, list[float]] = {}
    saved: Path | None = None
    saved_at = -1
    batch = None
    recent_means: dict[str, float] = {}

    def save(it: int) -> Path:
        nonlocal saved_at
        bad = _finite_weights(stage)  # same answer on every rank: the weights are identical
        if bad is not None:
            raise _NonFiniteWeights(bad, it)
        ckpt_name = run.name(name, it)
        path = run.ckpt / f"{ckpt_name}.safetensors"
        saved_at = it
        if info.main:
            meta = {
                "stage": name, "iter": it, "scheme": cfg.scheme, "config_hash": cfg.hash(),
                "config": cfg.to_dict(), "nets": specs, "channels": cfg.data.channels,
            }
            save_checkpoint(path, stage.networks(), meta)
            atomic.atomic_torch_save(
                run.state / f"{ckpt_name}.pt",
                {
                    "stage": name, "iter": it, "config_hash": cfg.hash(),
                    "stage_state": stage.state_dict(), "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                },
            )
            run.link_latest(ckpt_name)
            run.prune(name, cfg.train.keep_last, scfg.iters)
        if info.enabled:
            dist.barrier()
        return path

    def fail(what: str, it: int) -> Path | None:
        good = saved or last_good
        result.status = "failed"
        result.message = (
            f"{what} (stage {name}, iteration {it}); stopped. Last good checkpoint: "
            f"{good or 'none (no checkpoint saved yet)'}. Lower the learning rate, enable grad_clip "
            "or check the data, then run again with --resume to continue from it."
        )
        result.iters[name] = it
        return saved

    it = it0
    try:
        for it in range(it0, scfg.iters):
            batch = next(data)
            values = stage.step(batch, it)
            if values.get("skipped"):
                bad_in_row += 1
                result.bad_steps += 1
                log.warning("%s iteration %d: non-finite loss, step skipped (%d in a row)", name, it, bad_in_row)
                if bad_in_row >= max(1, cfg.train.max_bad_steps):
                    return fail(f"{bad_in_row} non-finite losses in a row", it)
            else:
                bad_in_row = 0
            for k, v in values.items():
                recent.setdefault(k, []).append(v)
            done = it + 1
            if cfg.train.log_every and done % cfg.train.log_every == 0:
                means = {k: sum(v) / len(v) for k, v in recent.items()}
                monitor.scalars(name, done, means)
                bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if not k.endswith("_acc")}, refresh=False)
                recent_means = means
                recent = {}
            else:
                recent_means = {k: sum(v) / len(v) for k, v in recent.items()}
            bar.update(1)
            if cfg.train.val_every and done % cfg.train.val_every == 0 and done < scfg.iters:
                _validate(stage, val_ds, batch, device, recent_means, monitor, name, done)
            if cfg.train.save_every and done % cfg.train.save_every == 0 and done < scfg.iters:
                saved = save(done)
            if interrupt.requested or (stop is not None and done >= stop and done < scfg.iters):
                if saved_at != done:
                    saved = save(done)
                result.status = "interrupted"
                result.message = (
                    f"stopped at {name} iteration {done}; resume state saved ({saved}). "
                    "Run the same command to continue."
                )
                result.iters[name] = done
                return saved
        it = scfg.iters
        saved = save(scfg.iters)
    except _NonFiniteWeights as exc:
        bad, at = exc.args
        return fail(f"non-finite weights in {bad}, not saved", at)
    finally:
        bar.close()
    if batch is not None:
        if recent:
            recent_means = {k: sum(v) / len(v) for k, v in recent.items()}
        _validate(stage, val_ds, batch, device, recent_means, monitor, name, scfg.iters)
    result.iters[name] = scfg.iters
    return saved


def _validate(stage, val_ds, batch, device, recent, monitor, name, it) -> None:
    if not monitor.enabled:
        return
    # validation draws noise (blur generators) from the global RNG: keep it out of the training
    # stream, so a run resumed from a state saved before a validation continues bit-identically
    with torch.random.fork_rng(devices=_rng_devices(device)):
        res = validate(stage, val_ds, batch, device, recent)
    monitor.samples(name, it, res["images"], res["metrics"])
    numeric = {f"val_{k}": float(v) for k, v in res["metrics"].items() if isinstance(v, (int, float))}
    if numeric:
        monitor.scalars(name, it, numeric)
    if res["metrics"]:
        log.info("%s %d: %s", name, it, ", ".join(f"{k}={v:.4g}" for k, v in res["metrics"].items()))
