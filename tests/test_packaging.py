"""Packaging: build a wheel, install it into a fresh virtual environment, run ``dbgan --help`` and a deblur.

The fresh environment reuses this environment's installed packages (torch
included) through a path file instead of downloading them again, and gets the
wheel itself with ``--no-deps``: what is checked is the wheel (its modules, its
console script, its package data: configs, the web page, bundled models), not
the registries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_api import make_tiny_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    src = tmp_path / "src-copy"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "demo_out", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(dist), str(src)], cwd=tmp_path)
    wheels = list(dist.glob("dbgan-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    for needed in ("dbgan/cli.py", "dbgan/api.py", "dbgan/serve.py", "dbgan/web/index.html", "dbgan/web/app.js",
                   "dbgan/configs/demo.yaml", "dbgan/models/__init__.py", "dbgan/data/layouts.py",
                   "dbgan/models/general.int8.onnx"):
        assert needed in names, f"{needed} missing from the wheel"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip())
    # reuse this environment's packages (torch, numpy, ...) without their editable dbgan:
    # a plain path line does not run that folder's own .pth hooks
    (site / "reuse-parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheels[0])],
         cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run([str(py), "-c", "import dbgan, dbgan.api; print(dbgan.__file__)"], cwd=tmp_path, env=env).strip()
    assert Path(where).is_relative_to(env_dir), f"dbgan imported from {where}, not from the wheel"
    dbgan_cli = env_dir / "bin" / "dbgan"
    assert "deblur" in _run([str(dbgan_cli), "--help"], cwd=tmp_path, env=env)
    assert "--quality" in _run([str(dbgan_cli), "deblur", "--help"], cwd=tmp_path, env=env)

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    photo = tmp_path / "blurry.png"
    Image.fromarray((np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)).save(photo)
    out = _run([str(dbgan_cli), "deblur", str(ckpt), str(photo), str(tmp_path / "sharp.png"), "--device", "cpu"],
               cwd=tmp_path, env=env)
    assert "wrote" in out
    assert Image.open(tmp_path / "sharp.png").size == (52, 40)
