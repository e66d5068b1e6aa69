"""Validation of a built :class:`~dbgan.config.Config`: impossible values rejected before any work starts, naming the key."""

from __future__ import annotations

from typing import Any

from dbgan import constants as K
from dbgan.config import _short, Config, ConfigError, StageConfig


# --------------------------------------------------------------------------- validation

_CHOICES = {
    "scheme": K.SCHEMES,
    "data.preprocess": K.PREPROCESS_MODES,
    "data.direction": K.DIRECTIONS,
    "train.amp": K.AMP_MODES,
    "train.backend": K.DIST_BACKENDS,
    "losses.perceptual.weights": K.PERCEPTUAL_WEIGHTS,
    "losses.perceptual.criterion": K.PERCEPTUAL_CRITERIA,
}
_STAGE_CHOICES = {
    "schedule": K.SCHEDULES,
    "gan_mode": K.GAN_MODES,
    "content": K.CONTENT_LOSSES,
    "tone_from": K.TONE_SOURCES,
}
_KERNELS = K.KERNEL_KINDS
MAX_KERNEL_SIZE = 255  # synth.kernel_size
MAX_WORKERS = 256  # data.num_workers


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _range(key: str, values: list[float], low: float | None = None) -> None:
    if len(values) != 2 or values[0] > values[1]:
        raise ConfigError(f"'{key}' must be [low, high] with low <= high, got {values}")
    if low is not None and values[0] < low:
        raise ConfigError(f"'{key}' must be >= {low}, got {values}")


CHANNELS_LAST_MODES = K.CHANNELS_LAST_MODES


def _check_channels_last(value: bool | str) -> None:
    if not isinstance(value, bool) and value not in CHANNELS_LAST_MODES:
        raise ConfigError(
            f"'train.channels_last' must be true, false or one of {', '.join(CHANNELS_LAST_MODES)}, got {value!r}"
        )


def channels_last_mode(value: bool | str, device_type: str, capability: str | None = None) -> str:
    """Resolve ``train.channels_last`` to ``"discriminators"``, ``"all"`` or ``"none"``.

    ``true`` means ``"all"``, ``false`` ``"none"``. ``"auto"`` on CPU follows
    :func:`dbgan.cpu_caps.channels_last_training_rule`: the discriminators in
    channels_last where torch's CPU capability (``capability``, default this machine's)
    is AVX512 or above (their oneDNN convolutions run 4-20% faster there, while the
    U-Net generators, whose small inner maps take a GEMM path, are slower in it;
    ``docs/benchmarks.md``, section 1), ``"none"`` below (at AVX2 channels_last
    backward passes are slower; section 5). On other devices ``"auto"`` is ``"none"``:
    not measured there.
    """
    _check_channels_last(value)
    if value is True:
        return "all"
    if value is False:
        return "none"
    if value == "auto":
        if device_type != "cpu":
            return "none"
        from dbgan.cpu_caps import channels_last_training_rule, torch_capability  # torch only when asked

        cap = capability if capability is not None else torch_capability()
        return "discriminators" if channels_last_training_rule(cap)[0] else "none"
    return value


def validate(cfg: Config) -> None:
    """Reject impossible values before any work starts, naming the key."""
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise ConfigError(f"'{key}' must be one of {', '.join(choices)}, got {_short(value)}")
    _check_channels_last(cfg.train.channels_last)
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError(f"'name' must be a plain directory name, got {cfg.name!r}")
    d = cfg.data
    if d.channels not in (1, 3):
        raise ConfigError(f"'data.channels' must be 1 or 3, got {d.channels}")
    if d.crop_size <= 0 or d.load_size <= 0:
        raise ConfigError("'data.crop_size' and 'data.load_size' must be positive")
    if d.preprocess == "resize_and_crop" and d.crop_size > d.load_size:
        raise ConfigError(
            f"'data.crop_size' ({d.crop_size}) is larger than 'data.load_size' ({d.load_size})"
        )
    if d.max_image_pixels <= 0:
        raise ConfigError("'data.max_image_pixels' must be positive")
    if not 0 <= d.num_workers <= MAX_WORKERS:
        raise ConfigError(f"'data.num_workers' must lie in [0, {MAX_WORKERS}], got {d.num_workers}")
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"'seed' must lie in [0, 2**32) (seeds of the parts are derived from it), got {cfg.seed}")
    s = cfg.synth
    if not s.kernels:
        raise ConfigError("'synth.kernels' must name at least one kernel kind")
    for k in s.kernels:
        if k not in _KERNELS:
            raise ConfigError(f"'synth.kernels' has unknown kind {k!r}; valid: {', '.join(_KERNELS)}")
    if s.kernel_size < 3 or s.kernel_size % 2 == 0 or s.kernel_size > MAX_KERNEL_SIZE:
        raise ConfigError(f"'synth.kernel_size' must be odd and in [3, {MAX_KERNEL_SIZE}], got {s.kernel_size}")
    _range("synth.intensity", s.intensity, 0.0)
    if s.intensity[1] > 1.0:
        raise ConfigError(f"'synth.intensity' must lie in [0, 1], got {s.intensity}")
    for key in ("linear_length", "defocus_radius", "gaussian_sigma", "highlight_gain", "noise_sigma"):
        _range(f"synth.{key}", getattr(s, key), 0.0)
    if s.jpeg_quality:
        _range("synth.jpeg_quality", s.jpeg_quality, 1)
        if s.jpeg_quality[1] > 100:
            raise ConfigError(f"'synth.jpeg_quality' must lie in [1, 100], got {s.jpeg_quality}")
    if s.gamma <= 0 or s.poisson_peak < 0:
        raise ConfigError("'synth.gamma' must be > 0 and 'synth.poisson_peak' >= 0")
    for k in s.kernel_sizes:
        if k < 1 or k % 2 == 0 or k > s.kernel_size:
            raise ConfigError(
                f"'synth.kernel_sizes' must hold odd sizes up to synth.kernel_size={s.kernel_size}, got {k}"
            )
    for key in ("identity_prob", "grey_prob", "noise_prob", "jpeg_prob"):
        if not 0.0 <= getattr(s, key) <= 1.0:
            raise ConfigError(f"'synth.{key}' must lie in [0, 1], got {getattr(s, key)}")
    if s.gamma_range:
        _range("synth.gamma_range", s.gamma_range, 0.1)
    if s.poisson_peak_range:
        _range("synth.poisson_peak_range", s.poisson_peak_range, 1.0)
    _range("synth.exposure", s.exposure, 0.01)
    _range("synth.saturation", s.saturation, 0.0)
    from dbgan.nets import NETWORKS  # the registry table only; no architecture is imported

    for role in ("blur_g", "blur_d", "deblur_g", "deblur_d"):
        spec = getattr(cfg.nets, role)
        if spec.name not in NETWORKS:
            raise ConfigError(
                f"'nets.{role}.name': unknown architecture {spec.name!r}; "
                f"valid: {', '.join(NETWORKS.names())}"
            )
        try:  # argument names, types and ranges, before anything is built
            NETWORKS.validate_args(spec.name, spec.args, where=f"nets.{role}.args")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    for stage in ("blur_pretrain", "bgan", "dbgan"):
        st: StageConfig = getattr(cfg.stages, stage)
        pre = f"stages.{stage}"
        for key, choices in _STAGE_CHOICES.items():
            if getattr(st, key) not in choices:
                raise ConfigError(
                    f"'{pre}.{key}' must be one of {', '.join(choices)}, got {getattr(st, key)!r}"
                )
        if st.iters < 0:
            raise ConfigError(f"'{pre}.iters' must be >= 0, got {st.iters}")
        if st.batch_size < 1:
            raise ConfigError(f"'{pre}.batch_size' must be >= 1, got {st.batch_size}")
        if not st.lr > 0:
            raise ConfigError(f"'{pre}.lr' must be positive, got {st.lr}")
        if st.lr_d is not None and not st.lr_d > 0:
            raise ConfigError(f"'{pre}.lr_d' must be positive, got {st.lr_d}")
        if len(st.betas) != 2 or not all(0 <= b < 1 for b in st.betas):
            raise ConfigError(f"'{pre}.betas' must be two numbers in [0, 1), got {st.betas}")
        if not 0 <= st.decay_start <= 1:
            raise ConfigError(f"'{pre}.decay_start' must lie in [0, 1], got {st.decay_start}")
        if not 0 <= st.ema < 1:
            raise ConfigError(f"'{pre}.ema' must lie in [0, 1), got {st.ema}")
        if st.content_scale < 1:
            raise ConfigError(f"'{pre}.content_scale' must be >= 1, got {st.content_scale}")
        for key in ("w_adv", "w_content", "w_synthetic", "w_kernel_prior", "w_noise_match", "w_stats",
                    "w_diversity", "w_perceptual", "w_frequency", "grad_clip"):
            if getattr(st, key) < 0:
                raise ConfigError(f"'{pre}.{key}' must be >= 0, got {getattr(st, key)}")
        if st.pool_size < 0:
            raise ConfigError(f"'{pre}.pool_size' must be >= 0, got {st.pool_size}")
        if stage == "dbgan" and st.w_kernel_prior > 0:
            raise ConfigError(f"'{pre}.w_kernel_prior' applies to the blur stages (blur_pretrain, bgan) only")
        if len(st.stats_balance) != 3 or not all(b >= 0 for b in st.stats_balance):
            raise ConfigError(f"'{pre}.stats_balance' must be three weights >= 0 (tone, spectrum, noise), got {st.stats_balance}")
        if stage != "bgan" and st.w_stats > 0:
            raise ConfigError(f"'{pre}.w_stats' applies to the bgan stage (unpaired real photos) only")
        if st.tone_from != "crops" and not (stage == "bgan" and st.w_stats > 0):
            raise ConfigError(f"'{pre}.tone_from' applies to the bgan stage with w_stats > 0 only")
        if not 0.0 < st.spectrum_max_freq <= 0.5:
            raise ConfigError(f"'{pre}.spectrum_max_freq' must be in (0, 0.5] cycles per pixel, got {st.spectrum_max_freq}")
        if st.spectrum_max_freq != 0.5 and stage != "bgan":  # (bgan with w_stats 0 leaves it unused)
            raise ConfigError(f"'{pre}.spectrum_max_freq' applies to the bgan stage (its w_stats) only")
        if not 0.0 <= st.synthetic_kernels <= 1.0:
            raise ConfigError(f"'{pre}.synthetic_kernels' must be in [0, 1], got {st.synthetic_kernels}")
        if st.synthetic_kernels > 0 and stage != "dbgan":  # (schemes other than separate have no frozen BGAN: unused there)
            raise ConfigError(f"'{pre}.synthetic_kernels' applies to the dbgan stage (scheme separate) only")
        if stage == "dbgan" and st.w_diversity > 0:
            raise ConfigError(f"'{pre}.w_diversity' applies to the blur stages (blur_pretrain, bgan) only")
        if stage != "bgan" and st.w_noise_match > 0:
            raise ConfigError(f"'{pre}.w_noise_match' applies to the bgan stage (unpaired real photos) only")
    t = cfg.train
    for key in ("log_every", "val_every", "save_every", "keep_last", "max_bad_steps"):
        if getattr(t, key) < 0:
            raise ConfigError(f"'train.{key}' must be >= 0, got {getattr(t, key)}")
    if t.keep_last < 1:
        raise ConfigError("'train.keep_last' must be >= 1")
