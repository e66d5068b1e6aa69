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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

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
    # --- a broad, randomised distribution (the general model's recipe; all off by default)
    kernel_sizes: list[int] = field(default_factory=list)  # motion canvas sizes drawn per image (odd, <= kernel_size)
    identity_prob: float = 0.0  # share of images left unblurred (noise/JPEG still apply)
    gamma_range: list[float] = field(default_factory=list)  # camera response: gamma drawn per image (replaces gamma)
    exposure: list[float] = field(default_factory=lambda: [1.0, 1.0])  # scene gain in linear light (sharp and blurred)
    saturation: list[float] = field(default_factory=lambda: [1.0, 1.0])  # colour strength of the scene (0 = grey)
    grey_prob: float = 0.0  # share of scenes made grey (all channels equal)
    poisson_peak_range: list[float] = field(default_factory=list)  # shot noise peak drawn log-uniformly (replaces poisson_peak)
    noise_prob: float = 1.0  # share of images given sensor noise
    jpeg_prob: float = 1.0  # share of images re-encoded as JPEG (when jpeg_quality is set)


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
    kernels (:func:`dbgan.losses.kernel_diversity_loss`). ``synthetic_kernels`` (dbgan,
    scheme ``separate``, a blur generator that can swap its kernels: ``camera_blur``) is the
    share of the deblurrer's training inputs that keep BGAN's learnt camera but take their
    blur kernels from ``synth``: the unpaired statistics pin a camera's tone and blur size
    far better than the blur's shape, and a deblurrer trained only on the learnt shapes
    forgets how to undo others (docs/benchmarks.md, section 2, session 10). ``tone_from``
    (bgan, ``w_stats``): ``photos`` takes the brightness quantiles of the tone statistic and of a
    closed-form tone fit once from every photo of ``data.sharp_dir`` and ``data.real_blur_dir``
    (each photo weighted once; :func:`dbgan.degradation_stats.photo_quantiles`) instead of running
    means over random training crops, whose sampling noise moved the fitted log exposure by
    ±0.03-0.05 from seed to seed on the benchmark's validation cameras (docs/benchmarks.md,
    section 2, session 14). ``spectrum_max_freq`` (bgan, ``w_stats``): the spectrum statistic
    reads only the bands at or below this frequency in cycles per pixel (0.5, the default: all);
    :class:`dbgan.degradation_stats.CameraStats` says why a camera's top bands mislead it.
    """

    iters: int = 1000
    skip: bool = False
    init_from: Optional[str] = None  # checkpoint (.safetensors) or bundled model name (general) to start from
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
    # bgan with w_stats: the brightness quantiles (tone statistic, closed-form tone fit) come from random
    # training crops, as running means (crops), or once from every pixel of the two photo folders (photos)
    tone_from: str = "crops"
    # bgan (used with w_stats > 0): the spectrum statistic reads only the bands at or below this frequency
    # (cycles per pixel; 0.5 = all); above it a real photo's power is mostly noise and compression (the noise term's)
    spectrum_max_freq: float = 0.5
    w_diversity: float = 0.0  # blur stages: mode-seeking term on the kernels of two noise vectors
    # dbgan, scheme separate, camera_blur: this share of the deblurrer's inputs keeps BGAN's learnt camera
    # (exposure, noise, response, JPEG) but is blurred by kernels drawn by `synth` instead of the learnt ones
    # (the other schemes have no frozen BGAN and leave it unused, so a preset can set it for all of them)
    synthetic_kernels: float = 0.0
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

    # auto (bf16 on a CPU with native bf16 and on CUDA, fp16 on older CUDA, fp32 elsewhere;
    # dbgan.cpu_caps) | none | bf16 (fp32 with a warning on a CPU without native bf16) | fp16 (CUDA)
    amp: str = "auto"
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
        """Short stable hash of the resolved config (stored in checkpoint metadata).

        The run's location (``runs_dir``, ``name``) is left out: a run is identified by
        what it trains, so a moved or renamed run directory still resumes.
        """
        content = {k: v for k, v in self.to_dict().items() if k not in LOCATION_KEYS}
        blob = json.dumps(content, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


#: Settings that say where a run lies, not what it trains (not part of :meth:`Config.hash`).
LOCATION_KEYS = ("runs_dir", "name")


def _short(value: Any) -> str:
    """``repr`` of a value for an error message, cut to one short line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."

# loading.py and validation.py import the sections above from this package: import them last
from dbgan.config.validation import channels_last_mode, CHANNELS_LAST_MODES, validate  # noqa: E402,F401
from dbgan.config.loading import _merge, apply_overrides, build_config, from_dict, load_config, MAX_CONFIG_BYTES, MAX_YAML_NODES, parse_override, preset_names, PRESETS_DIR, resolve_config_path, save_config  # noqa: E402,F401
