"""Reliability of training runs and checkpoints (issue 7): nothing is lost, errors say what to do.

Covered here (docs/reliability.md lists every fault with its test):

* interruptions: SIGKILL at random moments of a real ``dbgan train`` process, resumed
  to completion bit-identically; a kill in the middle of each kind of write (checkpoint
  metadata, weights, resume state, the ``latest`` link) and damaged newest files;
  Ctrl-C (SIGINT) saves a resume state and exits 0;
* numerical faults: NaN/inf losses are skipped and counted, a streak stops the run
  naming the last good checkpoint, non-finite weights are never saved;
* disk: a write that fails with "no space left" leaves the old file intact and no
  temporary file behind (checkpoints, resume states, images), and the run resumes;
* checkpoints: another architecture, truncated files, files that are not safetensors,
  pickles with code in them (never executed), damaged metadata.

Training runs use ``configs/tiny.yaml`` on 64 px crops (seconds each). Runs compared
bit for bit are made in the same kind of process (all in-process, or all in
subprocesses with ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import ast
import errno
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dbgan import atomic as A
from dbgan import checkpoint as C
from dbgan.checkpoint import CheckpointError, load_checkpoint
from dbgan.config import load_config
from dbgan.train import loop as L
from dbgan.train import train

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "dbgan"
FINAL = ("blur_pretrain_000004", "bgan_000004", "dbgan_000004")  # last checkpoint of each stage


# --------------------------------------------------------------------------- data and helpers


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Three sharp 64 px crops and three 'real' blurred crops (Gaussian blur + noise)."""
    from scipy.ndimage import gaussian_filter
    from skimage import data as skd

    from dbgan.io import write_image

    root = tmp_path_factory.mktemp("reliability_data")
    rng = np.random.default_rng(7)
    for i, img in enumerate([skd.astronaut(), skd.coffee(), skd.chelsea()]):
        img = img.astype(np.float32) / 255.0
        h, w = img.shape[:2]
        for sub, sigma in (("sharp", 0.0), ("real", 1.5)):
            y, x = rng.integers(0, h - 64), rng.integers(0, w - 64)
            crop = img[y : y + 64, x : x + 64]
            if sigma:
                crop = gaussian_filter(crop, sigma=(sigma, sigma, 0)) + rng.normal(0, 0.01, crop.shape)
            write_image(root / sub / f"{i}.png", torch.from_numpy(np.clip(crop, 0, 1).astype(np.float32)).permute(2, 0, 1))
    return {"sharp": root / "sharp", "real": root / "real"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In-process runs use one thread, like the subprocesses (``OMP_NUM_THREADS=1``): results
    compared bit for bit come from the same arithmetic, and the shared CPUs stay free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def overrides(data, runs: Path, name: str, *extra: str) -> list[str]:
    return [
        f"data.sharp_dir={data['sharp']}",
        f"data.real_blur_dir={data['real']}",
        f"runs_dir={runs}",
        f"name={name}",
        "train.save_every=1",  # a save at every iteration: many moments to be killed in
        "train.keep_last=2",
        *extra,
    ]


def tiny(data, runs: Path, name: str, *extra: str):
    return load_config("tiny", overrides(data, runs, name, *extra))


def same_weights(run_a: Path, run_b: Path, names=FINAL) -> None:
    """The named checkpoints of two runs hold bit-identical tensors."""
    for name in names:
        a = load_file(str(run_a / "checkpoints" / f"{name}.safetensors"))
        b = load_file(str(run_b / "checkpoints" / f"{name}.safetensors"))
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs"


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*.tmp")]


def newest_state(run: Path) -> tuple[int, int] | None:
    """(stage index, iteration) of the newest resume state on disk: the run's progress."""
    plan = L.SCHEMES["separate"]
    best = None
    for p in (run / "state").glob("*.pt") if (run / "state").is_dir() else []:
        stage, _, it = p.stem.rpartition("_")
        if stage in plan and it.isdigit():
            key = (plan.index(stage), int(it))
            best = key if best is None or key > best else best
    return best


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """An uninterrupted in-process run of the config the in-process tests interrupt."""
    runs = tmp_path_factory.mktemp("reference_runs")
    res = train(tiny(data, runs, "ref"))
    assert res.status == "done", res.message
    return runs / "ref"


class Killed(BaseException):
    """Stands in for SIGKILL inside the process: nothing catches it and no clean-up runs for
    the file being written (its partial temporary file stays, as after a real kill)."""


def die_while_writing(monkeypatch, match) -> None:
    """The first atomic write whose target satisfies ``match`` dies half-way through.

    What is left on disk is what a kill leaves there: half the bytes in a temporary file
    next to the target (same naming as :func:`dbgan.atomic.atomic_write_bytes`), and
    the target untouched.
    """
    real = A.atomic_write_bytes

    def write(path, payload):
        path = Path(path)
        if match(path):
            fd, _ = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.write(fd, payload[: len(payload) // 2])
            os.close(fd)
            raise Killed(str(path))
        return real(path, payload)

    monkeypatch.setattr(A, "atomic_write_bytes", write)


def disk_full_while_writing(monkeypatch, match) -> list[Path]:
    """Simulate ENOSPC inside the real :func:`atomic_write_bytes` for targets satisfying ``match``:
    half the bytes reach the temporary file, then ``write`` fails with "No space left on device".

    Returns the list of targets that failed (filled as it happens).
    """
    real_mkstemp, real_fdopen = tempfile.mkstemp, os.fdopen
    pending: dict[int, Path] = {}
    failed: list[Path] = []

    class HalfWriter:
        def __init__(self, fh, target):
            self.fh, self.target = fh, target

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()
            return False

        def write(self, payload):
            self.fh.write(payload[: len(payload) // 2])
            self.fh.flush()
            failed.append(self.target)
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            self.fh.flush()

        def fileno(self):
            return self.fh.fileno()

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        pending[fd] = Path(name)
        return fd, name

    def fdopen(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        tmp = pending.pop(fd, None)
        if tmp is not None and tmp.name.endswith(".tmp"):
            target = tmp.parent / tmp.name[1:].rsplit(".", 2)[0]  # ".NAME.XXXX.tmp" -> NAME
            if match(target):
                return HalfWriter(fh, target)
        return fh

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fdopen", fdopen)
    return failed


# --------------------------------------------------------------------------- SIGKILL (real processes)


def _cli(data, runs: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dbgan.cli", "train", "tiny", *overrides(data, runs, name, *extra)]


_ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def test_sigkill_at_random_moments_then_resume_is_bit_identical(data, reference, tmp_path):
    """``kill -9`` a real training process three times at random moments (seeded), resume each
    time with the same command: the finished run equals an uninterrupted one bit for bit."""
    runs = tmp_path / "runs"
    run = runs / "killed"
    cmd = _cli(data, runs, "killed")
    rng = np.random.default_rng(20240607)
    # kill once the run has saved save point k (one of the first 8 of the 12: 3 stages x 4
    # iterations) plus a random delay of up to 15 ms (mid-iteration, mid-save, between
    # stages); three points, in order
    save_points = [(s, i) for s in range(3) for i in range(1, 5)]
    targets = sorted(rng.choice(8, size=3, replace=False))
    for n, k in enumerate(targets):
        proc = subprocess.Popen(cmd, env=_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while (newest_state(run) or (-1, 0)) < save_points[k]:
            assert proc.poll() is None, f"run {n} ended before its kill point: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0, 0.015)))
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.kill()  # SIGKILL
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        if n > 0:
            assert "resuming" in err, err[-2000:]  # it continued, it did not start again
        # what the kill left: the newest complete checkpoint loads, whatever was being written
        assert load_checkpoint(run / "checkpoints" / "latest.safetensors").meta["format"] == C.FORMAT
        assert not (run / "checkpoints" / "dbgan_000004.safetensors").exists()
    final = subprocess.run([*cmd, "--resume"], env=_ENV, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr[-2000:]
    assert "resuming" in final.stderr
    same_weights(reference, run)
    same_weights(reference, run, names=("latest",))
    assert temp_files(run) == []


# --------------------------------------------------------------------------- kill mid-save (in-process)


def test_kill_in_the_middle_of_every_kind_of_write_then_resume_is_bit_identical(data, reference, tmp_path, monkeypatch):
    """A kill while writing checkpoint metadata, weights, a resume state or the ``latest`` link,
    and damaged newest files (truncated state, truncated checkpoint): each time the previous
    complete checkpoint stays intact, resume falls back to the newest complete pair and the
    finished run equals the uninterrupted one. Stray temporary files are cleaned up."""
    runs = tmp_path / "runs"
    run = runs / "cut"
    cfg = tiny(data, runs, "cut")
    ckpt, state = run / "checkpoints", run / "state"

    def segment(kill) -> None:
        with monkeypatch.context() as m:
            kill(m)
            with pytest.raises(Killed):
                train(cfg)
        latest = load_checkpoint(ckpt / "latest.safetensors")  # intact after every kill
        assert (ckpt / f"{latest.meta['stage']}_{latest.meta['iter']:06d}.safetensors").read_bytes() == (
            ckpt / "latest.safetensors"
        ).read_bytes()

    # 1. metadata sidecar of blur_pretrain_000002 (the first file of a save)
    segment(lambda m: die_while_writing(m, lambda p: p.name == "blur_pretrain_000002.json"))
    assert not (ckpt / "blur_pretrain_000002.json").exists()
    assert [p.name for p in ckpt.glob(".blur_pretrain_000002.json.*.tmp")]  # the kill's leftover
    assert load_checkpoint(ckpt / "latest.safetensors").meta["iter"] == 1

    # 2. weights of the first bgan checkpoint: resume must fall back across the stage boundary
    segment(lambda m: die_while_writing(m, lambda p: p.name == "bgan_000001.safetensors"))
    assert (ckpt / "bgan_000001.json").exists() and not (ckpt / "bgan_000001.safetensors").exists()
    assert not list(ckpt.glob(".blur_pretrain_000002.json.*.tmp"))  # cleaned up on resume
    assert L.RunDir(run, L.SCHEMES["separate"]).latest_state()["stage"] == "blur_pretrain"

    # 3. resume state bgan_000003.pt (its checkpoint is complete, the state is not)
    segment(lambda m: die_while_writing(m, lambda p: p.name == "bgan_000003.pt"))
    assert (ckpt / "bgan_000003.safetensors").exists() and not (state / "bgan_000003.pt").exists()
    # ... and the newest complete state is damaged too (truncated): fall back one further
    newest = state / "bgan_000002.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    assert L.RunDir(run, L.SCHEMES["separate"]).latest_state()["iter"] == 1

    # 4. between writing the dbgan_000002 pair and pointing 'latest' at it
    real_replace = os.replace

    def die_on_latest(m):
        def replace(src, dst):
            if Path(dst).name == "latest.safetensors" and (ckpt / "dbgan_000002.safetensors").exists():
                raise Killed(str(dst))
            return real_replace(src, dst)

        m.setattr(os, "replace", replace)

    segment(die_on_latest)
    assert load_checkpoint(ckpt / "latest.safetensors").meta["iter"] == 1  # still the previous one
    # ... and the newest checkpoint is truncated (its state is fine): fall back to dbgan_000001
    newest = ckpt / "dbgan_000002.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    got = L.RunDir(run, L.SCHEMES["separate"]).latest_state()
    assert (got["stage"], got["iter"]) == ("dbgan", 1)

    res = train(cfg)
    assert res.status == "done", res.message
    same_weights(reference, run)
    same_weights(reference, run, names=("latest",))
    assert temp_files(run) == []


def test_resume_with_a_perceptual_loss_is_bit_identical(data, tmp_path):
    """The perceptual loss's VGG is built when its stage starts, outside the training RNG: built
    at the first step after a resume instead, it drew from the RNG and the run diverged."""
    runs = tmp_path / "runs"
    extra = ("scheme=joint", "stages.dbgan.w_perceptual=1", "stages.bgan.w_perceptual=1",
             "losses.perceptual.layers=[relu1_2]", "stages.blur_pretrain.iters=2")
    assert train(tiny(data, runs, "ref", *extra)).status == "done"
    cfg = tiny(data, runs, "cut", *extra)
    assert train(cfg, stop_at=("joint", 2)).status == "interrupted"
    assert train(cfg).status == "done"
    same_weights(runs / "ref", runs / "cut", names=("latest",))


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_saves_a_resume_state_exits_0_and_the_run_continues(data, tmp_path, capsys, caplog):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does, DataLoader workers
    included) while training: exit status 0, a message saying a resume state was saved, and
    running the same command again finishes the run from there."""
    from dbgan.cli import main

    runs = tmp_path / "runs"
    run = runs / "ctrlc"
    args = ["train", "tiny", *overrides(data, runs, "ctrlc", "data.num_workers=1")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbgan.cli", *args], env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while newest_state(run) is None:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "resume state saved" in out, out
    assert "Traceback" not in err, err[-3000:]
    stopped = newest_state(run)
    assert stopped is not None and stopped < (2, 4), "the run was not interrupted"
    assert not (run / "checkpoints" / "dbgan_000004.safetensors").exists()

    capsys.readouterr()
    with caplog.at_level("INFO"):
        assert main(args) == 0
    assert "resuming" in caplog.text
    assert (run / "checkpoints" / "dbgan_000004.safetensors").is_file()
    assert "run directory" in capsys.readouterr().out


def test_interrupt_flag_saves_at_the_next_iteration(data, tmp_path, monkeypatch):
    """The SIGINT handler only sets a flag: the loop saves the state of the iteration it was in
    (not a half-updated one) and reports 'interrupted'; the next call finishes the run."""
    runs = tmp_path / "runs"
    cfg = tiny(data, runs, "flag", "scheme=synthetic", "train.save_every=0")
    real_step = L.S.Stage.step
    calls = []

    def step(self, batch, it=0):
        out = real_step(self, batch, it)
        calls.append(it)
        if it == 1:
            signal.raise_signal(signal.SIGINT)  # delivered to the loop's handler
        return out

    monkeypatch.setattr(L.S.Stage, "step", step)
    res = train(cfg)
    assert res.status == "interrupted"
    assert res.iters == {"dbgan": 2} and calls == [0, 1]
    assert "resume state saved" in res.message
    assert (runs / "flag" / "state" / "dbgan_000002.pt").is_file()
    monkeypatch.setattr(L.S.Stage, "step", real_step)
    # a kill (or a full disk) in the middle of appending to the loss log leaves half a line
    with (runs / "flag" / "losses.csv").open("a") as fh:
        fh.write("dbgan")
    assert train(cfg).status == "done"


def test_second_ctrl_c_aborts_with_130_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch, capsys):
    from dbgan.cli import main

    runs = tmp_path / "runs"
    real_step = L.S.Stage.step
    # what the process started with: default_int_handler, or SIG_IGN when launched in the
    # background by a non-interactive shell
    before = signal.getsignal(signal.SIGINT)

    def step(self, batch, it=0):
        out = real_step(self, batch, it)
        if it == 2:
            signal.raise_signal(signal.SIGINT)  # "save and stop" ...
            signal.raise_signal(signal.SIGINT)  # ... "no, stop now"
        return out

    monkeypatch.setattr(L.S.Stage, "step", step)
    assert main(["train", "tiny", *overrides(data, runs, "abort", "scheme=synthetic")]) == 130
    assert "aborted" in capsys.readouterr().err
    ckpt = runs / "abort" / "checkpoints"
    assert load_checkpoint(ckpt / "latest.safetensors").meta["iter"] == 2
    assert temp_files(runs / "abort") == []
    assert signal.getsignal(signal.SIGINT) is before  # the handler was put back


# --------------------------------------------------------------------------- numerical faults


def _nan_on(monkeypatch, bad_calls) -> None:
    """``content_loss`` returns NaN on the given calls (one call per dbgan-stage iteration)."""
    import dbgan.losses

    real = dbgan.losses.content_loss
    count = [0]

    def content_loss(*args, **kwargs):
        n = count[0]
        count[0] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if bad_calls(n) else out

    monkeypatch.setattr(dbgan.losses, "content_loss", content_loss)


def test_nan_losses_are_skipped_and_counted(data, tmp_path, monkeypatch):
    """Two non-finite losses in a row, twice (limit 3): the run finishes, 4 steps are counted as
    skipped, and a skipped step changes no weight."""
    runs = tmp_path / "runs"
    cfg = tiny(
        data, runs, "nan", "scheme=synthetic", "stages.dbgan.iters=8", "train.keep_last=20", "train.max_bad_steps=3"
    )
    _nan_on(monkeypatch, lambda n: n in (2, 3, 5, 6))
    res = train(cfg)
    assert res.status == "done", res.message
    assert res.bad_steps == 4
    w = {i: load_file(str(runs / "nan" / "checkpoints" / f"dbgan_{i:06d}.safetensors")) for i in (2, 4, 5, 7, 8)}
    for key in w[2]:
        if key.startswith(("deblur_g.", "deblur_d.")):
            assert torch.equal(w[2][key], w[4][key]), key  # iterations 2, 3 skipped
            assert torch.equal(w[5][key], w[7][key]), key  # iterations 5, 6 skipped
    changed = [k for k in w[4] if k.startswith("deblur_g.") and not torch.equal(w[4][k], w[5][k])]
    assert changed  # iteration 4 was a real step
    assert all(torch.isfinite(t).all() for t in w[8].values())


def test_a_streak_of_nan_losses_stops_the_run_naming_the_last_good_checkpoint(data, tmp_path, monkeypatch, capsys):
    """From iteration 3 on every loss is NaN: with ``train.max_bad_steps=3`` the run stops after
    the third in a row, ``dbgan train`` exits 1 with one line naming the last good checkpoint,
    which holds finite weights; fixing the cause and running again continues from it."""
    from dbgan.cli import main

    runs = tmp_path / "runs"
    args = ["train", "tiny", *overrides(data, runs, "streak", "scheme=synthetic", "stages.dbgan.iters=8",
                                        "train.save_every=2", "train.keep_last=20", "train.max_bad_steps=3")]
    with monkeypatch.context() as m:
        _nan_on(m, lambda n: n >= 3)
        assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    good = runs / "streak" / "checkpoints" / "dbgan_000004.safetensors"  # saved after iteration 3 was skipped
    assert "3 non-finite losses in a row" in err[0] and str(good) in err[0], err[0]
    assert not (runs / "streak" / "checkpoints" / "dbgan_000006.safetensors").exists()
    weights = load_file(str(good))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert (runs / "streak" / "checkpoints" / "latest.safetensors").read_bytes() == good.read_bytes()
    # the cause is gone (as after lowering the learning rate with --resume): the run continues
    assert main(args) == 0
    assert (runs / "streak" / "checkpoints" / "dbgan_000008.safetensors").is_file()


def test_non_finite_weights_are_never_saved(data, tmp_path, monkeypatch):
    """A step whose loss looked finite leaves NaN in a weight: the next save refuses to write it,
    the run stops as failed, and 'latest' stays the previous, finite checkpoint."""
    runs = tmp_path / "runs"
    cfg = tiny(data, runs, "poison", "scheme=synthetic", "train.keep_last=20")
    real_update = L.S.Stage.update
    calls = [0]

    def update(self, updates):
        real_update(self, updates)
        calls[0] += 1
        if calls[0] == 3:
            with torch.no_grad():
                next(self.generators["deblur_g"].parameters()).view(-1)[0] = float("nan")

    monkeypatch.setattr(L.S.Stage, "update", update)
    res = train(cfg)
    assert res.status == "failed"
    assert "non-finite weights" in res.message and "dbgan_000002.safetensors" in res.message
    ckpt = runs / "poison" / "checkpoints"
    assert not (ckpt / "dbgan_000003.safetensors").exists()
    latest = load_checkpoint(ckpt / "latest.safetensors")
    assert latest.meta["iter"] == 2
    assert all(torch.isfinite(t).all() for t in latest.tensors.values())


# --------------------------------------------------------------------------- disk


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch, where):
    target = tmp_path / "model.safetensors"
    A.atomic_write_bytes(target, b"old contents")
    with monkeypatch.context() as m:
        if where == "write":
            disk_full_while_writing(m, lambda p: p == target)
        elif where == "fsync":
            m.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        else:
            m.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
        with pytest.raises(OSError):
            A.atomic_write_bytes(target, b"new contents, much longer than the old ones" * 1000)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_disk_full_during_training_keeps_checkpoints_and_the_run_resumes(data, reference, tmp_path, monkeypatch, capsys):
    """"No space left" while writing resume state bgan_000002.pt: ``dbgan train`` exits 2 with one
    line saying what to do, the last complete checkpoint is intact, no partial file is left, and
    running again (space freed) finishes bit-identically to an uninterrupted run."""
    from dbgan.cli import main

    runs = tmp_path / "runs"
    run = runs / "full"
    args = ["train", "tiny", *overrides(data, runs, "full")]
    with monkeypatch.context() as m:
        failed = disk_full_while_writing(m, lambda p: p.name == "bgan_000002.pt")
        assert main(args) == 2
    assert [p.name for p in failed] == ["bgan_000002.pt"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "free some space" in err[0], err
    assert not (run / "state" / "bgan_000002.pt").exists()
    assert temp_files(run) == []
    ckpt = run / "checkpoints"
    assert (ckpt / "latest.safetensors").read_bytes() == (ckpt / "bgan_000001.safetensors").read_bytes()
    assert main(args) == 0
    same_weights(reference, run)


def test_failed_image_write_keeps_the_existing_output(tmp_path, monkeypatch):
    from dbgan.io import read_image, write_image

    out = tmp_path / "out.png"
    write_image(out, torch.full((3, 16, 16), 0.25))
    before = out.read_bytes()
    with monkeypatch.context() as m:
        disk_full_while_writing(m, lambda p: p == out)
        with pytest.raises(OSError, match="No space"):
            write_image(out, torch.full((3, 16, 16), 0.75))
    assert out.read_bytes() == before
    assert torch.allclose(read_image(out), torch.full((3, 16, 16), 64 / 255))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """A dbgan checkpoint of tiny.yaml's networks, written without training."""
    cfg = load_config("tiny")
    nets, specs = L.build_nets(cfg, torch.device("cpu"))
    path = tmp_path_factory.mktemp("ckpt") / "small.safetensors"
    C.save_checkpoint(path, {r: nets[r] for r in ("blur_g", "deblur_g")}, {"stage": "dbgan", "iter": 0, "nets": specs})
    return path


def test_checkpoint_of_another_architecture_is_a_clear_error(small_checkpoint, data, tmp_path, capsys):
    from dbgan.cli import main
    from dbgan.nets import build_network

    ckpt = load_checkpoint(small_checkpoint)
    other = build_network("unet", in_channels=3, out_channels=3, num_downs=4, ngf=16)
    with pytest.raises(CheckpointError, match="do not fit this architecture.*another architecture"):
        C.load_into(other, ckpt.state_dict("deblur_g"), str(small_checkpoint))
    # the same through `dbgan train ... init_from=`: exit 2, one line, naming the file
    runs = tmp_path / "runs"
    code = main(["train", "tiny", *overrides(data, runs, "other", "scheme=synthetic", "nets.deblur_g.args.ngf=16",
                                             f"stages.dbgan.init_from={small_checkpoint}")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(small_checkpoint) in err[0] and "do not fit this architecture" in err[0]


@pytest.mark.parametrize("keep", [0, 5, 100, "half", "all-but-one"])
def test_truncated_checkpoint_is_a_clear_error(small_checkpoint, tmp_path, keep):
    data = small_checkpoint.read_bytes()
    n = {"half": len(data) // 2, "all-but-one": len(data) - 1}.get(keep, keep)
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)


class _Evil:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_are_never_executed(tmp_path, small_checkpoint, capsys):
    """A ``.pth`` pickle given as a checkpoint and a resume state with code in it: clear errors,
    and the code never runs (dbgan reads weights from safetensors; states with weights_only=True)."""
    from dbgan.cli import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pth"
    evil.write_bytes(pickle.dumps({"state_dict": _Evil(marker)}))
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint.*never loads pickled"):
        load_checkpoint(evil)
    torch.save({"weights": _Evil(marker)}, tmp_path / "zip.pth")  # torch's zip format, same story
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "zip.pth")
    with pytest.raises(CheckpointError, match="cannot load resume state safely"):
        C.safe_torch_load(tmp_path / "zip.pth")
    # a poisoned newest resume state in a run directory is skipped, not executed
    run = tmp_path / "run"
    (run / "state").mkdir(parents=True)
    torch.save({"stage": "dbgan", "evil": _Evil(marker)}, run / "state" / "dbgan_000009.pt")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "dbgan_000009.safetensors").write_bytes(small_checkpoint.read_bytes())
    assert L.RunDir(run, ("dbgan",)).latest_state() is None
    img = tmp_path / "in.png"
    from dbgan.io import write_image

    write_image(img, torch.rand(3, 16, 16))
    assert main(["deblur", str(evil), str(img), str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(evil) in err[0], err
    assert not marker.exists()
    assert not (tmp_path / "out.png").exists()


def test_no_pickle_is_loaded_without_weights_only():
    """Every ``torch.load`` / ``torch.hub.load_state_dict_from_url`` in the package passes
    ``weights_only=True``; no ``pickle.load(s)``, ``torch.jit.load`` or ``np.load(allow_pickle=True)``."""

    def is_true(node) -> bool:
        return isinstance(node, ast.Constant) and node.value is True

    checked, offenders = [], []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(SRC)}:{node.lineno} {name}"
            if name.endswith(("torch.load", "load_state_dict_from_url")):
                checked.append(where)
                if not is_true(kw.get("weights_only")):
                    offenders.append(where)
            elif name.split(".")[-1] in ("load", "loads") and name.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib"):
                offenders.append(where)
            elif name.endswith("jit.load") or (name.endswith("np.load") and "allow_pickle" in kw and not (
                isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False
            )):
                offenders.append(where)
    assert len(checked) >= 3, checked  # the scan sees the loads that exist (checkpoint.py, nets/vgg.py)
    assert offenders == []


def test_damaged_metadata_and_foreign_safetensors_are_clear_errors(small_checkpoint, tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "other_tool.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="without dbgan metadata"):
        load_checkpoint(foreign)
    (tmp_path / "other_tool.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(foreign)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bad_meta.safetensors"), metadata={"dbgan": "{oops"})
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "bad_meta.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
