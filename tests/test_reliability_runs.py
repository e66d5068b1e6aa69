"""Reliability of run directories (issue 16, items 1, 2, 4, 13, 15, 16, 17).

dbgan writes only into run directories it created (``dbgan-run.json``), prunes only the
files it wrote, never replaces checkpoints without ``--overwrite``, locks a run for its
life, saves on SIGTERM like on Ctrl-C, validates every ``init_from`` before training, and
identifies a run by its content (a moved run resumes).

Runs use ``configs/tiny.yaml`` with the one-stage ``synthetic`` scheme (seconds each).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dbgan.cli import main
from dbgan.config import ConfigError, load_config
from dbgan.train import loop as L
from dbgan.train import train
from dbgan.train.rundir_guard import MANIFEST, PID_NAME, RunDirError, RunGuard, RunLockedError

_ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny nets, one thread


@pytest.fixture(scope="module")
def sharp(tmp_path_factory) -> Path:
    """Three sharp 64 px crops of scikit-image photos."""
    from skimage import data as skd

    from dbgan.io import write_image

    root = tmp_path_factory.mktemp("runs_data") / "sharp"
    for i, img in enumerate([skd.astronaut(), skd.coffee(), skd.chelsea()]):
        crop = img[100:164, 100:164].astype(np.float32) / 255.0
        write_image(root / f"{i}.png", torch.from_numpy(crop).permute(2, 0, 1))
    return root


def args(sharp: Path, runs: Path, name: str, *extra: str) -> list[str]:
    return [
        f"data.sharp_dir={sharp}", f"runs_dir={runs}", f"name={name}", "scheme=synthetic",
        "stages.dbgan.iters=3", "train.save_every=1", "train.keep_last=1", "train.log_every=1", *extra,
    ]


def cfg(sharp: Path, runs: Path, name: str, *extra: str):
    return load_config("tiny", args(sharp, runs, name, *extra))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --------------------------------------------------------------------------- item 1: not a dbgan folder


def test_a_folder_that_is_not_a_dbgan_run_is_refused_and_left_untouched(sharp, tmp_path, capsys):
    """Item 1: ``runs_dir``/``name`` pointing at someone's folder: exit 2, one line, nothing
    of theirs replaced or pruned, with or without --no-resume."""
    proj = tmp_path / "x" / "proj"
    (proj / "checkpoints").mkdir(parents=True)
    (proj / "state").mkdir()
    (proj / "config.yaml").write_text("mine\n")
    (proj / "checkpoints" / "dbgan_000001.safetensors").write_bytes(b"user's weights")
    (proj / "state" / "dbgan_000001.pt").write_bytes(b"user's state")
    before = snapshot(proj)
    for extra in ([], ["--no-resume"], ["--resume"], ["--overwrite"]):
        assert main(["train", "tiny", *args(sharp, tmp_path / "x", "proj"), *extra]) == 2
        line = one_error_line(capsys)
        assert str(proj) in line and "not a dbgan run directory" in line, line
        assert snapshot(proj) == before
    assert not (proj / MANIFEST).exists()


def test_an_empty_folder_is_adopted_and_marked(sharp, tmp_path):
    """An empty folder made for the run is fine: it becomes a run (with its manifest)."""
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    res = train(cfg(sharp, tmp_path / "runs", "empty"))
    assert res.status == "done"
    assert (tmp_path / "runs" / "empty" / MANIFEST).is_file()


def test_pruning_deletes_only_files_dbgan_wrote_and_samples_temp_files_are_cleaned(sharp, tmp_path):
    """Item 1 (pruning) and item 15 (temporary files in ``samples/``): a resumed run prunes its
    own old checkpoints but never a file of the same name pattern that it did not write."""
    runs = tmp_path / "runs"
    run = runs / "p"
    res = train(cfg(sharp, runs, "p"), stop_at=("dbgan", 1))
    assert res.status == "interrupted"
    mine = {
        run / "checkpoints" / "dbgan_000000.safetensors": b"not dbgan's",
        run / "checkpoints" / "dbgan_000000.json": b"{}",
        run / "state" / "dbgan_000000.pt": b"not dbgan's either",
    }
    for p, data in mine.items():
        p.write_bytes(data)
    stale = run / "samples" / ".dbgan_000001.png.k1ll3d.tmp"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half a png")
    res = train(cfg(sharp, runs, "p"))
    assert res.status == "done"
    for p, data in mine.items():
        assert p.read_bytes() == data, f"{p} was touched"
    # its own older checkpoints were pruned (keep_last=1; the final one is kept)
    assert not (run / "checkpoints" / "dbgan_000001.safetensors").exists()
    assert not (run / "checkpoints" / "dbgan_000002.safetensors").exists()
    assert (run / "checkpoints" / "dbgan_000003.safetensors").is_file()
    assert not stale.exists()
    guard = RunGuard(run, "")
    listed = set(guard.read_manifest()["files"])
    assert "checkpoints/dbgan_000003.safetensors" in listed and "checkpoints/dbgan_000000.safetensors" not in listed


# --------------------------------------------------------------------------- item 2: checkpoints never replaced


def test_a_finished_run_without_its_state_is_never_overwritten_by_another_config(sharp, tmp_path, capsys):
    """Item 2: with ``state/`` removed, a different config (with or without --no-resume), and
    even the same config, are refused; the checkpoints stay byte-identical. ``--overwrite``
    is the explicit way to replace them."""
    runs = tmp_path / "runs"
    run = runs / "done"
    assert train(cfg(sharp, runs, "done")).status == "done"
    shutil.rmtree(run / "state")
    before = snapshot(run / "checkpoints")
    changed = ["stages.dbgan.lr=1e-4", "seed=5"]
    for extra, why in (
        (changed, "different config"),
        ([*changed, "--no-resume"], "already holds a run"),
        ([], "no usable resume state"),
    ):
        assert main(["train", "tiny", *args(sharp, runs, "done"), *extra]) == 2
        line = one_error_line(capsys)
        assert why in line and "--overwrite" in line, line
        assert snapshot(run / "checkpoints") == before
    assert main(["train", "tiny", *args(sharp, runs, "done"), *changed, "--overwrite"]) == 0
    after = snapshot(run / "checkpoints")
    assert after["dbgan_000003.safetensors"] != before["dbgan_000003.safetensors"]
    # the manifest now holds the new config's hash: the same command continues (nothing to do)
    assert main(["train", "tiny", *args(sharp, runs, "done"), *changed]) == 0


def test_a_changed_config_with_state_is_refused_unless_resume(sharp, tmp_path):
    runs = tmp_path / "runs"
    assert train(cfg(sharp, runs, "r"), stop_at=("dbgan", 1)).status == "interrupted"
    with pytest.raises(RunDirError, match="different config"):
        train(cfg(sharp, runs, "r", "stages.dbgan.lr=1e-4"))
    assert train(cfg(sharp, runs, "r", "stages.dbgan.lr=1e-4"), resume=True).status == "done"
    # continued with the new config, the run now is that config: the same command needs no flag
    assert train(cfg(sharp, runs, "r", "stages.dbgan.lr=1e-4")).status == "done"
    with pytest.raises(RunDirError, match="different config"):
        train(cfg(sharp, runs, "r"))


# --------------------------------------------------------------------------- item 4: lock


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dbgan.train.rundir_guard import RunGuard
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    g = RunGuard(root, "x")
    g.write_manifest()
    g.lock()
    print("locked", flush=True)
    time.sleep(600)
    """
)


def test_a_second_training_on_a_run_exits_at_once_naming_the_holder_and_a_stale_lock_is_taken_over(sharp, tmp_path, capsys):
    """Item 4: while another process holds the run's lock, ``dbgan train`` on it exits 2 with
    one line naming that PID (nothing written); after the holder is killed (SIGKILL: no
    clean-up at all), the lock it left is taken over and the run trains."""
    runs = tmp_path / "runs"
    run = runs / "locked"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run)], env=_ENV, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", "tiny", *args(sharp, runs, "locked")]) == 2
        line = one_error_line(capsys)
        assert f"PID {holder.pid}" in line and "in use by another dbgan process" in line, line
        assert not (run / "config.yaml").exists() and not (run / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    assert (run / PID_NAME).is_file()  # left behind by the killed holder
    assert main(["train", "tiny", *args(sharp, runs, "locked")]) == 0
    assert (run / "checkpoints" / "dbgan_000003.safetensors").is_file()
    assert not (run / PID_NAME).exists()  # released at the end of the run


def test_the_lock_is_held_for_the_run_and_released_after(sharp, tmp_path, monkeypatch):
    """In-process: during training a second guard cannot lock the run; afterwards it can."""
    runs = tmp_path / "runs"
    seen = []
    real = L.StageRun.run

    def spy(*a, **k):
        other = RunGuard(runs / "held", "y")
        with pytest.raises(RunLockedError, match=f"PID {os.getpid()}"):
            other.lock()
        seen.append(True)
        return real(*a, **k)

    monkeypatch.setattr(L.StageRun, "run", spy)
    assert train(cfg(sharp, runs, "held")).status == "done"
    assert seen
    g = RunGuard(runs / "held", "y")
    g.lock()
    g.unlock()


# --------------------------------------------------------------------------- item 16: SIGTERM


def test_sigterm_is_handled_like_ctrl_c(sharp, tmp_path):
    """Item 16: SIGTERM (what SLURM and Kubernetes send before killing) to a training process:
    it saves a resume state, exits 0, and the same command finishes the run."""
    runs = tmp_path / "runs"
    run = runs / "term"
    cmd = [sys.executable, "-m", "dbgan.cli", "train", "tiny", *args(sharp, runs, "term", "stages.dbgan.iters=400")]
    proc = subprocess.Popen(cmd, env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((run / "state").glob("*.pt")) if (run / "state").is_dir() else True:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "resume state saved" in out and "SIGTERM received" in err, (out, err[-2000:])
    assert "Traceback" not in err
    states = sorted(int(p.stem.split("_")[1]) for p in (run / "state").glob("*.pt"))
    assert states and states[-1] < 400
    assert not (run / "checkpoints" / "dbgan_000400.safetensors").exists()


def test_sigterm_sets_the_interrupt_flag_in_process():
    with L._Interrupt() as interrupt:
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupt.requested
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# --------------------------------------------------------------------------- item 17: moved run


def test_a_moved_run_directory_resumes(sharp, tmp_path, caplog):
    """Item 17: the config hash leaves out ``runs_dir`` and ``name``: a run moved (and
    renamed) resumes where it stopped."""
    a = cfg(sharp, tmp_path / "a", "one")
    b = cfg(sharp, tmp_path / "b", "two")
    assert a.hash() == b.hash()
    assert a.hash() != cfg(sharp, tmp_path / "a", "one", "seed=1").hash()
    assert train(a, stop_at=("dbgan", 2)).status == "interrupted"
    (tmp_path / "b").mkdir()
    shutil.move(str(tmp_path / "a" / "one"), str(tmp_path / "b" / "two"))
    with caplog.at_level("INFO"):
        res = train(b)
    assert res.status == "done"
    assert "resuming" in caplog.text and "iteration 2" in caplog.text
    assert (tmp_path / "b" / "two" / "checkpoints" / "dbgan_000003.safetensors").is_file()


# --------------------------------------------------------------------------- item 13: init_from at start-up


def test_every_init_from_is_validated_before_any_training(sharp, tmp_path, capsys, monkeypatch):
    """Item 13: a bad ``stages.dbgan.init_from`` of the separate scheme fails at start-up,
    before the earlier stages train: exit 2, one line naming the setting and the file, and no
    run directory."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(os.urandom(4096))
    ran = []
    monkeypatch.setattr(L.StageRun, "run", lambda self: ran.append(self.name))
    runs = tmp_path / "runs"
    base = [f"data.sharp_dir={sharp}", f"data.real_blur_dir={sharp}", f"runs_dir={runs}", "name=init"]
    assert main(["train", "tiny", *base, f"stages.dbgan.init_from={bad}"]) == 2
    line = one_error_line(capsys)
    assert "'stages.dbgan.init_from'" in line and str(bad) in line, line
    assert not ran and not runs.exists()
    # a readable checkpoint of another architecture: also refused before training
    from dbgan.checkpoint import save_checkpoint

    other = load_config("tiny", ["nets.deblur_g.args.ngf=4"])
    nets, specs = L.build_nets(other, torch.device("cpu"))
    ck = tmp_path / "other.safetensors"
    save_checkpoint(ck, {"deblur_g": nets["deblur_g"]}, {"stage": "dbgan", "iter": 0, "nets": specs})
    assert main(["train", "tiny", *base, f"stages.dbgan.init_from={ck}"]) == 2
    line = one_error_line(capsys)
    assert "do not fit this architecture" in line and str(ck) in line, line
    assert not ran and not runs.exists()


# --------------------------------------------------------------------------- item 11: no run dir on bad config


@pytest.mark.parametrize(
    "bad, key",
    [
        ("nets.deblur_g.args.ngf=0", "nets.deblur_g.args.ngf"),
        ("nets.deblur_g.args.ngf=-8", "nets.deblur_g.args.ngf"),
        ("nets.deblur_g.args.ngf=100000000", "nets.deblur_g.args.ngf"),
        ("nets.deblur_g.args.ngf=abc", "nets.deblur_g.args.ngf"),
        ("nets.blur_g.args.num_downs=50", "nets.blur_g.args.num_downs"),
        ("synth.kernel_size=100001", "synth.kernel_size"),
        ("seed=18446744073709551617", "seed"),
        ("data.num_workers=-1", "data.num_workers"),
        ("stages.dbgan.w_content=.nan", "stages.dbgan.w_content"),
    ],
)
def test_out_of_range_settings_leave_no_run_directory(sharp, tmp_path, capsys, bad, key):
    runs = tmp_path / "runs"
    assert main(["train", "tiny", *args(sharp, runs, "bad"), bad]) == 2
    line = one_error_line(capsys)
    assert f"'{key}'" in line, line
    assert "not all arguments converted" not in line
    assert not runs.exists()
