"""A blur generator that can only blur: it predicts a blur kernel and a sensor-noise level.

The image-to-image BGANs (U-Net, ResNet) can paint anything, and at small scale
they paint high-frequency artefacts that real blurred photos lack (see
``docs/benchmarks.md``, domain gap). :class:`KernelBlurGenerator` instead maps
its noise vector ``z`` through a small MLP to the parameters of a physical
degradation and applies it:

1. a **blur kernel** per image: ``kernel_size x kernel_size`` taps through a
   softmax, so non-negative and summing to 1 (motion, defocus and Gaussian blur
   are all of this form), initialised near a Gaussian of ``init_sigma``;
2. optionally in **linear light**: ``x ** gamma`` before and ``** (1 / gamma)``
   after the blur, with one ``gamma`` (``init_gamma``, default 1, i.e. off), learnt or
   fixed (``learn_gamma``). Real cameras blur scene radiance before their tone curve,
   so photos want about 2.2 (sRGB); the ``kernel`` preset fixes it there, because at
   CPU scale the discriminator does not find the tone curve by itself (it drifts
   towards 1 and costs 0.3-0.5 dB, see ``docs/benchmarks.md``);
3. **sensor noise**: a per-image standard deviation ``sigma(z)`` (initialised near
   ``init_noise``) times a Gaussian field.

The output is therefore always a plausible blur of the input, whatever the
adversarial training does; what BGAN learns is the *distribution* of kernels,
the tone curve and the noise level that make the result look like the user's
real photos. The Gaussian field of step 3 is drawn from a generator seeded by
``z`` and the image (:func:`seeded_field`), so a seeded noise vector
(``Blurrer``) reproduces the whole output. The blur itself is a grouped convolution (differentiable in the kernel).

Train it with a kernel prior rather than paired L1 terms (``stages.*.w_kernel_prior``,
as the ``kernel`` preset does): an L1 to synthetic blur made with a kernel that ``z``
knows nothing about pulls every kernel to the mean kernel, while the prior matches the
*distribution* of kernels to the synthetic one (:func:`dbgan.losses.mmd_rbf`).
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dbgan.nets.common import ImageGenerator, NoiseInput

_EPS = 1e-6


def gaussian_logits(size: int, sigma: float) -> Tensor:
    """Log-weights of an isotropic Gaussian on a ``size x size`` grid (the softmax gives the kernel)."""
    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    return -(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2)


def blur_per_image(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each image of ``x`` (``N x C x H x W``) with its own kernel (``N x kh x kw``).

    Same-size output with reflected borders (replicated where the image is smaller
    than half the kernel); a true convolution (the kernel is flipped), centred at
    ``(k - 1) // 2`` like :func:`dbgan.blur.fft_blur`. Differentiable in both arguments.
    """
    n, c, h, w = x.shape
    kh, kw = kernels.shape[-2:]
    pads = (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2)
    mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
    xp = F.pad(x, pads, mode=mode)
    weight = kernels.flip(-2, -1).to(x.dtype).repeat_interleave(c, dim=0)[:, None]  # (N*C, 1, kh, kw)
    y = F.conv2d(xp.reshape(1, n * c, *xp.shape[-2:]), weight, groups=n * c)
    return y.reshape(n, c, h, w)


def seeded_field(z: Tensor, img: Tensor) -> Tensor:
    """A standard Gaussian field per image of ``img``, reproducible from ``z`` and the image.

    Each image's field comes from a generator seeded by a hash of its ``z`` and of a
    sparse sample of its pixels: the same noise vector on the same image always gives
    the same field, and the tiles of a tiled run (same ``z``, different content) get
    different fields rather than one pattern repeated.
    """
    out = torch.empty(img.shape, dtype=torch.float32)
    zs = z.detach().to("cpu", torch.float64)
    probe = img.detach()[:, :, ::7, ::7].to("cpu", torch.float32)
    for i in range(img.shape[0]):
        h = hashlib.blake2b(zs[i].numpy().tobytes(), digest_size=8)
        h.update(probe[i].contiguous().numpy().tobytes())
        seed = int.from_bytes(h.digest(), "little") & (2**63 - 1)
        out[i] = torch.randn(img.shape[1:], generator=torch.Generator().manual_seed(seed))
    return out.to(img.device)


class KernelBlurGenerator(ImageGenerator):
    """BGAN that blurs by predicting a kernel, a tone curve and a noise level from ``z``.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        out_channels: must equal ``in_channels`` (accepted for the common interface).
        kernel_size: side of the predicted kernels (odd).
        noise_dim: length of the Gaussian noise vector ``z`` (mode ``"vector"``).
        hidden: width of the MLP.
        init_sigma: the initial kernels are close to a Gaussian of this std (pixels).
        linear_light: blur in linear light (``x ** gamma``; see ``init_gamma``, ``learn_gamma``).
        sensor_noise: learn a per-image noise level and add a Gaussian field.
        init_noise: initial noise std (in ``[0, 1]`` units).
        init_gamma: initial gamma (1: blur on the encoded values; about 2.2 for sRGB).
        learn_gamma: train the gamma (True) or keep ``init_gamma`` as the camera's known
            tone curve (False).
        gamma_lr_scale: learning-rate factor for the gamma (one scalar moves by about
            ``lr`` per Adam step; see :meth:`lr_scales`).
    """

    size_multiple = 1

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        kernel_size: int = 15,
        noise_dim: int = 8,
        hidden: int = 64,
        init_sigma: float = 1.0,
        linear_light: bool = True,
        sensor_noise: bool = True,
        init_noise: float = 0.003,
        init_gamma: float = 1.0,
        learn_gamma: bool = True,
        gamma_lr_scale: float = 1.0,
    ):
        super().__init__()
        if out_channels is not None and out_channels != in_channels:
            raise ValueError("kernel_blur keeps the channels: out_channels must equal in_channels")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        if gamma_lr_scale <= 0:
            raise ValueError(f"gamma_lr_scale must be > 0, got {gamma_lr_scale}")
        if noise_dim < 1 or hidden < 1:
            raise ValueError(f"noise_dim and hidden must be >= 1, got {noise_dim}, {hidden}")
        if init_sigma <= 0 or init_noise <= 0 or init_gamma <= 0:
            raise ValueError(
                f"init_sigma, init_noise and init_gamma must be > 0, got {init_sigma}, {init_noise}, {init_gamma}"
            )
        self.in_channels = self.out_channels = in_channels
        self.kernel_size = kernel_size
        self.noise_input = NoiseInput("vector", noise_dim=noise_dim)
        self.mlp = nn.Sequential(
            nn.Linear(noise_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)
        )
        self.kernel_head = nn.Linear(hidden, kernel_size * kernel_size)
        nn.init.normal_(self.kernel_head.weight, 0.0, 0.01)
        with torch.no_grad():
            self.kernel_head.bias.copy_(gaussian_logits(kernel_size, init_sigma).flatten())
        self.sensor_noise = sensor_noise
        if sensor_noise:
            self.noise_head = nn.Linear(hidden, 1)
            nn.init.zeros_(self.noise_head.weight)  # every z starts at init_noise
            nn.init.constant_(self.noise_head.bias, init_noise)
        self.linear_light = linear_light
        self.learn_gamma = bool(learn_gamma)
        self.gamma_lr_scale = float(gamma_lr_scale)
        if linear_light:
            log_gamma = torch.tensor(float(init_gamma)).log()
            if self.learn_gamma:
                self.log_gamma = nn.Parameter(log_gamma)
            else:  # the camera's known tone curve: saved with the weights, never trained
                self.register_buffer("log_gamma", log_gamma)

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate factors per parameter name (read by the training stages' optimizers).

        ``log_gamma`` is one scalar: Adam moves it by about ``lr`` per step, so without
        a larger factor it stays near its initial value over a whole training run.
        """
        if self.linear_light and self.learn_gamma and self.gamma_lr_scale != 1.0:
            return {"log_gamma": self.gamma_lr_scale}
        return {}

    #: read by :func:`dbgan.export.export_onnx`, which refuses with this reason
    onnx_unsupported: str | None = (
        "its per-image kernels run as a batch-sized grouped convolution and its noise field is "
        "seeded from z on the host; run it in PyTorch (dbgan blur without --onnx)"
    )

    def params_from_noise(self, z: Tensor) -> dict[str, Tensor]:
        """The degradation that ``z`` (``N x noise_dim``) stands for: kernels, noise std, gamma."""
        h = self.mlp(z)
        k = self.kernel_size
        out = {"kernels": torch.softmax(self.kernel_head(h), dim=-1).reshape(-1, k, k)}
        if self.sensor_noise:
            # |.| rather than softplus/exp: the gradient does not vanish when a stage
            # (e.g. L1 pretraining on noiseless synthetic pairs) drives the level to 0
            out["noise_std"] = self.noise_head(h)[:, 0].abs()
        if self.linear_light:
            out["gamma"] = self.log_gamma.exp()
        return out

    def _parts(self, x: Tensor, img: Tensor) -> tuple[Tensor, Tensor]:
        z = x[:, self.in_channels :, 0, 0].float()  # the tiled noise vector
        p = self.params_from_noise(z)
        y = img
        if self.linear_light:
            y = y.clamp_min(_EPS) ** p["gamma"]
        y = blur_per_image(y, p["kernels"])
        if self.linear_light:
            y = y.clamp_min(_EPS) ** (1.0 / p["gamma"])
        clean = y.clamp(0.0, 1.0)
        if not self.sensor_noise:
            return clean, clean
        field = seeded_field(z, img).to(y.dtype)
        return (y + p["noise_std"].to(y.dtype)[:, None, None, None] * field).clamp(0.0, 1.0), clean

    def body(self, x: Tensor, img: Tensor) -> Tensor:
        return self._parts(x, img)[0]

    def forward_parts(self, x: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(output, output before the sensor noise)``; the training stages tie the second to paired targets."""
        self.check_input(x)
        xn = self.noise_input(x, noise)  # size_multiple is 1: no padding
        return self._parts(xn, x)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, linear_light={self.linear_light}, learn_gamma={self.learn_gamma}, "
            f"sensor_noise={self.sensor_noise}"
        )
