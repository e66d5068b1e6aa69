"""benchmarks/cameras.py: the stand-in cameras of the domain-gap benchmark (independent of dbgan.blur)."""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import cameras as C  # noqa: E402


def _scene(seed: int = 0, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    from scipy.ndimage import zoom

    return np.clip(zoom(rng.random((8, 8, 3)), (size / 8, size / 8, 1), order=1), 0, 1)


def test_suite_shape():
    assert len(C.CAMERAS) >= 6 and C.VALIDATION in C.CAMERAS
    assert C.VALIDATION == C.VALIDATION_CAMERAS[0] and set(C.VALIDATION_CAMERAS) <= set(C.CAMERAS)
    assert not set(C.VALIDATION_CAMERAS) & set(C.TEST) and len(C.TEST) >= 5
    # settings are chosen on both blur kinds a test camera has in a single kernel: shake and defocus
    assert {C.get(n).blur for n in C.VALIDATION_CAMERAS} == {"shake", "defocus"}
    assert sum(c.grey for c in C.CAMERAS.values()) == 1
    assert {c.response for c in C.CAMERAS.values()} >= {"srgb", "filmic", "linear_black"}
    assert {c.blur for c in C.CAMERAS.values()} == {"shake", "defocus", "rotation"}
    with pytest.raises(ValueError, match="unknown camera"):
        C.get("nope")


def test_independent_of_dbgan():
    tree = ast.parse((BENCH / "cameras.py").read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.startswith("dbgan") for m in mods)


@pytest.mark.parametrize("name", list(C.CAMERAS))
def test_degrade_deterministic_in_range(name):
    cam = C.CAMERAS[name]
    x = _scene()
    a = cam.degrade(x, np.random.default_rng(5))
    b = cam.degrade(x, np.random.default_rng(5))
    c = cam.degrade(x, np.random.default_rng(6))
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert np.abs(a - cam.ground_truth(x)).mean() > 0.005  # it does degrade


def test_grey_camera_is_grey():
    cam = next(c for c in C.CAMERAS.values() if c.grey)
    out = cam.degrade(_scene(), np.random.default_rng(0))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    gt = cam.ground_truth(_scene())
    assert np.array_equal(gt[..., 0], gt[..., 2])


@pytest.mark.parametrize("name", list(C.CAMERAS))
def test_flat_mean_follows_exposure_wb_and_response(name):
    cam = C.CAMERAS[name]
    flat = np.full((64, 64, 3), 0.4)
    out = cam.degrade(flat, np.random.default_rng(1)).reshape(-1, 3).mean(0)
    want = cam.expected_flat(0.4)
    assert np.allclose(out[: len(want)], want, atol=0.015), (out, want)
    # and the exposure matters: a camera with twice the exposure records a brighter flat scene
    from dataclasses import replace

    brighter = replace(cam, exposure=cam.exposure * 2).expected_flat(0.4)
    assert (brighter > want).all()


def test_kernels_physical():
    rng = np.random.default_rng(0)
    for k in [C.shake_kernel(rng, L) for L in (5, 21, 41)] + [C.disc_kernel(r) for r in (1.5, 4.0)]:
        assert k.min() >= 0 and k.sum() == pytest.approx(1.0)
        ii, jj = np.mgrid[: k.shape[0], : k.shape[1]]
        c = (k.shape[0] - 1) / 2
        assert abs((k * ii).sum() - c) < 0.75 and abs((k * jj).sum() - c) < 0.75  # centred
    long = [C.kernel_length(C.shake_kernel(rng, 35)) for _ in range(5)]
    short = [C.kernel_length(C.shake_kernel(rng, 7)) for _ in range(5)]
    assert min(long) > max(short) and max(long) <= C.KERNEL_SIDE
    assert C.kernel_length(C.disc_kernel(3.0)) == pytest.approx(7.0, abs=1.5)


def test_truth_keys():
    for cam in C.CAMERAS.values():
        t = cam.truth()
        assert len(t["response"]) == (1 if cam.grey else 3)
        assert len(t["response"][0]) == len(C.RESPONSE_POINTS)
        assert np.all(np.diff(t["response"][0]) >= 0)  # monotone
        assert t["kernel_length_px"]["p10"] <= t["kernel_length_px"]["p90"]
        assert {"exposure", "wb", "shot_noise", "read_noise"} <= set(t)
    assert C.CAMERAS["dslr_shake"].truth()["kernel_length_px"]["p90"] > 30
    assert C.CAMERAS["phone"].truth()["kernel_rms_radius_px"] is None  # rotation: no single kernel
    r = C.CAMERAS["dslr_shake"].truth()["kernel_rms_radius_px"]
    assert 1.0 < r["p10"] <= r["p50"] <= r["p90"] < C.KERNEL_SIDE / 2


def test_kernel_rms_radius():
    line = np.zeros((21, 21))
    line[10, 3:18] = 1.0  # a straight 15 px line: L / sqrt(12) in the continuum, sqrt((L^2 - 1) / 12) sampled
    assert C.kernel_rms_radius(line) == pytest.approx(np.sqrt((15**2 - 1) / 12), rel=1e-6)
    dot = np.zeros((5, 5))
    dot[1, 3] = 2.0
    assert C.kernel_rms_radius(dot) == 0.0  # wherever it sits, one tap has no spread


def test_noise_in_linear_light_is_signal_dependent():
    cam = C.CAMERAS["microscope_grey"]  # linear response, no JPEG: the noise is directly visible
    dark = cam.degrade(np.full((64, 64, 3), 0.1), np.random.default_rng(0))[..., 0]
    bright = cam.degrade(np.full((64, 64, 3), 0.9), np.random.default_rng(0))[..., 0]
    assert bright[8:-8, 8:-8].std() > 1.3 * dark[8:-8, 8:-8].std()
