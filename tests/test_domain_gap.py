"""benchmarks/domain_gap.py: the photo split, the classical baseline and the issue's checks (no training)."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import domain_gap as G  # noqa: E402


def test_split_disjoint_and_seeded():
    a, b = G.split_photos(0, []), G.split_photos(1, [])
    assert a == G.split_photos(0, []) and a != b
    for s in (a, b):
        sets = [set(s[k]) for k in ("test", "sharp", "real")]
        assert all(sets[i].isdisjoint(sets[j]) for i in range(3) for j in range(i + 1, 3))
        assert sum(map(len, sets)) == len(G.COLOUR_PHOTOS) + len(G.GREY_PHOTOS)
        assert len(set(s["test"]) & set(G.COLOUR_PHOTOS)) == 2 and len(set(s["test"]) & set(G.GREY_PHOTOS)) == 1


def test_halves_split_gives_each_side_one_half_of_every_training_photo(tmp_path):
    whole, halves = G.split_photos(3, []), G.split_photos(3, [], "halves")
    assert halves["test"] == whole["test"] and halves == G.split_photos(3, [], "halves")
    base = lambda names: sorted(n.partition(G.HALF)[0] for n in names)  # noqa: E731
    assert base(halves["sharp"]) == base(halves["real"]) == sorted(whole["sharp"] + whole["real"])
    assert set(halves["sharp"]).isdisjoint(halves["real"])
    with pytest.raises(ValueError, match="split 'thirds'"):
        G.split_photos(0, [], "thirds")
    # a landscape photo is cut into left | right, a portrait one into top / bottom; the halves tile it
    from dbgan.io import write_image

    for shape in ((3, 40, 60), (3, 60, 40)):
        img = torch.rand(*shape)
        f = tmp_path / f"p{shape[1]}.png"
        write_image(f, img)
        whole_img = G.train_photo(str(f), 100)
        a, b = G.train_photo(f"{f}{G.HALF}0", 100), G.train_photo(f"{f}{G.HALF}1", 100)
        axis = 1 if shape[2] > shape[1] else 0
        assert a.shape[axis] == b.shape[axis] == whole_img.shape[axis] // 2
        np.testing.assert_array_equal(np.concatenate([a, b], axis), whole_img)
        assert G.photo_stem(f"{f}{G.HALF}1") == f"p{shape[1]}_half1"


def test_shared_control_split_and_the_scene_gap():
    whole, shared = G.split_photos(3, []), G.split_photos(3, [], "shared")
    assert shared["test"] == whole["test"]
    assert shared["sharp"] == shared["real"] and sorted(shared["sharp"]) == sorted(whole["sharp"] + whole["real"])
    grey, white = np.full((4, 6, 3), 0.2), np.full((4, 6, 3), 0.6)
    white[..., 2] = 0.3  # a blue-poor bright photo
    imgs = {"a": grey, "b": white}
    np.testing.assert_allclose(G.scene_gap({"sharp": ["a"], "real": ["b"]}, imgs), [0.4, 0.4, 0.1])
    np.testing.assert_allclose(G.scene_gap({"sharp": ["a", "b"], "real": ["b", "a"]}, imgs), [0, 0, 0], atol=1e-12)


def test_wiener_keeps_the_mean_and_sharpens():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    sharp = gaussian_filter(rng.random((3, 64, 64)), (0, 1, 1))
    blurred = gaussian_filter(sharp, (0, 1.5, 1.5), mode="wrap")
    out = G.wiener((1.5, 1e-3))(torch.from_numpy(blurred).float()).numpy()
    assert abs(out.mean() - blurred.mean()) < 1e-3
    assert np.abs(out - sharp).mean() < 0.7 * np.abs(blurred - sharp).mean()


def test_wiener_row_is_dbgan_classical_with_the_old_results():
    """The benchmark's Wiener row is dbgan.classical's ``gaussian_otf`` filter (issue 17: one owner);
    the figures are those of the benchmark's former own copy (numpy FFT), on a small image whose
    padding (4 sigma + 8) reaches beyond its height at sigma 4."""
    from dbgan.classical import WienerSetting, wiener_deconvolve

    rng = np.random.default_rng(17)
    y, x = np.mgrid[0:20, 0:24]
    img = 0.5 + 0.25 * np.sin(x / 3.0 + np.arange(3)[:, None, None]) * np.cos(y / 4.0)
    img = torch.from_numpy(img + 0.05 * rng.random((3, 20, 24))).float()
    old = {  # (sigma, nsr): (sum, position-weighted sum, pixel (:, 5, 7)) of the former copy's output
        (1.5, 1e-3): (748.9757321327925, 372.21476316456165, [0.5593274, 0.5702806, 0.3920124]),
        (0.5, 0.3): (747.374929279089, 371.36182592149, [0.5709373, 0.5141931, 0.4507742]),
        (4.0, 0.01): (745.0681293592788, 371.49539219232815, [0.8717436, 0.4692485, 0.0954776]),
    }
    for params, (total, weighted, pixel) in old.items():
        out = G.wiener(params)(img)
        assert out.dtype == torch.float32 and out.shape == img.shape
        assert torch.equal(out, wiener_deconvolve(img, WienerSetting("gaussian_otf", *params)))
        out = out.double()
        w = torch.arange(out.numel(), dtype=torch.float64).reshape(out.shape) / out.numel()
        assert abs(float(out.sum()) - total) < 1e-4 and abs(float((out * w).sum()) - weighted) < 1e-4
        assert np.allclose(out[:, 5, 7].numpy(), pixel, atol=1e-6)


def test_checks_pass_and_fail():
    def r(psnr, bias=0.0, colour=0.0):
        return [{"psnr": psnr, "ssim": 0.5, "bias": bias, "colour": colour}]

    good = {"input": r(20), "synthetic_ll": r(21), "prior_only": r(21.5), "separate": r(23, 0.01), "oracle": r(24, 0.02)}
    res = {"cam1": good, "cam2": dict(good, separate=r(19.5, 0.01))}
    out = {what.split(":")[0]: ok for _, what, ok in G.checks({"cam1": good}, ["cam1"], list(good))}
    assert all(out.values()) and len(out) == 6
    out = {what.split(":")[0]: ok for _, what, ok in G.checks(res, ["cam1", "cam2"], list(good))}
    assert out["never below the input on any camera"] is False
    assert out["beats (a') synthetic + linear light by >= 1.0 dB"] is False  # (23 + 19.5) / 2 - 21 = 0.25


def test_cli_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown camera"):
        G.main(["--cameras", "nope"])
    with pytest.raises(SystemExit):
        G.main(["--methods", "nope"])


def test_general_model_checks_and_adaptation_rows():
    def r(p):
        return [{"psnr": p, "ssim": 0.5, "bias": 0.0, "colour": 0.0}]

    res = {"cam1": {"input": r(20), "wiener": r(20.5), "general": r(21), "general_adapt": r(21.6)},
           "cam2": {"input": r(20), "wiener": r(21.2), "general": r(21), "general_adapt": r(21.4)}}
    out = {what.split(":")[0]: ok for _, what, ok in G.checks(res, ["cam1", "cam2"], ["input", "wiener", "general", "general_adapt"])}
    assert out["beats blurred input on every camera"] is True
    assert out["beats Wiener (tuned on the validation camera) on every camera"] is False  # cam2: 21 < 21.2
    assert out["adds >= 0.5 dB over the general model on average"] is True  # (0.6 + 0.4) / 2
    fine, scratch = G.adapt_overrides(scratch=False), G.adapt_overrides(scratch=True)
    assert fine[-1] == "stages.dbgan.init_from=general" and scratch[-1] == "stages.dbgan.init_from=null"
    assert fine[0] == scratch[0] and fine[0].startswith("nets.deblur_g=")  # one network, two starts


def test_tone_fit_benchmark_runs_and_summarises(tmp_path):
    """benchmarks/tone_fit.py: one seed, one camera, a few batches; the RMS table covers every strength."""
    import tone_fit as T

    out = tmp_path / "t.json"
    assert T.main(["--seeds", "0", "--cameras", "compact", "--batches", "3", "--train-side", "256",
                   "--json", str(out)]) == 0
    import json

    res = json.loads(out.read_text())
    (row,) = res["rows"]
    assert row["camera"] == "compact" and math.isfinite(row["fit"]) and math.isfinite(row["target"])
    s = res["summary"]["compact"]
    assert set(map(float, s["rms"])) == set(T.STRENGTHS)
    assert s["rms"]["0.0"] == pytest.approx(abs(row["target"]))  # no fit: the whole target is the error
    assert len(row["wb_fit"]) == 3 and abs(sum(row["wb_fit"])) < 1e-5 and set(map(float, s["wb_rms"])) == set(T.STRENGTHS)
    combos = {f"{e:g}/{k:g}" + (f"/wb{w:g}" if w else "") for e in T.CURVE_EXPOSURES for k in T.CURVES for w in T.CURVE_WB}
    assert set(s["curve"]["fit"]) == set(s["curve"]["target"]) == combos
    assert all(0 <= v < 0.5 for v in s["curve"]["fit"].values())
    with pytest.raises(ValueError, match="unknown camera"):
        T.main(["--cameras", "nope"])


def test_tone_fit_evidence_shares(tmp_path):
    """Session 17's evidence shares (tone_fit.py --draws): a fit the draws agree on is kept whole, one within
    their spread is dropped; the benchmark adds an 'ev' column for every combination."""
    import json

    import tone_fit as T

    est = torch.tensor([0.3, -0.3])
    assert T.evidence_share(est, est.expand(8, 2)) == 1.0
    assert T.evidence_share(est, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(4, 1)) == 0.0
    assert T.evidence_share(torch.zeros(2), est.expand(8, 2)) == 0.0
    out = tmp_path / "t.json"
    assert T.main(["--seeds", "0", "--cameras", "compact", "--train-side", "256", "--tone-from", "photos",
                   "--draws", "4", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    curve = res["summary"]["compact"]["curve"]["fit"]
    plain = [k for k in curve if not k.startswith("ev ")]
    assert plain and all(f"ev {k}" in curve for k in plain)
    factors = res["rows"][0]["curve"]["factors"]["fit"]
    assert all(0.0 <= f <= 1.0 for fs in factors.values() for f in fs)


def test_tone_fit_subsamples_each_side():
    """--per-side: fewer photos per side; on halves both sides keep halves of the same photos."""
    import tone_fit as T

    split = G.split_photos(0, [], "halves")
    sub = T.subsample(split, 3, 0, aligned=True)
    assert len(sub["sharp"]) == len(sub["real"]) == 3 and sub["test"] == split["test"]
    stems = lambda names: sorted(n.split(G.HALF)[0] for n in names)  # noqa: E731
    assert stems(sub["sharp"]) == stems(sub["real"])
    assert T.subsample(split, 0, 0, aligned=True) is split
    with pytest.raises(ValueError, match="--per-side 999"):
        T.subsample(split, 999, 0, aligned=True)


def test_tone_fit_benchmark_takes_whole_photos_and_linear_light(tmp_path):
    """--tone-from photos (no sampling: the same fit twice) and --fit-space linear."""
    import json

    import tone_fit as T

    fits = []
    for k in range(2):
        out = tmp_path / f"t{k}.json"
        assert T.main(["--seeds", "0", "--cameras", "soft_lens", "--train-side", "256", "--tone-from", "photos",
                       "--fit-space", "linear", "--json", str(out)]) == 0
        (row,) = json.loads(out.read_text())["rows"]
        fits.append((row["fit"], row["target"], row["wb_fit"]))
    assert fits[0] == fits[1] and all(math.isfinite(v) for v in fits[0][:2])
    assert abs(fits[0][1] - math.log(0.85)) < 0.1  # the scene-free target is near the camera's exposure


def _smooth(seed: int, size: int = 48) -> torch.Tensor:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.clip(gaussian_filter(rng.random((3, size, size)), (0, 2, 2)) * 3 - 1, 0, 1)).float()


def test_tone_aligned_psnr_forgives_tone_not_blur():
    """A global tone change is undone by the per-image fit; a blur is not (a curve can restore a little of the
    contrast a blur takes, not the detail: the blurred image stays far below the toned one)."""
    from scipy.ndimage import gaussian_filter

    from dbgan.metrics import psnr

    sharp = _smooth(0)
    toned = 0.9 * sharp**0.6
    assert psnr(toned, sharp) < 25 and psnr(G.tone_aligned(toned, sharp), sharp) > 40
    blurred = torch.from_numpy(gaussian_filter(sharp.numpy(), (0, 2, 2))).float()
    assert psnr(G.tone_aligned(blurred, sharp), sharp) < 32


def test_tone_lut_learns_a_pointwise_curve_from_pairs():
    """The tone-only oracle: fitted on pairs, it maps an unseen photo's tone back (within the 8-bit binning)."""
    pairs = [("a", s, s**0.5 * 0.95) for s in (_smooth(1), _smooth(2), _smooth(3))]
    lut = G.tone_lut(pairs)
    new = _smooth(4)
    got = lut(new**0.5 * 0.95)
    covered = (new > 0.1) & (new < 0.9)  # values the training pairs have plenty of
    assert float((got - new)[covered].abs().max()) < 0.03
    assert float((new**0.5 * 0.95 - new)[covered].abs().max()) > 0.2  # the input was far off


def test_gap_rescore_scores_a_kept_folder(tmp_path):
    """benchmarks/gap_rescore.py: run folder names parse back; a kept folder's cameras get the input and tone-oracle rows."""
    import gap_rescore as R

    assert R.parse_run("prior_only_filmic_defocus_s1") == ("prior_only", "filmic_defocus", 1)
    assert R.parse_run("synthetic_ll_grey_s0") == ("synthetic_ll", "grey", 0)
    assert R.parse_run("oracle_microscope_grey_s0") == ("oracle", "microscope_grey", 0)
    assert R.parse_run("notes") is None
    for k, s in enumerate((_smooth(5), _smooth(6))):
        for part in ("test", "oracle"):
            G.write_pair(tmp_path / "s0" / "compact" / part, f"p{k}.png", s.permute(1, 2, 0).numpy(),
                         (s**0.7).permute(1, 2, 0).numpy())
    res = R.rescore([str(tmp_path)])
    assert set(res["compact"]) == {"input", "tone_oracle"}
    assert res["compact"]["tone_oracle"][0]["psnr"] > res["compact"]["input"][0]["psnr"] + 10
    with pytest.raises(SystemExit, match="no such folder"):
        R.rescore([str(tmp_path / "nope")])


def test_tone_fit_curve_errors_against_a_known_camera():
    """The curve table's errors: given a log-profile camera's own quantiles, the quantile-matching curve
    (fit_curve 1) comes within a quarter of the error of the exposure alone (fit_curve 0)."""
    import cameras as C
    import tone_fit as T

    from dbgan.config import load_config

    cam = C.get("action_night")  # log response, exposure x1.25
    args = dict(load_config("camera").nets.blur_g.args) | {"tone": "fit", "learn_wb": False}
    qs = torch.linspace(0.02, 0.9, 64)[None].repeat(3, 1)
    truth = torch.tensor(np.stack([[cam.expected_flat(float(v)).mean() for v in qs[c]] for c in range(3)]),
                         dtype=torch.float32)  # the channels' mean: what a shared curve can reach
    err = T.curve_errors(cam, args, 3, qs, truth, truth)
    assert err["fit"] == err["target"]
    assert err["fit"]["1/1"] < 0.25 * err["fit"]["1/0"]
    # a warm white balance: with fit_wb the table's tone map follows each channel (on the target)
    wb = torch.tensor([1.1, 1.0, 0.88])[:, None]
    warm = torch.tensor(np.stack([[cam.expected_flat(float(v))[c] for v in qs[c]] for c in range(3)]), dtype=torch.float32)
    warm_real = (warm * wb).clamp(0, 1)
    e2 = T.curve_errors(cam, args, 3, qs, warm_real, warm_real)
    assert "1/1/wb0.5" in e2["target"] and "1/1/wb0.5" not in T.curve_errors(C.get("microscope_grey"), args, 1, qs[:1], truth[:1], truth[:1])["fit"]


def test_gap_rescore_variants_interpolate_weights_and_make_bgan_pairs(tmp_path):
    """--variants: the weights move the asked share of the way from the start; BGAN's pairs are crops of
    the seed's sharp photos and their 8-bit degradation; a run without its BGAN gives none."""
    import gap_rescore as R

    from dbgan.checkpoint import save_checkpoint
    from dbgan.config import load_config
    from dbgan.io import write_image
    from dbgan.train.networks import build_nets

    nets, specs = build_nets(load_config("tiny"), torch.device("cpu"))
    run = tmp_path / "s0" / "runs" / "separate_compact_s0"
    ckpt = run / "checkpoints" / "latest.safetensors"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint(ckpt, {r: nets[r] for r in ("blur_g", "deblur_g")}, {"stage": "dbgan", "iter": 1, "nets": specs})
    own = nets["deblur_g"].state_dict()
    start = {k: torch.zeros_like(v) for k, v in own.items()}
    moved = R.interpolated(ckpt, start, 0.25).state_dict()
    key = next(k for k, v in own.items() if v.is_floating_point() and v.abs().sum() > 0)
    assert torch.allclose(moved[key], 0.25 * own[key])
    assert torch.allclose(R.interpolated(ckpt, start, 1.0).state_dict()[key], own[key])

    assert R.bgan_pairs(run, tmp_path / "s0") is None  # no bgan_*.safetensors kept
    save_checkpoint(run / "checkpoints" / "bgan_000001.safetensors", {"blur_g": nets["blur_g"]},
                    {"stage": "bgan", "iter": 1, "nets": specs})
    for k in range(2):
        write_image(tmp_path / "s0" / "sharp_colour" / f"p{k}.png", _smooth(k + 3)[:, :48, :48])
    sharp, fake = R.bgan_pairs(run, tmp_path / "s0", per_photo=3, crop=32)
    assert sharp.shape == fake.shape == (6, 3, 32, 32)
    assert torch.equal(fake, (fake * 255).round() / 255)
    assert not torch.equal(sharp[0], sharp[3])  # crops of both photos


def test_tone_fit_benchmark_fits_to_the_linear_means(tmp_path):
    """--fit-from means: the exposure and white balance rows are the sets' linear-mean ratios; the
    scene-free target is near the camera's exposure and white balance; it needs --tone-from photos."""
    import json

    import cameras as C
    import tone_fit as T

    out = tmp_path / "m.json"
    assert T.main(["--seeds", "0", "--cameras", "compact", "--train-side", "256", "--tone-from", "photos",
                   "--fit-from", "means", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert abs(row["target"] - math.log(1.15)) < 0.05  # compact: exposure 1.15
    wb = np.log(C.get("compact").wb)
    assert np.abs(np.array(row["wb_target"]) - (wb - wb.mean())).max() < 0.03
    assert row["fit"] != row["target"]  # the two sides' scenes differ
    with pytest.raises(SystemExit):
        T.main(["--cameras", "compact", "--fit-from", "means"])  # needs --tone-from photos


def test_scene_gap_benchmark_summarises_seeds_and_attributes_the_bias(tmp_path):
    import scene_gap as SG

    gaps = SG.seed_gaps(2, [], "photos", side=48)  # skimage photos only, small
    assert gaps.shape == (2, 3) and np.isfinite(gaps).all()
    assert np.allclose(gaps[1], G.scene_gap(G.split_photos(1, [], "photos"),
                                            G.train_photos(sum(G.split_photos(1, [], "photos").values(), []), 48)))
    assert not SG.seed_gaps(1, [], "shared", side=48).any()  # the control: no scene gap
    se = SG.predicted_errors(2, [], "photos", side=48)  # what dbgan.tone_uncertainty says of each seed's folders
    assert se.shape == (2,) and (se > 0).all() and (se < 0.2).all()
    s = SG.summarise(np.array([[0.01] * 3, [-0.01] * 3, [0.02, 0.0, 0.04]]), over=2)
    assert s["seeds"] == 3 and math.isclose(s["sd"], np.std([0.01, -0.01, 0.02]))
    assert 0 < s["abs_mean_of_2"] < s["abs_one"] + 1e-12 and s["colour_spread"] > 0
    # attribution: a method whose bias is the oracle's - 0.5 x the seed's gap + 0.01 on camera "a"
    runs = []
    for seed, g in ((0, -0.02), (1, 0.01), (2, 0.03)):
        res = {c: {"separate": [{"bias": 0.001 - 0.5 * g + off}], "oracle": [{"bias": 0.001}]}
               for c, off in (("a", 0.01), ("b", -0.01))}
        runs.append({"seeds": [seed], "scene_gap": {str(seed): [g] * 3}, "results": res})
    att = SG.attribution(runs)
    assert att["n"] == 6 and math.isclose(att["slope"], -0.5, abs_tol=1e-9)
    assert math.isclose(att["systematic"]["a"], 0.01, abs_tol=1e-9) and math.isclose(att["systematic"]["b"], -0.01, abs_tol=1e-9)
    with pytest.raises(ValueError, match="at least 3 camera-seeds"):
        SG.attribution(runs[:1])
    out = tmp_path / "g.json"
    assert SG.main(["--seeds", "2", "--splits", "photos", "--train-side", "48", "--json", str(out)]) == 0
    assert out.exists() and __import__("json").loads(out.read_text())["splits"]["photos"]["predicted_se"] > 0


def test_tone_decompose_reads_a_kept_run(tmp_path):
    """benchmarks/tone_decompose.py: the camera's row is the pairs' own shift; BGAN's error is its row less
    the camera's; a run without its BGAN is skipped; --calibrate needs a camera_blur BGAN."""
    import tone_decompose as T

    from dbgan.checkpoint import save_checkpoint
    from dbgan.config import load_config
    from dbgan.train.networks import build_nets

    nets, specs = build_nets(load_config("tiny"), torch.device("cpu"))
    run = tmp_path / "s0" / "runs" / "separate_compact_s0" / "checkpoints"
    run.mkdir(parents=True)
    save_checkpoint(run / "latest.safetensors", {r: nets[r] for r in ("blur_g", "deblur_g")},
                    {"stage": "dbgan", "iter": 1, "nets": specs})
    sharp = [_smooth(k + 3)[:, :32, :32] for k in range(4)]
    for part in ("oracle", "test"):
        for k, s in enumerate(sharp):
            G.write_pair(tmp_path / "s0" / "compact" / part, f"p{k}.png", s.permute(1, 2, 0).numpy(),
                         (0.8 * s).permute(1, 2, 0).numpy())
    with pytest.raises(SystemExit, match="no kept separate run with its BGAN"):
        T.main([str(tmp_path)])
    save_checkpoint(run / "bgan_000001.safetensors", {"blur_g": nets["blur_g"]}, {"stage": "bgan", "iter": 1, "nets": specs})
    rows = T.decompose(tmp_path, 0, "compact", every=1)
    stored = [G.read_pairs(tmp_path / "s0" / "compact" / "oracle")[k] for k in range(4)]
    want = np.mean([(b.double() - s.double()).mean((1, 2)).numpy() for _, s, b in stored], 0)
    np.testing.assert_allclose(rows["camera"], want, atol=1e-9)
    assert max(rows["camera"]) < -0.05  # the pairs' camera darkens by a fifth
    np.testing.assert_allclose(rows["bgan - camera"], np.array(rows["bgan"]) - np.array(rows["camera"]), atol=1e-9)
    assert {"D(bgan)", "D(camera)", "test D", "test LUT"} <= set(rows) and "test oracle" not in set(rows)
    with pytest.raises(SystemExit, match="needs a camera_blur BGAN"):
        T.decompose(tmp_path, 0, "compact", calibrate=1.0)


def test_real_side_is_stored_whole_or_as_crops(tmp_path):
    """``--real-whole``: the real side holds the camera's whole (half) photos, as a user's folder would; by
    default it holds --real-crop crops. The oracle pairs and test photos are the same either way."""
    from argparse import Namespace

    from dbgan.io import read_image

    sizes = {}
    for whole in (False, True):
        args = Namespace(extra=[], split="halves", train_side=96, real_crop=40, real_per_photo=1, oracle_per_photo=1,
                         test_side=48, test_per_photo=1, real_whole=whole)
        root = tmp_path / str(whole)
        G.build_seed_data(root, 0, ["compact"], args)
        sizes[whole] = {tuple(read_image(p, channels=3).shape[1:]) for p in (root / "compact" / "real_blur").glob("*.png")}
        assert sorted(p.name for p in (root / "compact" / "oracle" / "blur").glob("*.png"))
    assert sizes[False] == {(40, 40)}
    assert all(max(s) > 40 for s in sizes[True]) and len(sizes[True]) > 1, sizes
    for part in ("oracle/blur", "test/blur"):
        a, b = (sorted((tmp_path / str(w) / "compact" / part).glob("*.png")) for w in (False, True))
        assert [p.name for p in a] == [p.name for p in b]
        assert all(torch.equal(read_image(x), read_image(y)) for x, y in zip(a, b))


def test_tone_statistics_benchmark_measures_each_statistic_through_a_camera(tmp_path):
    """benchmarks/tone_statistics.py: a fit reading the target's value is right; one reading the brighter camera's
    value is STEP off in log exposure; a clipped statistic reads as a large error; one tiny run end to end."""
    import json

    import tone_statistics as TS

    flat = [np.full((16, 16, 3), v) for v in (0.2, 0.4)]
    stats = TS.folder_statistics(flat)
    assert set(stats) == set(TS.STATISTICS) and np.allclose(stats["mean"], 0.3) and np.allclose(stats["q0.50"], 0.3)
    with pytest.raises(ValueError, match="no photos"):
        TS.folder_statistics([])
    assert TS.pooled(np.arange(2 * 16 * 3.0).reshape(2, 16, 3)).shape == (8, 3)  # blocks no larger than the photo
    target, brighter = np.array([0.30, 0.40]), np.array([0.33, 0.44])
    assert np.allclose(TS.implied_log_errors(target, target, brighter), 0)
    assert np.allclose(TS.implied_log_errors(brighter, target, brighter), TS.STEP)
    assert TS.implied_log_errors(np.array([0.5]), np.array([1.0]), np.array([1.0]))[0] < -100  # clipped: no response
    cam = TS.unblurred(G.CAMS.get("compact"))
    assert cam.exposure == G.CAMS.get("compact").exposure and cam.draw_kernel(np.random.default_rng(0)).max() > 0.9
    out = tmp_path / "s.json"
    assert TS.main(["--seeds", "1", "--cameras", "webcam", "--train-side", "64", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    (row,) = res["rows"]
    assert row["camera"] == "webcam" and len(row["stats"]["mean"]["scene"]) == 3
    assert all(np.isfinite(v["exposure_rms"]) and v["exposure_rms"] >= 0 for v in res["summary"].values())
