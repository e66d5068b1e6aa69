"""The bf16 policy (dbgan.cpu_caps) on simulated CPUs: detection rule, auto choices, fallbacks."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from dbgan import cpu_caps
from dbgan.cpu_caps import CpuCaps, bf16_faster_rule, bf16_native_rule, resolve_amp, resolve_dtype

ZEN4 = frozenset("sse2 avx avx2 fma avx512f avx512bw avx512_bf16".split())  # native bf16, no AMX
SPR = frozenset("sse2 avx2 avx512f amx_tile amx_bf16 avx512_bf16".split())
AVX2_ONLY = frozenset("sse2 avx avx2 fma f16c".split())  # Intel 12th+ gen consumer, AMD before Zen 4
AVX512_NO_BF16 = frozenset("sse2 avx2 avx512f avx512bw".split())  # Skylake-SP / Ice Lake
GRAVITON3 = frozenset("fp asimd sve bf16 i8mm".split())  # aarch64 with BF16


def caps(native: bool, capability: str = "AVX512", reason: str = "simulated", flags=None,
         vendor: str = "AuthenticAMD") -> CpuCaps:
    flags = flags if flags is not None else (ZEN4 if native else AVX2_ONLY)
    return CpuCaps(capability, None, flags, native, native, reason, vendor)


NATIVE, EMULATED = caps(True), caps(False, "AVX2", "the CPU has no avx512_bf16 (simulated)")
INTEL_NO_AMX = caps(True, flags=ZEN4, vendor="GenuineIntel")  # Cooper Lake, or a VM hiding AMX
INTEL_AMX = caps(True, flags=SPR, vendor="GenuineIntel")


@pytest.mark.parametrize(
    "capability, flags, isa, onednn, native",
    [
        ("AVX512", ZEN4, None, True, True),
        ("AVX512", SPR, None, None, True),
        ("AVX2", AVX2_ONLY, None, None, False),  # the common laptop / desktop CPU
        ("AVX512", AVX512_NO_BF16, None, None, False),
        ("AVX2", ZEN4, None, None, False),  # ATEN_CPU_CAPABILITY=avx2 on a bf16 CPU
        ("AVX512", ZEN4, "AVX2", None, False),  # ONEDNN_MAX_CPU_ISA=AVX2 on a bf16 CPU
        ("AVX512", ZEN4, "avx512_core", None, False),
        ("AVX512", ZEN4, "AVX512_CORE_BF16", None, True),
        ("AVX512", SPR, "AVX512_CORE_AMX", None, True),
        ("AVX512", ZEN4, None, False, False),  # oneDNN's own check says no
        ("DEFAULT", GRAVITON3, None, True, True),
        ("DEFAULT", frozenset("fp asimd".split()), None, None, False),
        ("AVX512", None, None, True, True),  # flags unreadable: oneDNN decides
        ("AVX512", None, None, None, False),  # nothing to go on: not native
    ],
)
def test_native_bf16_rule(capability, flags, isa, onednn, native):
    got, reason = bf16_native_rule(capability, flags, isa, onednn)
    assert got is native
    assert reason  # always says why


@pytest.mark.parametrize(
    "native, flags, vendor, faster",
    [
        (True, ZEN4, "AuthenticAMD", True),
        (True, ZEN4, "GenuineIntel", False),  # VDPBF16PS: no more FLOPs than two fp32 FMA units
        (True, SPR, "GenuineIntel", True),  # AMX
        (True, GRAVITON3, None, True),
        (False, AVX2_ONLY, "GenuineIntel", False),
        (False, SPR, "GenuineIntel", False),  # capped by ONEDNN_MAX_CPU_ISA, say
    ],
)
def test_bf16_faster_rule(native, flags, vendor, faster):
    assert bf16_faster_rule(native, flags, vendor)[0] is faster


def test_rule_names_the_reason():
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in bf16_native_rule("AVX512", ZEN4, "AVX2")[1]
    assert "AVX2" in bf16_native_rule("AVX2", ZEN4)[1]
    assert "avx512_bf16" in bf16_native_rule("AVX2", AVX2_ONLY)[1]


def test_detect_matches_the_rule_on_this_machine():
    c = cpu_caps.detect()
    assert c.capability == torch.backends.cpu.get_cpu_capability()
    assert (c.native_bf16, c.reason) == bf16_native_rule(c.capability, c.flags, c.onednn_max_isa, c.onednn_bf16)
    assert ("native bf16" in c.summary()) and c.capability in c.summary()


# --------------------------------------------------------------------------- auto choices


@pytest.mark.parametrize(
    "requested, device, c, cuda_bf16, want",
    [
        ("auto", "cpu", NATIVE, None, "bf16"),
        ("auto", "cpu", EMULATED, None, "fp32"),
        ("auto", "cpu", INTEL_NO_AMX, None, "fp32"),
        ("auto", "cpu", INTEL_AMX, None, "bf16"),
        ("bf16", "cpu", INTEL_NO_AMX, None, "bf16"),  # native: honoured when asked for
        ("bf16", "cpu", NATIVE, None, "bf16"),
        ("bf16", "cpu", EMULATED, None, "fp32"),  # never a run hundreds of times slower
        ("fp32", "cpu", NATIVE, None, "fp32"),
        ("fp16", "cpu", EMULATED, None, "fp16"),  # left as asked (TorchBackend warns)
        ("auto", "cuda", EMULATED, True, "bf16"),
        ("auto", "cuda", EMULATED, False, "fp32"),
        ("auto", "mps", NATIVE, None, "fp32"),
    ],
)
def test_resolve_dtype(requested, device, c, cuda_bf16, want):
    assert resolve_dtype(requested, device, c, cuda_bf16=cuda_bf16) == want


@pytest.mark.parametrize(
    "requested, device, c, cuda_bf16, want",
    [
        ("auto", "cpu", NATIVE, None, "bf16"),
        ("auto", "cpu", EMULATED, None, "none"),
        ("auto", "cpu", INTEL_NO_AMX, None, "none"),
        ("auto", "cpu", INTEL_AMX, None, "bf16"),
        ("bf16", "cpu", EMULATED, None, "none"),
        ("bf16", "cpu", NATIVE, None, "bf16"),
        ("none", "cpu", NATIVE, None, "none"),
        ("auto", "cuda", EMULATED, True, "bf16"),
        ("auto", "cuda", EMULATED, False, "fp16"),
        ("auto", "mps", NATIVE, None, "none"),
    ],
)
def test_resolve_amp(requested, device, c, cuda_bf16, want):
    assert resolve_amp(requested, device, c, cuda_bf16=cuda_bf16) == want


def test_bf16_fallback_warns_with_the_reason(caplog):
    with caplog.at_level(logging.INFO, logger="dbgan.cpu_caps"):
        assert resolve_dtype("bf16", "cpu", EMULATED) == "fp32"
        assert resolve_amp("bf16", "cpu", EMULATED) == "none"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("no avx512_bf16 (simulated)" in r.getMessage() and "NO native bf16" in r.getMessage() for r in warnings)


def test_auto_says_what_it_chose(caplog):
    with caplog.at_level(logging.INFO, logger="dbgan.cpu_caps"):
        resolve_dtype("auto", "cpu", EMULATED)
        resolve_amp("auto", "cpu", NATIVE)
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("--dtype auto: fp32") for m in msgs)
    assert any(m.startswith("train.amp auto: bf16") for m in msgs)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- the callers


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(cpu_caps, "detect", lambda: EMULATED)


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(cpu_caps, "detect", lambda: NATIVE)


def _tiny_net():
    from dbgan.nets import build_network

    torch.manual_seed(0)
    return build_network("unet", num_downs=2, ngf=4)


def test_deblurrer_bf16_without_native_bf16_runs_fp32(no_native_bf16, caplog):
    from dbgan.infer import Deblurrer

    net = _tiny_net()
    img = torch.rand(3, 16, 20)
    with caplog.at_level(logging.WARNING):
        d = Deblurrer(net, device="cpu", dtype="bf16")
    assert d.backend.dtype_name == "fp32" and d.backend.autocast_dtype is None
    assert any("bf16 requested but running fp32" in r.getMessage() for r in caplog.records)
    assert torch.equal(d(img), Deblurrer(net, device="cpu", dtype="fp32")(img))


def test_deblurrer_auto_follows_the_cpu(no_native_bf16, monkeypatch):
    from dbgan.infer import Deblurrer

    net = _tiny_net()
    assert Deblurrer(net, device="cpu", dtype="auto").backend.dtype_name == "fp32"
    monkeypatch.setattr(cpu_caps, "detect", lambda: NATIVE)
    d = Deblurrer(net, device="cpu", dtype="auto")
    assert d.backend.dtype_name == "bf16" and d.backend.channels_last


def test_train_amp_bf16_without_native_bf16_trains_fp32(no_native_bf16):
    from dbgan.train.loop import autocast_factory

    ctx, scaler = autocast_factory("bf16", torch.device("cpu"))
    assert scaler is None
    with ctx():
        y = nn.Linear(4, 4)(torch.rand(2, 4))
    assert y.dtype == torch.float32


def test_train_amp_auto_takes_bf16_where_native(native_bf16):
    from dbgan.train.loop import autocast_factory

    ctx, scaler = autocast_factory("auto", torch.device("cpu"))
    assert scaler is None
    with ctx():
        y = nn.Linear(4, 4)(torch.rand(2, 4))
    assert y.dtype == torch.bfloat16


def test_defaults_are_auto():
    from dbgan.cli import build_parser
    from dbgan.config import Config

    assert Config().train.amp == "auto"
    args = build_parser().parse_args(["deblur", "ck.safetensors", "in.png", "out.png"])
    assert args.dtype == "auto"


def test_channels_last_training_rule_names_the_capability():
    yes, why = cpu_caps.channels_last_training_rule("AVX512")
    no, why_not = cpu_caps.channels_last_training_rule("avx2")
    assert yes and "AVX512" in why
    assert not no and "AVX2" in why_not and "NCHW" in why_not


def test_training_networks_follow_the_capability(monkeypatch):
    """build_nets puts the discriminators in channels_last at AVX512 and keeps them NCHW at AVX2."""
    from dbgan.config import load_config
    from dbgan.train.networks import build_nets

    cfg = load_config("tiny", [])
    for cap, want in (("AVX512", True), ("AVX2", False)):
        monkeypatch.setattr(cpu_caps, "torch_capability", lambda cap=cap: cap)
        nets, _ = build_nets(cfg, torch.device("cpu"))
        w = next(p for p in nets["blur_d"].parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1)
        assert w.is_contiguous(memory_format=torch.channels_last) == want, cap
        g = next(p for p in nets["deblur_g"].parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1)
        assert g.is_contiguous(), cap  # the generators stay NCHW either way
