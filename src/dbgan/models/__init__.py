"""Models bundled with the package: ``src/dbgan/models/<name>.safetensors`` (+ ``<name>.json``).

A bundled model is an ordinary dbgan checkpoint shipped as package data, looked
up by name with :func:`bundled_model_path` (``load_model("general")``,
``dbgan deblur general ...``, the web app's model list). ``<name>.json`` beside
it is the checkpoint's metadata sidecar and doubles as the model card
(:func:`model_card`). Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["ModelNotFoundError", "available_models", "bundled_model_path", "model_card"]

_SUFFIX = ".safetensors"


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


def bundled_model_path(name: str) -> Path:
    """The checkpoint file of the bundled model ``name``.

    Raises:
        ModelNotFoundError: no such bundled model; the message lists the available
            names (or says that none is installed) and that a checkpoint path works too.
    """
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
    """The bundled model's ``<name>.json`` (its metadata / model card); ``{}`` when it has none."""
    card = bundled_model_path(name).with_suffix(".json")
    if not card.is_file():
        return {}
    return json.loads(card.read_text())
