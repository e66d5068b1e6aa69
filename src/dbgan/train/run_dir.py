"""``runs/<name>/``: paths of checkpoints and resume states, the ``latest`` link, pruning."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from dbgan import atomic
from dbgan.checkpoint import CheckpointError, load_checkpoint, safe_torch_load
from dbgan.train.rundir_guard import RunGuard

log = logging.getLogger(__name__)


class RunDir:
    """Paths and bookkeeping of ``runs/<name>/`` (checkpoints, resume states, pruning).

    Args:
        root: the run directory.
        plan: the names of the stages the run's scheme runs, in order.
    """

    _pat = re.compile(r"^(\w+?)_(\d+)$")

    def __init__(self, root: Path, plan: tuple[str, ...]):
        self.root = root
        self.ckpt = root / "checkpoints"
        self.state = root / "state"
        self.plan = plan
        self.guard: RunGuard | None = None  # set on the writing rank: records and owns the files

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
        for folder in (self.root, self.ckpt, self.state, self.root / "samples"):
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

    def prune(self, stage: str, keep: int, final_iters: int) -> list[Path]:
        """Keep the newest ``keep`` states/checkpoints of ``stage`` (its final one always).

        Only files the run's manifest lists (written by dbgan for this run) are deleted.
        """
        items = [(it, p) for idx, it, p in self.states() if p.stem.startswith(stage + "_")]
        removed = []
        for it, p in items[:-keep] if keep else []:
            if it == final_iters:
                continue
            for f in (p, self.ckpt / f"{p.stem}.safetensors", self.ckpt / f"{p.stem}.json"):
                if self.guard is not None and not self.guard.owns(f):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                    removed.append(f)
        if self.guard is not None:
            self.guard.forget(removed)
        return removed
