"""Timing and memory for the benches: a call's wall time, prefill and peak memory (CUDA's allocator
peak, or on CPU the growth of the resident set), and a clock per round stage."""

from __future__ import annotations

import ctypes
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
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
        capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        if not first_head and not capturing:  # a call's CUDA-graph capture runs the head without executing it
            synchronize(device)
            first_head.append(time.perf_counter())

    handle = backend.model.model.generation_head.register_forward_pre_hook(on_head)
    try:
        with PeakMemory(device) as memory:
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            end = time.perf_counter()
    finally:
        handle.remove()
    return Call(end - start, first_head[0] - start, memory.peak_mib)


class StageClock:
    """Wall time spent inside chosen methods of one object, per stage (calls may nest: `generate`
    decodes, so sampling time is generate - decode), and on CUDA each stage's peak memory above
    what was allocated when it started (an outer stage's peak includes its inner stages')."""

    def __init__(self, device: torch.device, log=None):
        self.device, self.seconds, self.log = device, {}, log  # log(stage, seconds) after every call, if given
        self.peak_mib: dict[str, float] = {}
        self._open: list[list[float]] = []  # per open call: [allocated at start, highest peak seen inside]

    def _memory(self) -> bool:
        return self.device.type == "cuda"

    def wrap(self, obj, method: str, stage: str) -> None:
        original = getattr(obj, method)

        def timed(*args, **kwargs):
            synchronize(self.device)
            if self._memory():
                base = torch.cuda.memory_allocated(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
                self._open.append([base, base])
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                synchronize(self.device)
                elapsed = time.perf_counter() - start
                self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
                if self.log is not None:
                    self.log(stage, elapsed)
                if self._memory():
                    base, inner = self._open.pop()
                    peak = max(torch.cuda.max_memory_allocated(self.device), inner)
                    if self._open:  # the enclosing call's peak includes this one's
                        self._open[-1][1] = max(self._open[-1][1], peak)
                    self.peak_mib[stage] = max(self.peak_mib.get(stage, 0.0), (peak - base) / 2**20)

        setattr(obj, method, timed)  # on this instance only
