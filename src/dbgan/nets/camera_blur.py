"""A blur generator that is a camera: every parameter is a physical one, and all are learnt.

:class:`CameraBlurGenerator` degrades a sharp photo the way a camera does
(:mod:`dbgan.nets.camera_ops` has the maths), with parameters learnt from unpaired
real blurred photos:

* **exposure and white balance**: a global gain and per-channel gains, plus a
  per-photo exposure jitter driven by the noise vector ``z``;
* **blur**: ``mixtures`` kernels per photo, each a disc swept along a camera-shake
  path (lengths up to about ``kernel_size`` px, defocus radii, soft edges) predicted
  from ``z`` by a small MLP, mixed over the frame by smooth random weights
  (spatially varying blur, e.g. from camera rotation) and applied in linear light.
  Kernels are non-negative, sum to 1 and are centred by construction;
* **sensor**: shot and read noise in linear light (levels learnt, per-photo jitter),
  optionally correlated by a learnt 3x3 filter (demosaicing, denoising), and
  saturation at full scale;
* **response**: a monotone curve per channel (knots, free to move; it starts at the
  sRGB encoding) with a black level;
* **JPEG**: a differentiable approximation with a learnt quality (it starts near 95,
  where JPEG hardly changes anything, and is free to move).

The output is always a plausible photo of the input scene: the generator cannot paint.
Apart from the response curve and the gains, it cannot move a flat image's mean (the
kernels sum to 1 and the noise has zero mean before saturation).
:meth:`describe` reports the learnt camera.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dbgan.nets import camera_ops as ops
from dbgan.nets.camera_tone import ToneFit
from dbgan.nets.common import ImageGenerator, NoiseInput
from dbgan.nets.kernel_blur import seeded_field

ENCODINGS = ("srgb", "linear")
#: how the tone (exposure, black level, response curve) is found; see :class:`CameraBlurGenerator`
TONE_MODES = ("learn", "fit", "fixed")
#: where ``tone="fit"`` fits the exposure: the photos' own values, or decoded to linear light
FIT_SPACES = ("display", "linear")
#: what ``tone="fit"`` fits the exposure and white balance to: brightness quantiles, or the photos' linear means
FIT_SOURCES = ("quantiles", "means")
#: where ``fit_means`` below 1 blends from (:meth:`ToneFit.anchor_means`)
MEANS_ANCHORS = ("start", "fit")

#: the parameters of the physical model (as opposed to the kernel MLP); they take
#: ``physical_lr_scale`` x the stage's learning rate (Adam moves each by about lr a step)
PHYSICAL = ("log_gain", "log_wb", "black", "raw_steps", "log_shot", "log_read", "noise_filter", "quality_logit",
            "mix_logit")


class CameraBlurGenerator(ToneFit, ImageGenerator):
    """BGAN as a learnable camera (see the module docstring).

    Args:
        in_channels: 1 (grey) or 3 (RGB); ``out_channels`` must be equal.
        kernel_size: odd side of the blur kernels (the longest blur is about this).
        noise_dim: length of the Gaussian noise vector ``z``.
        hidden: width of the kernel MLP.
        mixtures: kernels per photo (1: spatially uniform blur).
        path_points: points of each camera-shake path.
        init_length: typical initial path length (px).
        init_radius: initial defocus radius (px).
        init_shot, init_read: initial shot-noise gain and read-noise std (linear units).
        init_quality: initial JPEG quality (``jpeg`` only).
        min_quality: the lowest JPEG quality it can learn. Unbounded, the quality ran away to
            1-20 on several benchmark cameras (whose JPEG is 65-97) and its chroma
            quantisation painted colour casts the deblurrer then learnt to "undo".
        jpeg: model JPEG compression.
        input_encoding: how the sharp photos are encoded: ``srgb`` (photos) or
            ``linear`` (raw data, many microscopes).
        init_response: the response curve's start: ``srgb`` or ``linear``.
        knots: knots of the response curve.
        shared_response: one response curve for all channels (colour then moves only through
            the white balance gains: far fewer ways to mistake a scene's colours for the camera's).
        learn_wb: learn the white balance gains. With ``False`` they stay at 1 (neutral): from
            unpaired photos of different scenes the gains mostly learn the scenes' colours,
            not the camera's, and a deblurrer trained on them learns a colour cast
            (docs/benchmarks.md, section 2). Exposure is learnt either way.
        tone: how exposure, black level and the response curve are found:
            ``learn`` (by gradient, with everything else); ``fit`` (the curve's shape and
            the black level stay at their start, there is no per-photo exposure jitter,
            and the exposure gain is set in closed form at every step from the running
            sharp and real brightness quantiles:
            :meth:`fit_tone`, a robust one-parameter fit that a handful of different
            scenes cannot pull far); ``fixed`` (no tone change at all).
        fit_strength: ``tone="fit"`` only: the fitted log exposure is multiplied by this, a
            prior toward the neutral exposure (1 = the whole fit, 0 = none). From a few
            photos per side the fit is mostly the difference between the scenes: on the
            benchmark's validation camera, with about 14 photos per side, the full fit missed
            the best exposure by 0.15 (RMS of the log gain over 8 data seeds), no fit by 0.20,
            half the fit by 0.12 (``benchmarks/tone_fit.py``; docs/benchmarks.md, section 2).
            With hundreds of photos per side, use 1.
        fit_curve: ``tone="fit"`` only (otherwise unused, like ``fit_strength``): also fit the
            response curve and black level in closed form
            (:func:`camera_ops.quantile_response`, histogram matching of the same quantiles through
            the fitted exposure), and blend that share of it into the start curve (0 = the start
            curve, as before; 1 = the whole fit). An exposure alone cannot express an S-shaped,
            log or limited-range response, or a black level; the whole fit follows the scenes'
            differences as much as the camera's (``benchmarks/tone_fit.py`` measures both).
        fit_wb: ``tone="fit"`` with ``learn_wb=False`` only: also set the white balance in closed
            form, first, as this share of the per-channel gains that match each channel's
            quantiles (less their mean, so the exposure stays the exposure's). 0 keeps it
            neutral. From photos of different scenes on the two sides even the full fit is
            mostly the scenes' colours; from one scene distribution on both sides, half of it
            cut the validation cameras' white-balance error from 0.048 to 0.036 (RMS log gain;
            ``benchmarks/tone_fit.py --split halves``; ``configs/adapt_matched.yaml``).
        fit_offset: ``tone="fit"`` only: remove this share of the *pipeline offset* from the
            fitted exposure (and white balance). The closed-form fit compares the sharp photos'
            brightness quantiles through a noiseless, unblurred tone map with the real photos',
            but blur, sensor noise, saturation and JPEG move quantiles too, so even a perfect
            camera model would be fitted off by some amount. That amount is measured on the
            generator itself: the same fit applied to its own outputs, less the fit applied to
            its own noiseless tone map of the same sharp photos (running quantiles that the bgan
            stage keeps; :meth:`fit_tone`). 0 (default) keeps the plain fit. On the benchmark's
            validation cameras it changed neither bias nor PSNR (docs/benchmarks.md, section 2,
            session 13), so no preset sets it.
        fit_space: ``tone="fit"`` only: where the exposure (and white balance) is fitted.
            ``display`` (default): the brightness quantiles of the photos as they are, through the
            start curve's tone map. ``linear``: the quantiles of the photos decoded to linear light
            first (the sharp ones by ``input_encoding``, the real ones by the inverse of the start
            curve), where a blur kernel summing to 1 cannot move a pooled mean. In display units a
            blur brightens the pooled quantiles (the curve is concave), so a camera that blurs is
            fitted as brighter than it is; on the benchmark's sRGB validation cameras, with the same
            scenes on both sides, ``linear`` took that error from +0.04-0.05 to 0.00-0.02 in log
            exposure (docs/benchmarks.md, section 2, session 14). The response curve
            (``fit_curve``) is still matched in display units.
        fit_from: ``tone="fit"`` only: what the exposure and white balance are fitted to.
            ``quantiles`` (default): the brightness quantiles, as above (``fit_space``, ``fit_offset``).
            ``means``: the ratios of the two photo sets' linear-light means
            (:func:`dbgan.degradation_stats.photo_log_means`, which the bgan stage computes once with
            ``stages.bgan.tone_from: photos``): the exposure from each photo's mean (grey world; a blur
            cannot move it), the white balance from each photo's 8th-power mean (shades of grey), each
            photo weighted once. ``fit_strength`` and ``fit_wb`` are still the shares kept. On the
            benchmark's validation cameras with one scene distribution on both sides (halves, 8 seeds)
            the whole of both fits missed the camera by 0.040-0.058 in log exposure against 0.061-0.098
            for ``adapt_matched``'s quantile fit, and by 0.023 in log white balance against 0.038
            (docs/benchmarks.md, section 2, session 18). The curve (``fit_curve``) is still matched on
            the quantiles, at the exposure found here. No preset uses it: end to end, over two validation
            seeds, ``adapt_matched`` with it scored 0.31 dB below the quantile fit (one seed's photos
            pulled the whole fit far off, where the quantile fit keeps only half).
        fit_means: ``tone="fit"`` with ``learn_wb=False`` only: after the fit above, correct each
            channel's gain so that the generator's *own outputs* (blur, noise, saturation, response,
            JPEG: the whole camera) of the sharp photos have this share of the way from the start
            camera's mean brightness to the real photos' (a geometric blend per channel; 1 = the real
            photos' means). The fit above compares quantiles through a noiseless, unblurred tone map
            and reads the white balance through the start curve, so even with the same scenes on both
            sides its outputs missed the camera's per-channel means by up to 0.016 (docs/benchmarks.md,
            section 2, session 20); the deblurrer trained on them inherits that error as a brightness
            and colour bias. The correction is a per-channel log gain (the ``mean_cal`` buffer) found
            by a few Newton steps on a fixed sample of sharp crops (:meth:`calibrate_means`, run by the
            bgan stage; it needs ``stages.bgan.tone_from: photos``). 0 (default) leaves the fit as it is.
            ``configs/adapt_same_scenes.yaml`` uses it (1): with the same scenes on both sides it halves
            BGAN's colour error. With different scenes (halves of photos, ~28 a side) the real photos'
            means carry the scenes' difference too, and at 0.5 it scored 0.13 dB below ``adapt_matched``
            on validation, so that preset does not use it.
        means_anchor: where a ``fit_means`` below 1 blends from: ``start`` (default), the start camera's
            output means (no exposure, neutral white balance, the start curve); ``fit``, the closed-form fit's
            own noiseless prediction (so the fit's shares keep their shrinkage and a small ``fit_means``
            mostly removes what blur, noise, saturation and JPEG add to it).
        fit_curve_offset: ``tone="fit"`` with ``learn_wb=False`` only: the curve counterpart of ``fit_means``.
            The curve fit matches the real photos' quantiles with a noiseless, unblurred tone map, so what
            the camera's blur does to them (a wide blur narrows the pooled histogram) is read as a flatter
            curve, and the generator's own blur then narrows it once more. This share of that offset is
            taken off the fitted curve: :meth:`calibrate_curve` (run by the bgan stage on ``fit_means``'
            sample; it needs ``tone_from: photos``) moves the knots until the generator's own pooled
            output quantiles are the fitted tone map's (the ``curve_cal`` buffer). 0 (default): off.
            ``adapt_same_scenes`` uses 1 (with whole photos of the same scenes it lowered bias + colour spread
            on the test cameras); with halves it cost 1.8 dB on validation (docs/benchmarks.md, section 2,
            sessions 21-22).
        physical_lr_scale: learning-rate factor of the physical parameters.
    """

    size_multiple = 1

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        kernel_size: int = 41,
        noise_dim: int = 8,
        hidden: int = 64,
        mixtures: int = 2,
        path_points: int = 12,
        init_length: float = 4.0,
        init_radius: float = 0.7,
        init_shot: float = 1e-4,
        init_read: float = 2e-3,
        init_quality: float = 95.0,
        min_quality: float = 50.0,
        jpeg: bool = True,
        input_encoding: str = "srgb",
        init_response: str = "srgb",
        knots: int = 16,
        shared_response: bool = False,
        learn_wb: bool = True,
        tone: str = "learn",
        fit_strength: float = 1.0,
        fit_curve: float = 0.0,
        fit_wb: float = 0.0,
        fit_offset: float = 0.0,
        fit_space: str = "display",
        fit_from: str = "quantiles",
        fit_means: float = 0.0,
        means_anchor: str = "start",
        fit_curve_offset: float = 0.0,
        physical_lr_scale: float = 10.0,
    ):
        super().__init__()
        if out_channels is not None and out_channels != in_channels:
            raise ValueError("camera_blur keeps the channels: out_channels must equal in_channels")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd number >= 3, got {kernel_size}")
        for name, value in (("noise_dim", noise_dim), ("hidden", hidden), ("mixtures", mixtures), ("knots", knots)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if path_points < 2:
            raise ValueError(f"path_points must be >= 2, got {path_points}")
        if tone not in TONE_MODES:
            raise ValueError(f"tone must be one of {', '.join(TONE_MODES)}, got {tone!r}")
        shares = {"fit_strength": fit_strength, "fit_curve": fit_curve, "fit_wb": fit_wb, "fit_offset": fit_offset,
                  "fit_means": fit_means, "fit_curve_offset": fit_curve_offset}
        for name, value in shares.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
            setattr(self, name, float(value))
        if fit_wb > 0 and learn_wb:
            raise ValueError("fit_wb sets the white balance in closed form: it needs learn_wb: false")
        if (fit_means > 0 or fit_curve_offset > 0) and (tone != "fit" or learn_wb):
            raise ValueError("fit_means and fit_curve_offset correct the closed-form tone fit: "
                             "they need tone: fit and learn_wb: false")
        if fit_space not in FIT_SPACES:
            raise ValueError(f"fit_space must be one of {', '.join(FIT_SPACES)}, got {fit_space!r}")
        self.fit_space = fit_space
        if fit_from not in FIT_SOURCES:
            raise ValueError(f"fit_from must be one of {', '.join(FIT_SOURCES)}, got {fit_from!r}")
        self.fit_from = fit_from
        if means_anchor not in MEANS_ANCHORS:
            raise ValueError(f"means_anchor must be one of {', '.join(MEANS_ANCHORS)}, got {means_anchor!r}")
        self.means_anchor = means_anchor
        if input_encoding not in ENCODINGS or init_response not in ENCODINGS:
            raise ValueError(f"input_encoding and init_response must be one of {', '.join(ENCODINGS)}")
        if not (init_length > 0 and init_radius >= 0 and init_shot > 0 and init_read > 0 and physical_lr_scale > 0):
            raise ValueError("init_length, init_shot, init_read and physical_lr_scale must be > 0, init_radius >= 0")
        if not 0 <= min_quality < init_quality < 100:
            raise ValueError(f"need 0 <= min_quality < init_quality < 100, got {min_quality} and {init_quality}")
        self.in_channels = self.out_channels = c = in_channels
        self.kernel_size = kernel_size
        self.mixtures = mixtures
        self.path_points = path_points
        self.max_extent = (kernel_size - 1) / 2 - 1.0  # path + disc stay inside the grid
        if init_length >= 2 * self.max_extent:
            raise ValueError(f"init_length ({init_length}) must be below {2 * self.max_extent:g} px for kernel_size {kernel_size}")
        self.input_encoding = input_encoding
        self.jpeg = jpeg
        self.physical_lr_scale = float(physical_lr_scale)
        self.noise_input = NoiseInput("vector", noise_dim=noise_dim)

        # kernels: z -> per mixture component a path, a length, a disc radius, an edge width
        self.mlp = nn.Sequential(nn.Linear(noise_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2))
        per = 2 * (path_points - 1) + 3
        self.kernel_head = nn.Linear(hidden, mixtures * per)
        nn.init.normal_(self.kernel_head.weight, 0.0, 0.3)
        bias = torch.zeros(mixtures, per)
        bias[:, 0 : 2 * (path_points - 1) : 2] = 1.0  # paths start roughly straight along x
        bias[:, -3] = math.log(init_length / (self.max_extent * 2 - init_length))  # length logit
        bias[:, -2] = ops.inverse_softplus(torch.tensor(max(init_radius, 1e-3)))
        bias[:, -1] = ops.inverse_softplus(torch.tensor(0.5))
        with torch.no_grad():
            self.kernel_head.bias.copy_(bias.flatten())
        # per-photo jitters (exposure, log shot, log read, quality): start at none
        self.jitter_head = nn.Linear(hidden, 4)
        nn.init.zeros_(self.jitter_head.weight)
        nn.init.zeros_(self.jitter_head.bias)
        self.mix_logit = nn.Parameter(torch.tensor(0.0))  # spatial variation strength (log)

        # exposure, white balance, sensor
        if tone == "learn":
            self.log_gain = nn.Parameter(torch.tensor(0.0))
        else:  # set by fit_tone (tone "fit") or left at 1 (tone "fixed")
            self.register_buffer("log_gain", torch.tensor(0.0))
        self.learn_wb = bool(learn_wb)
        if self.learn_wb:
            self.log_wb = nn.Parameter(torch.zeros(c))
        else:  # a buffer: it keeps its checkpoint key, and no optimiser or freeze/unfreeze can move it
            self.register_buffer("log_wb", torch.zeros(c))
        if self.fit_means > 0:  # only then: other checkpoints keep their keys
            self.register_buffer("mean_cal", torch.zeros(c))
        self.log_shot = nn.Parameter(torch.tensor(math.log(init_shot)))
        self.log_read = nn.Parameter(torch.tensor(math.log(init_read)))
        delta = torch.zeros(3, 3)
        delta[1, 1] = 1.0
        self.noise_filter = nn.Parameter(delta)

        # response curve: knots, started at sRGB or the identity
        self.init_response, self.knots = init_response, knots
        start = self.start_response()
        self.shared_response = bool(shared_response)
        steps = ops.inverse_softplus(start.diff())[None].repeat(1 if shared_response else c, 1)
        self.tone = tone
        for name, value in (("black", torch.zeros(1 if shared_response else c)), ("raw_steps", steps)):
            if tone == "learn":
                setattr(self, name, nn.Parameter(value))  # both starts pass through 0
            else:  # a buffer, as log_wb above
                self.register_buffer(name, value)
        if self.fit_curve_offset > 0:  # calibrate_curve's correction, and the fitted curve it is added to
            self.register_buffer("curve_cal", torch.zeros(self.black.shape[0], knots + 1))
            self.register_buffer("fit_response", torch.zeros_like(self.curve_cal), persistent=False)
        self.min_quality = float(min_quality)
        start_q = (init_quality - min_quality) / (100.0 - min_quality)
        self.quality_logit = nn.Parameter(torch.logit(torch.tensor(start_q)))

    # ------------------------------------------------------------------ capabilities read by training
    def lr_scales(self) -> dict[str, float]:
        """Learning-rate factors of the physical parameters (see :data:`PHYSICAL`)."""
        fixed = {"log_wb"} if not self.learn_wb else set()
        fixed |= {"log_gain", "black", "raw_steps"} if self.tone != "learn" else set()
        return {name: self.physical_lr_scale for name in PHYSICAL if name not in fixed}

    onnx_unsupported = (
        "its per-image kernels are applied through FFTs sized by the batch, and its noise field is seeded "
        "from z on the host; run it in PyTorch (dbgan blur without --onnx)"
    )

    # ------------------------------------------------------------------ parameters from z
    def params_from_noise(self, z: Tensor) -> dict[str, Tensor]:
        """The degradation ``z`` (``N x noise_dim``) stands for.

        ``kernels`` is ``N x mixtures x k x k``; ``paths`` ``N x mixtures x T x 2``;
        ``length``, ``radius`` ``N x mixtures`` (px); ``gain`` ``N x C``; ``shot``,
        ``read``, ``quality`` ``N``.
        """
        n = z.shape[0]
        h = self.mlp(z)
        m, t = self.mixtures, self.path_points
        raw = self.kernel_head(h).reshape(n, m, -1)
        vel = raw[..., : 2 * (t - 1)].reshape(n, m, t - 1, 2)
        pts = torch.cat([vel.new_zeros(n, m, 1, 2), vel.cumsum(2)], 2)
        arclen = ops.polyline_lengths(pts).sum(-1)
        radius = F.softplus(raw[..., -2])
        softness = 0.35 + F.softplus(raw[..., -1])
        span = (2 * self.max_extent - 2 * radius - 6.0 * softness).clamp_min(1.0)
        length = span * torch.sigmoid(raw[..., -3])
        pts = ops.center_polyline(pts * (length / arclen.clamp_min(1e-4))[..., None, None])
        # a curled path can still reach past the grid: shrink it to fit
        reach = ops.safe_norm(pts).amax(-1) + radius + 3.0 * softness  # the edge's tail too
        pts = pts * (self.max_extent / reach.clamp_min(self.max_extent))[..., None, None]
        kernels = ops.render_kernels(pts.reshape(n * m, t, 2), radius.reshape(-1), softness.reshape(-1),
                                     self.kernel_size).reshape(n, m, self.kernel_size, self.kernel_size)
        jit = self.jitter_head(h)
        # with tone "fit" or "fixed" the exposure is not the gradient's to move: a learnt per-photo
        # jitter would undo the fitted gain (it did: a fitted x1.09 came out as x1.00 on average)
        exp_jit = jit[:, :1] if self.tone == "learn" else torch.zeros_like(jit[:, :1])
        gain = torch.exp(self.log_gain + self.log_wb[None, :] + exp_jit)
        return {
            "kernels": kernels,
            "paths": pts,
            "length": ops.polyline_lengths(pts).sum(-1),
            "radius": radius,
            "gain": gain,
            "shot": torch.exp(self.log_shot + jit[:, 1]),
            "read": torch.exp(self.log_read + jit[:, 2]),
            "quality": self.min_quality + (100.0 - self.min_quality) * torch.sigmoid(self.quality_logit + jit[:, 3]),
        }

    def start_response(self) -> Tensor:
        """``knots + 1`` values of the response curve's start (sRGB or the identity) at the knots."""
        t = ops.knot_positions(self.knots)
        return ops.linear_to_srgb(t) if self.init_response == "srgb" else t

    def response_values(self) -> Tensor:
        """``C x (knots + 1)`` values of the response curve at :func:`camera_ops.knot_positions`."""
        steps = self.raw_steps.expand(self.in_channels, -1) if self.shared_response else self.raw_steps
        return ops.monotone_values(self.black.expand(self.in_channels), steps)

    def response(self, linear: Tensor) -> Tensor:
        """The response curve applied to linear values ``N x C x H x W`` (clipped to ``[0, 1]``)."""
        return ops.monotone_curve(linear, self.response_values())

    def mixing_weights(self, z: Tensor, img: Tensor) -> Tensor:
        """``N x mixtures x H x W`` smooth weights summing to 1 over the mixtures (seeded by ``z``)."""
        n, _, h, w = img.shape
        coarse = seeded_field(z, img.new_zeros(n, self.mixtures, 3, 3))
        logits = F.interpolate(coarse * self.mix_logit.exp() * 3.0, size=(h, w), mode="bicubic", align_corners=True)
        return torch.softmax(logits, 1)

    # ------------------------------------------------------------------ the camera
    def _parts(self, x: Tensor, img: Tensor, kernels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # the camera's maths (FFTs, curves, exponentials) runs in float32 even under autocast: it is cheap
        with torch.autocast(x.device.type, enabled=False):
            return self._camera(x.float(), img.float(), None if kernels is None else kernels.float())

    def _camera(self, x: Tensor, img: Tensor, kernels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = x[:, self.in_channels :, 0, 0]
        p = self.params_from_noise(z)
        lin = ops.srgb_to_linear(img) if self.input_encoding == "srgb" else img.clamp(0.0, 1.0)
        lin = lin * p["gain"][:, :, None, None]
        if kernels is not None:  # given kernels, uniform over the frame: the rest of the camera stays learnt
            blurred = ops.fft_blur(lin, kernels)
        elif self.mixtures == 1:
            blurred = ops.fft_blur(lin, p["kernels"][:, 0])
        else:
            wts = self.mixing_weights(z, img)
            blurred = sum(wts[:, i : i + 1] * ops.fft_blur(lin, p["kernels"][:, i]) for i in range(self.mixtures))
        field = seeded_field(z, img).to(blurred.dtype)
        filt = self.noise_filter / self.noise_filter.norm().clamp_min(1e-6)  # keeps the variance
        c = field.shape[1]
        field = F.conv2d(F.pad(field, (1, 1, 1, 1), mode="replicate"), filt.expand(c, 1, 3, 3), groups=c)
        noisy = ops.poisson_gaussian(blurred, p["shot"], p["read"], field)
        out = self.encode(noisy, p["quality"])
        clean = self.encode(blurred, p["quality"])
        return out, clean

    def encode(self, linear: Tensor, quality: Tensor) -> Tensor:
        """Saturation, the response curve and (optionally) JPEG: linear sensor values -> the photo."""
        y = self.response(linear.clamp(0.0, 1.0))
        if self.jpeg:
            y = ops.soft_jpeg(y, quality)
        return y.clamp(0.0, 1.0)

    def body(self, x: Tensor, img: Tensor) -> Tensor:
        return self._parts(x, img)[0]

    def degrade_with_kernels(self, x: Tensor, kernels: Tensor, noise: Tensor | None = None) -> Tensor:
        """The learnt camera (exposure, noise, response, JPEG) with the blur kernels given, ``N x k x k``
        (any odd ``k``; non-negative, summing to 1), instead of the learnt ones.

        The dbgan stage's ``synthetic_kernels`` uses it: a share of the deblurrer's training
        inputs keeps the learnt camera but takes its blur from the synthetic recipe.
        """
        self.check_input(x)
        if kernels.dim() != 3 or kernels.shape[0] != x.shape[0] or kernels.shape[1] != kernels.shape[2]:
            raise ValueError(f"kernels must be N x k x k with N = {x.shape[0]}, got {tuple(kernels.shape)}")
        return self._parts(self.noise_input(x, noise), x, kernels.to(x))[0]

    def forward_parts(self, x: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(output, output without sensor noise)``."""
        self.check_input(x)
        return self._parts(self.noise_input(x, noise), x)

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def describe(self, samples: int = 512, seed: int = 0) -> dict:
        """The learnt camera, in plain numbers (for reports and benchmarks).

        ``response``: the curve at linear inputs ``0, 0.1, ..., 1`` per channel;
        ``tone_map``: sharp photo value ``0, 0.1, ..., 1`` -> output, through decoding,
        gains, saturation and the curve (no blur, no noise: what a flat patch becomes);
        ``exposure``, ``wb``: gains; ``exposure_mean``: the exposure with the per-photo
        jitter, averaged over the noise vectors; ``shot_noise``, ``read_noise``; ``jpeg_quality``;
        ``kernel_length_px``, ``defocus_radius_px``, ``kernel_rms_radius_px``: mean and
        the 10/50/90th percentiles over ``samples`` noise vectors.
        """
        dev = self.log_gain.device
        z = torch.randn(samples, self.noise_input.noise_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
        p = self.params_from_noise(z)
        grid = torch.linspace(0, 1, 11, device=dev)
        c = self.in_channels
        resp = self.response(grid[None, None, None, :].expand(1, c, 1, 11))[0, :, 0]
        tone = self.tone_map(grid.expand(c, 11))[0]
        _, rms = ops.kernel_moments(p["kernels"].flatten(0, 1))

        def stats(v: Tensor) -> dict[str, float]:
            q = torch.quantile(v.flatten().float().cpu(), torch.tensor([0.1, 0.5, 0.9]))
            return {"mean": float(v.mean()), "p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}

        return {
            "response": resp.cpu().tolist(),
            "tone_map": tone.cpu().tolist(),
            "exposure": float(self.log_gain.exp()),
            # with the per-photo jitter: what the photos get on average (tone "learn" only differs)
            "exposure_mean": float((p["gain"] / self.log_wb.exp()[None]).mean()),
            "wb": torch.exp(self.log_wb).cpu().tolist(),
            "black_level": self.black.cpu().tolist(),
            "shot_noise": float(self.log_shot.exp()),
            "read_noise": float(self.log_read.exp()),
            "jpeg_quality": float(p["quality"].mean()) if self.jpeg else None,
            "spatial_variation": float(self.mix_logit.exp()),
            "kernel_length_px": stats(p["length"]),
            "defocus_radius_px": stats(p["radius"]),
            "kernel_rms_radius_px": stats(rms),
        }

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, mixtures={self.mixtures}, jpeg={self.jpeg}, "
            f"input_encoding={self.input_encoding!r}, learn_wb={self.learn_wb}, tone={self.tone!r}, "
            f"fit_strength={self.fit_strength}, fit_curve={self.fit_curve}, fit_wb={self.fit_wb}"
            + (f", fit_offset={self.fit_offset}" if self.fit_offset else "")
            + (f", fit_space={self.fit_space!r}" if self.fit_space != "display" else "")
            + (f", fit_means={self.fit_means}, means_anchor={self.means_anchor!r}" if self.fit_means else "")
            + (f", fit_curve_offset={self.fit_curve_offset}" if self.fit_curve_offset else "")
        )
