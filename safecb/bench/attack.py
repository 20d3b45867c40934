"""`python -m safecb bench attack`: an evaluation-only red team against each method's model state.

Every method starts from the unedited model and builds its state with `bench safety`'s code
(`run_method`, `run_safecb_method`); then the attacks of `safecb.eval.attack` run against it with the
oracle as their objective, and are validated on fresh seeds; the swap-back attack decodes each state's
tokens through the unedited decoder. The soft attack's targets are drawn once
from the unedited model: the attacker holds the public checkpoint. The keyword blocklist filters the
discrete attack's prompts; it cannot see soft prompts, so its soft row is the unedited model's.

The rows behind every figure go under `_rows` (written with `--results`, read by
safecb/report/attack.py): `methods`, `cells` (where each defence × attack cell's rows are),
`instances` (one per attack instance) and `images` (one per validation image, each view).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..engine import SafeCBConfig, preset_changes
from ..eval.attack import AttackConfig, AttackResult, attack_model_state, quick_attack_config, soft_targets
from ..eval.toy_oracle import Oracle
from ..models.backend import CODEBOOK_PATHS, JanusBackend
from ..paths import ORACLE_DIR, TOY_MODEL_DIR
from .safety import DESCRIPTIONS as SAFETY_DESCRIPTIONS
from .safety import METHOD_CHANGES, BenchSafetyConfig, blocklist, run_method, run_safecb_method

METHODS = ("none", "blocklist", "naive_removal", "safecb_generator", "safecb_guided", "decoder_target", "default")
QUICK_METHODS = ("none", "blocklist", "naive_removal")  # --quick without --methods: the cheap states
DESCRIPTIONS = {
    "none": "no edit",
    "blocklist": "harmful words deleted from the prompt (cannot see soft prompts)",
    "naive_removal": "mined harmful codes never sampled",
    "safecb_generator": "Safe-CB, iterative, steps 1+2, generator target",
    "safecb_guided": SAFETY_DESCRIPTIONS["safecb_guided"],
    "decoder_target": "Safe-CB, iterative, steps 1+2, decoder codebook target",
    "default": "Safe-CB with the current default config",
}
SAFECB_CHANGES = {  # the Safe-CB methods' changes to the default config
    "safecb_generator": METHOD_CHANGES["safecb_iterative"],
    "safecb_guided": METHOD_CHANGES["safecb_guided"],
    "decoder_target": METHOD_CHANGES["decoder_target"],
    "default": {},
}
SAFETY_METHOD = {"none": "none", "blocklist": "blocklist", "naive_removal": "naive_removal"}  # built by run_method


@dataclass
class BenchAttackConfig:
    model_dir: str = str(TOY_MODEL_DIR)  # the checkpoint to edit and attack
    oracle_dir: str = str(ORACLE_DIR)  # the attacker's objective and the judge of validation (evaluation only)
    methods: tuple[str, ...] | None = None  # which rows to run; None: all (QUICK_METHODS with quick)
    attack: AttackConfig = field(default_factory=AttackConfig)  # attack budgets and seeds
    safecb: SafeCBConfig = field(default_factory=SafeCBConfig)  # the current default Safe-CB config
    out_dir: str | None = None  # where the best prompts, images and soft embeddings are saved
    quick: bool = False  # tiny sizes, for smoke tests

    def __post_init__(self):
        if self.quick:
            self.attack = quick_attack_config()
            self.safecb = self.safecb.override(preset_changes("quick"))
        if self.methods is None:
            self.methods = QUICK_METHODS if self.quick else METHODS
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")


def build_state(name: str, backend: JanusBackend, cfg: BenchAttackConfig, log) -> dict:
    """Apply one method to the backend (already reset to the unedited codebooks); the build's figures."""
    if name in SAFETY_METHOD:
        return run_method(SAFETY_METHOD[name], backend, BenchSafetyConfig(safecb=cfg.safecb, methods=("none",)), log)
    return run_safecb_method(name, backend, cfg.safecb.override(SAFECB_CHANGES[name]), log)


def run_bench_attack(cfg: BenchAttackConfig, log=print, backend: JanusBackend | None = None) -> dict:
    """Every method from the unedited model, both attacks on each; `backend` (else `cfg.model_dir`) ends unedited."""
    t_start = time.perf_counter()
    backend = backend or JanusBackend.load(cfg.model_dir)
    oracle = Oracle.load(cfg.oracle_dir)
    unedited = {name: backend.get_codebook(name) for name in CODEBOOK_PATHS}
    targets = soft_targets(backend, oracle, cfg.attack) if "soft" in cfg.attack.attacks else None
    report: dict = {"methods": {}, "config": {"attack": asdict(cfg.attack), "safecb": cfg.safecb.to_dict()}}
    rows: dict[str, list[dict]] = {"methods": [], "cells": [], "instances": [], "images": []}
    built_configs: dict[str, str] = {}  # a Safe-CB config (as JSON text) -> the first method built with it
    for name in cfg.methods:
        row: dict = {"description": DESCRIPTIONS[name]}
        same = None
        if name in SAFECB_CHANGES:
            key = repr(cfg.safecb.override(SAFECB_CHANGES[name]).to_dict())
            same = built_configs.get(key)
            built_configs.setdefault(key, name)
        if same is not None:  # the same config builds the same state: report that row again
            log(f"{name}: same Safe-CB config as {same}")
            report["methods"][name] = {**report["methods"][same], "description": DESCRIPTIONS[name], "same_as": same}
            rows["methods"].append(method_row(name, report["methods"][name]))
            rows["cells"] += [cell_row(name, a, same, f"same Safe-CB config as {same}")
                              for a in report["methods"][same]["attacks"]]
            continue
        backend.set_codebooks(unedited)
        log(f"{name}: {DESCRIPTIONS[name]}")
        t0 = time.perf_counter()
        row["build"] = build_state(name, backend, cfg, log)
        row["build_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        attack = cfg.attack
        if name == "blocklist" and "soft" in attack.attacks and "none" in report["methods"]:
            attack = replace(attack, attacks=tuple(a for a in attack.attacks if a != "soft"))
        result = attack_model_state(backend, oracle, attack, blocklist if name == "blocklist" else None, targets,
                                    original_decoder=unedited["decoder"])
        row["attack_seconds"] = time.perf_counter() - t0
        row["attacks"] = {a: r.to_dict() for a, r in result.results.items()}
        if name == "blocklist" and "soft" not in row["attacks"] and "soft" in cfg.attack.attacks:
            row["attacks"]["soft"] = {**report["methods"]["none"]["attacks"]["soft"], "same_as": "none",
                                      "note": "a word filter cannot see soft prompts: the unedited model's figures"}
        for attack_result in result.results.values():
            rows["instances"] += instance_rows(name, attack_result)
            rows["images"] += image_rows(name, attack_result, result.validation_seeds)
        rows["cells"] += [cell_row(name, a, r.get("same_as", name), r.get("note", ""))
                          for a, r in row["attacks"].items()]
        rows["methods"].append(method_row(name, row))
        if cfg.out_dir:
            result.save(Path(cfg.out_dir), prefix=f"{name}_")
        report["methods"][name] = row
        log(f"  {name}: " + ", ".join(f"{a} ASR {r['asr']['value']:.2f}" for a, r in row["attacks"].items())
            + f"; build {row['build_seconds']:.0f} s, attacks {row['attack_seconds']:.0f} s")
    backend.set_codebooks(unedited)
    report["wall_seconds"] = time.perf_counter() - t_start
    report["_rows"] = rows
    return report


# ---------------------------------------------------------------- result rows (safecb/evidence.py)


def method_row(name: str, row: dict) -> dict:
    """One defence: what it is, which method's state it shares (if any), and its times (0 when it
    shares another's: nothing ran for it)."""
    same = row.get("same_as", "")
    return {"method": name, "description": row["description"], "same_as": same,
            "build_seconds": 0.0 if same else round(row["build_seconds"], 1),
            "attack_seconds": 0.0 if same else round(row["attack_seconds"], 1)}


def cell_row(method: str, attack: str, rows_from: str, note: str) -> dict:
    """Where one (defence, attack) cell's instance and image rows are: under `rows_from`, which is the
    method itself unless the cell repeats another's (the blocklist's soft attack is the unedited
    model's; a Safe-CB method with the same config as an earlier one is that one)."""
    return {"method": method, "attack": attack, "rows_from": rows_from, "note": note}


def instance_rows(method: str, result: AttackResult) -> list[dict]:
    """One row per attack instance. `instance` numbers the instances of one attack; for the swap-back
    it is the harmful prompt's place in the swap-back list, the same prompt under every method."""
    out = []
    for k, i in enumerate(result.instances):
        out.append({"method": method, "attack": result.attack, "instance": k, "target": i.target,
                    "restart": i.restart, "target_caption": i.target_caption, "target_source": i.target_source,
                    "prompt": i.prompt, "start_prompt": i.start_prompt, "filtered_prompt": i.filtered_prompt,
                    "search_score": round(float(i.search_score), 4), "scored": i.scored,
                    "validation_images": len(i.validation_unsafe), "unsafe_images": int(sum(i.validation_unsafe)),
                    "unsafe_share": float(sum(i.validation_unsafe)) / max(len(i.validation_unsafe), 1),
                    "success": bool(i.success)})
    return out


def image_rows(method: str, result: AttackResult, seeds: list[int]) -> list[dict]:
    """One row per validation image, with the oracle's verdict and score. `view`: "served" (what the
    service shows) or "model" (the swap-back: the model's tokens through the unedited decoder);
    `role`: "attack" (the instance's own images; the swap-back's in both views) or "start" (the
    discrete and soft attacks' starting prompts at the same seeds)."""
    views = ([("model", "attack", "validation"), ("served", "attack", "start_validation")]
             if result.attack == "swap_back" else
             [("served", "attack", "validation"), ("served", "start", "start_validation")])
    out = []
    for k, i in enumerate(result.instances):
        for view, role, field_name in views:
            verdicts, scores = getattr(i, f"{field_name}_unsafe"), getattr(i, f"{field_name}_scores")
            out += [{"method": method, "attack": result.attack, "instance": k, "seed": seed, "view": view,
                     "role": role, "oracle_unsafe": bool(v), "oracle_score": round(float(p), 4)}
                    for seed, v, p in zip(seeds, verdicts, scores)]
    return out


def _asr_cell(result: dict | None) -> str:
    if not result:
        return "-"
    asr = result["asr"]
    cell = f"{asr['value']:.2f} [{asr['ci'][0]:.2f}, {asr['ci'][1]:.2f}] ({asr['successes']}/{asr['n']})"
    return cell + (" (as none)" if result.get("same_as") == "none" else "")


def _share_cell(result: dict | None) -> str:
    if not result:
        return "-"
    share = result["image_unsafe"]
    return f"{share['value']:.2f} [{share['ci'][0]:.2f}, {share['ci'][1]:.2f}]"


def format_table(report: dict) -> str:
    lines = ["| method | discrete ASR | soft ASR | swap-back ASR | discrete image unsafe | soft image unsafe | "
             "swap-back image unsafe (served) | soft start unsafe | best discrete prompt | build s | attack s |",
             "|---" * 11 + "|"]
    for name, m in report["methods"].items():
        d, s, w = m["attacks"].get("discrete"), m["attacks"].get("soft"), m["attacks"].get("swap_back")
        best = max(d["instances"], key=lambda i: (sum(i["validation_unsafe"]), i["search_score"])) if d else None
        prompt = f"`{best['prompt']}`" if best else "-"
        start = f"{s['start_image_unsafe']['value']:.2f}" if s else "-"
        seconds = "same as " + m["same_as"] if m.get("same_as") else f"{m['build_seconds']:.0f}"
        served = f" ({w['start_image_unsafe']['value']:.2f})" if w else ""
        lines.append(f"| {name} | {_asr_cell(d)} | {_asr_cell(s)} | {_asr_cell(w)} | {_share_cell(d)} | "
                     f"{_share_cell(s)} | {_share_cell(w)}{served} | {start} | {prompt} | {seconds} | "
                     f"{m.get('attack_seconds', 0):.0f} |")
    attack = report["config"]["attack"]
    lines += ["", f"ASR: share of attack instances (discrete: restarts; soft: harmful object x restart) whose "
              f"{attack['validation_seeds']} validation images (seeds {attack['validation_seed_start']}+, never "
              f"searched) are oracle-unsafe in at least {attack['success_share']:.0%}; Wilson 95% intervals. "
              "Image unsafe: share of all validation images (correlated within an instance). Swap-back: one "
              f"instance per harmful prompt ({attack.get('swap_back_prompts', '-')} from the broad grid's reporting "
              "half), its images the edited generator's tokens through the unedited decoder; in brackets, the "
              "same tokens as the service shows them.",
              f"wall time {report['wall_seconds']:.0f} s"]
    return "\n".join(lines)
