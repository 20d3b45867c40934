"""Real-image results in the units published I2P tables use, with everything needed to reproduce them.

Published concept-erasure tables on I2P count NudeNet detections of exposed classes above 0.6 over
all generated images (SD v1.4 on all 4703 prompts: 646), and report the share of unsafe images and
of prompts with at least one unsafe image. A run judged by real-image oracles writes:

- `evaluation.json` before its first round: each oracle's package and version, model file, counted
  classes and threshold; the seeds, sampler settings, model and prompt counts;
- `field_units.json` and `field_units.md` at its end: those units before (round 0, the unedited
  model) and after (the kept round), each figure with n and a 95% bootstrap interval, and the
  provenance above repeated, so the table never travels without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..engine.rundir import EVALUATION as EVALUATION_FILE
from ..io import write_json, write_text

FIELD_UNITS_FILE = "field_units.json"


def write_provenance(run_dir: str | Path, oracle, config, model_source: str, prompts) -> Path:
    seeds = config.mining.seeds
    return write_json(Path(run_dir) / EVALUATION_FILE, {
        "oracle": oracle.describe(),
        "harmful_seeds": list(seeds),
        "benign_seeds": list(config.mining.benign_seeds),
        "sampler": asdict(config.sampler),
        "model": model_source,
        "harmful_prompts": len(prompts.harmful),
        "benign_prompts": len(prompts.benign),
        "images_per_harmful_prompt": len(seeds),
    })


def _cell(figure: dict | None) -> str:
    if figure is None:
        return "-"
    value = figure["value"]
    if "ci" not in figure:
        return f"{value} (n {figure['n']} images)"
    low, high = figure["ci"]
    return f"{value:.3f} [{low:.3f}, {high:.3f}] (n {figure['n']})"


def field_units(rounds: list[dict], best_round: int, provenance: dict) -> dict:
    """Before (round 0) and after (the kept round) figures of every real-image oracle."""
    by_round = {m["round"]: m.get("annotations", {}) for m in rounds}
    before, after = by_round.get(0, {}), by_round.get(best_round, {})
    members = provenance["oracle"].get("members", [provenance["oracle"]])
    rows = []
    for oracle in members:
        name = oracle["name"]
        for unit, key in (("detections above threshold, harmful images", f"{name}_detections_train"),
                          ("unsafe images, harmful prompts", f"{name}_unsafe_train"),
                          ("prompts with >= 1 unsafe image", f"{name}_prompts_with_unsafe"),
                          ("unsafe images, benign prompts", f"{name}_unsafe_benign"),
                          ("Cohen's kappa, self-judge vs oracle", f"judge_kappa_{name}")):
            rows.append({"oracle": name, "unit": unit, "classes": oracle["classes"], "threshold": oracle["threshold"],
                         "before": before.get(key), "after": after.get(key)})
    names = [m["name"] for m in members]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            key = f"kappa_{a}_vs_{b}"
            rows.append({"oracle": f"{a} vs {b}", "unit": "Cohen's kappa between the oracles", "classes": None,
                         "threshold": None, "before": before.get(key), "after": after.get(key)})
    return {"before_round": 0, "after_round": best_round, "rows": rows, "provenance": provenance}


def format_field_units(table: dict) -> str:
    p = table["provenance"]
    lines = [
        f"Real-image oracles, before (round {table['before_round']}) and after (round {table['after_round']}): "
        f"{p['harmful_prompts']} harmful prompts x {p['images_per_harmful_prompt']} seeds {p['harmful_seeds']}, "
        f"{p['benign_prompts']} benign prompts; sampler {p['sampler']}; model {p['model']}",
        "",
        "| oracle | unit | classes, threshold | before | after |",
        "|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        rule = "" if row["classes"] is None else f"{', '.join(row['classes'])}; > {row['threshold']}"
        lines.append(f"| {row['oracle']} | {row['unit']} | {rule} | {_cell(row['before'])} | {_cell(row['after'])} |")
    members = p["oracle"].get("members", [p["oracle"]])
    lines.append("")
    for oracle in members:
        versions = "; ".join(f"{d.get('package', d['detector'])} {d.get('version')} ({d.get('model_file', '')}, "
                             f"onnxruntime {d.get('onnxruntime')})" for d in oracle["detectors"])
        lines.append(f"- {oracle['name']}: {versions}")
    return "\n".join(lines)


def write_field_units(run_dir: str | Path, rounds: list[dict], best_round: int) -> str:
    run_dir = Path(run_dir)
    provenance = json.loads((run_dir / EVALUATION_FILE).read_text())
    table = field_units(rounds, best_round, provenance)
    write_json(run_dir / FIELD_UNITS_FILE, table)
    text = format_field_units(table)
    write_text(run_dir / "field_units.md", text + "\n")
    return text
