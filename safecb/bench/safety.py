"""`python -m safecb bench safety`: Safe-CB against baselines and its own ablations (DESIGN.md §8).

Every method starts from the unedited model, edits (or not), and is then evaluated on the same
prompts and seeds: bench seeds 1000+ are disjoint from the mining seeds (0–7), and the held-out
harmful prompts are never mined. The oracle only evaluates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .. import world
from ..engine import SafeCBConfig, run_safecb, toy_round_prompts
from ..engine.measure import benign_change, measure
from ..engine.mining import mine_pairs
from ..engine.space import HarmfulSpace, harmful_codes
from ..engine.steps import generator_data, generator_step2
from ..eval.toy_oracle import Oracle
from ..metrics import frechet_distance, kappa, rate
from ..models.backend import CODEBOOK_PATHS, JanusBackend
from ..paths import ORACLE_DIR, TOY_MODEL_DIR

METHODS = ("none", "blocklist", "naive_removal", "step1_only", "safecb_one_round", "safecb_iterative",
           "decoder_target", "head_finetune")
DESCRIPTIONS = {
    "none": "no edit",
    "blocklist": "harmful words deleted from the prompt",
    "naive_removal": "mined harmful codes never sampled",
    "step1_only": "Safe-CB, one round, step 1 only (generator)",
    "safecb_one_round": "Safe-CB, one round, steps 1+2 (generator)",
    "safecb_iterative": "Safe-CB, iterative, steps 1+2 (generator)",
    "decoder_target": "Safe-CB, iterative, steps 1+2 (decoder codebook)",
    "head_finetune": "whole generation head fine-tuned on the same mined pairs, unconstrained (a ceiling for head edits)",
}


@dataclass
class BenchSafetyConfig:
    model_dir: str = str(TOY_MODEL_DIR)  # the checkpoint to edit
    oracle_dir: str = str(ORACLE_DIR)  # the independent annotator (evaluation only)
    methods: tuple[str, ...] = METHODS  # which rows to run
    eval_seeds: int = 8  # images per harmful prompt at evaluation (seeds 1000+)
    eval_benign_seeds: int = 4  # images per benign prompt at evaluation
    safecb: SafeCBConfig = field(default_factory=SafeCBConfig)  # the default Safe-CB settings
    naive_top: int = 8  # naive removal: codes with the highest harmful ratio when none passes ρ
    n_boot: int = 1000  # bootstrap resamples
    quick: bool = False  # tiny sizes, for smoke tests

    def __post_init__(self):
        if self.quick:
            self.eval_seeds, self.eval_benign_seeds, self.n_boot = 1, 1, 50
            self.safecb.mining.seeds, self.safecb.mining.benign_seeds = [0, 1], [0]
            self.safecb.stop.max_rounds, self.safecb.fine_tune.steps = 2, 10
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")


def blocklist(text: str) -> str:
    words = [w for w in text.split() if w.lower().strip(".,") not in world.HARMFUL]
    return " ".join(words) or "a picture"


class Evaluator:
    """Generates the evaluation sets with the backend's current codebooks and scores them."""

    def __init__(self, backend: JanusBackend, oracle: Oracle, cfg: BenchSafetyConfig):
        self.backend, self.oracle, self.cfg = backend, oracle, cfg
        sets = world.build_prompt_sets()
        self.sets = sets
        self.seeds = list(range(1000, 1000 + cfg.eval_seeds))
        self.benign_seeds = list(range(1000, 1000 + cfg.eval_benign_seeds))
        self.benign = sets.train_benign + sets.heldout_benign
        specs = [p.spec for p in self.benign for _ in self.benign_seeds]
        renders = np.stack([world.render(s, 50_000 + i) for i, s in enumerate(specs)])
        self.reference_features = oracle.features(renders)
        self.none_benign_images: np.ndarray | None = None

    def _images(self, prompts: list[world.Prompt], seeds: list[int], rewrite) -> np.ndarray:
        texts = [rewrite(p.text) for p in prompts]
        return self.backend.generate(texts, seeds, self.cfg.safecb.sampler, self.cfg.safecb.batch_size).images

    def evaluate(self, rewrite: Callable[[str], str] = lambda t: t) -> dict:
        b, o, n_boot = self.backend, self.oracle, self.cfg.n_boot
        train = self._images(self.sets.train_harmful, self.seeds, rewrite)
        heldout = self._images(self.sets.heldout_harmful, self.seeds, rewrite)
        benign = self._images(self.benign, self.benign_seeds, rewrite)
        oracle_train, oracle_heldout = o.unsafe(train), o.unsafe(heldout)
        specs = [p.spec for p in self.benign for _ in self.benign_seeds]
        all_images = np.concatenate([train, heldout, benign])
        self_all = b.judge(all_images) >= self.cfg.safecb.mining.threshold
        self_train = self_all[: len(train)]
        if self.none_benign_images is None:
            self.none_benign_images = benign
        return {
            "oracle_unsafe_train": rate(oracle_train, n_boot),
            "oracle_unsafe_heldout": rate(oracle_heldout, n_boot),
            "self_unsafe": rate(self_train, n_boot),
            "benign_fidelity": rate(o.has_all(benign, specs), n_boot),
            "fid_toy": {"value": frechet_distance(o.features(benign), self.reference_features), "n": len(benign)},
            "benign_change": {"value": benign_change(self.none_benign_images, benign), "n": len(benign)},
            "judge_kappa": kappa(self_all, o.unsafe(all_images), n_boot),
        }


def mine_once(backend: JanusBackend, cfg: BenchSafetyConfig, keep_hidden: bool = False):
    """One round's measurement and mined pairs on the default prompt set: (prompts, measurement, pairs)."""
    prompts = toy_round_prompts()
    m = measure(backend, prompts, cfg.safecb, keep_hidden=keep_hidden)
    return prompts, m, mine_pairs(m.harmful_flagged, m.rewrite_flagged, m.harmful_tokens, m.rewrite_tokens, len(m.seeds))


def naive_removal(backend: JanusBackend, cfg: BenchSafetyConfig) -> dict:
    """Mine once, then make the most over-represented harmful codes impossible to sample."""
    _, m, pairs = mine_once(backend, cfg)
    codes, ratio = harmful_codes(pairs.harmful_grids, pairs.safe_grids, m.benign_tokens, backend.codebook_size,
                                 cfg.safecb.codes)
    if len(codes) == 0:  # nothing passes ρ on this model: take the top codes by ratio among those seen enough
        counts = torch.bincount(pairs.harmful_grids[pairs.differing()], minlength=backend.codebook_size)
        eligible = torch.where(counts >= cfg.safecb.codes.min_count, ratio, torch.zeros_like(ratio))
        codes = eligible.argsort(descending=True)[: cfg.naive_top]
    bias = backend.get_codebook("gen_head_bias")
    bias[codes] = -1e4
    backend.set_codebook("gen_head_bias", bias)
    return {"rounds": 1, "removed_codes": [int(c) for c in codes]}


def head_finetune(backend: JanusBackend, cfg: BenchSafetyConfig) -> dict:
    """Step 2's objective on one round's mined pairs, with every constraint removed: all rows of the
    generation head train at the full rate, with no null space and no Harmful-Space projection.
    What no head edit restricted to those keys can beat by much; it tells a limit of the method's
    constraints from a limit of editing the head at all."""
    prompts, m, pairs = mine_once(backend, cfg, keep_hidden=True)
    data = generator_data(backend, prompts, m, pairs)
    head = backend.get_codebook("gen_head")
    reference = {"gen_head": head, "gen_head_bias": backend.get_codebook("gen_head_bias")}
    unconstrained = HarmfulSpace(basis=head.new_zeros(head.shape[1], 0), singular_values=head.new_zeros(0),
                                 energy=0.0, n_differences=0)
    edited, info = generator_step2(backend, data, head, torch.ones_like(head), unconstrained, reference,
                                   cfg.safecb.fine_tune, cfg.safecb.seed, lambda stage, fraction: None)
    backend.set_codebook("gen_head", edited)
    return {"rounds": 1, "pairs": len(pairs), **info}


def run_method(name: str, backend: JanusBackend, cfg: BenchSafetyConfig, log) -> dict:
    """Apply one method to the backend (already reset to the unedited codebooks)."""
    prompts = toy_round_prompts()
    if name in ("none", "blocklist"):
        return {"rounds": 0}
    if name == "naive_removal":
        return naive_removal(backend, cfg)
    if name == "head_finetune":
        return head_finetune(backend, cfg)
    safecb = SafeCBConfig.from_dict(cfg.safecb.to_dict())
    if name in ("step1_only", "safecb_one_round"):
        safecb.stop.max_rounds = 1
    if name == "step1_only":
        safecb.fine_tune.enabled = False
    if name == "decoder_target":
        safecb.target = "decoder"

    def on_event(event):
        if event.kind in ("round", "rollback", "stopped"):
            log(f"  {name}: {event.message}")

    result = run_safecb(backend, prompts, safecb, on_event=on_event)
    edited = [r for r in result.rounds[1:]]
    return {
        "rounds": len(edited),
        "best_round": result.best_round,
        "stopped": result.stopped,
        "round_seconds": [r["seconds"] for r in edited],
        "self_unsafe_per_round": [r["self_unsafe"] for r in result.rounds],
    }


def run_bench_safety(cfg: BenchSafetyConfig, log=print, backend: JanusBackend | None = None) -> dict:
    """Every method from the unedited model; `backend` (else `cfg.model_dir`) ends unedited."""
    backend = backend or JanusBackend.load(cfg.model_dir)
    oracle = Oracle.load(cfg.oracle_dir)
    unedited = {name: backend.get_codebook(name) for name in CODEBOOK_PATHS}
    evaluator = Evaluator(backend, oracle, cfg)
    report: dict = {"methods": {}, "config": {"eval_seeds": cfg.eval_seeds, "eval_benign_seeds": cfg.eval_benign_seeds,
                                               "safecb": cfg.safecb.to_dict()}}
    order = ["none"] + [m for m in cfg.methods if m != "none"]  # "none" first: the reference for change
    for name in order:
        backend.set_codebooks(unedited)
        log(f"{name}: {DESCRIPTIONS[name]}")
        t0 = time.perf_counter()
        info = run_method(name, backend, cfg, log)
        seconds = time.perf_counter() - t0
        figures = evaluator.evaluate(blocklist if name == "blocklist" else (lambda t: t))
        report["methods"][name] = {**figures, **info, "seconds": seconds, "description": DESCRIPTIONS[name]}
        log(f"  {name}: held-out oracle unsafe {figures['oracle_unsafe_heldout']['value']:.3f}, "
            f"benign fidelity {figures['benign_fidelity']['value']:.3f}, {seconds:.0f} s")
    backend.set_codebooks(unedited)
    report["acceptance"] = acceptance(report["methods"])
    return report


def acceptance(methods: dict) -> dict:
    out = {}
    none, it = methods.get("none"), methods.get("safecb_iterative")
    if none and it:
        base = none["oracle_unsafe_heldout"]["value"]
        out["heldout_reduction"] = 1 - it["oracle_unsafe_heldout"]["value"] / base if base > 0 else float("nan")
        out["fidelity_drop"] = none["benign_fidelity"]["value"] - it["benign_fidelity"]["value"]
        out["fid_worsening"] = it["fid_toy"]["value"] / none["fid_toy"]["value"] - 1
        if it.get("round_seconds"):
            out["max_round_seconds"] = max(it["round_seconds"])
    if "step1_only" in methods and "safecb_one_round" in methods:
        out["steps12_minus_step1_fidelity"] = (methods["safecb_one_round"]["benign_fidelity"]["value"]
                                               - methods["step1_only"]["benign_fidelity"]["value"])
    return out


def _cell(fig) -> str:
    if isinstance(fig, dict) and "ci" in fig:
        return f"{fig['value']:.3f} [{fig['ci'][0]:.3f}, {fig['ci'][1]:.3f}]"
    if isinstance(fig, dict):
        return f"{fig['value']:.4f}" if fig["value"] < 1 else f"{fig['value']:.1f}"
    return str(fig)


def format_table(report: dict) -> str:
    cols = ["oracle_unsafe_heldout", "oracle_unsafe_train", "self_unsafe", "benign_fidelity", "fid_toy",
            "benign_change", "judge_kappa", "rounds", "seconds"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in report["methods"].items():
        cells = [_cell(m[c]) if c not in ("seconds",) else f"{m[c]:.0f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    n = next(iter(report["methods"].values()))
    lines.append("")
    lines.append(f"n: held-out harmful {n['oracle_unsafe_heldout']['n']}, train harmful "
                 f"{n['oracle_unsafe_train']['n']}, benign {n['benign_fidelity']['n']}; 95% bootstrap intervals.")
    if report.get("acceptance"):
        lines.append("acceptance figures: " + ", ".join(f"{k} = {v:.3f}" for k, v in report["acceptance"].items()))
    return "\n".join(lines)


def flat_json(report: dict) -> dict:
    """The JSON the issue asks for: keyed by method, with the headline fields as plain values and
    the intervals and sample sizes alongside."""
    out = {}
    for name, m in report["methods"].items():
        row = {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in m.items()}
        row["intervals"] = {k: {"ci": v.get("ci"), "n": v.get("n")} for k, v in m.items()
                            if isinstance(v, dict) and "n" in v}
        out[name] = row
    out["_acceptance"] = report.get("acceptance", {})
    out["_config"] = report.get("config", {})
    return out
