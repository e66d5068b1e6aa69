"""The layer rules of docs/architecture.md, checked by import-linter, and module / function sizes."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _lint_imports() -> str | None:
    near = Path(sys.executable).parent / "lint-imports"
    return str(near) if near.exists() else shutil.which("lint-imports")


def test_import_contracts_hold():
    """`lint-imports` with the contracts of pyproject.toml: nets and infer never import train,
    blur never imports nets, nothing imports cli, no import cycles between sibling modules."""
    exe = _lint_imports()
    if exe is None:
        pytest.fail("lint-imports not found: install the dev extra (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_no_module_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_no_training_function_over_60_lines():
    long = {}
    for path in (SRC / "dbgan" / "train").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long[f"{path.name}:{node.name}"] = n
    assert not long, long


def test_the_training_loop_names_no_stage():
    """Stages are found through dbgan.train.registry; the loop and its helpers hold no stage name."""
    names = ("blur_pretrain", "bgan", "dbgan", "joint")
    for module in ("loop.py", "stage_run.py", "batches.py", "run_dir.py", "context.py"):
        text = (SRC / "dbgan" / "train" / module).read_text()
        body = ast.parse(text)
        strings = {n.value for n in ast.walk(body) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not strings & set(names), (module, strings & set(names))


def _pillow_uses(tree: ast.AST) -> tuple[bool, set[str]]:
    """(imports PIL, the probing calls used: ``Image.open``, ``MAX_IMAGE_PIXELS``, ``getexif``) in code, not text."""
    imports = any(
        isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "PIL"
        or isinstance(n, ast.Import) and any(a.name.split(".")[0] == "PIL" for a in n.names)
        for n in ast.walk(tree)
    )
    probing = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            if n.attr == "open" and isinstance(n.value, ast.Name) and n.value.id == "Image":
                probing.add("Image.open")
            elif n.attr in ("MAX_IMAGE_PIXELS", "getexif"):
                probing.add(n.attr)
    return imports, probing


def test_only_io_opens_image_files_with_pillow():
    """Image probing has one owner, dbgan.io (issue 17): `Image.open`, Pillow's bomb limit and
    EXIF reading appear only in dbgan/io/. Pillow itself may be imported elsewhere only to encode
    (dbgan.imagefile) or to take PIL images as input (dbgan.api)."""
    pillow_users = {"dbgan/imagefile.py", "dbgan/api.py"}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("dbgan/io/"):
            continue
        imports_pil, probing = _pillow_uses(ast.parse(path.read_text()))
        assert not probing, f"{rel} probes image files itself ({sorted(probing)}); use dbgan.io"
        assert not imports_pil or rel in pillow_users, f"{rel} imports PIL; open files through dbgan.io"
    assert _pillow_uses(ast.parse((SRC / "dbgan" / "io" / "read.py").read_text()))[1] >= {"Image.open"}


def test_generator_capabilities_are_declared_not_probed():
    """Optional generator features are declared on ImageGenerator or as Protocols (issue 17):
    no module asks a network for one with getattr/hasattr; the channels and size multiple of a
    foreign module are looked up in one place, dbgan.nets.common.image_layout."""
    features = {"lr_scales", "forward_parts", "sample_noise", "onnx_unsupported", "describe", "cropped_body",
                "params_from_noise", "in_channels", "out_channels", "size_multiple", "noise_input", "noise_mode"}
    found = []
    for path in (SRC / "dbgan").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in features):
                found.append(f"{path.relative_to(SRC).as_posix()}:{node.lineno} {node.args[1].value}")
    assert all(f.startswith("dbgan/nets/common.py:") for f in found), found
    assert len(found) == 3  # image_layout's three attributes, nowhere else
