"""Timing and memory for the benches: a call's wall time, prefill and peak memory (CUDA's allocator
peak, or on CPU the growth of the resident set), and a clock per round stage."""

from __future__ import annotations

import ctypes
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def proc_status_kb(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_cpu_peak() -> bool:
    """Return freed heap to the OS, then reset the peak RSS (VmHWM); False where Linux /proc lacks it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Extra memory a block needs at its peak, in MiB (None where it cannot be measured)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mib = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = proc_status_kb("VmRSS") if _reset_cpu_peak() else None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        elif self.base is not None:
            peak = proc_status_kb("VmHWM")
            self.peak_mib = None if peak is None else (peak - self.base) / 1024
        return False


@dataclass
class Call:
    seconds: float  # wall time of the whole call
    prefill_s: float  # from the call's start to its first generation-head call
    peak_mib: float | None  # extra memory at the call's peak


def timed_call(fn, backend) -> Call:
    device = backend.device
    first_head: list[float] = []

    def on_head(module, args):
        if not first_head:
            _sync(device)
            first_head.append(time.perf_counter())

    handle = backend.model.model.generation_head.register_forward_pre_hook(on_head)
    try:
        with PeakMemory(device) as memory:
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            end = time.perf_counter()
    finally:
        handle.remove()
    return Call(end - start, first_head[0] - start, memory.peak_mib)


class StageClock:
    """Wall time spent inside chosen methods of one object, per stage (calls may nest: `generate`
    decodes, so sampling time is generate - decode)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, {}

    def wrap(self, obj, method: str, stage: str) -> None:
        original = getattr(obj, method)

        def timed(*args, **kwargs):
            _sync(self.device)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _sync(self.device)
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

        setattr(obj, method, timed)  # on this instance only


