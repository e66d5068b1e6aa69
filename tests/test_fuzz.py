"""Property-based fuzzing of dbgan's readers (issue 16): image files, checkpoints, configs.

Each reader is fed damaged, random and generated inputs (``hypothesis``) and must either
succeed or raise dbgan's own error for that reader (:class:`dbgan.io.ImageReadError`,
:class:`dbgan.checkpoint.CheckpointError`, :class:`dbgan.config.ConfigError`); any
other exception fails the test. Memory stays bounded because every input is small and the
readers check sizes before they allocate (decompression-bomb limit, safetensors header
checks, YAML node budget).

CI runs a bounded, derandomised set (about 2,000 cases per reader, 6,000 in all). A longer
random run scales every count::

    DBGAN_FUZZ_SCALE=50 python -m pytest tests/test_fuzz.py -q    # ~300,000 cases

(docs/reliability.md records the counts of the runs made).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbgan import checkpoint as C
from dbgan.checkpoint import CheckpointError, load_checkpoint
from dbgan.config import ConfigError, PRESETS_DIR, build_config, load_config
from dbgan.io import ImageReadError, read_image

SCALE = float(os.environ.get("DBGAN_FUZZ_SCALE", "1"))
#: Cases of each test at scale 1 (the CI run): per reader about 2,000.
BASE = {
    "image_mutations": 1500, "image_random": 500,
    "ckpt_mutations": 1000, "ckpt_headers": 500, "ckpt_metadata": 500,
    "config_files": 1000, "config_generated": 500, "config_overrides": 500,
}
CALLS: dict[str, int] = {k: 0 for k in BASE}


def fuzz_settings(name: str):
    return settings(
        max_examples=max(1, int(BASE[name] * SCALE)),
        deadline=None,  # no timing: the machine may be shared
        database=None,  # nothing written into the repository
        derandomize=SCALE == 1,  # CI: the same cases every run
        suppress_health_check=list(HealthCheck),
    )


WORK = Path(tempfile.mkdtemp(prefix="dbgan_fuzz_"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    shutil.rmtree(WORK, ignore_errors=True)


# --------------------------------------------------------------------------- mutations


@st.composite
def mutated(draw, seeds: dict[str, bytes]):
    """(extension, bytes): a seed file with 1-4 byte-level mutations."""
    ext = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[ext])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "span", "truncate", "insert", "delete", "int"]))
        n = len(data)
        if n == 0:
            break
        pos = draw(st.integers(0, n - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "span":
            chunk = draw(st.binary(min_size=1, max_size=64))
            data[pos : pos + len(chunk)] = chunk
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:  # an interesting 32-bit value (sizes, lengths) written over 4 bytes
            value = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000]))
            data[pos : pos + 4] = struct.pack(draw(st.sampled_from(["<I", ">I"])), value)
    return ext, bytes(data)


# --------------------------------------------------------------------------- images


def _image_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (16, 24), dtype=np.uint16)
    seeds = {}
    for ext, arr in ((".png", rgb), (".jpg", rgb), (".bmp", rgb), (".webp", rgb), (".tif", rgb)):
        ok, buf = cv2.imencode(ext, arr)
        assert ok
        seeds[ext] = buf.tobytes()
    seeds[".tiff"] = cv2.imencode(".tif", grey16)[1].tobytes()
    ok, buf = cv2.imencode(".png", grey16)
    seeds[".PNG"] = buf.tobytes()
    from PIL import Image
    import io

    out = io.BytesIO()
    exif = Image.Exif()
    exif[274] = 6
    Image.fromarray(rgb).save(out, format="JPEG", exif=exif)
    seeds[".jpeg"] = out.getvalue()
    return seeds


IMAGE_SEEDS = _image_seeds()


def _read_image_only_own_errors(ext: str, data: bytes) -> None:
    path = WORK / f"img{ext}"
    path.write_bytes(data)
    try:
        img = read_image(path, max_pixels=1 << 20)
    except ImageReadError as exc:
        assert str(path) in str(exc)
        return
    assert img.dtype == torch.float32 and img.dim() == 3 and img.shape[0] in (1, 3)
    assert bool(torch.isfinite(img).all()) and float(img.min()) >= 0 and float(img.max()) <= 1


@fuzz_settings("image_mutations")
@given(mutated(IMAGE_SEEDS))
def test_fuzz_image_reader_with_damaged_files(case):
    CALLS["image_mutations"] += 1
    _read_image_only_own_errors(*case)


@fuzz_settings("image_random")
@given(st.sampled_from(sorted({e.lower() for e in IMAGE_SEEDS})), st.binary(max_size=2048),
       st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]))
def test_fuzz_image_reader_with_random_bytes(ext, body, magic):
    CALLS["image_random"] += 1
    _read_image_only_own_errors(ext, magic + body)


# --------------------------------------------------------------------------- checkpoints


SPEC = {"name": "unet", "args": {"in_channels": 1, "out_channels": 1, "num_downs": 1, "ngf": 2}}


def _checkpoint_seed() -> bytes:
    from dbgan.nets import build_network

    torch.manual_seed(0)
    net = build_network(SPEC["name"], **SPEC["args"])
    path = WORK / "seed.safetensors"
    C.save_checkpoint(path, {"deblur_g": net}, {"stage": "dbgan", "iter": 0, "nets": {"deblur_g": SPEC}})
    return path.read_bytes()


CKPT_SEED = _checkpoint_seed()


def _load_only_own_errors(data: bytes, sidecar: str | None = None) -> None:
    path = WORK / "fuzz.safetensors"
    path.write_bytes(data)
    side = path.with_suffix(".json")
    if sidecar is None:
        side.unlink(missing_ok=True)
    else:
        side.write_text(sidecar)
    try:
        ckpt = load_checkpoint(path)
        for role in ckpt.roles:
            ckpt.build(role.removesuffix("_ema"))
    except CheckpointError as exc:
        assert str(path) in str(exc)


@fuzz_settings("ckpt_mutations")
@given(mutated({".safetensors": CKPT_SEED}))
def test_fuzz_checkpoint_loader_with_damaged_files(case):
    CALLS["ckpt_mutations"] += 1
    _load_only_own_errors(case[1])


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=12)
)
_json = st.recursive(_json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=20)


@st.composite
def safetensors_files(draw):
    """A safetensors layout from parts: entries with odd dtypes, shapes and offsets, random metadata."""
    header: dict = {}
    pos = 0
    for i in range(draw(st.integers(0, 4))):
        dtype = draw(st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "X9", 3, None]))
        shape = draw(st.one_of(st.lists(st.integers(0, 6), max_size=3), st.lists(st.integers(-3, 2**62), max_size=3), _json))
        size = draw(st.integers(0, 64))
        offsets = draw(st.one_of(st.just([pos, pos + size]), st.lists(st.integers(-5, 2**64), max_size=3), _json))
        header[draw(st.sampled_from([f"deblur_g.t{i}", f"x{i}", "__metadata__"]))] = {
            "dtype": dtype, "shape": shape, "data_offsets": offsets,
        }
        pos += size
    meta = draw(st.one_of(
        st.none(),
        st.just({"dbgan": json.dumps({"format": C.FORMAT, "nets": {"deblur_g": SPEC}})}),
        st.dictionaries(st.text(max_size=6), st.text(max_size=30), max_size=3),
        _json,
    ))
    if meta is not None:
        header["__metadata__"] = meta
    blob = json.dumps(header).encode()
    if draw(st.booleans()):
        blob += b" " * draw(st.integers(0, 7))
    length = draw(st.one_of(st.just(len(blob)), st.integers(0, 2**64 - 1)))
    return struct.pack("<Q", length) + blob + draw(st.binary(max_size=pos + 8))


@fuzz_settings("ckpt_headers")
@given(safetensors_files(), st.one_of(st.none(), st.text(max_size=40), _json.map(json.dumps)))
def test_fuzz_checkpoint_loader_with_generated_headers(data, sidecar):
    CALLS["ckpt_headers"] += 1
    _load_only_own_errors(data, sidecar)


_arg_names = st.sampled_from(["in_channels", "out_channels", "num_downs", "ngf", "ndf", "n_layers", "norm", "noise",
                              "noise_nc", "noise_dim", "residual", "use_dropout", "kernel_size", "hidden", "x", ""])
_arg_values = st.one_of(st.integers(-(2**40), 2**40), st.integers(0, 12), st.floats(), st.text(max_size=6),
                        st.booleans(), st.none(), st.lists(st.integers(0, 3), max_size=2))


@fuzz_settings("ckpt_metadata")
@given(
    st.one_of(st.sampled_from(["unet", "patchgan", "resnet_blur", "rrdb", "kernel_blur", "vgg_disc", "os.system"]),
              st.text(max_size=10), st.integers(), st.none()),
    st.one_of(st.dictionaries(_arg_names, _arg_values, max_size=5), st.fixed_dictionaries({}, optional={"ngf": _arg_values}),
              st.text(max_size=8), st.none()),
    st.booleans(),
)
def test_fuzz_checkpoint_metadata(name, args, keep_seed_args):
    """Valid files whose metadata describes arbitrary networks: built only when everything fits."""
    CALLS["ckpt_metadata"] += 1
    if keep_seed_args and isinstance(args, dict):
        args = {**SPEC["args"], **args}
    from safetensors.torch import load as st_load, save as st_save

    tensors = st_load(CKPT_SEED)
    meta = {"format": C.FORMAT, "stage": "dbgan", "iter": 0, "nets": {"deblur_g": {"name": name, "args": args}}}
    _load_only_own_errors(st_save(tensors, metadata={"dbgan": json.dumps(meta)}))


# --------------------------------------------------------------------------- configs


TINY = (PRESETS_DIR / "tiny.yaml").read_text()
_yaml_chars = st.sampled_from(list(":-[]{}&*!|>#'\"\n ,?%@`\t.~") + list("abn019e+xy"))


@st.composite
def mutated_text(draw, seed: str):
    text = list(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not text:
            break
        pos = draw(st.integers(0, len(text) - 1))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "anchor"]))
        if kind == "replace":
            text[pos] = draw(_yaml_chars)
        elif kind == "insert":
            text[pos:pos] = list(draw(st.text(_yaml_chars, min_size=1, max_size=8)))
        elif kind == "delete":
            del text[pos : pos + draw(st.integers(1, 20))]
        else:
            text[pos:pos] = list(draw(st.sampled_from(["&a ", "*a", "!!python/object:os.system ", "!!binary ", "<<: *a\n",
                                                        "1e999", ".nan", "-.inf", "9" * 5000, "extends: tiny.yaml\n"])))
    return "".join(text)


def _load_only_config_errors(text: str) -> None:
    path = WORK / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "replace"))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


@fuzz_settings("config_files")
@given(mutated_text(TINY))
def test_fuzz_config_loader_with_damaged_files(text):
    CALLS["config_files"] += 1
    _load_only_config_errors(text)


_keys = st.sampled_from(["name", "scheme", "seed", "data", "synth", "nets", "stages", "train", "losses", "joint",
                         "crop_size", "kernel_size", "lr", "ngf", "args", "dbgan", "iters", "extends", "x"])
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(), st.text(max_size=10)),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(_keys, c, max_size=4),
    max_leaves=25,
)


@fuzz_settings("config_generated")
@given(st.dictionaries(_keys, _values, max_size=6))
def test_fuzz_config_loader_with_generated_documents(doc):
    CALLS["config_generated"] += 1
    _load_only_config_errors(yaml.safe_dump(doc))


@fuzz_settings("config_overrides")
@given(st.lists(st.tuples(
    st.sampled_from(["seed", "stages.dbgan.lr", "nets.deblur_g.args.ngf", "data.crop_size", "synth.intensity",
                     "train.channels_last", "name", "data", "nets.blur_g", "stages.bgan.init_from", "x.y", "", "a..b"]),
    st.one_of(st.text(_yaml_chars, max_size=16), st.text(max_size=8)),
), max_size=3))
def test_fuzz_config_overrides(pairs):
    CALLS["config_overrides"] += 1
    try:
        build_config({}, [f"{k}={v}" for k, v in pairs])
    except ConfigError:
        pass


def test_fuzz_counts_are_reported(capsys):
    """Prints how many cases each reader ran (the counts docs/reliability.md quotes)."""
    with capsys.disabled():
        total = sum(CALLS.values())
        if total:
            print(f"\nfuzz cases run: {total} ({', '.join(f'{k} {v}' for k, v in CALLS.items())}); uncaught exceptions: 0")
