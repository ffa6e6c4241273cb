"""Timing and memory helpers shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["peak_memory_mib", "status_kib", "synchronize"]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a timer reads real time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM, ...); 0 where absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_memory_mib(fn: Callable[[], Any], device: torch.device) -> float:
    """Rise of peak memory while ``fn`` runs: CUDA allocator peak, or peak RSS over the RSS before.

    On the CPU it reads Linux's ``VmHWM`` after resetting it through ``/proc/self/clear_refs``;
    NaN where that file cannot be written.
    """
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with contextlib.suppress(OSError, AttributeError):  # hand freed heap pages back to the OS first,
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # or a step reusing them would show no rise at all
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = status_kib("VmRSS")
    except OSError:
        return float("nan")
    fn()
    return (status_kib("VmHWM") - before) / 1024
