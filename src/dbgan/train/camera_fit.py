"""The camera statistics of the stages that train BGAN (:class:`CameraFit`, mixed into the blur stages).

They keep :class:`dbgan.degradation_stats.CameraStats` of the two photo sets, let a generator that fits its
tone in closed form (:class:`dbgan.nets.common.FitsTone`) fit it at every step, with ``tone_from: photos``
hold the statistics at those of the whole photo folders, and with ``fit_means`` or ``fit_curve_offset``
calibrate the fitted tone on a fixed sample of sharp crops (:func:`fixed_crops`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from dbgan.config import ConfigError
from dbgan.degradation_stats import CameraStats, photo_log_means, photo_quantiles
from dbgan.nets.common import FitsTone
from dbgan.tone_uncertainty import FolderToneGap, folder_tone_gap, photo_means
from dbgan.train.stage import Batch

_LOG = logging.getLogger(__name__)

#: ``fit_means`` and ``fit_curve_offset``: the sharp crops of the fixed calibration sample, and how often
#: (iterations) it is rerun
CALIBRATION_CROPS = 32
CALIBRATION_EVERY = 25


def fixed_crops(photo_at: Callable[[int], torch.Tensor], n_photos: int, count: int, size: int,
                generator: torch.Generator) -> torch.Tensor:
    """``count x C x s x s`` float crops (``fit_means``' calibration sample): crop ``j`` from photo
    ``photo_at(i)`` of ``min(n_photos, count)`` photos spread evenly over the folder, taken in turn, at a
    position drawn by ``generator``. ``s`` is ``size``, or the smallest photo side where that is less
    (the larger crops are then cut down about their centres). One photo is held at a time."""
    if n_photos < 1:
        raise ValueError("fixed_crops: no photos")
    k = min(n_photos, count)
    picks = [i * n_photos // k for i in range(k)]
    crops = []
    for j in range(count):
        img = photo_at(picks[j % k])
        s = min(size, *img.shape[-2:])
        y, x = (int(torch.randint(0, n - s + 1, (), generator=generator)) for n in img.shape[-2:])
        crops.append(img[:, y : y + s, x : x + s].clone())
    side = min(c.shape[-1] for c in crops)
    crops = [c[:, (c.shape[-2] - side) // 2 :, (c.shape[-1] - side) // 2 :][:, :side, :side] for c in crops]
    return torch.stack(crops).float()


def _calibrations(blur_g: nn.Module) -> list[str]:
    """The settings of ``blur_g`` that calibrate its fitted tone on the fixed sample (none for other generators)."""
    if not isinstance(blur_g, FitsTone):
        return []
    return [key for key, on in (("fit_means", blur_g.wants_mean_calibration),
                                ("fit_curve_offset", blur_g.wants_curve_calibration)) if on]


def _whole_images(ds):
    """Every photo of a folder dataset, whole, one at a time."""
    return (ds.whole_image(i) for i in range(ds.num_files))


class CameraFit:
    """The camera statistics of a blur stage (see the module docstring); it reads the stage's ``cfg``,
    ``scfg``, ``config_key``, ``name``, ``seed``, ``device`` and ``generators``."""

    camera_stats: CameraStats | None = None
    #: ``tone_from: photos``: how firmly the two folders pin the brightness and colour (their scenes' share)
    folder_gap: FolderToneGap | None = None

    def setup_camera_stats(self, stage_cfg, blur_g: nn.Module) -> None:
        """The statistics the stage's settings ask for (none without ``w_stats``), checked against the generator."""
        self.camera_stats = None
        if stage_cfg.w_stats > 0:  # the stages that fit a tone (bgan); blur_pretrain has no camera statistics
            for key in _calibrations(blur_g):
                if stage_cfg.tone_from != "photos":
                    raise ConfigError(f"nets.blur_g.args.{key} needs 'stages.{self.config_key}.tone_from: photos' "
                                      "(it corrects the tone fitted to the photo folders)")
            linear = isinstance(blur_g, FitsTone) and blur_g.wants_linear_quantiles
            self.camera_stats = CameraStats(linearise=blur_g.linear_views if linear else None,
                                            spectrum_max_freq=stage_cfg.spectrum_max_freq)
            if stage_cfg.tone_from == "photos":
                self.fix_photo_tone(blur_g, linear)
            elif isinstance(blur_g, FitsTone) and blur_g.wants_photo_means:
                raise ConfigError(f"nets.blur_g.args.fit_from: means needs 'stages.{self.config_key}.tone_from: photos' "
                                  "(the photo sets' linear means are computed once from whole photos)")

    def fix_photo_tone(self, blur_g: nn.Module, linear: bool) -> None:
        """``tone_from: photos``: hold the brightness quantiles at those of every photo of the two
        folders (each weighted once), in display units and, for a linear-light fit, in linear light;
        and, for a generator that fits to them (``fit_from: means``), the folders' linear means."""
        from dbgan.data.factories import make_unpaired_dataset

        data = self.cfg.data
        for key in ("sharp_dir", "real_blur_dir"):
            if not getattr(data, key):
                raise ConfigError(f"'stages.{self.config_key}.tone_from: photos' needs 'data.{key}'")
        sets = {side: make_unpaired_dataset(getattr(data, f"{side}_dir"), data, self.cfg.seed, key=side)
                for side in ("sharp", "real_blur")}
        views = {"sharp": lambda x: blur_g.linear_views(x, x)[0], "real_blur": lambda x: blur_g.linear_views(x, x)[1]}
        means: dict[str, list[torch.Tensor]] = {}
        for side, ds in sets.items():
            name = "sharp" if side == "sharp" else "real"
            _LOG.info("tone_from photos: brightness quantiles of the %d photos in %s", ds.num_files, ds.root)
            photos = photo_means(_whole_images(ds), means.setdefault(name, []))
            self.camera_stats.fix(f"tone_{name}", self._photo_quantiles(ds, images=photos))
            if linear:
                self.camera_stats.fix(f"tone_{name}_linear", self._photo_quantiles(ds, views[side]))
            if isinstance(blur_g, FitsTone) and blur_g.wants_photo_means:
                self.camera_stats.fix(f"means_{name}", photo_log_means(_whole_images(ds), transform=views[side]).to(self.device))
        self.folder_gap = folder_tone_gap(torch.stack(means["sharp"]), torch.stack(means["real"]))
        if self.folder_gap is not None:
            _LOG.info("tone_from photos: %s", self.folder_gap.summary())
        if _calibrations(blur_g):
            self.calibration_sample = self._calibration_sample(sets["sharp"], blur_g)

    def _calibration_sample(self, ds, blur_g: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """``fit_means``, ``fit_curve_offset``: :func:`fixed_crops` of the sharp photos (the training crop
        size, or less for small photos) and a fixed noise vector for each, seeded by the run."""
        gen = torch.Generator().manual_seed(self.seed * 7919 + 17)
        c = blur_g.in_channels
        sample = fixed_crops(lambda i: ds.whole_image(i)[:c], ds.num_files, CALIBRATION_CROPS, self.cfg.data.crop_size, gen)
        noise = blur_g.noise_input.sample(sample, generator=gen)
        return sample.to(self.device), noise.to(self.device)

    def _photo_quantiles(self, ds, transform=None, images=None) -> torch.Tensor:
        """The folder's brightness quantiles, weighted as the training crops see its photos (their
        centres more than their borders); ``images``: its photos, if not read here."""
        data = self.cfg.data
        crop = None if data.preprocess == "none" else data.crop_size
        photos = _whole_images(ds) if images is None else images
        return photo_quantiles(photos, transform=transform, crop=crop).to(self.device)

    def observe_camera(self, batch: Batch, it: int = 0) -> None:
        """Fold the batch into the running camera statistics, and let a generator that fits
        its tone in closed form (:class:`FitsTone`) fit it to them (before it blurs); every
        :data:`CALIBRATION_EVERY` iterations and at the stage's last one, correct the fitted curve for
        what the generator's own blur, noise and JPEG do to it (``fit_curve_offset``: ``calibrate_curve``),
        then the fit's gains so that its outputs have the real photos' mean brightness (``fit_means``:
        ``calibrate_means``)."""
        if self.camera_stats is None:
            return
        self.camera_stats.observe(batch["sharp"], batch["real_blur"])
        g_net = self.generators["blur_g"]
        if isinstance(g_net, FitsTone):
            st = self.camera_stats.stats
            g_net.fit_tone(st["tone_sharp"], st["tone_real"], st.get("tone_fake"), st.get("tone_clean"),
                           st.get("tone_sharp_linear"), st.get("tone_real_linear"), st.get("means_sharp"),
                           st.get("means_real"))
            due = it % CALIBRATION_EVERY == 0 or it == self.scfg.iters - 1
            if g_net.wants_curve_calibration and due:
                err = g_net.calibrate_curve(*self.calibration_sample)
                _LOG.debug("%s it %d: curve calibration, largest quantile error left %.4f", self.name, it,
                           float(err.abs().max()))
            if g_net.wants_mean_calibration and due:
                err = g_net.calibrate_means(*self.calibration_sample, st["tone_sharp"], st["tone_real"])
                _LOG.debug("%s it %d: mean calibration %s, error left %s", self.name, it,
                           g_net.mean_cal.tolist(), err.tolist())

    def observe_outputs(self, fake: torch.Tensor) -> None:
        """For a generator whose tone fit removes its own pipeline offset (``fit_offset``): fold the
        generated batch's quantiles, and its noiseless tone map's, into the running statistics."""
        g_net = self.generators["blur_g"]
        if self.camera_stats is None or not (isinstance(g_net, FitsTone) and g_net.wants_output_quantiles):
            return
        with torch.no_grad():
            clean = g_net.tone_map(self.camera_stats.stats["tone_sharp"])[0]
        self.camera_stats.observe_outputs(fake.detach(), clean)

    def statistics(self, fake: torch.Tensor, batch: Batch, logs: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """``w_stats`` x the camera statistics distances of ``fake`` to the real photos (bgan)."""
        if self.camera_stats is None:
            return 0.0
        terms = self.camera_stats.loss(fake, batch["sharp"])
        total = fake.new_zeros((), dtype=torch.float32)
        for (key, value), weight in zip(terms.items(), self.scfg.stats_balance):
            logs[f"stats_{key}"] = value
            total = total + weight * value
        return self.scfg.w_stats * total

