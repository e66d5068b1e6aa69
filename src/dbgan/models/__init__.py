"""Models shipped inside the package, loaded by name.

``<name>.safetensors`` is a dbgan checkpoint (the deblurrer's weights, ``deblur_g``);
``<name>.json`` beside it is its metadata plus ``sha256``, the checksum of the
``.safetensors`` file, verified every time the model is looked up; ``<name>.md`` is its
model card. ``general`` is the general deblurrer (its card: ``general.md`` here)::

    from dbgan.models import bundled_model_path
    path = bundled_model_path("general")    # checked against its recorded sha256

:func:`resolve_model` turns a bundled name or a checkpoint path into a path (what
``stages.*.init_from: general`` and ``dbgan deblur --model general`` go through).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "available_models", "bundled_model_path", "model_info", "resolve_model", "sha256_file"]

#: the model ``dbgan deblur`` uses when no checkpoint is given
DEFAULT_MODEL = "general"


def _dir() -> Path:
    return Path(str(resources.files(__name__)))


def available_models() -> list[str]:
    """Names of the bundled models (those with both a ``.safetensors`` and a ``.json``)."""
    d = _dir()
    return sorted(p.stem for p in d.glob("*.safetensors") if p.with_suffix(".json").is_file())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_info(name: str) -> dict:
    """The metadata of bundled model ``name`` (its ``.json``: sha256, config, nets, figures)."""
    from dbgan.checkpoint import CheckpointError

    _check_name(name)
    sidecar = _dir() / f"{name}.json"
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"bundled model '{name}': cannot read {sidecar} ({exc})") from None


def _check_name(name: str) -> None:
    from dbgan.checkpoint import CheckpointError

    names = available_models()
    if name not in names:
        raise CheckpointError(
            f"no bundled model named '{name}'; available: {', '.join(names) or 'none'} "
            "(or give the path of a .safetensors checkpoint)"
        )


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of bundled model ``name``'s ``.safetensors``, after checking its sha256.

    Raises :class:`dbgan.checkpoint.CheckpointError` naming the available models for an
    unknown name, and naming the file when its checksum does not match the recorded one
    (a damaged or replaced file).
    """
    from dbgan.checkpoint import CheckpointError

    info = model_info(name)
    path = _dir() / f"{name}.safetensors"
    expected = info.get("sha256")
    if not expected:
        raise CheckpointError(f"bundled model '{name}': {name}.json records no sha256")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"{path}: checksum mismatch (sha256 {actual[:12]}..., recorded {expected[:12]}...): "
            "the bundled file is damaged or was replaced; reinstall dbgan"
        )
    return path


def resolve_model(name_or_path: str | Path) -> Path:
    """A checkpoint path for a bundled model name (checksum verified) or a path.

    A plain name without a suffix or separator that is not an existing file is taken
    as a bundled model's name.
    """
    text = str(name_or_path)
    p = Path(text)
    if not p.exists() and p.suffix == "" and len(p.parts) == 1:
        return bundled_model_path(text)
    return p
