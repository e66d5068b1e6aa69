"""The iterations of one stage: steps, logging, validation, checkpoints, stopping."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from dbgan import atomic
from dbgan.checkpoint import save_checkpoint
from dbgan.train.batches import batches, stage_dataset
from dbgan.train.stage import Stage
from dbgan.train.validation import validate_and_log

if TYPE_CHECKING:
    from dbgan.train.loop import _Session
    from dbgan.train.plan import PlannedStage

log = logging.getLogger(__name__)


class _NonFiniteWeights(RuntimeError):
    """A network holds NaN/inf weights: they must not overwrite the last good checkpoint."""


def _finite_weights(stage: Stage) -> str | None:
    """The first network role holding a non-finite floating-point tensor, or None."""
    for role, net in stage.networks().items():
        tensors = net.state_dict() if isinstance(net, nn.Module) else net
        for key, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"{role}.{key}"
    return None


class StageRun:
    """The iterations of one stage: steps, logging, validation, saving, stopping.

    Args:
        session: what the run's stages share (its :class:`~dbgan.train.plan.RunPlan` holds the settings).
        planned: the stage's place, name and settings in the plan.
        stage: the built stage.
        it0: the iteration to start at (a resumed stage: where it stopped).
        interrupt: the Ctrl-C flag.
        stop: save and stop after this iteration (``train(stop_at=...)``), or None.
        ds: the stage's training data (built up front), or None to build it now.
        last_good: the newest good checkpoint before this stage (for failure messages).
    """

    def __init__(self, session: "_Session", planned: "PlannedStage", stage: Stage, it0: int, interrupt: Any,
                 stop: Optional[int], ds: Optional[Dataset] = None, last_good: Optional[Path] = None):
        self.s, self.name, self.stage, self.it0 = session, planned.name, stage, it0
        self.scfg = planned.settings
        self.settings = session.plan.train  # the loop's settings (train.*)
        self.interrupt, self.stop, self.last_good = interrupt, stop, last_good
        self.ds = ds if ds is not None else stage_dataset(session.plan.cfg, planned.name)
        self.saved: Optional[Path] = None
        self.saved_at = -1
        self.bad_in_row = 0
        self.recent: dict[str, list[float]] = {}
        self.recent_means: dict[str, float] = {}

    def run(self) -> Optional[Path]:
        """Run the remaining iterations; returns the newest checkpoint this stage saved."""
        from tqdm import tqdm

        s = self.s
        data = batches(self.ds, s.plan.cfg, self.scfg, self.it0, s.info)
        self.bar = tqdm(
            total=self.scfg.iters, initial=self.it0, desc=self.name,
            disable=not (self.settings.progress and s.info.main), dynamic_ncols=True, leave=True,
        )
        batch = None
        try:
            for it in range(self.it0, self.scfg.iters):
                batch = next(data)
                stopped = self._iteration(batch, it)
                if stopped:
                    return self.saved
            self.saved = self.save(self.scfg.iters)
        except _NonFiniteWeights as exc:
            bad, at = exc.args
            return self.fail(f"non-finite weights in {bad}, not saved", at)
        finally:
            self.bar.close()
        if batch is not None:
            if self.recent:
                self.recent_means = {k: sum(v) / len(v) for k, v in self.recent.items()}
            self._validate(batch, self.scfg.iters)
        s.result.iters[self.name] = self.scfg.iters
        return self.saved

    def _iteration(self, batch: dict, it: int) -> bool:
        """One step and what follows it; True when the stage stops here (failed or interrupted)."""
        settings, result = self.settings, self.s.result
        values = self.stage.step(batch, it)
        if values.get("skipped"):
            self.bad_in_row += 1
            result.bad_steps += 1
            log.warning("%s iteration %d: non-finite loss, step skipped (%d in a row)", self.name, it, self.bad_in_row)
            if self.bad_in_row >= max(1, settings.max_bad_steps):
                self.fail(f"{self.bad_in_row} non-finite losses in a row", it)
                return True
        else:
            self.bad_in_row = 0
        done = it + 1
        self._log(values, done)
        if settings.val_every and done % settings.val_every == 0 and done < self.scfg.iters:
            self._validate(batch, done)
        if settings.save_every and done % settings.save_every == 0 and done < self.scfg.iters:
            self.saved = self.save(done)
        stop = self.stop is not None and done >= self.stop and done < self.scfg.iters
        if self.interrupt.requested or stop:
            self._interrupted(done)
            return True
        return False

    def _log(self, values: dict[str, float], done: int) -> None:
        for k, v in values.items():
            self.recent.setdefault(k, []).append(v)
        log_every = self.settings.log_every
        if log_every and done % log_every == 0:
            means = {k: sum(v) / len(v) for k, v in self.recent.items()}
            self.s.monitor.scalars(self.name, done, means)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if not k.endswith("_acc")}, refresh=False)
            self.recent_means = means
            self.recent = {}
        else:
            self.recent_means = {k: sum(v) / len(v) for k, v in self.recent.items()}
        self.bar.update(1)

    def _validate(self, batch: dict, it: int) -> None:
        s = self.s
        validate_and_log(self.stage, s.val_ds, batch, s.device, self.recent_means, s.monitor, self.name, it)

    def _interrupted(self, done: int) -> None:
        if self.saved_at != done:
            self.saved = self.save(done)
        result = self.s.result
        result.status = "interrupted"
        result.message = (
            f"stopped at {self.name} iteration {done}; resume state saved ({self.saved}). "
            "Run the same command to continue."
        )
        result.iters[self.name] = done

    def save(self, it: int) -> Path:
        """Checkpoint and resume state at iteration ``it`` (rank 0 writes; all ranks wait)."""
        bad = _finite_weights(self.stage)  # same answer on every rank: the weights are identical
        if bad is not None:
            raise _NonFiniteWeights(bad, it)
        s, run = self.s, self.s.run
        ckpt_name = run.name(self.name, it)
        path = run.ckpt / f"{ckpt_name}.safetensors"
        self.saved_at = it
        if s.info.main:
            if run.guard is not None:  # names recorded before the files are written
                run.guard.record([
                    path, path.with_suffix(".json"), run.state / f"{ckpt_name}.pt",
                    run.ckpt / "latest.safetensors", run.ckpt / "latest.json",
                ])
            meta = {"stage": self.name, "iter": it, **s.plan.checkpoint_meta, "nets": s.specs}
            save_checkpoint(path, self.stage.networks(), meta)
            atomic.atomic_torch_save(run.state / f"{ckpt_name}.pt", self._resume_state(it))
            run.link_latest(ckpt_name)
            run.prune(self.name, self.settings.keep_last, self.scfg.iters)
        if s.info.enabled:
            dist.barrier()
        return path

    def _resume_state(self, it: int) -> dict[str, Any]:
        device = self.s.device
        return {
            "stage": self.name, "iter": it, "config_hash": self.s.plan.config_hash,
            "stage_state": self.stage.state_dict(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }

    def fail(self, what: str, it: int) -> Optional[Path]:
        good = self.saved or self.last_good
        result = self.s.result
        result.status = "failed"
        result.message = (
            f"{what} (stage {self.name}, iteration {it}); stopped. Last good checkpoint: "
            f"{good or 'none (no checkpoint saved yet)'}. Lower the learning rate, enable grad_clip "
            "or check the data, then run again with --resume to continue from it."
        )
        result.iters[self.name] = it
        return self.saved
