"""bfloat16 on this machine: whether the CPU computes it natively (its flags), and what ``bf16: auto`` resolves to.

Only the Nature CNN torso has a bf16 path (autocast; qzoo/networks.py), so 'auto' is 'false' for every other network.
"""

from __future__ import annotations

from pathlib import Path

import torch

from qzoo.config import Config

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPU flags (as /proc/cpuinfo spells them) of native bf16 math


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU feature flags the kernel reports; None where there is no readable /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return set(value.split())
    return set()


def native_bf16_cpu(flags: set[str] | None = None) -> bool:
    """True when this CPU computes bfloat16 natively (AVX512_BF16 or AMX), read from its flags (``flags``, or
    /proc/cpuinfo's; without one, torch's own CPU capability checks). Elsewhere torch emulates bf16
    convolutions, which made a Nature-CNN update ~12x slower than float32 (AVX2 AMD EPYC, BENCHMARKS.md)."""
    flags = cpu_flags() if flags is None else flags
    if flags is not None:
        return any(flag in flags for flag in NATIVE_BF16_FLAGS)
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if callable(check))


def bf16_enabled(setting: str, device_type: str = "cpu") -> bool:
    """The ``bf16`` setting ('auto', 'true', 'false') as a bool: 'auto' is on with CUDA or a native-bf16 CPU."""
    if setting == "auto":
        return device_type == "cuda" or (device_type == "cpu" and native_bf16_cpu())
    return setting == "true"


def resolve_bf16(config: Config, device: torch.device, observation_shape: tuple) -> tuple[str, str | None]:
    """(the ``bf16`` value the run uses, 'true' or 'false'; one line saying what 'auto' chose, or warning that
    'true' will be slow, or None). Only the Nature CNN torso has a bf16 path: elsewhere 'auto' is 'false'."""
    if config.resolved_network(observation_shape) != "nature_cnn":
        return ("false" if config.bf16 == "auto" else config.bf16), None
    on = bf16_enabled(config.bf16, device.type)
    if config.bf16 == "auto":
        if device.type == "cuda":
            why = "CUDA"
        elif on:
            found = [flag for flag in NATIVE_BF16_FLAGS if flag in (cpu_flags() or set())]
            why = f"this CPU computes bfloat16 natively: {', '.join(found) or 'per torch'}"
        else:
            why = f"this CPU has no native bfloat16 (neither {' nor '.join(NATIVE_BF16_FLAGS)} among its flags)"
        return str(on).lower(), f"qzoo: bf16=auto: {'on' if on else 'off'} ({why})"
    if on and device.type == "cpu" and not native_bf16_cpu():
        return "true", ("qzoo: warning: bf16=true, but this CPU has no native bfloat16 (AVX512_BF16 or AMX), so "
                        "torch emulates it: updates run ~10x slower than in float32; set bf16=false or auto")
    return config.bf16, None
