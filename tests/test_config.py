"""Typed configs: presets load, unknown keys and wrong types are named, overrides parse."""

from __future__ import annotations

import pytest

from dbgan.config import ConfigError, build_config, load_config, preset_names


@pytest.mark.parametrize("name", ["tiny", "seed", "paper", "demo", "kernel"])
def test_every_preset_loads(name):
    assert name in preset_names()
    cfg = load_config(name)
    assert cfg.name == name
    assert load_config(f"configs/{name}.yaml").to_dict() == cfg.to_dict()


def test_kernel_preset_swaps_the_blur_generator_and_its_paired_terms_only():
    kernel, demo = load_config("kernel").to_dict(), load_config("demo").to_dict()
    assert kernel["nets"]["blur_g"] == {
        "name": "kernel_blur",
        "args": {"kernel_size": 15, "noise_dim": 8, "init_gamma": 2.2, "learn_gamma": False},
    }
    # the paired L1 terms give way to the kernel prior in both blur stages
    assert kernel["stages"]["blur_pretrain"]["w_content"] == 0 and demo["stages"]["blur_pretrain"]["w_content"] > 0
    assert kernel["stages"]["bgan"]["w_synthetic"] == 0 and demo["stages"]["bgan"]["w_synthetic"] > 0
    for stage in ("blur_pretrain", "bgan"):
        assert kernel["stages"][stage]["w_kernel_prior"] > 0 and demo["stages"][stage]["w_kernel_prior"] == 0
    assert kernel["stages"]["bgan"]["w_noise_match"] > 0 and demo["stages"]["bgan"]["w_noise_match"] == 0
    for d in (kernel, demo):
        d.pop("name")
        d["nets"].pop("blur_g")
        d["stages"]["blur_pretrain"].pop("w_content")
        d["stages"]["bgan"].pop("w_synthetic")
        d["stages"]["bgan"].pop("w_noise_match")
        for stage in ("blur_pretrain", "bgan"):
            d["stages"][stage].pop("w_kernel_prior")
    assert kernel == demo


def test_seed_and_paper_presets_hold_their_recipes():
    seed = load_config("seed")
    assert seed.nets.blur_g.name == "unet" and seed.nets.blur_g.args["num_downs"] == 8
    assert seed.nets.deblur_d.name == "patchgan" and seed.nets.deblur_d.args["norm"] == "none"
    assert seed.stages.blur_pretrain.w_content == 100.0 and seed.stages.dbgan.pool_size == 10
    assert (seed.data.load_size, seed.data.crop_size) == (1200, 1024)
    paper = load_config("paper")
    assert paper.nets.blur_g.name == "resnet_blur" and paper.nets.blur_g.args["noise"] == "vector"
    assert paper.nets.deblur_g.name == "rrdb" and paper.nets.deblur_d.name == "vgg_disc"
    d = paper.stages.dbgan
    assert (d.gan_mode, d.w_perceptual, d.w_content, d.w_adv, d.lr, d.batch_size) == ("rbl", 1.0, 0.01, 0.005, 1e-4, 4)


def test_unknown_key_names_it_and_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        build_config({"stages": {"dbgan": {"lrr": 1}}})
    assert "stages.dbgan.lrr" in str(err.value) and "batch_size" in str(err.value)


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"'data.crop_size' must be int"):
        build_config({"data": {"crop_size": "big"}})
    with pytest.raises(ConfigError, match=r"'train.progress' must be bool"):
        build_config({}, ["train.progress=yes please"])


def test_dotted_overrides_parse_values():
    cfg = build_config({}, ["stages.dbgan.lr=1e-4", "scheme=joint", "nets.deblur_g.args.ngf=8", "data.flip=false"])
    assert cfg.stages.dbgan.lr == 1e-4 and cfg.scheme == "joint"
    assert cfg.nets.deblur_g.args == {"num_downs": 8, "ngf": 8}  # other args kept
    assert cfg.data.flip is False


def test_switching_architecture_drops_old_args():
    cfg = build_config({"nets": {"deblur_g": {"name": "rrdb", "args": {"nb": 2}}}})
    assert cfg.nets.deblur_g.args == {"nb": 2}


def test_extends_merges_a_parent(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("extends: " + str(load_config.__globals__["PRESETS_DIR"] / "tiny.yaml") + "\nname: kid\n")
    cfg = load_config(child)
    assert cfg.name == "kid" and cfg.data.crop_size == 48


def test_impossible_values_are_rejected():
    for raw, key in [
        ({"data": {"crop_size": 400, "load_size": 286}}, "data.crop_size"),
        ({"stages": {"bgan": {"lr": -1.0}}}, "stages.bgan.lr"),
        ({"nets": {"blur_g": {"name": "nope"}}}, "nets.blur_g.name"),
        ({"synth": {"kernel_size": 4}}, "synth.kernel_size"),
        ({"scheme": "both"}, "scheme"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_config(raw)


def test_noise_match_is_a_bgan_term_only():
    assert build_config({}, ["stages.bgan.w_noise_match=1"]).stages.bgan.w_noise_match == 1.0
    for stage in ("blur_pretrain", "dbgan"):
        with pytest.raises(ConfigError, match=f"stages.{stage}.w_noise_match"):
            build_config({}, [f"stages.{stage}.w_noise_match=1"])
    with pytest.raises(ConfigError, match="stages.bgan.w_noise_match"):
        build_config({}, ["stages.bgan.w_noise_match=-1"])


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    """YAML 1.1 reads ``1e-6`` as a string; free-form network args would then get a str."""
    cfg = build_config({}, ["nets.blur_g.name=kernel_blur", "nets.blur_g.args.init_gamma=2e0", "stages.dbgan.lr=3E-4"])
    assert cfg.nets.blur_g.args["init_gamma"] == 2.0 and isinstance(cfg.nets.blur_g.args["init_gamma"], float)
    assert cfg.stages.dbgan.lr == 3e-4
    f = tmp_path / "c.yaml"
    f.write_text("stages:\n  dbgan: {lr: 5e-5}\n")
    assert load_config(str(f)).stages.dbgan.lr == 5e-5
    assert build_config({}, ["name=1e3x"]).name == "1e3x"  # not a number: stays a string


def test_channels_last_modes():
    from dbgan.config import channels_last_mode

    assert build_config({}).train.channels_last == "auto"
    # auto on CPU follows torch's capability (dbgan.cpu_caps.channels_last_training_rule)
    assert channels_last_mode("auto", "cpu", "AVX512") == "discriminators"
    assert channels_last_mode("auto", "cpu", "AMX") == "discriminators"
    assert channels_last_mode("auto", "cpu", "AVX2") == "none"  # slower backward passes there
    assert channels_last_mode("auto", "cpu", "DEFAULT") == "none"
    assert channels_last_mode("auto", "cuda", "AVX512") == "none"  # not measured there
    assert channels_last_mode("all", "cpu", "AVX2") == "all"  # an explicit mode is kept
    assert channels_last_mode(True, "cuda") == "all" and channels_last_mode(False, "cpu") == "none"
    assert build_config({}, ["train.channels_last=true"]).train.channels_last is True
    assert build_config({}, ["train.channels_last=discriminators"]).train.channels_last == "discriminators"
    with pytest.raises(ConfigError, match=r"train\.channels_last.*'sideways'"):
        build_config({}, ["train.channels_last=sideways"])


def test_adapt_matched_differs_from_adapt_only_in_the_tone_fit_shares():
    """configs/adapt_matched.yaml: `adapt` with a larger share of the closed-form tone fit (curve and white balance),
    its quantiles from the whole photos, and the exposure fitted in display units."""
    a, m = load_config("adapt").to_dict(), load_config("adapt_matched").to_dict()
    am, mm = a["nets"]["blur_g"].pop("args"), m["nets"]["blur_g"].pop("args")
    assert {k: v for k, v in mm.items() if am.get(k) != v} == {"fit_curve": 0.5, "fit_wb": 0.5, "fit_space": "display"}
    assert set(am) <= set(mm)
    a.pop("name"), m.pop("name")
    assert (a["stages"]["bgan"].pop("tone_from"), m["stages"]["bgan"].pop("tone_from")) == ("crops", "photos")
    assert a == m


def test_adapt_same_scenes_differs_from_adapt_matched_only_in_the_whole_fit_and_the_calibrations():
    """configs/adapt_same_scenes.yaml: `adapt_matched` with the whole closed-form fit and the output-mean and curve
    calibrations."""
    m, s = load_config("adapt_matched").to_dict(), load_config("adapt_same_scenes").to_dict()
    mm, sm = m["nets"]["blur_g"].pop("args"), s["nets"]["blur_g"].pop("args")
    assert {k: v for k, v in sm.items() if mm.get(k) != v} == {"fit_strength": 1.0, "fit_curve": 1.0, "fit_wb": 1.0,
                                                                 "fit_means": 1.0, "fit_curve_offset": 1.0}
    assert set(mm) <= set(sm)
    m.pop("name"), s.pop("name")
    assert m == s
