"""Typed run configuration: dataclasses, YAML loading, dotted overrides, validation.

A config file is YAML whose keys mirror the dataclasses below. Every key is
checked: an unknown or misspelt key is an error that names it and lists the
valid keys at that level; a value of the wrong type names the key and the
expected type. Command-line overrides use dotted paths::

    dbgan train configs/tiny.yaml scheme=joint stages.dbgan.lr=1e-4 data.sharp_dir=photos

Values of overrides are parsed as YAML (``1e-4``, ``true``, ``[1, 2]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml


class ConfigError(ValueError):
    """A configuration key is unknown, has the wrong type, or an impossible value."""


# --------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    """Where the images are and how they are cut.

    Dataset folders: ``pairs_dir`` is paired files in any layout of
    :mod:`dbgan.data.layouts` (``DIR/sharp`` + ``DIR/blur`` matched by file name,
    ``DIR/input`` + ``DIR/target``, GoPro scenes, a RealBlur list file); ``aligned_dir`` holds side-by-side ``A|B`` files (``direction: AtoB``
    means A, the left half, is sharp and B is blurred; ``BtoA`` swaps them). When
    neither is given, synthetic pairs are made on the fly from ``sharp_dir`` with
    the ``synth`` pipeline (new blur every time an image is drawn).
    """

    sharp_dir: Optional[str] = None  # sharp images (no pairing needed)
    real_blur_dir: Optional[str] = None  # the user's real blurred photos (unpaired)
    pairs_dir: Optional[str] = None  # DIR/sharp + DIR/blur, DIR/input + DIR/target, GoPro, RealBlur list
    aligned_dir: Optional[str] = None  # side-by-side A|B files
    direction: str = "AtoB"  # AtoB: A=sharp, B=blurred; BtoA: the reverse
    val_dir: Optional[str] = None  # held-out pairs (either layout)
    channels: int = 3  # 1 = grey, 3 = RGB
    preprocess: str = "resize_and_crop"  # resize_and_crop | crop | scale_width | none
    load_size: int = 286  # resize target (shorter side / width) before cropping
    crop_size: int = 256  # training crop
    flip: bool = True  # random horizontal flips (same for both images of a pair)
    num_workers: int = 0  # DataLoader worker processes
    max_image_pixels: int = 250_000_000  # decompression-bomb limit; raise for huge scans
    val_max: int = 8  # at most this many validation pairs
    val_crop: int = 0  # centre-crop validation images to this size (0 = whole image)
    skip_bad: bool = False  # skip unreadable files (listed in the log) instead of failing


@dataclass
class SynthConfig:
    """The synthetic degradation pipeline (applied on the fly; see ``dbgan.blur``).

    One kernel kind is drawn per image from ``kernels``; ranges are ``[low, high]``
    drawn uniformly. Empty ``jpeg_quality`` disables JPEG re-encoding.
    """

    kernels: list[str] = field(default_factory=lambda: ["motion"])  # motion|linear|defocus|gaussian
    kernel_size: int = 31
    intensity: list[float] = field(default_factory=lambda: [0.0, 1.0])  # motion kernel intensity
    linear_length: list[float] = field(default_factory=lambda: [5.0, 25.0])
    defocus_radius: list[float] = field(default_factory=lambda: [1.0, 6.0])
    gaussian_sigma: list[float] = field(default_factory=lambda: [0.5, 3.0])
    linear_light: bool = False  # blur in linear light (inverse gamma, blur, gamma)
    gamma: float = 2.2
    highlight_gain: list[float] = field(default_factory=lambda: [1.0, 1.0])  # >1 saturates highlights
    noise_sigma: list[float] = field(default_factory=lambda: [0.0, 0.0])  # Gaussian noise std
    poisson_peak: float = 0.0  # photon count at white; 0 = no shot noise
    jpeg_quality: list[int] = field(default_factory=list)  # [low, high]; empty = off


@dataclass
class NetSpec:
    """An architecture picked by name from ``dbgan.nets`` plus its constructor arguments."""

    name: str = "unet"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetsConfig:
    blur_g: NetSpec = field(default_factory=lambda: NetSpec("unet", {"num_downs": 8, "ngf": 64}))
    blur_d: NetSpec = field(default_factory=lambda: NetSpec("patchgan", {"n_layers": 3, "ndf": 64}))
    deblur_g: NetSpec = field(default_factory=lambda: NetSpec("unet", {"num_downs": 8, "ngf": 64}))
    deblur_d: NetSpec = field(default_factory=lambda: NetSpec("patchgan", {"n_layers": 3, "ndf": 64}))


@dataclass
class PerceptualConfig:
    layers: list[str] = field(default_factory=lambda: ["conv5_4"])  # VGG19 layer names
    layer_weights: list[float] = field(default_factory=list)  # empty = 1 for each layer
    weights: str = "pretrained"  # pretrained | random (random only for tests)
    weights_path: Optional[str] = None  # torchvision-format vgg19 state dict
    criterion: str = "l1"  # l1 | mse on features


@dataclass
class FrequencyConfig:
    alpha: float = 1.0
    patch_factor: int = 1


@dataclass
class LossesConfig:
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    frequency: FrequencyConfig = field(default_factory=FrequencyConfig)
    charbonnier_eps: float = 1e-3


@dataclass
class StageConfig:
    """One training stage (``blur_pretrain``, ``bgan`` or ``dbgan``).

    Loss weights: ``w_content`` ties the generator output to its target (the
    synthetic blur in blur_pretrain, the sharp image in dbgan, the sharp *input*
    in bgan, compared after ``content_scale``x average pooling so that only
    structure is tied and the blur itself is left free); ``w_synthetic`` (bgan
    only) is the reference recipe's L1 to the synthetic blur; ``w_kernel_prior``
    (blur_pretrain and bgan, kernel-predicting blur generators such as
    ``kernel_blur`` only) is a distribution distance (MMD) between the kernels the
    generator draws for random noise vectors and kernels drawn by ``synth``: it keeps
    the learnt kernels as varied as the synthetic ones, where an L1 to paired
    synthetic blur pulls every kernel towards their mean. ``w_noise_match`` (bgan
    only, any blur generator) ties the generated blur's noise level (Immerkaer's
    estimate, :func:`dbgan.losses.noise_level`) to the unpaired real photos', on a log
    scale, so the discriminator cannot drive the noise far from what the photos show.
    ``w_stats`` (bgan only) matches statistics of the generated blur to running
    statistics of the real photos that see the camera rather than the scene (tone
    through histogram matching, the blur's power-spectrum ratio, the noise level per
    brightness; :class:`dbgan.degradation_stats.CameraStats`), weighted
    ``stats_balance`` among themselves. ``w_diversity`` (blur stages, kernel-predicting
    generators) is a mode-seeking term: different noise vectors must give different
    kernels (:func:`dbgan.losses.kernel_diversity_loss`).
    """

    iters: int = 1000
    skip: bool = False
    init_from: Optional[str] = None  # checkpoint (.safetensors) to start the generator(s) from
    batch_size: int = 1
    lr: float = 2e-4
    lr_d: Optional[float] = None  # discriminator lr (default: lr)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | linear (pix2pix: constant then linear decay) | cosine
    decay_start: float = 0.5  # fraction of iters after which linear decay starts
    gan_mode: str = "vanilla"  # vanilla | lsgan | hinge | rbl (relativistic blur loss)
    w_adv: float = 1.0
    content: str = "l1"  # l1 | mse | charbonnier
    w_content: float = 100.0
    content_scale: int = 1
    w_synthetic: float = 0.0
    w_kernel_prior: float = 0.0
    w_noise_match: float = 0.0
    w_stats: float = 0.0  # bgan: unpaired camera statistics (tone, spectrum, noise; dbgan.degradation_stats)
    stats_balance: list[float] = field(default_factory=lambda: [10.0, 1.0, 1.0])  # tone, spectrum, noise
    w_diversity: float = 0.0  # blur stages: mode-seeking term on the kernels of two noise vectors
    w_perceptual: float = 0.0
    w_frequency: float = 0.0
    pool_size: int = 0  # image pool of generated images for the discriminator (0 = off)
    conditional_d: bool = False  # discriminator sees (condition, image)
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    ema: float = 0.0  # EMA decay of generator weights (0 = off)


@dataclass
class StagesConfig:
    blur_pretrain: StageConfig = field(
        default_factory=lambda: StageConfig(iters=1000, conditional_d=True)
    )
    bgan: StageConfig = field(
        default_factory=lambda: StageConfig(iters=1000, gan_mode="rbl", w_content=10.0, content_scale=4)
    )
    dbgan: StageConfig = field(default_factory=lambda: StageConfig(iters=1000))


@dataclass
class TrainConfig:
    """Settings of the shared training loop."""

    amp: str = "none"  # none | bf16 | fp16 | auto (bf16/fp16 on CUDA, off elsewhere)
    # channels_last memory format: auto (the discriminators on CPU, nothing elsewhere) |
    # discriminators | all (every network and batch; true) | none (false)
    channels_last: bool | str = "auto"
    log_every: int = 10  # TensorBoard scalars every N iterations
    val_every: int = 0  # validation + sample grid every N iterations (0 = end of stage)
    save_every: int = 0  # checkpoint + resume state every N iterations (0 = end of stage)
    keep_last: int = 3  # resume states / numbered checkpoints kept per stage
    max_bad_steps: int = 5  # stop after this many NaN/inf losses in a row
    progress: bool = True  # tqdm progress bar
    tensorboard: bool = True
    deterministic: bool = True  # deterministic algorithms (CPU runs are bit-reproducible)
    backend: str = "auto"  # DDP backend: auto (nccl on CUDA, gloo otherwise) | nccl | gloo


@dataclass
class JointConfig:
    backprop_into_blur: bool = True  # blur generator also receives the deblur stage's gradient
    w_deblur_into_blur: float = 1.0  # weight of that gradient


@dataclass
class Config:
    name: str = "run"
    scheme: str = "separate"  # separate | joint | synthetic
    runs_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:1 | mps
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    nets: NetsConfig = field(default_factory=NetsConfig)
    losses: LossesConfig = field(default_factory=LossesConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    joint: JointConfig = field(default_factory=JointConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of the resolved config (stored in checkpoint metadata)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# --------------------------------------------------------------------------- typed loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (lightly coerced)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{key}' must be bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"'{key}' must be int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"'{key}' must be float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"'{key}' must be str, got {value!r}")
    raise ConfigError(f"'{key}': unsupported type {tp!r}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'; valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    out = dict(base)
    for key, value in update.items():
        base_val = out.get(key)
        renamed = isinstance(value, dict) and isinstance(base_val, dict) and (
            "name" in value and value["name"] != base_val.get("name")
        )  # a different architecture starts from its own defaults, not the old args
        if isinstance(value, dict) and isinstance(base_val, dict) and not renamed:
            out[key] = _merge(base_val, value)
        else:
            out[key] = value
    return out


class _YamlLoader(yaml.SafeLoader):
    """YAML's safe loader that also reads ``1e-6`` / ``2E+3`` as floats.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-6``), so ``lr=1e-6``
    would otherwise arrive as the string ``"1e-6"``.
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a", "b", "c"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is not None and not isinstance(nxt, dict):
                # do not silently replace a wrongly written section by the override
                where = ".".join(path[: i + 1])
                raise ConfigError(f"'{where}' must be a mapping, got {nxt!r} (while applying override '{text}')")
            if nxt is None:
                nxt = {}
                node[part] = nxt
            node = nxt
        node[path[-1]] = value
    return out


def _defaults_dict() -> dict[str, Any]:
    return dataclasses.asdict(Config())


def build_config(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """Typed, validated config from a raw mapping plus dotted overrides."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a YAML mapping at the top level")
    raw = apply_overrides(raw, overrides or [])
    # validate keys/types of what the user wrote, then merge over the defaults
    from_dict(Config, raw)
    cfg = from_dict(Config, _merge(_defaults_dict(), raw))
    validate(cfg)
    return cfg


PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or the name of a bundled preset (``tiny``, ``seed``, ``paper``, ``demo``)."""
    p = Path(path)
    if p.is_file():
        return p
    cand = PRESETS_DIR / (p.name if p.suffix == ".yaml" else f"{p.name}.yaml")
    if cand.is_file() and (len(p.parts) == 1 or p.parent.name == "configs"):
        return cand
    raise ConfigError(f"config file not found: {path} (bundled presets: {', '.join(preset_names())})")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file or bundled preset (``extends: other.yaml`` is supported) with overrides."""
    path = resolve_config_path(path)
    raw = _read_yaml(path)
    try:
        return build_config(raw, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping at the top level")
    parent = raw.pop("extends", None)
    if parent:
        parent_path = (path.parent / parent).resolve()
        if parent_path in _seen:
            raise ConfigError(f"{path}: 'extends' forms a cycle through {parent_path}")
        raw = _merge(_read_yaml(parent_path, _seen + (parent_path,)), raw)
    return raw


def save_config(cfg: Config, path: str | Path, command: str | None = None) -> None:
    from dbgan.atomic import atomic_write_text

    text = ""
    if command:
        text += f"# launched with: {command}\n"
    text += yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write_text(Path(path), text)


# validation.py imports the sections above from this package: import it last
from dbgan.config.validation import channels_last_mode, CHANNELS_LAST_MODES, validate  # noqa: E402
