"""Guarding a run directory: only dbgan's own folders, only dbgan's own files, one process at a time.

A run directory is marked by a manifest, ``dbgan-run.json``, written when dbgan
creates (or adopts an empty) folder. It records the run's config hash (the
content of the run, not its location) and every file dbgan wrote or is about to
write there (names are recorded *before* the file is written, so a kill in the
middle of a write never leaves an unrecorded file of dbgan's). The guard:

* refuses a folder that exists, is not empty and has no manifest (someone else's
  folder; dbgan never writes or prunes there);
* refuses to replace existing checkpoints with a different config, or to start
  again over them, unless ``--overwrite`` (``train(overwrite=True)``) is given,
  whatever ``state/`` holds; ``--resume`` continues a run with a changed config;
* lets pruning delete only files the manifest lists;
* holds a lock (``.dbgan.lock``, with the ``filelock`` package) for the run's
  life; the holder's PID is written beside it (``.dbgan.lock.pid``) so that a
  second process can name it. The lock is an ``flock``: the kernel releases it
  when its process dies, so a lock left by a killed process is taken over at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from dbgan.atomic import atomic_write_text
from dbgan.config import ConfigError

log = logging.getLogger(__name__)

MANIFEST = "dbgan-run.json"
MANIFEST_FORMAT = "dbgan-run/1"
LOCK_NAME = ".dbgan.lock"
PID_NAME = ".dbgan.lock.pid"
#: Files dbgan writes outside the manifest's list but owns (removed by ``--overwrite``).
_OWN_EXTRA = ("losses.csv",)


class RunDirError(ConfigError):
    """The run directory cannot be used as asked (not dbgan's, in use, would lose checkpoints)."""


class RunLockedError(RunDirError):
    """Another process holds the run directory's lock."""


@dataclass
class RunGuard:
    """The manifest and lock of one run directory (use on the process that writes: rank 0)."""

    root: Path
    config_hash: str
    files: set[str] = field(default_factory=set)
    _lock: Any = None

    # ------------------------------------------------------------------ manifest

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, None if there is none; :class:`RunDirError` if it is damaged."""
        path = self.manifest_path
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{path} is damaged ({type(exc).__name__}); move the run directory away or repair it") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files", []), list):
            raise RunDirError(f"{path} is not a dbgan run manifest; move the run directory away or repair it")
        return data

    def write_manifest(self) -> None:
        import dbgan

        data = {
            "format": MANIFEST_FORMAT,
            "dbgan": dbgan.__version__,
            "config_hash": self.config_hash,
            "files": sorted(self.files),
        }
        atomic_write_text(self.manifest_path, json.dumps(data, indent=1) + "\n")

    def _rel(self, path: Path) -> str:
        return Path(os.path.relpath(Path(path), self.root)).as_posix()

    def record(self, paths: Iterable[Path], always: bool = False) -> None:
        """Note files dbgan is about to write (call before writing them); the manifest is
        rewritten when a name is new, or ``always`` (e.g. to store a changed config hash)."""
        new = {self._rel(p) for p in paths} - self.files
        if new or always:
            self.files |= new
            self.write_manifest()

    def forget(self, paths: Iterable[Path]) -> None:
        gone = {self._rel(p) for p in paths} & self.files
        if gone:
            self.files -= gone
            self.write_manifest()

    def owns(self, path: Path) -> bool:
        """True for a file dbgan recorded as written by this run (only those are pruned)."""
        return self._rel(path) in self.files

    # ------------------------------------------------------------------ decision

    def check(self, resume: bool | None, overwrite: bool, load_state: Callable[[], dict | None]) -> tuple[str, dict | None]:
        """Decide what may happen to the run directory, before anything is written.

        ``load_state`` returns the newest usable resume state (called only for a dbgan run
        directory). Returns (``"new"`` | ``"resume"`` | ``"overwrite"``, resume state or None);
        raises :class:`RunDirError` with a one-line reason otherwise.
        """
        root = self.root
        if not root.exists():
            return "new", None
        if not root.is_dir():
            raise RunDirError(f"{root} is a file, not a run directory; choose another 'name' or 'runs_dir'")
        manifest = self.read_manifest()
        if manifest is None:
            others = [p.name for p in root.iterdir() if p.name not in (LOCK_NAME, PID_NAME)]
            if not others:
                return "new", None  # an empty folder (made by the user for the run) is adopted
            raise RunDirError(
                f"{root} is not a dbgan run directory (no {MANIFEST}; it holds e.g. {sorted(others)[0]!r}): "
                "dbgan only writes into run directories it created; choose another 'name' or 'runs_dir'"
            )
        self.files = {str(f) for f in manifest.get("files", []) if isinstance(f, str)}
        if overwrite:
            return "overwrite", None
        state = load_state()
        checkpoints = [f for f in self.files if f.startswith("checkpoints/") and (root / f).is_file()]
        if not checkpoints and state is None:
            return "new", None
        stored = manifest.get("config_hash") or (state or {}).get("config_hash")
        if resume is False:
            raise RunDirError(
                f"{root} already holds a run; choose another 'name', or pass --overwrite to replace its checkpoints"
            )
        if stored != self.config_hash and resume is not True:
            raise RunDirError(
                f"{root} holds a run with a different config; pass --resume to continue it with this config, "
                "--overwrite to replace it, or choose another 'name'"
            )
        if state is None:
            raise RunDirError(
                f"{root} has checkpoints but no usable resume state; pass --overwrite to train again from the "
                "beginning (its checkpoints are replaced), or choose another 'name'"
            )
        return "resume", state

    def clear(self) -> list[Path]:
        """``--overwrite``: delete the files the manifest lists (dbgan's own), nothing else."""
        removed = []
        for rel in sorted(self.files) + list(_OWN_EXTRA):
            p = self.root / rel
            if rel != MANIFEST and p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
        self.files = set()
        log.info("--overwrite: removed %d files of the previous run in %s", len(removed), self.root)
        return removed

    # ------------------------------------------------------------------ lock

    def lock(self) -> None:
        """Take the run's lock (the folder must exist); :class:`RunLockedError` names the holder."""
        from filelock import FileLock, Timeout

        if self._lock is not None:
            return
        lock = FileLock(str(self.root / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            holder = "unknown PID"
            with contextlib.suppress(OSError, ValueError):
                holder = "PID " + (self.root / PID_NAME).read_text().strip()[:80]
            raise RunLockedError(
                f"{self.root} is in use by another dbgan process ({holder}); wait for it to finish or stop it"
            ) from None
        self._lock = lock
        atomic_write_text(self.root / PID_NAME, f"{os.getpid()} on {socket.gethostname()}\n")

    def unlock(self) -> None:
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            (self.root / PID_NAME).unlink()
        self._lock.release()
        self._lock = None
