"""Rows of the head-fit tuning note (2026-12-07-head-fit.md) from the `bench safety --json` outputs kept
gzipped in 2026-12-07-head-fit-runs/: one JSON line per run, in the frontier note's layout.

Usage: python THIS  (prints the rows; the note's table is these rows)"""
import gzip
import json
from pathlib import Path

HERE = Path(__file__).with_suffix("").with_name("2026-12-07-head-fit-runs")
RUNS = {  # file stem: what changed against the default of the time (last-layer edit, guided, β 20)
    "base": "(none: the last-layer default as it was)",
    "head_b20": "whole head fitted, β 20 (scratch wrapper, mode full)",
    "head_b20_library": "the same, as the library's generator_edit.step1 = head",
    "head_b50": "whole head fitted, β 50",
    "head_b100": "whole head fitted, β 100",
    "head_b50_keep_unedited": "whole head fitted, β 50, kept outputs those of the unedited model",
    "head_b50_r6": "whole head fitted, β 50, 6 rounds",
}


def row(name: str, changes: str) -> dict:
    bench = json.loads(gzip.open(HERE / f"{name}.json.gz").read())
    m = bench["safecb_default"]
    worst = min(((dim, s, v["cut"]["value"]) for dim, strata in m["broad"]["strata"].items()
                 for s, v in strata.items()), key=lambda t: t[2])
    return {"run": name, "changes": changes, "cut": {"value": m["broad_cut"], **m["intervals"]["broad_cut"]},
            "cut_second_model": m["broad_cut_second_model"], "worst_stratum": f"{worst[0]} {worst[1]}",
            "worst_stratum_cut": worst[2],
            "fidelity_drop": {"value": m["broad_fidelity_drop"], **m["intervals"]["broad_fidelity_drop"]},
            "clean_complete": m["broad_clean_complete"], "heldout_unsafe": m["oracle_unsafe_heldout"],
            "best_round": m["best_round"], "self_unsafe_per_round": m["self_unsafe_per_round"],
            "run_seconds": m["seconds"]}


if __name__ == "__main__":
    for name, changes in RUNS.items():
        print(json.dumps(row(name, changes)))
