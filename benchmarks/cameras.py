"""Stand-in cameras for the domain-gap benchmark, written independently of ``dbgan.blur``.

Nothing here imports dbgan: kernels, noise, tone curves, demosaicing and JPEG are this
file's own code (numpy, scipy, OpenCV, Pillow), so a blur generator in dbgan cannot
win by sharing the evaluation's forward model (issue 15, part 1).

Each :class:`Camera` turns a sharp photo (``H x W x 3`` float in ``[0, 1]``, display
values) into what that camera would have recorded of the same scene, with its own
blur, exposure, white balance, noise, response curve, saturation, ISP and JPEG:

1. scene radiance: the sRGB decode of the photo (``decode="srgb"``), or the photo
   itself for data that are already linear (``decode="identity"``, the microscope);
   the grey camera first takes the BT.601 luma;
2. exposure and white balance gains, in linear light;
3. blur in linear light: a camera-shake trajectory with inertia (own random walk),
   a defocus disc, or spatially varying blur from a small camera rotation;
4. sensor clipping at full well (saturated highlights);
5. Poisson-Gaussian noise (shot + read) in linear light, on some cameras sampled on a
   Bayer mosaic and bilinearly demosaiced, or smoothed by a denoiser (correlated noise);
6. the camera's response curve (piecewise sRGB, S-shaped filmic, log, limited-range
   video levels, or linear with a black-level offset);
7. ISP sharpening (the phone), 8-bit quantisation and JPEG at the camera's quality.

``camera.degrade(sharp, rng)`` is deterministic given ``rng`` (a ``numpy.random.Generator``).
``camera.ground_truth(sharp)`` is the sharp reference the camera's output is scored
against (the photo itself; its luma, repeated to 3 channels, for the grey camera).
``camera.truth()`` gives the values a learnt camera model can be compared with.

``VALIDATION_CAMERAS`` names the cameras whose data may be used to choose settings
(``VALIDATION``, the first, also tunes the classical baseline); the others are
``TEST`` cameras and are only reported on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: BT.601 luma weights (on the display values)
LUMA = (0.299, 0.587, 0.114)
#: inputs at which ``truth()["response"]`` samples the response curve
RESPONSE_POINTS = tuple(round(0.1 * i, 1) for i in range(11))
#: side of the shake kernels' support (odd)
KERNEL_SIDE = 41


# --------------------------------------------------------------------------- tone


def srgb_decode(x: np.ndarray) -> np.ndarray:
    """sRGB display values -> linear light (IEC 61966-2-1)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB display values (the piecewise curve: linear toe, 1/2.4 power)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def filmic(x: np.ndarray, contrast: float = 1.7) -> np.ndarray:
    """An S-shaped (filmic) curve: sRGB encode, then a symmetric sigmoid-like contrast curve
    ``y**a / (y**a + (1-y)**a)`` that keeps 0, 0.5 and 1 fixed, crushes shadows and rolls off highlights."""
    y = srgb_encode(x)
    ya, yb = np.power(y, contrast), np.power(1.0 - y, contrast)
    return ya / np.maximum(ya + yb, 1e-12)


def log_curve(x: np.ndarray, k: float = 10.0) -> np.ndarray:
    """A flat 'log' profile of action cameras: ``log(1 + k x) / log(1 + k)``."""
    return np.log1p(k * np.clip(x, 0.0, 1.0)) / np.log1p(k)


def power_curve(x: np.ndarray, gamma: float = 2.0) -> np.ndarray:
    """A plain power law ``x ** (1 / gamma)``."""
    return np.power(np.clip(x, 0.0, 1.0), 1.0 / gamma)


def linear_black(x: np.ndarray, black: float = 0.06) -> np.ndarray:
    """A linear sensor with a black-level offset (raw data, microscopy): ``black + (1 - black) x``."""
    return black + (1.0 - black) * np.clip(x, 0.0, 1.0)


def video_range(x: np.ndarray, gamma: float = 2.2) -> np.ndarray:
    """Limited-range video levels (webcams, capture cards): ``x ** (1 / gamma)`` squeezed into 16-235 of 255."""
    return (16.0 + 219.0 * np.power(np.clip(x, 0.0, 1.0), 1.0 / gamma)) / 255.0


# --------------------------------------------------------------------------- kernels


def _splat(points: np.ndarray, side: int) -> np.ndarray:
    """Bilinear splatting of ``N x 2`` (row, col) points, centred on their mean, into a ``side x side`` kernel."""
    k = np.zeros((side, side), np.float64)
    c = (side - 1) / 2
    p = points - points.mean(axis=0) + c
    p = np.clip(p, 0, side - 1 - 1e-6)
    r0, c0 = np.floor(p[:, 0]).astype(int), np.floor(p[:, 1]).astype(int)
    fr, fc = p[:, 0] - r0, p[:, 1] - c0
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        np.add.at(k, (np.minimum(r0 + dr, side - 1), np.minimum(c0 + dc, side - 1)), w)
    return k / k.sum()


def shake_trajectory(rng: np.random.Generator, length: float, steps: int = 256, inertia: float = 0.92) -> np.ndarray:
    """A camera-shake path (``steps x 2``, pixels) with inertia, scaled to ``length`` pixels of extent.

    A random walk on the *velocity*: each step keeps ``inertia`` of the previous velocity
    and adds a random acceleration, with an occasional jerk (a larger kick), as a hand
    holding a camera does. The path is then scaled so that its largest pairwise point
    distance (its extent) is ``length``.
    """
    from scipy.signal import lfilter

    acc = rng.normal(size=(steps, 2)) * (1.0 - inertia)
    jerks = rng.random(steps) < 0.02
    acc[jerks] += rng.normal(size=(int(jerks.sum()), 2)) * 1.5
    acc[0] = rng.normal(size=2)  # the initial velocity
    v = lfilter([1.0], [1.0, -inertia], acc, axis=0)  # v_t = inertia * v_(t-1) + acc_t
    pos = np.cumsum(v, axis=0)
    pos -= pos.mean(axis=0)
    ext = _extent(pos)
    return pos * (length / ext) if ext > 0 else pos


def _extent(points: np.ndarray) -> float:
    """Largest distance between two of the points."""
    d = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def shake_kernel(rng: np.random.Generator, length: float, side: int = KERNEL_SIDE) -> np.ndarray:
    """A normalised camera-shake kernel of extent about ``length`` px (``side x side``)."""
    length = min(float(length), side - 3.0)
    traj = shake_trajectory(rng, length)
    k = _splat(traj, side)
    return k


def disc_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """A defocus disc of ``radius`` px, anti-aliased by supersampling, normalised."""
    half = int(np.ceil(radius)) + 1
    n = (2 * half + 1) * supersample
    ax = (np.arange(n) + 0.5) / supersample - (half + 0.5)
    inside = (ax[:, None] ** 2 + ax[None, :] ** 2) <= radius**2
    k = inside.reshape(2 * half + 1, supersample, 2 * half + 1, supersample).mean(axis=(1, 3))
    return k / k.sum()


def kernel_length(k: np.ndarray, rel: float = 0.02) -> float:
    """Extent of a kernel in px: the largest distance between two taps above ``rel`` of the largest, plus 1."""
    idx = np.argwhere(k > rel * k.max()).astype(np.float64)
    if len(idx) < 2:
        return 1.0
    if len(idx) > 400:  # the extent is set by the hull; subsample evenly for speed
        idx = idx[np.linspace(0, len(idx) - 1, 400).astype(int)]
    return _extent(idx) + 1.0


def kernel_rms_radius(k: np.ndarray) -> float:
    """RMS distance of a kernel's mass from its centroid, in px (a straight line of length L: L / sqrt(12))."""
    k = np.asarray(k, np.float64) / k.sum()
    ys, xs = np.mgrid[: k.shape[0], : k.shape[1]]
    cy, cx = (k * ys).sum(), (k * xs).sum()
    return float(np.sqrt((k * ((ys - cy) ** 2 + (xs - cx) ** 2)).sum()))


def convolve(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``H x W x C`` image convolved per channel with kernel ``k`` (reflected borders, same size)."""
    import cv2

    pad = k.shape[0] // 2
    out = np.empty_like(img)
    kk = np.ascontiguousarray(k[::-1, ::-1], dtype=np.float32)  # cv2.filter2D correlates
    for c in range(img.shape[2]):
        p = cv2.copyMakeBorder(np.ascontiguousarray(img[..., c], np.float32), pad, pad, pad, pad, cv2.BORDER_REFLECT)
        out[..., c] = cv2.filter2D(p, -1, kk, borderType=cv2.BORDER_REFLECT)[pad:-pad, pad:-pad] if pad else cv2.filter2D(p, -1, kk)
    return out


def rotation_blur(img: np.ndarray, rng: np.random.Generator, max_deg: float, max_shift: float, samples: int = 17) -> tuple[np.ndarray, dict]:
    """Spatially varying blur from a small camera rotation during the exposure.

    The camera turns by up to ``max_deg`` degrees about a random point near the image
    centre while drifting by up to ``max_shift`` px; the image is the average of the
    warped frames along that smooth path (each pixel's blur grows with its distance
    from the rotation centre).
    """
    import cv2

    h, w = img.shape[:2]
    angle = rng.uniform(0.3, 1.0) * max_deg * rng.choice([-1.0, 1.0])
    shift = rng.normal(size=2)
    shift = shift / (np.linalg.norm(shift) + 1e-12) * rng.uniform(0.0, max_shift)
    centre = (w / 2 + rng.uniform(-0.2, 0.2) * w, h / 2 + rng.uniform(-0.2, 0.2) * h)
    ts = np.linspace(-0.5, 0.5, samples)
    # a smooth (quadratic) path, not a straight one
    bend = rng.uniform(-0.5, 0.5)
    acc = np.zeros_like(img, dtype=np.float32)
    for t in ts:
        a = angle * (t + bend * (t * t - 1 / 12))
        m = cv2.getRotationMatrix2D(centre, float(a), 1.0)
        m[:, 2] += shift * t
        for c in range(img.shape[2]):
            acc[..., c] += cv2.warpAffine(np.ascontiguousarray(img[..., c], np.float32), m, (w, h),
                                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot(xx - centre[0], yy - centre[1])
    lengths = np.abs(np.deg2rad(angle)) * dist + np.linalg.norm(shift)
    return acc / samples, {"length_mean": float(lengths.mean()), "length_max": float(lengths.max())}


# --------------------------------------------------------------------------- sensor


def poisson_gaussian(x: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """Shot noise (Poisson with ``x / shot`` photons, scaled back: variance ``shot * x``) plus Gaussian read noise."""
    if shot > 0:
        x = rng.poisson(np.clip(x, 0, None) / shot).astype(np.float64) * shot
    if read > 0:
        x = x + rng.normal(0.0, read, size=x.shape)
    return x


BAYER = np.array([[0, 1], [1, 2]])  # RGGB: channel index per 2x2 site


def mosaic_noise_demosaic(x: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """Sample ``x`` (``H x W x 3`` linear) on an RGGB Bayer mosaic, add noise per photosite, demosaic bilinearly."""
    from scipy.ndimage import convolve as nd_convolve

    h, w, _ = x.shape
    ch = BAYER[np.arange(h)[:, None] % 2, np.arange(w)[None, :] % 2]
    raw = np.take_along_axis(x, ch[..., None], axis=2)[..., 0]
    raw = poisson_gaussian(raw, rng, shot, read)
    out = np.empty_like(x)
    k_rb = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    k_g = np.array([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]])
    for c, k in ((0, k_rb), (1, k_g), (2, k_rb)):
        m = (ch == c).astype(np.float64)
        out[..., c] = nd_convolve(raw * m, k, mode="mirror") / np.maximum(nd_convolve(m, k, mode="mirror"), 1e-12)
    return out


def denoise(x: np.ndarray, sigma: float) -> np.ndarray:
    """The camera's denoiser: a small Gaussian smoothing per channel (leaves spatially correlated noise)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect")


def sharpen(x: np.ndarray, radius: float, amount: float) -> np.ndarray:
    """ISP sharpening (unsharp mask on display values)."""
    from scipy.ndimage import gaussian_filter

    return x + amount * (x - gaussian_filter(x, sigma=(radius, radius, 0), mode="reflect"))


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    """Round trip through Pillow's JPEG encoder at ``quality`` (4:2:0 chroma for colour)."""
    from PIL import Image

    u8 = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    grey = x.shape[2] == 1 or (np.array_equal(u8[..., 0], u8[..., 1]) and np.array_equal(u8[..., 1], u8[..., 2]))
    im = Image.fromarray(u8[..., 0] if grey else u8, "L" if grey else "RGB")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = np.asarray(Image.open(buf).convert("L" if grey else "RGB"), dtype=np.float64) / 255.0
    return np.repeat(out[..., None], x.shape[2], axis=2) if grey else out


# --------------------------------------------------------------------------- cameras


RESPONSES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "srgb": srgb_encode,
    "filmic": filmic,
    "log": log_curve,
    "power2": power_curve,
    "linear_black": linear_black,
    "video_range": video_range,
}


@dataclass(frozen=True)
class Camera:
    """One stand-in camera (see the module docstring for the order of the steps)."""

    name: str
    description: str
    response: str  # key of RESPONSES
    decode: str = "srgb"  # how the sharp photo becomes scene radiance: srgb | identity
    grey: bool = False
    exposure: float = 1.0  # linear gain
    wb: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel linear gains (R, G, B)
    blur: str = "shake"  # shake | defocus | rotation
    shake_length: tuple[float, float] = (5.0, 21.0)  # extent in px
    defocus_radius: tuple[float, float] = (1.5, 4.0)
    rotation_deg: float = 1.5
    rotation_shift: float = 4.0
    optics_sigma: float = 0.5  # the lens' own small Gaussian blur (px) on top
    shot: tuple[float, float] = (0.0005, 0.002)  # Poisson gain range (variance = shot * x)
    read: tuple[float, float] = (0.001, 0.004)  # Gaussian read noise std range (linear)
    bayer: bool = False
    denoise_sigma: float = 0.0
    sharpen: tuple[float, float] = (0.0, 0.0)  # (radius, amount)
    jpeg_quality: tuple[int, int] | None = (85, 95)
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ pieces

    def curve(self, x: np.ndarray) -> np.ndarray:
        return RESPONSES[self.response](np.asarray(x, np.float64))

    def ground_truth(self, sharp: np.ndarray) -> np.ndarray:
        """The sharp reference for this camera's output: the photo, or its luma repeated to 3 channels (grey camera)."""
        sharp = np.asarray(sharp, np.float64)
        if not self.grey:
            return sharp
        y = sharp[..., :3] @ np.asarray(LUMA) if sharp.shape[2] >= 3 else sharp[..., 0]
        return np.repeat(y[..., None], 3, axis=2)

    def _scene(self, sharp: np.ndarray) -> np.ndarray:
        x = self.ground_truth(sharp)[..., :1] if self.grey else np.asarray(sharp, np.float64)[..., :3]
        return srgb_decode(x) if self.decode == "srgb" else np.clip(x, 0.0, 1.0)

    def draw_kernel(self, rng: np.random.Generator) -> np.ndarray:
        """One blur kernel of this camera (shake or defocus), including the lens' Gaussian."""
        if self.blur == "shake":
            k = shake_kernel(rng, rng.uniform(*self.shake_length))
        elif self.blur == "defocus":
            k = disc_kernel(rng.uniform(*self.defocus_radius))
        else:
            raise ValueError(f"{self.name}: a {self.blur} camera has no single kernel")
        if self.optics_sigma > 0:
            from scipy.ndimage import gaussian_filter

            k = np.pad(k, 2)
            k = gaussian_filter(k, self.optics_sigma, mode="constant")
            k = k / k.sum()
        return k

    def degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The camera's photo of the scene in ``sharp`` (``H x W x 3`` in [0, 1]); ``H x W x 3`` float in [0, 1]."""
        sharp = np.asarray(sharp, np.float64)
        if sharp.ndim != 3 or sharp.shape[2] < 1:
            raise ValueError(f"{self.name}: expected an H x W x C image, got shape {sharp.shape}")
        lin = self._scene(sharp)
        gains = np.asarray(self.wb[:1] if self.grey else self.wb, np.float64) * self.exposure
        lin = lin * gains
        if self.blur == "rotation":
            lin, _ = rotation_blur(lin, rng, self.rotation_deg, self.rotation_shift)
            lin = lin.astype(np.float64)
            if self.optics_sigma > 0:
                from scipy.ndimage import gaussian_filter

                lin = gaussian_filter(lin, (self.optics_sigma, self.optics_sigma, 0), mode="reflect")
        else:
            lin = convolve(lin.astype(np.float32), self.draw_kernel(rng)).astype(np.float64)
        lin = np.clip(lin, 0.0, 1.0)  # full well: saturated highlights
        shot, read = rng.uniform(*self.shot), rng.uniform(*self.read)
        if self.bayer and not self.grey:
            lin = mosaic_noise_demosaic(lin, rng, shot, read)
        else:
            lin = poisson_gaussian(lin, rng, shot, read)
        if self.denoise_sigma > 0:
            lin = denoise(lin, self.denoise_sigma)
        out = self.curve(np.clip(lin, 0.0, 1.0))
        if self.sharpen[1] > 0:
            out = sharpen(out, *self.sharpen)
        out = np.clip(out, 0.0, 1.0)
        if self.grey:
            out = np.repeat(out, 3, axis=2)
        if self.jpeg_quality is not None:
            out = jpeg(out, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        else:
            out = np.round(out * 255) / 255
        return out.astype(np.float32)

    # ------------------------------------------------------------------ truth

    def truth(self) -> dict:
        """The values a learnt camera model can be compared with (deterministic).

        ``response``: the curve at ``RESPONSE_POINTS`` (one list per channel; linear
        scene value -> recorded value), ``decode``: how the sharp photos map to scene
        radiance (``srgb`` or ``identity``), ``exposure``, ``wb``, ``shot_noise`` and
        ``read_noise`` (ranges, linear light), ``kernel_length_px`` (mean and percentiles
        of the kernels' extent, from 100 draws; rotation: over the pixels of a 256 px image),
        ``kernel_rms_radius_px`` (the same for the kernels' RMS radius about their centroid, which
        a learnt camera reports too; ``None`` for rotation blur, which has no single kernel). A
        curled path can be long and compact at once: the RMS radius is the blur's size.
        """
        pts = np.asarray(RESPONSE_POINTS)
        curve = [round(float(v), 4) for v in self.curve(pts)]
        rng = np.random.default_rng(12345)
        radii = None
        if self.blur == "rotation":
            lengths = []
            for _ in range(20):
                _, info = rotation_blur(np.zeros((64, 64, 1), np.float32), rng, self.rotation_deg, self.rotation_shift, samples=2)
                lengths.append(info["length_mean"] * 4)  # the 64 px probe scaled to a 256 px image
            lengths = np.asarray(lengths)
        else:
            kernels = [self.draw_kernel(rng) for _ in range(100)]
            lengths = np.asarray([kernel_length(k) for k in kernels])
            radii = np.asarray([kernel_rms_radius(k) for k in kernels])

        def spread(v: np.ndarray) -> dict:
            return {"mean": round(float(v.mean()), 2), **{f"p{q}": round(float(np.percentile(v, q)), 2) for q in (10, 50, 90)}}
        return {
            "camera": self.name,
            "response_points": list(RESPONSE_POINTS),
            "response": [curve] * (1 if self.grey else 3),
            "response_kind": self.response,
            "decode": self.decode,
            "grey": self.grey,
            "exposure": self.exposure,
            "wb": list(self.wb[:1] if self.grey else self.wb),
            "shot_noise": list(self.shot),
            "read_noise": list(self.read),
            "blur": self.blur,
            "kernel_length_px": spread(lengths),
            "kernel_rms_radius_px": None if radii is None else spread(radii),
            "saturation": "clip at full well (1.0 linear, after exposure)",
            "bayer_demosaic": self.bayer and not self.grey,
            "denoise_sigma": self.denoise_sigma,
            "sharpen": list(self.sharpen),
            "jpeg_quality": list(self.jpeg_quality) if self.jpeg_quality else None,
        }

    def expected_flat(self, value: float) -> np.ndarray:
        """Per-channel output of a noiseless, flat scene of display value ``value`` (exposure, white balance, response)."""
        x = np.full((1, 1, 3), float(value))
        lin = self._scene(x)[0, 0]
        gains = np.asarray(self.wb[:1] if self.grey else self.wb) * self.exposure
        return self.curve(np.clip(lin * gains, 0, 1))


CAMERAS: dict[str, Camera] = {c.name: c for c in (
    Camera(
        "compact", "compact camera: sRGB response, slight over-exposure, warm white balance, hand shake up to 21 px, "
        "Poisson-Gaussian noise, JPEG 85-95 (the VALIDATION camera)",
        response="srgb", exposure=1.15, wb=(1.06, 1.0, 0.92), blur="shake", shake_length=(5, 21),
        shot=(0.0005, 0.0015), read=(0.001, 0.003), jpeg_quality=(85, 95)),
    Camera(
        "soft_lens", "travel zoom focused on the wrong plane: sRGB response, under-exposed by 1/4 stop, slightly cool "
        "white balance, defocus discs of radius 1-5 px on a soft lens (Gaussian 0.7 px), Poisson-Gaussian noise, "
        "JPEG 80-95 (the second VALIDATION camera: a defocus one, since compact only shakes)",
        response="srgb", exposure=0.85, wb=(0.97, 1.0, 1.05), blur="defocus", defocus_radius=(1.0, 5.0),
        optics_sigma=0.7, shot=(0.0004, 0.0012), read=(0.001, 0.003), jpeg_quality=(80, 95)),
    Camera(
        "dslr_shake", "DSLR, long hand-held exposure: sRGB response, under-exposed by half a stop, cool white balance, "
        "camera-shake trajectories with inertia of 11-41 px, low noise, JPEG 90-97",
        response="srgb", exposure=0.7, wb=(0.93, 1.0, 1.08), blur="shake", shake_length=(11, 41),
        shot=(0.0002, 0.0008), read=(0.0005, 0.002), jpeg_quality=(90, 97)),
    Camera(
        "filmic_defocus", "mirrorless with a filmic (S-shaped) picture style, misfocused: defocus discs of radius 2-6 px, "
        "over-exposed by 1/3 stop with saturated highlights, warm white balance, moderate noise, JPEG 75-90",
        response="filmic", exposure=1.3, wb=(1.1, 1.0, 0.88), blur="defocus", defocus_radius=(2.0, 6.0),
        shot=(0.0008, 0.002), read=(0.001, 0.004), jpeg_quality=(75, 90)),
    Camera(
        "phone", "phone: spatially varying blur from a camera rotation (up to 2 degrees + 5 px drift), noise on a Bayer "
        "mosaic with bilinear demosaicing (correlated, coloured), power-law 1/2.0 response, ISP sharpening, JPEG 70-85",
        response="power2", exposure=1.0, wb=(1.0, 1.0, 1.0), blur="rotation", rotation_deg=2.0, rotation_shift=5.0,
        shot=(0.001, 0.003), read=(0.002, 0.006), bayer=True, sharpen=(1.0, 0.8), jpeg_quality=(70, 85)),
    Camera(
        "microscope_grey", "grey-scale microscope / medical sensor: linear data (no sRGB), linear response with a "
        "black-level offset of 0.06, defocus discs of radius 1.5-4 px, Poisson-Gaussian noise, lossless (PNG)",
        response="linear_black", decode="identity", grey=True, exposure=0.9, wb=(1.0, 1.0, 1.0), blur="defocus",
        defocus_radius=(1.5, 4.0), optics_sigma=0.8, shot=(0.0005, 0.002), read=(0.002, 0.005), jpeg_quality=None),
    Camera(
        "action_night", "action camera at night: flat log profile, exposure pushed by 1/3 stop with clipped highlights, "
        "shake of 7-31 px, strong noise smoothed by the camera's denoiser (correlated), green-tinted white balance, JPEG 65-80",
        response="log", exposure=1.25, wb=(0.95, 1.05, 0.9), blur="shake", shake_length=(7, 31),
        shot=(0.002, 0.005), read=(0.004, 0.01), denoise_sigma=0.8, jpeg_quality=(65, 80)),
    Camera(
        "webcam", "webcam: limited-range video levels (16-235, power 1/2.2), over-exposed by 0.15 stop, short hand "
        "shake of 3-15 px on a soft lens (Gaussian 0.9 px), noise smoothed by a denoiser, JPEG 70-85 (the third "
        "VALIDATION camera: a response that is neither sRGB nor any test camera's)",
        response="video_range", exposure=1.1, wb=(1.02, 1.0, 0.96), blur="shake", shake_length=(3, 15),
        optics_sigma=0.9, shot=(0.0008, 0.002), read=(0.002, 0.005), denoise_sigma=0.6, jpeg_quality=(70, 85)),
)}

#: the cameras settings may be chosen on: a hand-shake one, a defocus one, and one whose response is
#: not sRGB (the tone curve's fit is chosen there; it is listed last so the others keep their data seeds)
VALIDATION_CAMERAS = ("compact", "soft_lens", "webcam")
#: the validation camera the classical baseline (Wiener) is tuned on
VALIDATION = VALIDATION_CAMERAS[0]
#: the cameras reported on (never used to choose anything)
TEST = tuple(n for n in CAMERAS if n not in VALIDATION_CAMERAS)


def get(name: str) -> Camera:
    try:
        return CAMERAS[name]
    except KeyError:
        raise ValueError(f"unknown camera {name!r}; known: {', '.join(CAMERAS)}") from None
