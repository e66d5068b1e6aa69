"""The closed-form tone fit of :class:`dbgan.nets.camera_blur.CameraBlurGenerator` (``tone="fit"``).

A mixin: the generator's exposure, white balance and response curve are set from brightness
quantiles of the two photo sets (the maths is :func:`camera_ops.fit_log_gain` and
:func:`camera_ops.quantile_response`), and its noiseless tone map is what the fit compares. It reads
the generator's settings (``tone``, ``fit_*``, ``input_encoding``, ``init_response``) and writes its
buffers (``log_gain``, ``log_wb``, ``black``, ``raw_steps``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dbgan.degradation_stats import TONE_POOL, interp_monotone, tone_quantiles
from dbgan.nets import camera_ops as ops


class ToneFit:
    """The tone-fit methods of ``camera_blur`` (see the module docstring)."""

    @property
    def wants_linear_quantiles(self) -> bool:
        """Whether :meth:`fit_tone` fits the exposure on linear-light quantiles (``fit_space="linear"``)."""
        return self.tone == "fit" and self.fit_space == "linear"

    def linear_views(self, sharp: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        """Sharp and real photos decoded to linear light: the sharp ones by ``input_encoding``, the real
        ones by the inverse of the start curve (what :meth:`fit_tone` fits the exposure on with
        ``fit_space="linear"``)."""
        lin_sharp = ops.srgb_to_linear(sharp) if self.input_encoding == "srgb" else sharp
        lin_real = ops.srgb_to_linear(real) if self.init_response == "srgb" else real
        return lin_sharp, lin_real

    def linear_tone_map(self, values: Tensor, log_gains: Tensor | None = None) -> Tensor:
        """Linear values ``C x L`` times each of the ``G`` exposures and the white balance, saturated:
        ``G x C x L`` (the tone map in linear light, with the start curve undone)."""
        log_gains = (self.log_gain if log_gains is None else log_gains).reshape(-1)
        return (values[None] * log_gains.exp()[:, None, None] * self.log_wb.exp()[None, :, None]).clamp(0.0, 1.0)

    @property
    def wants_photo_means(self) -> bool:
        """Whether :meth:`fit_tone` fits the exposure and white balance to the photo sets' linear means
        (``fit_from="means"``: the bgan stage computes them once, with ``tone_from: photos``)."""
        return self.tone == "fit" and self.fit_from == "means"

    @property
    def wants_output_quantiles(self) -> bool:
        """Whether :meth:`fit_tone` uses the quantiles of the generator's own outputs (``fit_offset``)."""
        return self.tone == "fit" and self.fit_offset > 0

    @torch.no_grad()
    def fit_tone(self, sharp_quantiles: Tensor, real_quantiles: Tensor, fake_quantiles: Tensor | None = None,
                 clean_quantiles: Tensor | None = None, sharp_linear: Tensor | None = None,
                 real_linear: Tensor | None = None, sharp_means: Tensor | None = None,
                 real_means: Tensor | None = None) -> None:
        """Set the exposure gain (and with ``fit_curve`` the response curve) from brightness
        quantiles (``tone="fit"``; otherwise nothing happens).

        ``sharp_quantiles`` and ``real_quantiles`` are ``C x levels`` quantiles of pooled
        values (:class:`dbgan.degradation_stats.CameraStats` keeps them). The gain is the
        one whose tone map through the *start* curve (decoding, gain, white balance,
        saturation, response) takes the sharp quantiles closest to the real ones in L1 over
        the central 80% (:func:`camera_ops.fit_log_gain`), times ``fit_strength``. Then
        ``fit_curve`` of the way from the start curve to the quantile-matching curve at that
        gain (:func:`camera_ops.quantile_response`; with a shared response, matched on the
        channels' mean quantiles). With ``fit_wb``, before all of this, the white balance is set
        to that share of the per-channel gains (less their mean) fitted the same way.

        With ``fit_offset`` and the running quantiles of the generator's outputs
        (``fake_quantiles``) and of its noiseless, unblurred tone map of the sharp photos
        (``clean_quantiles``, :meth:`tone_map` of the sharp quantiles when those outputs were
        made), the same fits applied to those two give the pipeline offset (what blur, noise,
        saturation and JPEG do to the fit); that share of it is taken off before the
        ``fit_strength`` and ``fit_wb`` shares are applied.

        With ``fit_space="linear"`` and the quantiles of the photos decoded to linear light
        (``sharp_linear``, ``real_linear``; :meth:`linear_views`), the exposure and white balance are
        fitted on those through :meth:`linear_tone_map` instead (the pipeline offset is then not used).

        With ``fit_from="means"`` the exposure and white balance come from ``sharp_means`` and
        ``real_means`` instead (``2 x C``: :func:`dbgan.degradation_stats.photo_log_means` of the two
        sets in linear light, powers 1 and 8): the log exposure is the mean over channels of the
        difference of the first rows, the white balance the centred difference of the second rows,
        times ``fit_strength`` and ``fit_wb``.
        """
        if self.tone != "fit":
            return
        ref = self.log_wb
        sample = self.tone_sample(sharp_quantiles, real_quantiles, sharp_linear, real_linear)
        offsets = None
        if self.fit_offset > 0 and fake_quantiles is not None and clean_quantiles is not None and sample[2] is None:
            offsets = (fake_quantiles.to(ref), clean_quantiles.to(ref))
        start = self.start_response().to(ref)[None].expand(self.black.shape[0], -1)
        self._set_response(start)  # the exposure is fitted through the start curve: no feedback
        if self.wants_mean_calibration and self.fit_wb == 0:
            self.log_wb.zero_()  # nothing below rewrites it: the last call's correction must not pile up
        if self.wants_photo_means:
            if sharp_means is None or real_means is None:
                raise ValueError("camera_blur fit_from='means' needs the photo sets' linear means: set stages.bgan.tone_from: photos")
            diff = real_means.to(ref) - sharp_means.to(ref)
            if self.fit_wb > 0:
                self.log_wb.copy_(self.fit_wb * (diff[1] - diff[1].mean()))
            self.log_gain.copy_(self.fit_strength * diff[0].mean())
        else:
            if self.fit_wb > 0:
                self.log_wb.copy_(self.fit_wb * self.wb_estimate(sample, offsets))
            self.log_gain.copy_(self.fit_strength * self.gain_estimate(sample, False, offsets))
        if self.fit_curve > 0:
            fitted = self.curve_estimate(sample, start)
            self._set_response(start + self.fit_curve * (fitted - start))
        if self.wants_curve_calibration:  # calibrate_curve's correction, on the curve fitted just now
            self.fit_response.copy_(self.response_values()[: self.black.shape[0]])
            self._set_response(ops.shifted_curve(self.fit_response, self.fit_curve_offset * self.curve_cal))
        if self.wants_mean_calibration:  # the last correction (calibrate_means), after the curve
            self._shift_gains(self.mean_cal)

    @property
    def wants_mean_calibration(self) -> bool:
        """Whether the bgan stage should run :meth:`calibrate_means` (``fit_means`` > 0)."""
        return self.tone == "fit" and self.fit_means > 0

    @property
    def wants_curve_calibration(self) -> bool:
        """Whether the bgan stage should run :meth:`calibrate_curve` (``fit_curve_offset`` > 0)."""
        return self.tone == "fit" and self.fit_curve_offset > 0

    @torch.no_grad()
    def calibrate_curve(self, sample: Tensor, noise: Tensor, steps: int = 3, levels: int = 64) -> Tensor:
        """Move ``curve_cal`` so that the generator's own outputs of ``sample`` (``N x C x H x W`` sharp crops,
        with the fixed ``noise``), pooled as the tone fit's quantiles are, have the ``levels`` quantiles of
        the fitted curve's noiseless tone map of the same crops; then apply ``fit_curve_offset`` of it.

        Each of the ``steps`` passes measures the outputs' quantiles less that target, reads the error at
        the curve's knots (interpolated at the crops' quantiles after exposure and white balance, held
        outside them; averaged over the channels for a shared curve) and takes it off the knots. The
        sample's scenes cancel: both sides of the difference are the same crops. Returns the error left
        (``C x levels``, before the share). Call it right after :meth:`fit_tone`.
        """
        ref = self.log_wb
        sample, noise = sample.to(ref), noise.to(ref)
        q = tone_quantiles(sample, levels)
        lin = ops.srgb_to_linear(q) if self.input_encoding == "srgb" else q
        x = (lin * (self.log_gain + self.log_wb[:, None]).exp()).clamp(0.0, 1.0)  # the curve's inputs, C x L
        fitted = self.fit_response.expand(self.in_channels, -1)
        target = ops.monotone_curve(x[None, ..., None], fitted)[0, ..., 0]
        knots = ops.knot_positions(self.knots).to(ref)
        self._set_response(ops.shifted_curve(self.fit_response, self.curve_cal))
        for _ in range(steps):
            err = tone_quantiles(self(sample, noise), levels) - target
            delta = torch.stack([interp_monotone(knots, x[ch], err[ch]) for ch in range(self.in_channels)])
            self.curve_cal.sub_(delta.mean(0, keepdim=True) if self.shared_response else delta)
            self._set_response(ops.shifted_curve(self.fit_response, self.curve_cal))
        err = tone_quantiles(self(sample, noise), levels) - target
        self._set_response(ops.shifted_curve(self.fit_response, self.fit_curve_offset * self.curve_cal))
        return err

    def _shift_gains(self, delta: Tensor) -> None:
        """Add per-channel log gains ``delta`` (``C``): their mean to the exposure, the rest to the white balance."""
        self.log_gain.add_(delta.mean())
        self.log_wb.add_(delta - delta.mean())

    def predicted_means(self, sample: Tensor, noise: Tensor, sharp_quantiles: Tensor) -> Tensor:
        """``C``: the mean brightness of the generator's outputs over the whole sharp photo set.

        The noiseless tone map's mean over the set's pooled quantiles (exact), plus the pipeline's offset
        (blur, noise, saturation, JPEG) measured on ``sample`` (``N x C x H x W`` sharp crops, with the
        fixed ``noise``): its outputs' mean less its tone map's mean of the same crops, pooled as the
        quantiles are. The offset is a difference on one sample, so the sample's own scenes cancel.
        """
        out = self(sample, noise).float().mean((0, 2, 3))
        pooled = F.avg_pool2d(sample.float(), TONE_POOL).transpose(0, 1).flatten(1)
        clean = self.tone_map(pooled)[0].mean(1)
        return self.tone_map(sharp_quantiles)[0].mean(1) + out - clean

    def anchor_means(self, sample: Tensor, noise: Tensor, sharp_quantiles: Tensor) -> Tensor:
        """``C``: where ``fit_means`` below 1 blends from. ``means_anchor="start"``: the start camera's
        :meth:`predicted_means` (no exposure, neutral white balance, the start curve). ``"fit"``: the closed-form
        fit's own noiseless prediction, the mean of its tone map of the sharp quantiles (so a small share only
        removes what blur, noise, saturation and JPEG add to the fit, and keeps its shrinkage)."""
        if self.means_anchor == "fit":
            self._shift_gains(-self.mean_cal)
            anchor = self.tone_map(sharp_quantiles)[0].mean(1)
            self._shift_gains(self.mean_cal)
            return anchor
        keep = [t.clone() for t in (self.log_gain, self.log_wb, self.black, self.raw_steps)]
        self.log_gain.zero_()
        self.log_wb.zero_()
        self._set_response(self.start_response().to(self.log_wb)[None].expand(self.black.shape[0], -1))
        anchor = self.predicted_means(sample, noise, sharp_quantiles)
        for t, v in zip((self.log_gain, self.log_wb, self.black, self.raw_steps), keep):
            t.copy_(v)
        return anchor

    @torch.no_grad()
    def calibrate_means(self, sample: Tensor, noise: Tensor, sharp_quantiles: Tensor, real_quantiles: Tensor,
                        steps: int = 3, probe: float = 0.05) -> Tensor:
        """Move ``mean_cal`` (and the gains it is added to) so that :meth:`predicted_means` is
        ``fit_means`` of the way (geometrically, per channel) from :meth:`anchor_means` to the real
        photos' means (the mean of their ``C x levels`` quantiles), by ``steps`` Newton steps with a slope
        from a ``probe`` log-gain difference; returns the remaining per-channel error.

        Call it right after :meth:`fit_tone` (which adds ``mean_cal`` to the fitted gains).
        """
        ref = self.log_wb
        sample, noise = sample.to(ref), noise.to(ref)
        qs, target = sharp_quantiles.to(ref), real_quantiles.to(ref).mean(1)
        if self.fit_means < 1:
            anchor = self.anchor_means(sample, noise, qs)
            target = (anchor.clamp_min(1e-4).log() * (1 - self.fit_means)
                      + target.clamp_min(1e-4).log() * self.fit_means).exp()
        for _ in range(steps):
            err = self.predicted_means(sample, noise, qs) - target
            self._shift_gains(torch.full_like(err, probe))
            slope = ((self.predicted_means(sample, noise, qs) - target - err) / probe).clamp_min(1e-3)
            step = (-err / slope - probe).clamp(-0.5 - probe, 0.5 - probe)  # from the probed point
            self._shift_gains(step)
            self.mean_cal.add_(step + probe)
        return self.predicted_means(sample, noise, qs) - target

    def tone_sample(self, qs: Tensor, qr: Tensor, ls: Tensor | None = None, lr: Tensor | None = None) -> tuple:
        """The quantiles on the generator's device; the linear pair only where ``fit_space="linear"`` uses it."""
        ref = self.log_wb
        linear = self.fit_space == "linear" and ls is not None and lr is not None
        return qs.to(ref), qr.to(ref), ls.to(ref) if linear else None, lr.to(ref) if linear else None

    def gain_estimate(self, sample: tuple, per_channel: bool, offsets: tuple | None = None) -> Tensor:
        """The log gain(s) of the fit of ``sample`` (see :meth:`fit_tone`), less ``fit_offset`` of the
        pipeline offset measured on ``offsets`` (fake and clean quantiles)."""
        qs, qr, ls, lr = sample
        if ls is not None:
            return ops.fit_log_gain(self.linear_tone_map, ls, lr, per_channel=per_channel)
        gain = ops.fit_log_gain(self.tone_map, qs, qr, per_channel=per_channel)
        if offsets is not None:
            fake, clean = (ops.fit_log_gain(self.tone_map, qs, q, per_channel=per_channel) for q in offsets)
            gain = gain - self.fit_offset * (fake - clean)
        return gain

    def wb_estimate(self, sample: tuple, offsets: tuple | None = None) -> Tensor:
        """The whole fitted log white balance (per-channel gains less their mean), from a neutral one."""
        keep = self.log_wb.clone()
        self.log_wb.zero_()
        per = self.gain_estimate(sample, True, offsets)
        self.log_wb.copy_(keep)
        return per - per.mean()

    def curve_estimate(self, sample: tuple, start: Tensor) -> Tensor:
        """The knot values of the whole quantile-matching curve at the current exposure and white balance."""
        qs, qr = sample[0], sample[1]
        lin = ops.srgb_to_linear(qs) if self.input_encoding == "srgb" else qs
        lin = (lin * (self.log_gain + self.log_wb[:, None]).exp()).clamp(0.0, 1.0)
        if self.shared_response:
            lin, qr = lin.mean(0, keepdim=True), qr.mean(0, keepdim=True)
        return ops.quantile_response(lin, qr, start)

    def _set_response(self, values: Tensor) -> None:
        """Write knot values (``black.shape[0] x (knots + 1)``, non-decreasing) into ``black`` and ``raw_steps``."""
        self.black.copy_(values[:, 0])
        self.raw_steps.copy_(ops.inverse_softplus(values.diff(dim=1).clamp_min(1e-6)))

    def tone_map(self, values: Tensor, log_gains: Tensor | None = None) -> Tensor:
        """What flat patches of sharp-photo ``values`` (``C x L``) become: ``G x C x L``.

        Decoding, the exposure (each of the ``G`` ``log_gains``; default: the learnt one), the
        white balance, saturation and the response curve; no blur, no noise.
        """
        log_gains = (self.log_gain if log_gains is None else log_gains).reshape(-1)
        lin = ops.srgb_to_linear(values) if self.input_encoding == "srgb" else values
        scaled = lin[None] * log_gains.exp()[:, None, None] * self.log_wb.exp()[None, :, None]
        return self.response(scaled.clamp(0.0, 1.0)[..., None])[..., 0]
