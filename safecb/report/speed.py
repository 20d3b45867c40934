"""Generation speed: our sampler against transformers' `generate`, per run and batch, from each
timed call (results/speed_gpu, results/speed_cpu). A ratio is transformers' mean seconds per call
over ours, within one run (the two samplers interleaved A B B A on one machine)."""

from __future__ import annotations

import pandas as pd

NEEDS = ("speed_gpu", "speed_cpu")


def _calls(frame: pd.DataFrame, sampler: str) -> pd.Series:
    return frame.loc[frame["sampler"] == sampler, "seconds"]


def _ratio(frame: pd.DataFrame) -> float:
    return _calls(frame, "transformers").mean() / _calls(frame, "ours").mean()


def _spread(values: pd.Series, digits: int) -> str:
    return f"{values.mean():.{digits}f} ({values.min():.{digits}f}–{values.max():.{digits}f})"


def gpu_table(calls: pd.DataFrame, printed: pd.DataFrame) -> str:
    lines = ["| batch | run | our sampler | ours: s / call (range) | transformers: s / call (range) | "
             "ours / transformers | images/s (ours) | share of the bandwidth roofline (ours) |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (batch, run), frame in calls.groupby(["batch", "run"], sort=True):
        ours = _calls(frame, "ours")
        share = printed[(printed["run"] == run) & (printed["batch"] == batch) & (printed["sampler"] == "ours")]
        roofline = f"{share['roofline_share'].iloc[0] * 100:.0f}%" if len(share) else "–"
        lines.append(f"| {batch} | {run} | {frame['mode'].iloc[0]} | {_spread(ours, 2)} | "
                     f"{_spread(_calls(frame, 'transformers'), 1)} | **{_ratio(frame):.1f}×** | "
                     f"{batch / ours.mean():.2f} | {roofline} |")
    return "\n".join(lines)


def cpu_table(calls: pd.DataFrame) -> str:
    lines = ["| batch | run | ours: s / call (4 calls) | transformers: s / call (4 calls) | ours / transformers (blocks) |",
             "| ---: | --- | --- | --- | --- |"]
    for (batch, run), frame in calls.groupby(["batch", "run"], sort=True):
        digits = 1 if run == 1 else 2  # as each run printed them

        def listed(sampler):
            calls = frame.loc[frame["sampler"] == sampler].sort_values("call")["seconds"]
            return ", ".join(f"{v:.{digits}f}" for v in calls)

        blocks = ", ".join(f"{_ratio(block):.2f}" for _, block in frame.groupby("block", sort=True))
        lines.append(f"| {batch} | {run} | {listed('ours')} | {listed('transformers')} | "
                     f"**{_ratio(frame):.2f}×** ({blocks}) |")
    return "\n".join(lines)


def figures(evidence) -> dict[str, str]:
    gpu, cpu = evidence["speed_gpu"], evidence["speed_cpu"]
    calls, printed, machine = gpu["calls"], gpu["printed"], gpu["machine"]

    def ratio(run, batch):
        return _ratio(calls[(calls["run"] == run) & (calls["batch"] == batch)])

    ours_b1 = _calls(calls[(calls["run"] == 2) & (calls["batch"] == 1)], "ours")
    roofline_b1 = printed[(printed["batch"] == 1) & (printed["sampler"] == "ours")]["roofline_share"].iloc[0]
    batch1 = sorted(ratio(run, 1) for run in sorted(calls.loc[calls["batch"] == 1, "run"].unique()))
    cpu_ratios = [_ratio(frame) for _, frame in cpu["calls"].groupby(["batch", "run"])]
    peaks = printed.set_index(["batch", "sampler"])["peak_mib"]
    return {
        "speed.gpu_table": gpu_table(calls, printed),
        "speed.cpu_table": cpu_table(cpu["calls"]),
        "speed.headline_gpu": (f"**{ratio(1, 1):.1f}×** to **{ratio(2, 1):.1f}×** / **{ratio(1, 8):.1f}×** to "
                               f"**{ratio(2, 8):.1f}×** / {ratio(1, 32):.1f}× (three runs on three machines; the "
                               f"higher figures with compiled layers); {ours_b1.mean():.2f} s per image at batch 1; "
                               f"{roofline_b1 * 100:.0f}% of the bandwidth roofline at batch 1"),
        "speed.batch1_range": f"{batch1[0]:.1f}× to {batch1[-1]:.1f}×",
        "speed.copy_bandwidth": f"{machine['copy_bandwidth_gbs'].iloc[0] / 1000:.2f} TB/s",
        "speed.memory": (f"our sampler keeps {machine['sampler_extra_mib'].iloc[0]:.0f} MiB beside the model's "
                         f"{machine['weights_mib'].iloc[0]:,.0f} MiB of weights between calls "
                         f"({machine['sampler_extra_mib'].iloc[0] / machine['weights_mib'].iloc[0] * 100:.1f}%); its "
                         f"per-call peak is {peaks[(1, 'ours')]:,.0f} MiB at batch 1 and {peaks[(8, 'ours')]:,.0f} MiB "
                         f"at batch 8, against {peaks[(1, 'transformers')]:,.0f} and {peaks[(8, 'transformers')]:,.0f} "
                         f"MiB for `generate`"),
        "speed.cpu_ratio_range": f"{min(cpu_ratios):.2f}× to {max(cpu_ratios):.2f}×",
    }
