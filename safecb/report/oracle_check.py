"""The judges' decoy check (`python -m safecb.eval.oracle_check --results results/oracle_check`):
one row per rendered image and judge. Each image is its own scene, so shares carry the exact
(Clopper-Pearson) interval the check prints. A pooled cell holds only images of one truth: where a
kind is not benign for an object (blood under a blob of its own colour) those images are left out."""

from __future__ import annotations

import pandas as pd
from scipy.stats import binomtest

NEEDS = ("oracle_check",)

JUDGES = {"oracle": "oracle", "shape_judge": "second judge"}  # results folder name of each judge's assets
RELATIONS = ("held", "placed")
TRUTH = {"intact": "harmful", "erase_part": "harmful (half left)"}
HELD_OUT = ("blob_skin", "blob_own")  # safecb.eval.decoys.HELD_OUT: never trained on
POOLED = ("blob_skin", "blob_own", "blob_any", "shape", "erase_most", "nothing")  # blobs, shapes, slivers, empty hands


def pooled_cell(images: pd.DataFrame) -> pd.Series:
    """The verdicts of one judge × relation × kind cell: its known-benign images, or all of them
    when the kind is benign for no object."""
    benign = images["known_benign"].astype(bool)
    return images.loc[benign if benign.any() else slice(None), "unsafe"].astype(bool)


def exact(flags: pd.Series) -> str:
    k, n = int(flags.sum()), len(flags)
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k / n:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def decoy_table(images: pd.DataFrame) -> str:
    cells = {key: pooled_cell(group) for key, group in images.groupby(["judge", "relation", "kind"])}
    kinds = list(dict.fromkeys(images["kind"]))  # in the check's order: decoys.KINDS, then benign scenes
    lines = ["| kind | truth | trained on | " + " | ".join(f"{r}, {JUDGES[j]}" for r in RELATIONS for j in JUDGES) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in RELATIONS for _ in JUDGES) + " |"]
    for kind in kinds:
        sizes = " / ".join(str(len(cells[(next(iter(JUDGES)), r, kind)])) for r in RELATIONS)
        trained = "—" if kind in ("intact", "benign_scenes") else ("no (measures transfer)" if kind in HELD_OUT else "yes")
        values = " | ".join(exact(cells[(j, r, kind)]) for r in RELATIONS for j in JUDGES)
        lines.append(f"| {kind} ({sizes}) | {TRUTH.get(kind, 'benign')} | {trained} | {values} |")
    return "\n".join(lines)


def figures(evidence) -> dict[str, str]:
    images = evidence["oracle_check"]["images"]
    missing = set(JUDGES) - set(images["judge"])
    if missing:
        raise ValueError(f"results/oracle_check lacks the judges {sorted(missing)}")
    pooled = {}
    for judge in JUDGES:
        flags = pd.concat([pooled_cell(g) for (j, _, kind), g in images.groupby(["judge", "relation", "kind"])
                           if j == judge and kind in POOLED])
        pooled[judge] = (int(flags.sum()), len(flags))
    worst_held_out = {judge: max(pooled_cell(g).mean() for (j, _, kind), g in
                                 images.groupby(["judge", "relation", "kind"]) if j == judge and kind in HELD_OUT)
                      for judge in JUDGES}
    return {
        "oracle_check.decoy_table": decoy_table(images),
        "oracle_check.pooled": ", ".join(f"the {JUDGES[j]} calls {k} of {n} unsafe ({k / n:.3f})"
                                         for j, (k, n) in pooled.items()),
        "oracle_check.held_out_max": " and ".join(f"{v:.3f} ({JUDGES[j]})" for j, v in worst_held_out.items()),
    }
