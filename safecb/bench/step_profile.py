"""Where a decoding step's time goes: one sampler call under torch.profiler (`bench speed --profile`).

The roofline share says how far a step is from its memory traffic, not why. This profiles one
warmed-up call of our sampler and splits the time per generated token into the work the device
did (kernel time on a GPU, operator self time on the CPU), grouped by kernel or operator name,
and the rest of the wall time: on a GPU that rest is the device waiting for launches.

Per token of a whole call, the prefill included: for a full image the prefill is about 2% of the
call; at the CPU's default 16 tokens it is much more, so read CPU figures as a call's mix.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from .timing import synchronize

TOP = 15  # kernels or operators listed, by total time


def _device_events(prof, cuda: bool) -> list[tuple[str, float, int]]:
    """(name, total microseconds, calls) per kernel (CUDA) or operator (CPU, self time)."""
    rows = []
    for event in prof.key_averages():
        if cuda:
            is_kernel = event.device_type == torch.autograd.DeviceType.CUDA
            micros = event.self_device_time_total if is_kernel else 0.0
        else:
            micros = event.self_cpu_time_total
        if micros > 0:
            rows.append((event.key, float(micros), int(event.count)))
    return sorted(rows, key=lambda row: -row[1])


def profile_call(call: Callable[[], object], tokens: int, device: torch.device, top: int = TOP) -> dict:
    """Profile `call` (one sampler call of `tokens` tokens per image, already warmed up) and
    return per-token figures: wall time, device busy time, kernel or operator launches, the top
    names by time."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        call()
        synchronize(device)
        wall = time.perf_counter() - start
    events = _device_events(prof, cuda)
    busy_us = sum(micros for _, micros, _ in events)
    launches = sum(calls for _, _, calls in events)
    return {
        "unit": "CUDA kernels" if cuda else "CPU operators (self time)",
        "tokens": tokens,
        "wall_ms_per_token": 1e3 * wall / tokens,  # profiled: the profiler's own overhead included
        "busy_ms_per_token": 1e-3 * busy_us / tokens,
        "busy_share": min(1.0, 1e-6 * busy_us / wall),
        "launches_per_token": launches / tokens,
        "top": [{"name": name, "calls_per_token": calls / tokens, "us_per_call": micros / calls,
                 "share_of_busy": micros / busy_us} for name, micros, calls in events[:top]],
    }


def format_profile(figures: dict) -> list[str]:
    lines = [
        "",
        f"Where a token's time goes (our sampler, batch {figures['batch']}, {figures['loop']} loop, "
        f"one profiled call of {figures['tokens']} tokens, prefill included; {figures['unit']}): "
        f"{figures['wall_ms_per_token']:.3f} ms wall, "
        f"{figures['busy_ms_per_token']:.3f} ms busy ({100 * figures['busy_share']:.0f}%), "
        f"{figures['launches_per_token']:.0f} launches",
        "",
        "| name | per token | us each | share of busy |",
        "|---|---:|---:|---:|",
    ]
    for row in figures["top"]:
        name = row["name"] if len(row["name"]) <= 90 else row["name"][:87] + "..."
        lines.append(f"| `{name.replace('|', '/')}` | {row['calls_per_token']:.1f} | {row['us_per_call']:.1f} | "
                     f"{100 * row['share_of_busy']:.1f}% |")
    return lines
