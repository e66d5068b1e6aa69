"""Reliability, round two (issue 16): reports, images, checkpoints, configs, tiles, messages.

Items covered here (docs/reliability.md lists every item with its test): 3 (eval
reports), 5 (JPEG damaged inside), 6 (NaN/inf weights), 7 (billion laughs), 8 (tiny
tiles), 9 (a huge file as a checkpoint), 10 (absurd checkpoint metadata), 11/12
(config ranges, NaN/inf settings), 14 (messages naming the wrong thing) and 15 (synth
--overwrite, TIFF orientation, file modes). Run directories (1, 2, 4, 13, 16, 17) are in
``tests/test_reliability_runs.py``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dbgan import atomic as A
from dbgan import checkpoint as C
from dbgan.checkpoint import CheckpointError, load_checkpoint
from dbgan.cli import main
from dbgan.config import ConfigError, build_config, load_config
from dbgan.io import ImageReadError, read_image, write_image


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny nets, one thread


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data as skd

    return np.ascontiguousarray(skd.astronaut()[96:160, 200:264])  # 64 x 64 x 3 uint8


UNET = {"name": "unet", "args": {"in_channels": 3, "out_channels": 3, "num_downs": 2, "ngf": 4, "residual": True}}


def make_checkpoint(path: Path, spec: dict | None = None, nets_meta: dict | None = None, tweak=None) -> Path:
    """A tiny deblurring checkpoint (U-Net, 2 levels, ngf 4) written without training."""
    from dbgan.nets import build_network

    spec = spec or UNET
    torch.manual_seed(0)
    net = build_network(spec["name"], **spec["args"])
    state = net.state_dict()
    if tweak is not None:
        tweak(state)
    C.save_checkpoint(path, {"deblur_g": state}, {"stage": "dbgan", "iter": 0,
                                                  "nets": nets_meta if nets_meta is not None else {"deblur_g": spec}})
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.safetensors")


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "%|" not in line]  # no progress bars
    assert len(err) == 1, err
    return err[0]


def pairs_folder(root: Path, photo: np.ndarray) -> Path:
    for sub in ("sharp", "blur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(root / sub / "a.png")
    return root


# --------------------------------------------------------------------------- item 3: eval reports


def test_eval_reports_never_land_in_inputs_never_overwrite_and_get_distinct_printed_names(ckpt, photo, tmp_path, capsys):
    pairs = pairs_folder(tmp_path / "pairs", photo)
    held_out = pairs / "sharp" / "a.png"
    before = held_out.read_bytes()
    base = ["eval", str(ckpt), "--pairs", str(pairs), "--device", "cpu"]
    # 1. inside the input folder: refused, the image untouched
    for out in (held_out, pairs / "sharp" / "r.json", pairs / "r"):
        assert main([*base, "--out", str(out)]) == 2
        line = one_error_line(capsys)
        assert "inside the input folder" in line or "must end in .json or .csv" in line, line
    assert held_out.read_bytes() == before
    # 2. `--out r.csv`: two distinct files, both named in the output
    out = tmp_path / "rep" / "r.csv"
    assert main([*base, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    json_path, csv_path = out.with_suffix(".json"), out
    assert f"wrote {json_path}" in printed and f"wrote {csv_path}" in printed
    assert json.loads(json_path.read_text())["kind"] == "paired"
    assert csv_path.read_text().startswith("name,width,height")
    # 3. existing report: refused without --overwrite (before any work), replaced with it
    stamp = json_path.read_text()
    assert main([*base, "--out", str(json_path)]) == 2
    assert "exists; pass --overwrite" in one_error_line(capsys)
    assert json_path.read_text() == stamp
    assert main([*base, "--out", str(json_path), "--overwrite"]) == 0
    capsys.readouterr()
    # 4. `--unpaired --out u.json` writes and prints u.json (not u_unpaired.json)
    u = tmp_path / "rep" / "u.json"
    assert main(["eval", str(ckpt), "--unpaired", str(pairs / "blur"), "--device", "cpu", "--out", str(u)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {u}" in printed and u.is_file() and u.with_suffix(".csv").is_file()
    assert not (tmp_path / "rep" / "u_unpaired.json").exists()
    # both: the unpaired report is r2_unpaired.json, every name printed
    r2 = tmp_path / "rep" / "r2.json"
    assert main([*base, "--unpaired", str(pairs / "blur"), "--out", str(r2)]) == 0
    printed = capsys.readouterr().out
    for name in ("r2.json", "r2.csv", "r2_unpaired.json", "r2_unpaired.csv"):
        assert f"wrote {tmp_path / 'rep' / name}" in printed and (tmp_path / "rep" / name).is_file()


def test_eval_table_writes_minus_inf_like_the_json():
    from dbgan.evaluate import _jsonable, format_table

    row = {"name": "a", "sharpness_in": 0.0, "sharpness_out": 1.0, "sharpness_ratio": float("-inf"),
           "laplacian_in": 1.0, "laplacian_out": 1.0}
    report = {"kind": "unpaired", "images": [row], "mean": dict(row, name="mean")}
    table = format_table(report)
    assert "-inf" in table
    assert _jsonable(float("-inf")) == "-inf"


# --------------------------------------------------------------------------- item 5: JPEG damaged inside


def damaged_jpeg(path: Path, photo: np.ndarray, seed: int = 0) -> Path:
    big = np.ascontiguousarray(np.tile(photo, (4, 4, 1)))  # 256 x 256: room for damage in the middle
    Image.fromarray(big).save(path, quality=90)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 200] = np.random.default_rng(seed).integers(0, 256, 200, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jpeg_damaged_inside_is_refused_naming_the_file(tmp_path, photo, seed):
    bad = damaged_jpeg(tmp_path / "bad.jpg", photo, seed)
    # libjpeg's warning, or (when the damage breaks the segment structure) dbgan's own walk
    with pytest.raises(ImageReadError, match="JPEG data is damaged|JPEG is truncated") as info:
        read_image(bad)
    assert str(bad) in str(info.value)
    good = tmp_path / "good.jpg"
    Image.fromarray(photo).save(good, quality=90)
    assert read_image(good).shape == (3, 64, 64)


def test_deblur_refuses_a_damaged_jpeg_or_skips_it(ckpt, tmp_path, photo, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo).save(src / "good.png")
    bad = damaged_jpeg(src / "bad.jpg", photo)
    assert main(["deblur", str(ckpt), str(src), str(tmp_path / "out"), "--device", "cpu"]) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and "--skip-bad" in line and "data.skip_bad" not in line, line
    assert main(["deblur", str(ckpt), str(src), str(tmp_path / "out"), "--device", "cpu", "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert f"unreadable, skipped: {bad}" in err
    assert (tmp_path / "out" / "good.png").is_file()


# --------------------------------------------------------------------------- item 6: NaN / inf weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, capsys, photo, bad):
    key = {}

    def poison(state):
        k = sorted(n for n, t in state.items() if t.is_floating_point())[0]
        state[k] = state[k].clone()
        state[k].view(-1)[0] = bad
        key["k"] = f"deblur_g.{k}"

    path = make_checkpoint(tmp_path / "nan.safetensors", tweak=poison)
    with pytest.raises(CheckpointError, match="NaN or inf") as info:
        load_checkpoint(path)
    assert key["k"] in str(info.value)
    Image.fromarray(photo).save(tmp_path / "x.png")
    assert main(["deblur", str(path), str(tmp_path / "x.png"), str(tmp_path / "y.png"), "--device", "cpu"]) == 2
    assert key["k"] in one_error_line(capsys)
    assert not (tmp_path / "y.png").exists()


# --------------------------------------------------------------------------- item 7: billion laughs


def test_billion_laughs_yaml_is_refused_in_one_line(tmp_path, capsys):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(bomb)
    assert main(["train", str(bomb)]) == 2
    line = one_error_line(capsys)
    assert str(bomb) in line and "nodes" in line
    # as an override value too, and a structure that refers to itself
    wide = "[&x [" + ", ".join(["1"] * 400) + "]" + ", *x" * 400 + "]"  # 400 aliases of 401 nodes
    with pytest.raises(ConfigError, match="expands to more than"):
        build_config({}, ["data.flip=" + wide])
    (tmp_path / "self.yaml").write_text("a: &a [*a]\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "self.yaml")


# --------------------------------------------------------------------------- item 8: tiles


class Pointwise(torch.nn.Module):
    in_channels = out_channels = 3
    size_multiple = 1

    def forward(self, x):
        return x


def test_tiny_tiles_and_absurd_tile_plans_are_refused(ckpt, tmp_path, photo, capsys):
    from dbgan.infer import MIN_TILE, Deblurrer, InferenceError

    with pytest.raises(InferenceError, match=f"at least {MIN_TILE}"):
        Deblurrer(Pointwise(), device="cpu", tile=1)
    # overlap larger than the tile: checked as given, before any clamping
    with pytest.raises(InferenceError, match="overlap"):
        Deblurrer(Pointwise(), device="cpu", tile=MIN_TILE, overlap=MIN_TILE + 16)
    # a legal tile and overlap whose plan would compute the image hundreds of times over
    d = Deblurrer(Pointwise(), device="cpu", tile=40, overlap=38)
    with pytest.raises(InferenceError, match="tiles"):
        d(torch.rand(3, 256, 256))
    # the rounded tile is what counts: 40 rounds to 16 on a net of multiple 16 (here: 4)
    Image.fromarray(np.tile(photo, (4, 4, 1))).save(tmp_path / "big.png")
    for flags in (["--tile", "1"], ["--tile", "16", "--overlap", "32"], ["--tile", "36", "--overlap", "34"]):
        assert main(["deblur", str(ckpt), str(tmp_path / "big.png"), str(tmp_path / "o.png"), "--device", "cpu", *flags]) == 2
        line = one_error_line(capsys)
        assert "tile" in line, line
    assert not (tmp_path / "o.png").exists()


# --------------------------------------------------------------------------- item 9: a huge file as a checkpoint


def test_a_huge_file_is_refused_from_its_header_without_being_read(tmp_path, monkeypatch):
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as fh:  # 2 GiB, sparse: nothing is really written
        fh.write(os.urandom(64))
        fh.truncate(2 * 2**30)
    claims = tmp_path / "claims.safetensors"  # a valid-looking header that promises 1 TB of tensors
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**38], "data_offsets": [0, 2**40]}}).encode()
    claims.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 64)

    def no_whole_reads(self, *a, **k):
        raise AssertionError(f"{self} was read whole")

    monkeypatch.setattr(Path, "read_bytes", no_whole_reads)
    for path in (big, claims):
        with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
            load_checkpoint(path)


# --------------------------------------------------------------------------- item 10: absurd metadata


@pytest.mark.parametrize(
    "nets_meta, why",
    [
        ({"deblur_g": {"name": "unet", "args": dict(UNET["args"], ngf=10**9)}}, "ngf"),
        ({"deblur_g": {"name": "unet", "args": dict(UNET["args"], ngf=20000)}}, "ngf"),
        ({"deblur_g": {"name": "unet", "args": dict(UNET["args"], ngf=-5)}}, "ngf"),
        ({"deblur_g": {"name": "unet", "args": dict(UNET["args"], ngf="8")}}, "must be int"),
        ({"deblur_g": {"name": "unet", "args": dict(UNET["args"], num_downs=50)}}, "num_downs"),
        ({"deblur_g": {"name": "unet", "args": "ngf=8"}}, "damaged"),
        ({"deblur_g": {"name": "os.system", "args": {}}}, "unknown architecture"),
        ({"deblur_g": {"name": "unet", "args": dict(UNET["args"], evil=1)}}, "unknown argument"),
        ({"deblur_g": {"name": "unet", "args": dict(UNET["args"], ngf=8)}}, "shape mismatch"),
        ({"deblur_g": "unet"}, "damaged"),
        ({}, "does not describe"),
    ],
)
def test_absurd_checkpoint_metadata_is_one_line_before_anything_is_built(tmp_path, capsys, photo, monkeypatch, nets_meta, why):
    path = make_checkpoint(tmp_path / "m.safetensors", nets_meta=nets_meta)
    from dbgan import nets

    built = []
    real = nets.NETWORKS.build

    def spy(name, **kw):
        built.append(torch.get_default_device().type if hasattr(torch, "get_default_device") else "?")
        return real(name, **kw)

    monkeypatch.setattr(nets.NETWORKS, "build", spy)
    with pytest.raises(CheckpointError, match=why):
        load_checkpoint(path).build("deblur_g")
    assert "cpu" not in built, "a network was built for real before the metadata was checked"
    Image.fromarray(photo).save(tmp_path / "x.png")
    assert main(["deblur", str(path), str(tmp_path / "x.png"), str(tmp_path / "y.png"), "--device", "cpu"]) == 2
    assert str(path) in one_error_line(capsys)


# --------------------------------------------------------------------------- items 11, 12: settings


@pytest.mark.parametrize(
    "override, key",
    [
        ("nets.deblur_d.args.ndf=0", "nets.deblur_d.args.ndf"),
        ("nets.blur_g.args.num_downs=50", "nets.blur_g.args.num_downs"),
        ("synth.kernel_size=100001", "synth.kernel_size"),
        ("seed=18446744073709551616", "seed"),
        ("seed=-1", "seed"),
        ("data.num_workers=-1", "data.num_workers"),
        ("nets.deblur_g.args.ngf=abc", "nets.deblur_g.args.ngf"),
        ("stages.dbgan.w_content=.nan", "stages.dbgan.w_content"),
        ("stages.dbgan.lr=.inf", "stages.dbgan.lr"),
        ("stages.bgan.w_adv=-.inf", "stages.bgan.w_adv"),
        ("synth.gamma=nan", "synth.gamma"),
        ("losses.charbonnier_eps=1e999", "losses.charbonnier_eps"),
        ("synth.intensity=[0, .nan]", "synth.intensity[1]"),
        ("joint.w_deblur_into_blur=.inf", "joint.w_deblur_into_blur"),
        ("losses.frequency.alpha=.nan", "losses.frequency.alpha"),
    ],
)
def test_out_of_range_and_non_finite_settings_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        build_config({}, [override])
    assert f"'{key}'" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["[a.yaml]", "3", "{x: 1}"])
def test_extends_must_be_a_file_name(tmp_path, value):
    f = tmp_path / "c.yaml"
    f.write_text(f"extends: {value}\n")
    with pytest.raises(ConfigError, match="'extends' must be the file name"):
        load_config(f)


def test_extends_never_echoes_the_contents_of_the_file_it_names(tmp_path, capsys):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$s3cr3tHASH:19000:0:99999:7:::\n")
    (tmp_path / "shadow.yaml").write_text("root: [s3cr3tHASH\n  - : {\n")  # not YAML
    for target in (secret, tmp_path / "shadow.yaml"):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"extends: {target}\n")
        assert main(["train", str(cfg)]) == 2
        line = one_error_line(capsys)
        assert "s3cr3t" not in line, line


# --------------------------------------------------------------------------- item 14: messages


def test_an_unwritable_output_is_named_not_its_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        write_image(target, torch.rand(3, 8, 8))
    msg = str(info.value)
    assert str(target) in msg and ".tmp" not in msg, msg
    assert not list(tmp_path.glob(".*.tmp"))


def test_hints_name_the_options_of_each_command(tmp_path, photo, capsys):
    from dbgan.cli import for_command
    from dbgan.io import read_image as ri

    # deblur: --skip-bad, not data.skip_bad
    cut = tmp_path / "in" / "cut.png"
    cut.parent.mkdir()
    Image.fromarray(photo).save(cut)
    cut.write_bytes(cut.read_bytes()[:-40])
    with pytest.raises(ImageReadError) as info:
        ri(cut)
    assert "--skip-bad" in for_command("deblur", str(info.value))
    assert "skip" not in for_command("eval", str(info.value))
    assert "data.skip_bad" in for_command("train", str(info.value))
    # train: the bomb message names data.max_image_pixels, never --max-pixels (train has none)
    bomb = "x.png: 9 pixels exceeds the limit; raise the limit with data.max_image_pixels (config) or --max-pixels"
    assert "--max-pixels" not in for_command("train", bomb) and "data.max_image_pixels" in for_command("train", bomb)
    assert "--max-pixels" in for_command("deblur", bomb) and "data.max" not in for_command("deblur", bomb)
    sharp = tmp_path / "sharp"
    sharp.mkdir()
    Image.fromarray(photo).save(sharp / "a.png")
    code = main(["train", "tiny", f"data.sharp_dir={sharp}", "scheme=synthetic", "data.max_image_pixels=100",
                 f"runs_dir={tmp_path / 'runs'}"])
    line = one_error_line(capsys)
    assert code == 2 and "data.max_image_pixels" in line and "--max-pixels" not in line, line


@pytest.mark.parametrize("opset", ["1", "999"])
def test_export_refuses_an_opset_it_cannot_write(ckpt, tmp_path, capsys, opset):
    assert main(["export", str(ckpt), str(tmp_path / "m.onnx"), "--opset", opset]) == 2
    assert "opset must lie in" in one_error_line(capsys)
    assert not (tmp_path / "m.onnx").exists()


# --------------------------------------------------------------------------- item 15: files


def test_synth_refuses_to_overwrite_earlier_outputs_without_the_flag(tmp_path, photo, capsys):
    src = tmp_path / "sharp"
    src.mkdir()
    Image.fromarray(photo).save(src / "a.png")
    out = tmp_path / "out"
    assert main(["-q", "synth", str(src), str(out), "--kernel-size", "9", "--seed", "1"]) == 0
    first = (out / "blur" / "a_0.png").read_bytes()
    capsys.readouterr()
    assert main(["-q", "synth", str(src), str(out), "--kernel-size", "9", "--seed", "2"]) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert (out / "blur" / "a_0.png").read_bytes() == first
    assert main(["-q", "synth", str(src), str(out), "--kernel-size", "9", "--seed", "2", "--overwrite"]) == 0
    assert (out / "blur" / "a_0.png").read_bytes() != first


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(tmp_path, photo, orientation):
    from dbgan.io import probe_size as _probe
    from dbgan.io.read import _apply_orientation

    stored = np.ascontiguousarray(photo[:, :40])  # 64 x 40: a rotation shows in the shape
    path = tmp_path / f"o{orientation}.tif"
    Image.fromarray(stored).save(path, tiffinfo={274: orientation})
    got = read_image(path)
    want = torch.from_numpy(_apply_orientation(stored, orientation).astype(np.float32) / 255).permute(2, 0, 1)
    assert got.shape == want.shape and torch.equal(got, want)
    assert _probe(path) == tuple(want.shape[1:])
    # the same orientation through a JPEG's EXIF gives the same shape
    jpg = tmp_path / f"o{orientation}.jpg"
    exif = Image.Exif()
    exif[274] = orientation
    Image.fromarray(stored).save(jpg, exif=exif, quality=95)
    assert read_image(jpg).shape == want.shape


def test_outputs_honour_the_umask_and_overwrite_keeps_the_mode(tmp_path, photo):
    old = os.umask(0o022)
    try:
        a = write_image(tmp_path / "a.png", torch.rand(3, 8, 8))
        assert stat.S_IMODE(a.stat().st_mode) == 0o644
        os.umask(0o027)
        b = write_image(tmp_path / "b.png", torch.rand(3, 8, 8))
        assert stat.S_IMODE(b.stat().st_mode) == 0o640
        ck = make_checkpoint(tmp_path / "c.safetensors")
        assert stat.S_IMODE(ck.stat().st_mode) == 0o640
        # replacing an existing file keeps its mode (0644 stays 0644 under umask 027)
        write_image(a, torch.rand(3, 8, 8))
        assert stat.S_IMODE(a.stat().st_mode) == 0o644
        assert A.current_umask() == 0o027
    finally:
        os.umask(old)
