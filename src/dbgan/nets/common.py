"""Pieces shared by the architectures: pad-to-multiple, noise inputs, norms, init.

Everything here works on ``float32`` ``N x C x H x W`` tensors and stays
ONNX-export friendly: padding amounts are computed with shape arithmetic only
(no Python branch depends on the image size), so a graph exported with dynamic
height and width pads correctly at every size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NOISE_MODES = ("none", "map", "vector")
NORMS = ("none", "batch", "instance")


# --------------------------------------------------------------------------- padding


def standard_path_only() -> bool:
    """True while tracing, scripting, compiling or exporting to ONNX.

    Shape-dependent shortcuts (the small-map GEMM path, the U-Net's cropped
    decoding) are skipped then, so exported graphs hold plain layers and no
    branch on the image size.
    """
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def _sym_min(a, b):
    # torch.sym_min keeps the minimum symbolic under torch.export / the dynamo ONNX exporter
    # and is plain min() on ints; the TorchScript tracer gives sizes as 0-d tensors instead
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))
    return torch.sym_min(a, b)


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom and right of ``x`` so that H and W become multiples of ``multiple``.

    Reflect padding is used as far as the image allows (a reflection needs
    ``pad < size``); whatever is left is filled by replicating the border, so
    even a 1 x 1 image can be padded to 256 x 256. The image is never resized.

    Args:
        x: ``N x C x H x W`` tensor.
        multiple: the required multiple (1 returns ``x`` unchanged).

    Returns:
        ``(x_padded, (H, W))``: the padded tensor and the original size, to give
        to :func:`crop_to` afterwards.
    """
    h, w = x.shape[-2], x.shape[-1]
    if multiple <= 1:
        return x, (h, w)
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    # reflect what fits, replicate the rest (both pads are no-ops when zero)
    ref_h = _sym_min(pad_h, h - 1)
    ref_w = _sym_min(pad_w, w - 1)
    x = F.pad(x, (0, ref_w, 0, ref_h), mode="reflect")
    x = F.pad(x, (0, pad_w - ref_w, 0, pad_h - ref_h), mode="replicate")
    return x, (h, w)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop ``x`` back to ``size = (H, W)`` (the top-left corner, undoing :func:`pad_to_multiple`)."""
    return x[..., : size[0], : size[1]]


class PadToMultiple(nn.Module):
    """Wrap any image-to-image network so that it accepts every height and width.

    The input is reflect-padded to ``multiple`` (default: ``net.size_multiple``),
    run through ``net`` and the output cropped back to the input's size. The
    generators of :mod:`dbgan.nets` already do this themselves; this wrapper is
    for other networks (and discriminators' feature maps are not cropped: use it
    only for nets whose output has the input's resolution).

    Args:
        net: the wrapped network; extra forward arguments are passed through.
        multiple: the size multiple; default the net's own (:func:`image_layout`).
    """

    def __init__(self, net: nn.Module, multiple: int | None = None):
        super().__init__()
        self.net = net
        layout = image_layout(net)
        self.size_multiple = int(multiple if multiple is not None else layout.size_multiple)
        self.in_channels = layout.in_channels
        self.out_channels = layout.out_channels

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        xp, size = pad_to_multiple(x, self.size_multiple)
        return crop_to(self.net(xp, *args, **kwargs), size)


# --------------------------------------------------------------------------- noise


class NoiseInput(nn.Module):
    """The random input of a blur generator, concatenated to the image along channels.

    Modes:
        ``"none"``: no noise, the generator is deterministic.
        ``"map"``: a Gaussian ``N x noise_nc`` map at half resolution
        (``ceil(H/2) x ceil(W/2)``), upsampled (nearest) to ``H x W`` (the reference recipe).
        ``"vector"``: a Gaussian vector ``N x noise_dim`` tiled over ``H x W`` (the paper, dim 4).

    Args:
        mode: ``"none"``, ``"map"`` or ``"vector"``.
        noise_nc: channels of the noise map (mode ``"map"``).
        noise_dim: length of the noise vector (mode ``"vector"``).
    """

    def __init__(self, mode: str = "none", noise_nc: int = 1, noise_dim: int = 4):
        super().__init__()
        if mode not in NOISE_MODES:
            raise ValueError(f"noise must be one of {', '.join(NOISE_MODES)}, got {mode!r}")
        if mode == "map" and noise_nc < 1:
            raise ValueError(f"noise_nc must be >= 1, got {noise_nc}")
        if mode == "vector" and noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {noise_dim}")
        self.mode = mode
        self.noise_nc = noise_nc
        self.noise_dim = noise_dim

    @property
    def channels(self) -> int:
        """Number of channels the noise adds to the generator's input."""
        return {"none": 0, "map": self.noise_nc, "vector": self.noise_dim}[self.mode]

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Draw noise for image batch ``x`` (``None`` in mode ``"none"``).

        Args:
            x: the ``N x C x H x W`` input the noise goes with (sets N, H, W, device, dtype).
            generator: optional ``torch.Generator`` on ``x``'s device, for reproducible draws.
        """
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        if self.mode == "none":
            return None
        if self.mode == "map":
            shape = (n, self.noise_nc, (h + 1) // 2, (w + 1) // 2)
        else:
            shape = (n, self.noise_dim)
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """Return ``x`` with the noise channels appended (``noise`` is sampled when ``None``)."""
        if self.mode == "none":
            if noise is not None:
                raise ValueError("this generator was built with noise='none' but noise was given")
            return x
        if noise is None:
            noise = self.sample(x)
        h, w = x.shape[-2], x.shape[-1]
        noise = noise.to(dtype=x.dtype)
        if self.mode == "map":
            if noise.dim() != 4 or noise.shape[1] != self.noise_nc:
                raise ValueError(
                    f"noise map must be N x {self.noise_nc} x h x w, got {tuple(noise.shape)}"
                )
            noise = F.interpolate(noise, size=(h, w), mode="nearest")
        else:
            if noise.dim() != 2 or noise.shape[1] != self.noise_dim:
                raise ValueError(f"noise vector must be N x {self.noise_dim}, got {tuple(noise.shape)}")
            noise = noise[:, :, None, None].expand(-1, -1, h, w)
        return torch.cat([x, noise], dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, channels={self.channels}"


# --------------------------------------------------------------------------- base class


@runtime_checkable
class SamplesNoise(Protocol):
    """A network with a random input (every :class:`ImageGenerator`; inference also takes
    plain modules, which have none)."""

    def sample_noise(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Optional[Tensor]: ...


@runtime_checkable
class PredictsKernels(Protocol):
    """A blur generator that predicts its blur kernel from its noise vector (``kernel_blur``):
    what the training stages' kernel-prior term needs."""

    kernel_size: int
    noise_input: "NoiseInput"

    def params_from_noise(self, z: Tensor) -> dict[str, Tensor]: ...


@runtime_checkable
class DescribesCamera(Protocol):
    """A blur generator that reports what it learnt in physical units (``camera_blur``);
    validation logs it."""

    def describe(self) -> dict: ...


@runtime_checkable
class SwapsKernels(Protocol):
    """A blur generator whose learnt camera can be run with given blur kernels (``camera_blur``);
    the dbgan stage's ``synthetic_kernels`` needs it."""

    def degrade_with_kernels(self, x: Tensor, kernels: Tensor, noise: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class FitsTone(Protocol):
    """A blur generator whose exposure (and response curve) can be set in closed form from brightness
    quantiles (``camera_blur`` with ``tone="fit"``); the bgan stage calls it at every step."""

    @property
    def wants_output_quantiles(self) -> bool: ...

    @property
    def wants_linear_quantiles(self) -> bool: ...

    @property
    def wants_photo_means(self) -> bool: ...

    @property
    def wants_mean_calibration(self) -> bool: ...

    def calibrate_means(self, sample: Tensor, noise: Tensor, sharp_quantiles: Tensor, real_quantiles: Tensor,
                        steps: int = 3, probe: float = 0.05) -> Tensor: ...

    @property
    def wants_curve_calibration(self) -> bool: ...

    def calibrate_curve(self, sample: Tensor, noise: Tensor, steps: int = 3, levels: int = 64) -> Tensor: ...

    def linear_views(self, sharp: Tensor, real: Tensor) -> tuple[Tensor, Tensor]: ...

    def fit_tone(self, sharp_quantiles: Tensor, real_quantiles: Tensor, fake_quantiles: Tensor | None = None,
                 clean_quantiles: Tensor | None = None, sharp_linear: Tensor | None = None,
                 real_linear: Tensor | None = None, sharp_means: Tensor | None = None,
                 real_means: Tensor | None = None) -> None: ...


class ImageGenerator(nn.Module):
    """Base class of the generators: pad to ``size_multiple``, run the body, crop back.

    Subclasses set ``in_channels``, ``out_channels``, ``size_multiple`` and
    ``self.noise_input`` (a :class:`NoiseInput`, mode ``"none"`` for
    deterministic nets) and implement :meth:`body` on the padded input with its
    noise channels already appended. :meth:`body` receives the padded image too
    (for residual outputs) and must return ``[0, 1]`` images of the padded size.

    Optional capabilities, declared here with their defaults (subclasses override):
    :meth:`lr_scales` (per-parameter learning-rate factors), :meth:`forward_parts`
    (output and output before sensor noise), :meth:`cropped_body` (compute only the
    kept crop), :meth:`sample_noise` and :attr:`onnx_unsupported`.
    """

    in_channels: int
    out_channels: int
    size_multiple: int = 1
    noise_input: NoiseInput
    #: None, or why :func:`dbgan.export.export_onnx` must refuse this network
    onnx_unsupported: Optional[str] = None

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate factors by parameter name (default: none; every parameter at the stage's ``lr``)."""
        return {}

    def forward_parts(self, x: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(output, output before any sensor noise)``; the same tensor twice by default."""
        out = self(x, noise)
        return out, out

    @property
    def noise_mode(self) -> str:
        return self.noise_input.mode

    def sample_noise(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Draw the random input for image batch ``x`` (``None`` when the generator has no noise).

        Args:
            x: ``N x C x H x W`` images in ``[0, 1]``.
            generator: optional ``torch.Generator`` on ``x``'s device.
        """
        return self.noise_input.sample(x, generator)

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """Map ``x`` (``N x in_channels x H x W`` in ``[0, 1]``, any H, W) to ``N x out_channels x H x W``.

        Args:
            x: input images in ``[0, 1]``.
            noise: from :meth:`sample_noise`; drawn with torch's global RNG when ``None``
                (and the generator has noise).
        """
        self.check_input(x)
        xn = self.noise_input(x, noise)
        xp, size = pad_to_multiple(xn, self.size_multiple)
        img = xp[:, : self.in_channels]
        return crop_to(self.cropped_body(xp, img, size), size)

    def cropped_body(self, x: Tensor, img: Tensor, out_size: tuple[int, int]) -> Tensor:
        """:meth:`body` when only its top-left ``out_size`` crop will be kept.

        Subclasses may compute less here (the U-Net decodes only what the crop needs);
        the default runs the whole :meth:`body`.
        """
        return self.body(x, img)

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError naming the expected layout unless ``x`` is ``N x in_channels x H x W``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects N x {self.in_channels} x H x W input, "
                f"got {tuple(x.shape)}"
            )

    def body(self, x: Tensor, img: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class ImageLayout:
    """What an image-to-image network takes and gives: channels (None: not declared) and size multiple."""

    in_channels: Optional[int]
    out_channels: Optional[int]
    size_multiple: int


def image_layout(net: nn.Module) -> ImageLayout:
    """The channels and size multiple of ``net``: declared by every :class:`ImageGenerator`.

    Inference and export also take other modules (a foreign network, a
    :class:`PadToMultiple`): they may carry the same three attributes; what they lack
    is None (channels) or 1 (size multiple). This is the one place that looks.
    """
    if isinstance(net, ImageGenerator):
        return ImageLayout(net.in_channels, net.out_channels, int(net.size_multiple))
    return ImageLayout(
        getattr(net, "in_channels", None), getattr(net, "out_channels", None), int(getattr(net, "size_multiple", 1))
    )


# --------------------------------------------------------------------------- layers / init


def norm_layer(norm: str, channels: int) -> nn.Module:
    """``"batch"`` -> BatchNorm2d, ``"instance"`` -> InstanceNorm2d (no affine, as pix2pix), ``"none"`` -> Identity."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def init_normal(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix initialisation: conv weights ~ N(0, gain), biases 0, BatchNorm weights ~ N(1, gain)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def init_kaiming_scaled(module: nn.Module, scale: float = 0.1) -> None:
    """ESRGAN initialisation: Kaiming-normal conv weights multiplied by ``scale``, biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            with torch.no_grad():
                m.weight.mul_(scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def to_signed(x: Tensor) -> Tensor:
    """``[0, 1]`` -> ``[-1, 1]``."""
    return x * 2.0 - 1.0


def signed_input(x: Tensor, in_channels: int) -> Tensor:
    """Map the image channels (the first ``in_channels``) to ``[-1, 1]``; noise channels pass as drawn."""
    if x.shape[1] == in_channels:
        return to_signed(x)
    return torch.cat([to_signed(x[:, :in_channels]), x[:, in_channels:]], dim=1)


def to_unit(x: Tensor) -> Tensor:
    """``[-1, 1]`` -> ``[0, 1]``."""
    return (x + 1.0) * 0.5


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (works on the meta device too)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)
