"""The studio's speed (`python -m ui bench --results results/app`): every timed sample."""

from __future__ import annotations

import statistics

NEEDS = ("app",)


def figures(evidence) -> dict[str, str]:
    timings = evidence["app"]["timings"]
    umap_rows = int(evidence["app"]["umap"]["rows"].iloc[0])

    def values(measure: str, side: str) -> list[float]:
        chosen = timings[(timings["measure"] == measure) & (timings["side"] == side)].sort_values("sample")
        return [float(v) for v in chosen["seconds"]]

    ready = values("ready", "app")[0]
    compare = values("compare", "http")
    wall = {side: statistics.mean(values("round_wall", side)) for side in ("ui", "cli")}
    compute = {side: statistics.mean(values("round_compute", side)) for side in ("ui", "cli")}
    pairs = len(values("round_wall", "ui"))
    table = "\n".join([
        "| figure | measured | target |",
        "| --- | --- | --- |",
        f"| app ready after `python app.py` | {ready:.2f} s | ≤ 20 s |",
        f"| Generate & compare over HTTP, median / max of {len(compare)} | {statistics.median(compare):.2f} / "
        f"{max(compare):.2f} s | ≤ 2 s |",
        f"| one round (8 seeds) from the UI, job claimed → finished / via `python -m safecb run`, process start → "
        f"exit, mean of {pairs} each | {wall['ui']:.1f} / {wall['cli']:.1f} s (ratio {wall['ui'] / wall['cli']:.2f}; "
        f"rounds' own compute {compute['ui']:.1f} / {compute['cli']:.1f} s) | ratio ≤ 1.5 |",
        f"| UMAP map of the {umap_rows:,} codebook rows after the app's background warm-up / in a cold process | "
        f"{values('umap_first_map', 'warmed')[0]:.2f} / {values('umap_first_map', 'cold')[0]:.2f} s | ≤ 10 s |",
    ])
    return {"app.table": table}
