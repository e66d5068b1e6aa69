"""VGG19 feature extractor with torchvision's layer layout (for the perceptual loss).

We do not depend on torchvision: the ``features`` part of torchvision's VGG19
is rebuilt here with the same indices, so a torchvision state dict
(``vgg19-dcbb9e9d.pth``: keys ``features.0.weight`` ... ; ``classifier.*`` is
ignored) loads as is. Layers are named ``conv1_1``, ``relu1_1``, ...,
``pool5`` (the BasicSR names).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from dbgan.constants import PERCEPTUAL_WEIGHTS

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
CONFIG_KEY = "losses.perceptual.weights_path"

# torchvision's VGG19 ("E") features: channels per conv, "M" = 2x2 max pool
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for v in _CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG19_LAYERS: list[str] = _layer_names()  # index in torchvision's ``features`` = position here


def hub_checkpoint_path() -> Path:
    """Where torch hub caches torchvision's VGG19 weights (``$TORCH_HOME/hub/checkpoints/...``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def _missing_message(detail: str) -> str:
    return (
        f"{detail}. The perceptual loss needs torchvision's ImageNet VGG19 weights "
        f"({VGG19_FILE}, from {VGG19_URL}). Put the file at {hub_checkpoint_path()} "
        f"or point the config key '{CONFIG_KEY}' at it "
        f"(e.g. {CONFIG_KEY}=/path/to/{VGG19_FILE}); or set w_perceptual: 0."
    )


def _load_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return obj


def load_vgg19_state_dict(path: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """Find and load torchvision-format VGG19 weights.

    Order: ``path`` if given (``.pth``/``.pt`` via ``torch.load(weights_only=True)``,
    ``.safetensors`` via safetensors); else the torch hub cache
    (:func:`hub_checkpoint_path`); else a download with
    ``torch.hub.load_state_dict_from_url``. When all fail (offline), raises
    ``FileNotFoundError`` saying where to put the file and which config key
    (``losses.perceptual.weights_path``) to set.

    Args:
        path: explicit weights file, or ``None`` to use the cache / download.

    Returns:
        The state dict (torchvision keys, ``features.N.weight`` ...).
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(_missing_message(f"VGG19 weights file not found: {p} (from {CONFIG_KEY})"))
        return _load_file(p)
    cached = hub_checkpoint_path()
    if cached.is_file():
        return _load_file(cached)
    try:
        return torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu", progress=False, weights_only=True)
    except Exception as exc:  # offline, proxy, partial download ...
        raise FileNotFoundError(
            _missing_message(f"could not find or download VGG19 weights ({type(exc).__name__}: {exc})")
        ) from exc


class VGG19Features(nn.Module):
    """Frozen VGG19 ``features`` returning the requested intermediate activations.

    Only the layers up to the deepest requested one are built and run. The
    module is frozen (``requires_grad=False``) and always in eval mode (calling
    ``.train()`` does not change that); gradients still flow to the *input*.
    No input normalisation happens here (see :class:`dbgan.losses.PerceptualLoss`).

    Args:
        layers: layer names, e.g. ``["relu2_2", "conv5_4"]`` (``conv5_4`` is taken
            before its ReLU, as in ESRGAN / the paper); see ``VGG19_LAYERS``.
        weights: ``"pretrained"`` (torchvision's ImageNet weights, found by
            :func:`load_vgg19_state_dict`) or ``"random"`` (tests only).
        weights_path: explicit weights file for ``"pretrained"``.
        state_dict: an already loaded torchvision-format state dict (overrides the two above).
    """

    def __init__(
        self,
        layers: list[str] | tuple[str, ...] = ("conv5_4",),
        weights: str = "pretrained",
        weights_path: str | os.PathLike | None = None,
        state_dict: dict[str, Tensor] | None = None,
    ):
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ValueError("VGG19Features needs at least one layer name")
        for name in layers:
            if name not in VGG19_LAYERS:
                raise ValueError(f"unknown VGG19 layer {name!r}; valid: {', '.join(VGG19_LAYERS)}")
        if weights not in PERCEPTUAL_WEIGHTS:
            raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
        self.layers = layers
        self.last = max(VGG19_LAYERS.index(n) for n in layers)
        self.indices = {VGG19_LAYERS.index(n): n for n in layers}

        modules: list[nn.Module] = []
        in_ch = 3
        for name in VGG19_LAYERS[: self.last + 1]:
            if name.startswith("conv"):
                out_ch = _CFG_CHANNELS[name]
                modules.append(nn.Conv2d(in_ch, out_ch, 3, 1, 1))
                in_ch = out_ch
            elif name.startswith("relu"):
                modules.append(nn.ReLU(inplace=False))  # not in place: conv outputs are returned
            else:
                modules.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*modules)

        if state_dict is None and weights == "pretrained":
            state_dict = load_vgg19_state_dict(weights_path)
        if state_dict is not None:
            self.load_torchvision_state_dict(state_dict)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def load_torchvision_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Load the ``features.*`` entries this truncated net needs (``classifier.*`` etc. ignored).

        Keys may carry the ``features.`` prefix (torchvision) or not. Missing keys
        or wrong shapes raise with the offending key named.
        """
        own = self.features.state_dict()
        picked = {}
        for key in own:
            for cand in (f"features.{key}", key, f"module.features.{key}"):
                if cand in state_dict:
                    picked[key] = state_dict[cand]
                    break
            else:
                raise KeyError(f"VGG19 state dict lacks 'features.{key}' (is it a torchvision vgg19 file?)")
            if tuple(picked[key].shape) != tuple(own[key].shape):
                raise ValueError(
                    f"VGG19 state dict entry 'features.{key}' has shape {tuple(picked[key].shape)}, "
                    f"expected {tuple(own[key].shape)} (is it vgg19, not vgg16?)"
                )
        self.features.load_state_dict({k: v.float() for k, v in picked.items()})

    def train(self, mode: bool = True) -> "VGG19Features":
        return super().train(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``N x 3 x H x W`` (already normalised) -> ``{layer name: activation}``."""
        out = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self.indices:
                out[self.indices[i]] = x
        return out


def _cfg_channels() -> dict[str, int]:
    chans, block, conv = {}, 1, 1
    for v in _CFG:
        if v == "M":
            block, conv = block + 1, 1
        else:
            chans[f"conv{block}_{conv}"] = v
            conv += 1
    return chans


_CFG_CHANNELS = _cfg_channels()
