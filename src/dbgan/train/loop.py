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

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from dbgan.checkpoint import CheckpointError, load_checkpoint
from dbgan.config import Config, StageConfig, save_config
from dbgan.device import pick_device
from dbgan.train import stages as S  # noqa: F401 - the stage classes (tests patch S.Stage)
from dbgan.train.batches import CombinedDataset, batches, check_stage_dataset, stage_dataset  # noqa: F401
from dbgan.train.context import DistInfo, StepContext, autocast_factory, init_distributed  # noqa: F401
from dbgan.train.monitor import Monitor
from dbgan.train.networks import build_nets
from dbgan.train.plan import PlannedStage, RunPlan
from dbgan.train.registry import SCHEMES, STAGES
from dbgan.train.run_dir import RunDir
from dbgan.train.rundir_guard import MANIFEST, RunDirError, RunGuard
from dbgan.train.stage import Stage
from dbgan.train.stage_run import StageRun

log = logging.getLogger(__name__)

__all__ = ["SCHEMES", "TrainResult", "train", "make_stage", "stage_cfg", "stage_dataset", "batches", "build_nets",
           "DistInfo", "RunDir"]


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


# --------------------------------------------------------------------------- stages by name


def stage_cfg(cfg: Config, name: str) -> StageConfig:
    """The ``stages.<key>`` section stage ``name`` runs with (iterations, batch size, schedule)."""
    return STAGES.get(name).stage_config(cfg)


def make_stage(name: str, cfg: Config, nets: dict[str, nn.Module], ctx: StepContext | torch.device) -> Stage:
    """Stage ``name`` of ``cfg.scheme`` over the run's networks (a bare device: no AMP, one process)."""
    if isinstance(ctx, torch.device):
        ctx = StepContext(ctx)
    return RunPlan.of(cfg).stage(name).build(cfg, nets, ctx)


# --------------------------------------------------------------------------- one run


@dataclass
class _Session:
    """Everything the stages of one :func:`train` call share."""

    plan: RunPlan
    run: RunDir
    device: torch.device
    info: DistInfo
    ctx: StepContext
    nets: dict[str, nn.Module]
    specs: dict[str, dict]
    datasets: dict[str, CombinedDataset]
    val_ds: Optional[Dataset]
    result: TrainResult
    state: Optional[dict[str, Any]] = None
    start_iter: int = 0
    skipped_lists: list[list] = field(default_factory=list)
    init_ckpts: dict[str, Any] = field(default_factory=dict)  # checked init_from checkpoints by stage
    monitor: Optional[Monitor] = None  # made once the run directory is ours

    @property
    def start_stage(self) -> int:
        return self.run.plan.index(self.state["stage"]) if self.state is not None else 0


def _devices(cfg: Config) -> tuple[torch.device, DistInfo]:
    device_probe = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    info = init_distributed(cfg, device_probe)
    device = pick_device(cfg.device, info.local_rank)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
    return device, info


def _init_path(value: str):
    """``init_from``: a checkpoint path or run folder, or a bundled model's name (``general``)."""
    from dbgan.api import resolve_model

    return resolve_model(value)


def _check_init_from(plan: RunPlan, first: int, nets: dict[str, nn.Module]) -> dict:
    """Load and check every ``init_from`` of the stages from ``first`` on, before any training:
    readable, finite, and fitting this config's networks (names and shapes). Skipped stages
    count too: their ``init_from`` still loads the networks later stages use."""
    from dbgan.checkpoint import check_fit

    out = {}
    for p in plan.stages[first:]:
        name = p.name
        if not p.settings.init_from:
            continue
        try:
            ckpt = load_checkpoint(_init_path(p.settings.init_from))
        except CheckpointError as exc:
            raise CheckpointError(f"'stages.{name}.init_from': {exc}") from None
        roles = p.kind.checkpoint_roles
        used = [r for r in ckpt.roles if r.removesuffix("_ema") in roles]
        if not used:
            raise CheckpointError(
                f"'stages.{name}.init_from': {ckpt.path} holds none of the networks of stage {name} "
                f"({', '.join(sorted(roles))}); it holds: {', '.join(ckpt.roles)}"
            )
        for role in used:
            own = nets[roles[role.removesuffix("_ema")]].state_dict()
            check_fit(
                {k: tuple(v.shape) for k, v in own.items()},
                {k: tuple(v.shape) for k, v in ckpt.state_dict(role).items()},
                f"'stages.{name}.init_from': {ckpt.path} [{role}]",
            )
        out[name] = ckpt
    return out


def _stage_datasets(plan: RunPlan, start_stage: int) -> dict[str, CombinedDataset]:
    """The training data of every stage still to run, built and checked up front."""
    out: dict[str, CombinedDataset] = {}
    for p in plan.stages[start_stage:]:
        if p.runs:
            ds = stage_dataset(plan.cfg, p.name)
            check_stage_dataset(ds, p.settings.batch_size)
            out[p.name] = ds
    return out


def _open_session(plan: RunPlan, device: torch.device, info: DistInfo, run: RunDir, state) -> _Session:
    """Build everything before writing (bad settings fail early)."""
    cfg = plan.cfg
    nets, specs = build_nets(cfg, device)
    ctx = StepContext.for_run(cfg, device, info)
    start_stage = run.plan.index(state["stage"]) if state is not None else 0
    init_ckpts = _check_init_from(plan, start_stage if state is None else start_stage + 1, nets)
    # every stage's data is read (headers) and checked now: a missing folder, an image smaller
    # than the crop or a bad file of the last stage must not surface after hours of the first
    datasets = _stage_datasets(plan, start_stage)
    val_ds = None
    if cfg.data.val_dir:
        from dbgan.data import make_val_dataset

        val_ds = make_val_dataset(cfg.data, cfg.seed)
    # the lists of skipped unreadable files (data.skip_bad), not the datasets: their caches
    # are freed when their stage ends
    skipped = [part.skipped for ds in datasets.values() for part, _ in ds.parts if hasattr(part, "skipped")]
    if val_ds is not None:
        skipped.append(val_ds.skipped)
    if info.enabled:
        for net in nets.values():
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, 0)
    result = TrainResult(run.root, "done", None)
    return _Session(plan, run, device, info, ctx, nets, specs, datasets, val_ds, result, state,
                    skipped_lists=skipped, init_ckpts=init_ckpts)


def _claim_run_dir(s: _Session, guard: RunGuard, decision: str, resume: bool | None, overwrite: bool,
                   command: str | None) -> None:
    """Make the run directory ours (locked, recorded in its manifest) and write its config."""
    run = s.run
    if s.info.main:
        run.root.mkdir(parents=True, exist_ok=True)
        guard.lock()
        if decision == "new" and guard.check(resume, overwrite, run.latest_state)[0] != "new":
            # decided without the lock (the folder did not exist yet): another process got there first
            raise RunDirError(f"{run.root}: another process started a run there meanwhile; choose another 'name'")
        if decision == "overwrite":
            guard.clear()
        run.guard = guard
        guard.record([run.root / "config.yaml"], always=True)  # the manifest, with this config's hash
        run.remove_stale_temp_files()
        save_config(s.plan.cfg, run.root / "config.yaml", command)
    s.monitor = Monitor(run.root, enabled=s.info.main, tensorboard=s.plan.train.tensorboard)


def _start(s: _Session) -> None:
    """Set the RNG where the run (or its resume state) is."""
    run = s.run
    if s.state is not None:
        s.start_iter = int(s.state["iter"])
        torch.set_rng_state(s.state["torch_rng"])
        if s.state.get("cuda_rng") is not None and s.device.type == "cuda":
            torch.cuda.set_rng_state(s.state["cuda_rng"], s.device)
        log.info("resuming %s at %s iteration %d", run.root, s.state["stage"], s.start_iter)
    else:
        torch.manual_seed(s.plan.seed + 104729 * s.info.rank)


def train(
    cfg: Config,
    command: str | None = None,
    resume: bool | None = None,
    stop_at: tuple[str, int] | None = None,
    overwrite: bool = False,
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
        overwrite: replace the checkpoints of an existing run (of this or another config)
            and train from the beginning; without it they are never replaced.

    The run directory must be dbgan's own (``dbgan-run.json``; see
    :mod:`dbgan.train.rundir_guard`) and is locked for the run's life.
    """
    plan = RunPlan.of(cfg)  # the one reading of the config's stages and loop settings
    device, info = _devices(cfg)
    run = RunDir(cfg.run_dir, plan.names)
    # run directory: dbgan's own, locked, never losing checkpoints (before any file is written)
    guard = RunGuard(run.root, plan.config_hash)
    try:
        return _train_guarded(plan, command, resume, stop_at, overwrite, device, info, run, guard)
    finally:
        guard.unlock()


def _train_guarded(plan: RunPlan, command, resume, stop_at, overwrite, device, info, run, guard) -> TrainResult:
    if info.main and (run.root / MANIFEST).is_file():
        guard.lock()  # a second process on this run stops here, at once, naming the holder
    decision, state = guard.check(resume, overwrite, run.latest_state)
    s = _open_session(plan, device, info, run, state)
    _claim_run_dir(s, guard, decision, resume, overwrite, command)
    _start(s)
    last_ckpt: Path | None = None
    with _Interrupt() as interrupt:
        for p in plan.stages[s.start_stage:]:
            last_ckpt = _run_plan_stage(s, p, interrupt, stop_at, last_ckpt)
            if s.result.status != "done":
                break
    return _close(s, last_ckpt)


def _prepare_stage(s: _Session, p: PlannedStage) -> tuple[Stage, int, Optional[Path]]:
    """The stage with its loss networks, restored from the resume state or ``init_from``."""
    name = p.name
    stage = p.build(s.plan.cfg, s.nets, s.ctx)
    stage.prepare_losses()
    if s.state is not None and p.index == s.start_stage:
        ckpt = load_checkpoint(s.run.ckpt / f"{s.run.name(name, s.start_iter)}.safetensors")
        stage.load_networks(ckpt)
        stage.load_state_dict(s.state["stage_state"])
        try:
            s.monitor.truncate(name, s.start_iter)
        except (ValueError, TypeError, KeyError) as exc:  # a log line cut short by a kill
            log.warning("%s is damaged (%s); its rows are kept as they are", s.monitor.csv_path, exc)
        return stage, s.start_iter, ckpt.path
    if p.settings.init_from:
        ckpt = s.init_ckpts.pop(name, None) or load_checkpoint(_init_path(p.settings.init_from))
        stage.load_networks(ckpt)
        log.info("%s: generators initialised from %s", name, ckpt.path)
    return stage, 0, None


def _run_plan_stage(s: _Session, p: PlannedStage, interrupt: "_Interrupt", stop_at, last_ckpt):
    """Prepare and run one stage of the plan; returns the newest good checkpoint."""
    name = p.name
    stage, it0, resumed = _prepare_stage(s, p)
    last_ckpt = resumed or last_ckpt
    if not p.runs:
        log.info("stage %s skipped", name)
        return last_ckpt
    if it0 >= p.settings.iters:
        s.result.iters[name] = it0
        return last_ckpt
    stop = stop_at[1] if stop_at is not None and stop_at[0] == name else None
    ds = s.datasets.pop(name, None)
    runner = StageRun(s, p, stage, it0, interrupt, stop, ds=ds, last_good=last_ckpt)
    last_ckpt = runner.run() or last_ckpt
    s.result.checkpoint = last_ckpt
    return last_ckpt


def _close(s: _Session, last_ckpt: Path | None) -> TrainResult:
    s.monitor.close()
    result = s.result
    seen: dict[str, str] = {}
    for skipped in s.skipped_lists:  # at construction, or (without workers) when drawn
        for path, why in skipped:
            seen.setdefault(str(path), why)
    result.skipped = [(Path(p), why) for p, why in sorted(seen.items())]
    if s.info.enabled:
        result.ranks_consistent = _ranks_consistent(s.nets)
        dist.barrier()
    if result.checkpoint is None:
        result.checkpoint = last_ckpt
    return result


def _ranks_consistent(nets: dict[str, nn.Module]) -> bool:
    """True when every rank holds bit-identical weights (a data-parallel sanity check)."""
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for n in nets.values() for p in n.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(flat.numel(), dtype=torch.float64)).sum()])
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)


# --------------------------------------------------------------------------- Ctrl-C


class _Interrupt:
    """SIGINT / SIGTERM handler that asks the loop to save and stop at the next iteration boundary.

    SIGTERM is what cluster schedulers (SLURM, Kubernetes) send before they kill a job:
    it is treated like Ctrl-C (a resume state is saved, the process exits cleanly).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading_main():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True
        what = "SIGTERM" if signum == signal.SIGTERM else "interrupt"
        log.warning("%s received: saving a resume state after this iteration (Ctrl-C again to abort)", what)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
        return False


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
