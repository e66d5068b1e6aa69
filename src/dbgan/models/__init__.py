"""Models bundled with the package: ``src/dbgan/models/<name>.safetensors`` (+ ``<name>.json``).

A bundled model is an ordinary dbgan checkpoint shipped as package data, looked up by
name with :func:`bundled_model_path` (``load_model("general")``, ``dbgan deblur IN OUT``
without a checkpoint, ``stages.dbgan.init_from: general``, the web app's model list).
``<name>.json`` beside it is the checkpoint's metadata sidecar plus ``sha256``, the
checksum of the ``.safetensors`` file, verified every time the model is looked up; it
doubles as the machine-readable model card (:func:`model_card`); ``<name>.md`` is the
model card to read. ``general`` is the general deblurrer (``general.md`` here). Nothing is
ever downloaded.

    from dbgan.models import bundled_model_path
    path = bundled_model_path("general")    # checked against its recorded sha256
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODEL", "ModelNotFoundError", "available_models", "bundled_model_path", "model_card",
           "sha256_file"]

_SUFFIX = ".safetensors"

#: the model ``dbgan deblur`` uses when no checkpoint is given
DEFAULT_MODEL = "general"


class ModelNotFoundError(ValueError):
    """No bundled model of that name (the message lists the bundled ones)."""


def _folder() -> Path:
    # the package is installed as plain files (wheel or editable), so this is a real folder
    return Path(str(resources.files(__name__)))


def available_models() -> list[str]:
    """Names of the bundled models, sorted (empty when the package ships none)."""
    try:
        return sorted(p.name[: -len(_SUFFIX)] for p in _folder().iterdir() if p.name.endswith(_SUFFIX) and p.is_file())
    except OSError:  # pragma: no cover - unreadable install
        return []


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _path(name: str) -> Path:
    path = _folder() / f"{name}{_SUFFIX}"
    if not str(name) or "/" in str(name) or "\\" in str(name) or not path.is_file():
        names = available_models()
        have = ", ".join(names) if names else "none (this installation ships no model file)"
        raise ModelNotFoundError(
            f"no bundled model named {name!r}; bundled models: {have}; or give the path of a "
            f"checkpoint (.safetensors or a run folder)"
        )
    return path


def model_card(name: str) -> dict[str, Any]:
    """The bundled model's ``<name>.json`` (metadata, sha256, config); ``{}`` when it has none."""
    card = _path(name).with_suffix(".json")
    if not card.is_file():
        return {}
    return json.loads(card.read_text())


def bundled_model_path(name: str) -> Path:
    """The checkpoint file of the bundled model ``name``, after checking its recorded sha256.

    Raises:
        ModelNotFoundError: no such bundled model; the message lists the available
            names (or says that none is installed) and that a checkpoint path works too.
        dbgan.checkpoint.CheckpointError: the file does not match the sha256 recorded in
            ``<name>.json`` (damaged or replaced).
    """
    from dbgan.checkpoint import CheckpointError

    path = _path(name)
    expected = model_card(name).get("sha256")
    if expected:
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(
                f"{path}: checksum mismatch (sha256 {actual[:12]}..., recorded {expected[:12]}...): "
                "the bundled file is damaged or was replaced; reinstall dbgan"
            )
    return path
