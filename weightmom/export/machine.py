"""What the latency table ran on: the CPU model and its int8 instructions, since int8 gains depend on them.

A CPU with VNNI (avx512_vnni, avx_vnni) or AMX (amx_int8) multiplies int8 in one instruction; one without
emulates it with wider ones and gains less from model.int8.onnx, so a latency number means little without this.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "avx512f", "avx2")
VNNI_OR_AMX = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """{"model", "int8_flags", "int8_dot_product"}; the flags are None where /proc/cpuinfo is not there to read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "flags" not in fields:
        return {"model": model, "int8_flags": None, "int8_dot_product": None, "cores": _cores()}
    flags = set(fields["flags"].split())
    present = [flag for flag in INT8_FLAGS if flag in flags]
    return {"model": model, "int8_flags": present, "int8_dot_product": any(f in flags for f in VNNI_OR_AMX),
            "cores": _cores()}


def _cores() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def describe(info: dict) -> str:
    """One line for report.md and the CLI."""
    if info["int8_flags"] is None:
        return f"CPU: {info['model']} (int8 instruction support unknown: no /proc/cpuinfo)"
    dot = "yes" if info["int8_dot_product"] else "no (int8 gains less here)"
    flags = ", ".join(info["int8_flags"]) or "none of " + ", ".join(INT8_FLAGS)
    return (f"CPU: {info['model']}, {info['cores']} core(s) available; int8 dot-product instructions (VNNI/AMX): "
            f"{dot}; flags: {flags}")
