"""Mixed-precision training (``--amp``): which precision a run trains in, and why.

- CUDA: fp16 autocast with a gradient scaler (fp16's narrow range underflows small
  gradients without one).
- CPU with bf16 units (AMX-BF16 or AVX512-BF16): bf16 autocast; bf16 has fp32's range, so
  no scaler.
- CPU without them: fp32, said plainly. oneDNN emulates bf16 there, which trains *slower*
  than fp32; ``--amp force`` uses bf16 anyway (to test the bf16 path on any machine).

The decision is a pure function of the mode, the device type and the host's
``Capabilities``, so it is testable on any machine; ``host_capabilities`` reads them.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple

from generator.errors import UsageError

AMP_MODES = ("off", "on", "force")
# /proc/cpuinfo flags of the units that run bf16 matrix maths natively
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Capabilities:
    """What the host offers for reduced precision: the CPU's bf16 units found (flag names)
    and the CUDA device's name (None without CUDA)."""

    cpu_bf16_units: Tuple[str, ...] = ()
    cuda_device: Optional[str] = None


@dataclass(frozen=True)
class Precision:
    """The precision a run trains in: ``name`` fp32 | bf16 | fp16, the autocast device type
    (None: no autocast), whether a gradient scaler is used, and the reason, in words."""

    name: str
    autocast: Optional[str]
    scaler: bool
    reason: str

    @property
    def dtype(self):
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    def to_json(self) -> dict:
        return asdict(self)


FP32 = Precision("fp32", None, False, "--amp not given")


def check_amp(mode: str) -> str:
    """``mode`` normalised (``True``/``False`` read as on/off); errors name --amp."""
    if isinstance(mode, bool):
        return "on" if mode else "off"
    value = str(mode or "off").lower()
    if value not in AMP_MODES:
        raise UsageError(f"--amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    return value


def choose_precision(mode: str, device_type: str, caps: Capabilities) -> Precision:
    """The precision for ``--amp mode`` on a ``device_type`` ("cpu" or "cuda") device."""
    mode = check_amp(mode)
    if mode == "off":
        return FP32
    if device_type == "cuda":
        return Precision("fp16", "cuda", True, f"--amp {mode}: fp16 autocast with a gradient scaler on "
                                               f"{caps.cuda_device or 'CUDA'}")
    if device_type != "cpu":
        return Precision("fp32", None, False, f"--amp: no mixed precision on {device_type}; training in fp32")
    if caps.cpu_bf16_units:
        return Precision("bf16", "cpu", False, f"--amp {mode}: bf16 autocast on this CPU's "
                                               f"{'/'.join(u.upper() for u in caps.cpu_bf16_units)} units")
    if mode == "force":
        return Precision("bf16", "cpu", False, "--amp force: bf16 autocast although this CPU has no bf16 units "
                                               "(emulated: slower than fp32; for testing the bf16 path)")
    return Precision("fp32", None, False, "--amp: this CPU has no bf16 units (no AMX-BF16 or AVX512-BF16), so it "
                                          "trains in fp32 (emulated bf16 would be slower; --amp force uses it anyway)")


def cpu_bf16_units(cpuinfo: Path = CPUINFO) -> Tuple[str, ...]:
    """The bf16 units of this CPU, by /proc/cpuinfo flag name; torch's own queries where
    /proc/cpuinfo is missing (not Linux)."""
    try:
        flags = set()
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
                break
        return tuple(f for f in BF16_FLAGS if f in flags)
    except OSError:
        return _torch_bf16_units()


def _torch_bf16_units() -> Tuple[str, ...]:
    import torch

    caps = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    queries = {"amx_bf16": getattr(torch.cpu, "_is_amx_tile_supported", None),
               "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", None)}
    found = tuple(name for name, query in queries.items() if query is not None and query())
    return found or (("avx512_bf16",) if "BF16" in str(caps).upper() else ())


def host_capabilities() -> Capabilities:
    """This host's bf16 units and CUDA device."""
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return Capabilities(cpu_bf16_units(), cuda)


def resolve_precision(mode: str, device) -> Precision:
    """``choose_precision`` for this host and ``device`` (a torch.device)."""
    if check_amp(mode) == "off":
        return FP32
    return choose_precision(mode, device.type, host_capabilities())


def autocast(precision: Precision):
    """The autocast context of ``precision`` (a no-op context for fp32)."""
    if precision.autocast is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(precision.autocast, dtype=precision.dtype)


def grad_scaler(precision: Precision):
    """A ``torch.amp.GradScaler`` where ``precision`` needs one, else None."""
    if not precision.scaler:
        return None
    import torch

    return torch.amp.GradScaler(precision.autocast)
