"""Does this CPU compute bf16 natively, and which precision should ``auto`` pick?

The one owner of the precision policy for ``dbgan deblur --dtype`` and ``train.amp``.

On a CPU without bf16 dot-product instructions (``avx512_bf16`` or AMX), oneDNN and
ATen emulate bf16 arithmetic: one 3x3 convolution 64->64 at 256x256 runs about 300x
slower under bf16 autocast than in fp32 (``docs/benchmarks.md``, section 5). Most
laptops and desktops are such CPUs (Intel's consumer CPUs since the 12th generation,
AMD before Zen 4), so bf16 must never be taken, or honoured, blindly.

**The rule** (:func:`bf16_native_rule`, a pure function of what the machine reports):
bf16 counts as native on the CPU when all of these hold

1. the CPU flags (``/proc/cpuinfo``) include ``avx512_bf16`` or ``amx_bf16``
   (``bf16`` on aarch64); when the flags cannot be read, oneDNN's own check decides;
2. torch's CPU capability (``torch.backends.cpu.get_cpu_capability()``) is AVX512
   or above on x86 (``ATEN_CPU_CAPABILITY=avx2`` makes ATen's own kernels AVX2,
   where bf16 is converted element by element);
3. ``ONEDNN_MAX_CPU_ISA``, if set, is not below ``AVX512_CORE_BF16``;
4. oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``), where torch
   has it, does not say no.

**Native is not always faster** (:func:`bf16_faster_rule`): Intel's ``avx512_bf16``
dot product (``VDPBF16PS``) has the same FLOP rate as its two fp32 FMA units, so on an
Intel CPU without AMX (Cooper Lake; or a newer Xeon whose hypervisor hides AMX) bf16
gains nothing but the casts cost: measured on such a Xeon, bf16 + channels_last ran
0.95x the plain fp32 path at 1024² against 1.36x for fp32 + channels_last, and a
training step 1.27x against 1.73x (``docs/benchmarks.md``, section 5). On Zen 4 (whose
fp32 FMA is half as wide) bf16 was 2-3x fp32. So ``auto`` takes bf16 on a CPU only when
it is native *and* the CPU has AMX (``amx_bf16``) or is not an Intel one.

**What ``auto`` picks** (:func:`resolve_dtype`, :func:`resolve_amp`):

* CPU where bf16 is native and faster: ``bf16`` (inference also channels_last);
* any other CPU: ``fp32`` (``none`` for training), channels_last for inference as always;
* ``train.channels_last: auto`` on a CPU (:func:`channels_last_training_rule`): the
  discriminators in channels_last at capability AVX512 and above, everything NCHW below;
* CUDA: ``bf16`` where the GPU supports it, else ``fp32`` for inference and ``fp16``
  (with a gradient scaler) for training;
* MPS and anything else: ``fp32`` / ``none``.

**int8** (:func:`int8_default_rule`): ``dbgan deblur`` with ``--dtype auto`` on a CPU
runs the int8 quantisation of the model (``NAME.int8.onnx`` beside the checkpoint, made
by ``dbgan export --int8``, :mod:`dbgan.quantize`) only when that file records a PSNR
cost on held-out pairs below :data:`INT8_MAX_COST_DB` (0.05 dB); a model without a
recorded cost, or costing more, runs only when asked for (``--dtype int8``).

**An explicit bf16 request on a CPU without native bf16 falls back to fp32** with a
logged warning that names the reason: the user still gets the result, at fp32 speed,
instead of a run hundreds of times slower. fp16 on CPU is left as requested (it
warns elsewhere); training refuses it outright (``train.amp: fp16`` needs CUDA).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Iterable, Optional

import torch

log = logging.getLogger(__name__)

#: CPU flags that mean bf16 dot products in hardware (x86: AVX512-BF16 or AMX; aarch64: BF16).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")

#: oneDNN ISA names of ``ONEDNN_MAX_CPU_ISA``, lowest first; native bf16 needs AVX512_CORE_BF16 or above.
ONEDNN_ISAS = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL",
)
_MIN_BF16_ISA = ONEDNN_ISAS.index("AVX512_CORE_BF16")

#: torch x86 capabilities with AVX512 kernels (anything else on x86 converts bf16 element-wise).
_AVX512_CAPS = ("AVX512", "AMX")


@dataclass(frozen=True)
class CpuCaps:
    """What this CPU reports, and the verdict of :func:`bf16_native_rule`."""

    capability: str  # torch.backends.cpu.get_cpu_capability()
    onednn_max_isa: Optional[str]  # ONEDNN_MAX_CPU_ISA, if set
    flags: Optional[frozenset[str]]  # /proc/cpuinfo flags (None: unreadable)
    onednn_bf16: Optional[bool]  # torch.ops.mkldnn._is_mkldnn_bf16_supported() (None: not available)
    native_bf16: bool
    reason: str  # why bf16 is (not) native, for logs and benchmark headers
    vendor: Optional[str] = None  # /proc/cpuinfo vendor_id (GenuineIntel, AuthenticAMD, ...)

    @property
    def bf16_faster(self) -> bool:
        """Whether ``auto`` takes bf16 here (:func:`bf16_faster_rule`)."""
        return bf16_faster_rule(self.native_bf16, self.flags, self.vendor)[0]

    def summary(self) -> str:
        """One line for logs and benchmark headers."""
        isa = f", ONEDNN_MAX_CPU_ISA={self.onednn_max_isa}" if self.onednn_max_isa else ""
        verdict = "native bf16" if self.native_bf16 else "NO native bf16"
        line = f"CPU capability {self.capability}{isa}: {verdict} ({self.reason})"
        if self.native_bf16:
            line += "; auto takes " + ("bf16" if self.bf16_faster else "fp32") + f" ({bf16_faster_rule(self.native_bf16, self.flags, self.vendor)[1]})"
        return line


def bf16_native_rule(
    capability: str,
    flags: Optional[Iterable[str]],
    onednn_max_isa: Optional[str] = None,
    onednn_bf16: Optional[bool] = None,
) -> tuple[bool, str]:
    """Whether bf16 is computed natively, from what the machine reports (pure; see the module docstring).

    Args:
        capability: ``torch.backends.cpu.get_cpu_capability()`` (``"AVX2"``, ``"AVX512"``, ...).
        flags: the CPU's feature flags (``/proc/cpuinfo``), or ``None`` when unknown.
        onednn_max_isa: the ``ONEDNN_MAX_CPU_ISA`` environment variable, or ``None``.
        onednn_bf16: oneDNN's own answer (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``),
            or ``None`` when torch does not offer it.

    Returns:
        ``(native, reason)``.
    """
    cap = (capability or "").upper()
    if flags is not None:
        fl = {f.lower() for f in flags}
        have = [f for f in BF16_FLAGS if f in fl]
        if not have:
            return False, "the CPU has no avx512_bf16 or amx_bf16 instructions, so bf16 would be emulated"
        x86 = "avx2" in fl or "sse2" in fl
        if x86 and cap not in _AVX512_CAPS:
            return False, f"torch's CPU kernels run at capability {cap or '?'} (below AVX512), so bf16 would be emulated"
    elif onednn_bf16 is None:
        return False, "the CPU's flags could not be read and torch gives no oneDNN bf16 check"
    if onednn_max_isa:
        isa = onednn_max_isa.strip().upper()
        if isa in ONEDNN_ISAS and ONEDNN_ISAS.index(isa) < _MIN_BF16_ISA:
            return False, f"ONEDNN_MAX_CPU_ISA={onednn_max_isa} keeps oneDNN below AVX512_CORE_BF16"
    if onednn_bf16 is False:
        return False, "oneDNN reports no native bf16 on this CPU"
    if flags is None:
        return True, "oneDNN reports native bf16"
    return True, f"{'/'.join(have)} in the CPU flags"


def bf16_faster_rule(native: bool, flags: Optional[Iterable[str]], vendor: Optional[str]) -> tuple[bool, str]:
    """Whether bf16 beats fp32 on a CPU (pure): native, and AMX or not Intel (see the module docstring)."""
    if not native:
        return False, "bf16 is not native"
    fl = {f.lower() for f in flags} if flags is not None else set()
    if "amx_bf16" in fl:
        return True, "AMX"
    if (vendor or "").strip() == "GenuineIntel":
        return False, "Intel avx512_bf16 without AMX computes bf16 no faster than fp32"
    return True, "bf16 dot products at twice the fp32 rate"


def channels_last_training_rule(capability: str) -> tuple[bool, str]:
    """Whether ``train.channels_last: auto`` puts the discriminators in channels_last on a CPU (pure).

    Only where torch's CPU kernels run at AVX512 or above. There oneDNN's channels_last
    convolutions of the PatchGAN ran 4-20% faster (Zen 4, bf16 and fp32; on the Xeon
    in fp32 it was even). At capability AVX2 their backward passes are slower than in
    NCHW: under emulated AVX2, ``train_speed.py --quick`` ran the seed preset's steps at
    256² 1.59x (blur-pretrain) and 1.72x (joint) the plain loop all NCHW, against 1.53x
    and 1.47x with channels_last discriminators (``docs/benchmarks.md``, section 5).
    Other architectures (aarch64, ...) are not measured and get NCHW.
    """
    cap = (capability or "").upper()
    if cap in _AVX512_CAPS:
        return True, f"capability {cap}: channels_last discriminators are faster"
    return False, f"capability {cap or '?'}: channels_last convolutions train slower than NCHW below AVX512"


#: largest PSNR cost (dB, on held-out pairs) at which ``auto`` takes an int8 model
INT8_MAX_COST_DB = 0.05


def int8_default_rule(cost_db: Optional[float]) -> tuple[bool, str]:
    """Whether ``auto`` takes an int8 model whose recorded PSNR cost is ``cost_db`` (pure).

    ``None`` (not measured) or anything not finite is never taken; otherwise the cost
    must be below :data:`INT8_MAX_COST_DB`.
    """
    if cost_db is None:
        return False, "its PSNR cost was not measured (export with --eval-pairs)"
    if not math.isfinite(cost_db):
        return False, f"its recorded PSNR cost {cost_db} is not a number"
    if cost_db < INT8_MAX_COST_DB:
        return True, f"it costs {cost_db:.3f} dB PSNR (< {INT8_MAX_COST_DB} dB)"
    return False, f"it costs {cost_db:.3f} dB PSNR (not < {INT8_MAX_COST_DB} dB)"


def _cpu_vendor(path: str = "/proc/cpuinfo") -> Optional[str]:
    try:
        with open(path) as fh:
            for line in fh:
                if line.split(":", 1)[0].strip() == "vendor_id":
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_flags(path: str = "/proc/cpuinfo") -> Optional[frozenset[str]]:
    try:
        with open(path) as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):  # x86 | aarch64
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _onednn_bf16() -> Optional[bool]:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def torch_capability() -> str:
    """torch's CPU capability here (``"AVX2"``, ``"AVX512"``, ...; ``ATEN_CPU_CAPABILITY`` lowers it)."""
    return torch.backends.cpu.get_cpu_capability()


def detect() -> CpuCaps:
    """Read this machine's capability, flags and oneDNN check, and apply :func:`bf16_native_rule`."""
    cap = torch_capability()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    flags = _cpu_flags()
    onednn = _onednn_bf16()
    native, reason = bf16_native_rule(cap, flags, isa, onednn)
    return CpuCaps(cap, isa, flags, onednn, native, reason, _cpu_vendor())


def _cuda_bf16(device_type: str) -> bool:
    return device_type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_dtype(requested: str, device_type: str, caps: Optional[CpuCaps] = None,
                  cuda_bf16: Optional[bool] = None) -> str:
    """The inference dtype to run for ``requested`` (``auto``, ``fp32``, ``bf16``, ``fp16``) on ``device_type``.

    ``auto`` picks as in the module docstring and logs its choice (INFO); ``bf16``
    on a CPU without native bf16 becomes ``fp32`` with a WARNING naming the reason.
    ``caps`` and ``cuda_bf16`` default to this machine's (tests pass their own).
    """
    if requested not in ("auto", "bf16"):
        return requested
    if device_type == "cpu":
        caps = caps if caps is not None else detect()
        if requested == "auto":
            choice = "bf16" if caps.bf16_faster else "fp32"
            log.info("--dtype auto: %s (%s)", choice, caps.summary())
            return choice
        if caps.native_bf16:
            return "bf16"
        log.warning("bf16 requested but running fp32: %s; bf16 would be many times slower than fp32", caps.summary())
        return "fp32"
    if requested == "bf16":
        return "bf16"
    bf = cuda_bf16 if cuda_bf16 is not None else _cuda_bf16(device_type)
    choice = "bf16" if device_type == "cuda" and bf else "fp32"
    log.info("--dtype auto: %s on %s", choice, device_type)
    return choice


def resolve_amp(requested: str, device_type: str, caps: Optional[CpuCaps] = None,
                cuda_bf16: Optional[bool] = None) -> str:
    """``train.amp`` to run (``none``, ``bf16``, ``fp16``) for ``requested`` (also ``auto``) on ``device_type``.

    Same policy as :func:`resolve_dtype`; on CUDA without bf16 ``auto`` takes fp16
    (the loop adds a gradient scaler). The choice or the fallback is logged.
    """
    if requested not in ("auto", "bf16"):
        return requested
    if device_type == "cpu":
        caps = caps if caps is not None else detect()
        if requested == "auto":
            choice = "bf16" if caps.bf16_faster else "none"
            log.info("train.amp auto: %s (%s)", choice if choice == "bf16" else "none, fp32", caps.summary())
            return choice
        if caps.native_bf16:
            return "bf16"
        log.warning("train.amp=bf16 but training in fp32 (amp none): %s; bf16 would be many times slower",
                    caps.summary())
        return "none"
    if requested == "bf16":
        return "bf16"
    if device_type == "cuda":
        bf = cuda_bf16 if cuda_bf16 is not None else _cuda_bf16(device_type)
        choice = "bf16" if bf else "fp16"
    else:
        choice = "none"
    log.info("train.amp auto: %s on %s", choice, device_type)
    return choice
