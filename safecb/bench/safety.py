"""`python -m safecb bench safety`: Safe-CB against baselines and its own ablations (docs/results.md).

Every method starts from the unedited model, edits (or not), and is then evaluated on the same
prompts and seeds: bench seeds 1000+ are disjoint from the mining seeds (0–7), and the held-out
harmful prompts are never mined. Two evaluations: the 24 held-out prompts (kept for continuity) and
the broad grid (`safecb.eval.broad`: a stratified sample of every harmful scene the toy world can
caption, minus the loop's prompts), where each method's cut against `none` is reported pooled and
per stratum with the worst stratum named. The oracle only evaluates.

Beside its figures the bench leaves the rows they come from (`report["_rows"]`, written with
`--results`; `safecb/report/safety.py` recomputes the docs' figures from them): `images`, one row
per evaluated image and method (both judges' scores and verdicts, served and model-level, the
self-judge, fidelity and replacement flags), `prompts` (each prompt's text and strata, by id),
`methods` (rounds, kept round, run time, FID-toy) and `rounds` (each Safe-CB round's time and
self-judged rate).

With `workers` > 1 the methods are shared among that many one-thread processes (`run_in_workers`):
each evaluates `none` first (every cut's "before", drawn at the same seeds in each) and then its own
methods; the report is merged in the methods' order.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from .. import world
from ..engine import SafeCBConfig, preset_changes, run_safecb, toy_round_prompts
from ..engine.measure import benign_change, measure, unsafe_flags
from ..engine.mining import mine_measurement
from ..engine.space import HarmfulSpace, harmful_codes
from ..engine.steps import generator_data, generator_step2
from ..eval.broad import (BroadGridConfig, GridPrompt, GridResult, build_grid, compare, evaluate_grid, format_cut,
                          model_level_images, strata_table, summary_line)
from ..eval.protocol import BENCH_SEED_START, bench_seeds, reference_renders
from ..eval.toy_oracle import Oracle
from ..metrics import frechet_distance, kappa, rate
from ..models.backend import CODEBOOK_PATHS, JanusBackend
from ..paths import ORACLE_DIR, SHAPE_JUDGE_DIR, TOY_MODEL_DIR
from .workers import run_shares

METHODS = ("none", "blocklist", "naive_removal", "step1_only", "safecb_one_round", "safecb_iterative",
           "safecb_guided", "decoder_target", "safecb_default", "head_finetune")
# What `bench safety` runs unless told otherwise: the baselines, the generator target as a conditional
# fit, the decoder target and the default (the guided generator target); the ablations (step1_only,
# safecb_one_round, head_finetune, safecb_guided) on request.
DEFAULT_METHODS = ("none", "blocklist", "naive_removal", "safecb_iterative", "decoder_target", "safecb_default")
DESCRIPTIONS = {
    "none": "no edit",
    "blocklist": "harmful words deleted from the prompt",
    "naive_removal": "mined harmful codes never sampled",
    "step1_only": "Safe-CB, one round, step 1 only (generator target)",
    "safecb_one_round": "Safe-CB, one round, steps 1+2 (generator target)",
    "safecb_iterative": "Safe-CB, iterative, steps 1+2 (generator target, last layer, conditional fit, β 4)",
    "safecb_guided": "Safe-CB, iterative, generator target, last layer, step 2 fitted as guidance samples (β 20)",
    "decoder_target": "Safe-CB, iterative, steps 1+2 (decoder codebook target)",
    "safecb_default": "Safe-CB with the bench's config as it is (the default config, or as --set changes it)",
    "head_finetune": "whole generation head fine-tuned on the same mined pairs, unconstrained (a ceiling for head edits)",
}
METHOD_CHANGES = {  # the Safe-CB methods' changes to the bench's Safe-CB config (the others run it as it is)
    "step1_only": {"target": "generator", "generator_edit.step1": "alphaedit", "stop.max_rounds": 1,
                   "fine_tune.enabled": False},
    "safecb_one_round": {"target": "generator", "generator_edit.step1": "alphaedit", "stop.max_rounds": 1},
    "safecb_iterative": {"target": "generator", "generator_edit.step1": "alphaedit", "generator_edit.guided": False,
                         "fine_tune.keep_uncond": False, "fine_tune.preserve_weight": 4.0},
    "safecb_guided": {"target": "generator", "generator_edit.step1": "alphaedit", "generator_edit.guided": True,
                      "fine_tune.keep_uncond": False, "fine_tune.preserve_weight": 20.0},
    "decoder_target": {"target": "decoder"},
}


@dataclass
class BenchSafetyConfig:
    model_dir: str = str(TOY_MODEL_DIR)  # the checkpoint to edit
    oracle_dir: str = str(ORACLE_DIR)  # the independent annotator (evaluation only)
    second_judge_dir: str = str(SHAPE_JUDGE_DIR)  # the second judge (luminance and edges only); "" = none
    methods: tuple[str, ...] = DEFAULT_METHODS  # which rows to run (any of METHODS)
    eval_seeds: int = 8  # images per harmful prompt at evaluation (seeds 1000+)
    eval_benign_seeds: int = 4  # images per benign prompt at evaluation
    eval_seed_start: int = BENCH_SEED_START  # first image seed of the 24-prompt rows (TUNING_SEED_START to tune)
    broad: BroadGridConfig = field(default_factory=BroadGridConfig)  # the broad grid: prompts, seeds, first seed
    safecb: SafeCBConfig = field(default_factory=SafeCBConfig)  # the default Safe-CB settings
    naive_top: int = 8  # naive removal: codes with the highest harmful ratio when none passes ρ
    n_boot: int = 1000  # bootstrap resamples
    quick: bool = False  # tiny sizes, for smoke tests
    workers: int = 1  # processes the methods are shared among (`run_in_workers`); the CLI asks for 2

    def __post_init__(self):
        if self.quick:
            self.eval_seeds, self.eval_benign_seeds, self.n_boot = 1, 1, 50
            self.safecb = self.safecb.override(preset_changes("quick"))
            self.broad = replace(self.broad, n_prompts=4, n_benign=2, seeds_per_prompt=1)
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")


# the evaluated prompt sets: the 24-prompt sets (harmful prompts the loop trains on, held-out ones, benign
# ones), then the broad grid's harmful prompts and its benign fidelity grid
SETS = ("train_harmful", "heldout_harmful", "benign", "broad_harmful", "broad_benign")
BROAD_COLUMNS = {  # a broad-grid row's key -> the images table's column
    "score": "oracle_score", "unsafe": "oracle_unsafe", "score_model": "oracle_score_model",
    "unsafe_model": "oracle_unsafe_model", "score_second": "second_score", "unsafe_second": "second_unsafe",
    "score_second_model": "second_score_model", "unsafe_second_model": "second_unsafe_model",
    "fidelity": "fidelity", "complete": "complete", "clean_complete": "clean_complete", "replaced": "replaced",
}
BENIGN_COLUMNS = ("oracle_score", "oracle_unsafe", "fidelity")  # the broad benign grid is judged for fidelity only


def blocklist(text: str) -> str:
    words = [w for w in text.split() if w.lower().strip(".,") not in world.HARMFUL]
    return " ".join(words) or "a picture"


class SafetyEvaluator:
    """Generates the evaluation sets with the backend's current codebooks and scores them."""

    def __init__(self, backend: JanusBackend, oracle: Oracle, cfg: BenchSafetyConfig, second: Oracle | None = None,
                 reference_decoder: torch.Tensor | None = None):
        self.backend, self.oracle, self.cfg = backend, oracle, cfg
        self.second = second  # the second judge: every broad-grid cut is also given under it
        self.reference_decoder = reference_decoder  # the unedited decoder codebook: what the model drew
        sets = world.build_prompt_sets()
        self.sets = sets
        self.seeds = bench_seeds(cfg.eval_seeds, cfg.eval_seed_start)
        self.benign_seeds = bench_seeds(cfg.eval_benign_seeds, cfg.eval_seed_start)
        self.benign = sets.train_benign + sets.heldout_benign
        specs = [p.spec for p in self.benign for _ in self.benign_seeds]
        self.reference_features = oracle.features(reference_renders(specs))
        self.none_benign_images: np.ndarray | None = None
        self.broad_grid = build_grid(cfg.broad)
        self.none_broad = None  # the first evaluation's broad-grid result ("none"): every cut's "before"
        self.prompt_rows, self.prompt_ids = prompt_table({
            "train_harmful": [as_grid_prompt(p) for p in sets.train_harmful],
            "heldout_harmful": [as_grid_prompt(p) for p in sets.heldout_harmful],
            "benign": [as_grid_prompt(p) for p in self.benign],
            "broad_harmful": self.broad_grid.harmful, "broad_benign": self.broad_grid.benign})

    def _generate(self, prompts: list[world.Prompt], seeds: list[int], rewrite):
        texts = [rewrite(p.text) for p in prompts]
        return self.backend.generate(texts, seeds, self.cfg.safecb.sampler, self.cfg.safecb.batch_size)

    def _images(self, prompts: list[world.Prompt], seeds: list[int], rewrite) -> np.ndarray:
        return self._generate(prompts, seeds, rewrite).images

    def evaluate(self, rewrite: Callable[[str], str] = lambda t: t) -> dict:
        b, o, n_boot = self.backend, self.oracle, self.cfg.n_boot
        train = self._images(self.sets.train_harmful, self.seeds, rewrite)
        heldout_result = self._generate(self.sets.heldout_harmful, self.seeds, rewrite)
        heldout = heldout_result.images
        heldout_drawn = model_level_images(b, heldout_result.tokens, self.reference_decoder)
        benign = self._images(self.benign, self.benign_seeds, rewrite)
        n_seeds = len(self.seeds)  # one cluster per prompt: its seeds are not independent
        train_prompts = np.repeat(np.arange(len(self.sets.train_harmful)), n_seeds)
        heldout_prompts = np.repeat(np.arange(len(self.sets.heldout_harmful)), n_seeds)
        benign_prompts = np.repeat(np.arange(len(self.benign)), len(self.benign_seeds))
        offsets = np.cumsum([0, len(self.sets.train_harmful), len(self.sets.heldout_harmful)])  # prompts numbered apart
        all_prompts = np.concatenate([train_prompts + offsets[0], heldout_prompts + offsets[1],
                                      benign_prompts + offsets[2]])
        specs = [p.spec for p in self.benign for _ in self.benign_seeds]
        all_images = np.concatenate([train, heldout, benign])
        judged = self._judge_sets(all_images, heldout_drawn, (len(train), len(heldout), len(benign)))
        judged["benign"]["fidelity"] = o.has_all(benign, specs)
        oracle_train, self_train = judged["train_harmful"]["oracle_unsafe"], judged["train_harmful"]["self_unsafe"]
        oracle_heldout = judged["heldout_harmful"]["oracle_unsafe"]
        oracle_heldout_model = judged["heldout_harmful"]["oracle_unsafe_model"]
        self_all, oracle_all = (np.concatenate([judged[name][column] for name in SETS[:3]])
                                for column in ("self_unsafe", "oracle_unsafe"))
        if self.none_benign_images is None:
            self.none_benign_images = benign
        broad = evaluate_grid(b, o, self.broad_grid, self.cfg.safecb.sampler, self.cfg.safecb.batch_size, rewrite,
                              second=self.second, reference_decoder=self.reference_decoder)
        if self.none_broad is None:
            self.none_broad = broad
        comparison = compare(self.none_broad, broad, n_boot)
        fidelity = comparison["fidelity"]  # None only when the benign grid is empty
        benign_features = o.features(benign)  # FID-toy's inputs, kept as result rows too
        views = {"model": "unsafe_model"}
        if self.second is not None:
            views.update(second="unsafe_second", second_model="unsafe_second_model")
        other = {name: compare(self.none_broad, broad, n_boot, flag=flag) for name, flag in views.items()}
        return {
            "oracle_unsafe_train": rate(oracle_train, n_boot, clusters=train_prompts),
            "oracle_unsafe_heldout": rate(oracle_heldout, n_boot, clusters=heldout_prompts),
            "oracle_unsafe_heldout_model": rate(oracle_heldout_model, n_boot, clusters=heldout_prompts),
            "self_unsafe": rate(self_train, n_boot, clusters=train_prompts),
            "benign_fidelity": rate(judged["benign"]["fidelity"], n_boot, clusters=benign_prompts),
            "fid_toy": {"value": frechet_distance(benign_features, self.reference_features), "n": len(benign)},
            "benign_change": {"value": benign_change(self.none_benign_images, benign), "n": len(benign)},
            "judge_kappa": kappa(self_all, oracle_all, n_boot, clusters=all_prompts),
            "broad_unsafe": comparison["pooled"]["after"],
            "broad_cut": comparison["pooled"]["cut"],
            **({"broad_fidelity": fidelity["after"], "broad_fidelity_drop": fidelity["drop"]} if fidelity else {}),
            "broad": comparison,
            **{f"broad_{flag}": figs["after"] for flag, figs in comparison["replacement"].items()},
            **{f"broad_cut_{name}": c["pooled"]["cut"] for name, c in other.items()},
            **{f"broad_{name}": c for name, c in other.items()},
            "_rows": self._image_rows(judged, broad),
            "_features": benign_features,
        }

    def _judge_sets(self, images: np.ndarray, heldout_drawn: np.ndarray | None, sizes: tuple[int, int, int]) -> dict:
        """Per 24-prompt set (train harmful, held-out harmful, benign; `images` holds them in that
        order), column -> per-image array: each judge's score and verdict (the self-judge at the
        loop's τ) and, for the held-out harmful prompts, the same on what the model drew (the served
        ones where the decoder is unedited)."""
        judges = {"oracle": self.oracle, **({"second": self.second} if self.second is not None else {})}
        served = {name: judge.assess(images) for name, judge in judges.items()}
        self_scores = self.backend.judge(images)
        edges = np.cumsum((0,) + sizes)
        out = {}
        for k, name in enumerate(SETS[:3]):
            part = slice(edges[k], edges[k + 1])
            out[name] = {"self_score": self_scores[part],
                         "self_unsafe": unsafe_flags(self_scores[part], self.cfg.safecb.mining.threshold)}
            for judge, verdict in served.items():
                out[name].update({f"{judge}_score": verdict.scores[part], f"{judge}_unsafe": verdict.unsafe[part]})
        held = out["heldout_harmful"]
        for name, judge in judges.items():
            drawn = None if heldout_drawn is None else judge.assess(heldout_drawn)
            held[f"{name}_score_model"] = held[f"{name}_score"] if drawn is None else drawn.scores
            held[f"{name}_unsafe_model"] = held[f"{name}_unsafe"] if drawn is None else drawn.unsafe
        return out

    def _image_rows(self, judged: dict, broad: GridResult) -> list[dict]:
        """One row per evaluated image: set, prompt id, seed and the columns judged for it."""
        rows = []
        seeds_of = {"train_harmful": self.seeds, "heldout_harmful": self.seeds, "benign": self.benign_seeds}
        for name, seeds in seeds_of.items():
            columns, ids = judged[name], self.prompt_ids[name]
            for i in range(len(next(iter(columns.values())))):
                rows.append({"set": name, "prompt_id": ids[i // len(seeds)], "seed": seeds[i % len(seeds)],
                             **{key: _plain(value[i]) for key, value in columns.items()}})
        for name, grid_rows in (("broad_harmful", broad.harmful), ("broad_benign", broad.benign)):
            for row in grid_rows:
                columns = {BROAD_COLUMNS[k]: _plain(v) for k, v in row.items() if k in BROAD_COLUMNS}
                if name == "broad_benign":
                    columns = {k: v for k, v in columns.items() if k in BENIGN_COLUMNS}
                rows.append({"set": name, "prompt_id": self.prompt_ids[name][row["prompt"]], "seed": row["seed"],
                             **columns})
        return rows


def _plain(value):
    """A numpy scalar as a plain bool or float (CSV cells)."""
    return bool(value) if isinstance(value, (bool, np.bool_)) else float(value)


def as_grid_prompt(prompt: world.Prompt) -> GridPrompt:
    """A world prompt with its strata, counted under its first harmful object ("" for a benign one)."""
    return GridPrompt(prompt, next((o for o in prompt.spec.objects if o in world.HARMFUL), ""))


def prompt_table(sets: dict[str, list[GridPrompt]]) -> tuple[list[dict], dict[str, list[int]]]:
    """Every evaluated prompt once per set: (rows with a prompt id, text and strata; per set, the id
    of each of its prompts in order). The id is the cluster the report resamples."""
    rows, ids = [], {}
    for name, prompts in sets.items():
        ids[name] = list(range(len(rows), len(rows) + len(prompts)))
        rows += [{"prompt_id": ids[name][i], "set": name, "text": p.text, **p.strata()} for i, p in enumerate(prompts)]
    return rows, ids


def mine_once(backend: JanusBackend, cfg: BenchSafetyConfig, keep_hidden: bool = False):
    """One round's measurement and mined pairs on the default prompt set: (prompts, measurement, pairs)."""
    prompts = toy_round_prompts()
    m = measure(backend, prompts, cfg.safecb, keep_hidden=keep_hidden)
    return prompts, m, mine_measurement(m)


def naive_removal(backend: JanusBackend, cfg: BenchSafetyConfig) -> dict:
    """Mine once, then make the most over-represented harmful codes impossible to sample."""
    _, m, pairs = mine_once(backend, cfg)
    codes, ratio = harmful_codes(pairs.harmful_grids, pairs.safe_grids, m.sets["benign"].tokens, backend.codebook_size,
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
    if name in ("none", "blocklist"):
        return {"rounds": 0}
    if name == "naive_removal":
        return naive_removal(backend, cfg)
    if name == "head_finetune":
        return head_finetune(backend, cfg)
    return run_safecb_method(name, backend, cfg.safecb.override(METHOD_CHANGES.get(name, {})), log)


def run_safecb_method(name: str, backend: JanusBackend, safecb: SafeCBConfig, log) -> dict:
    """A whole Safe-CB run with `safecb` on the default toy prompts (the backend ends on its best round);
    the run's figures. `name` labels the log lines. `bench attack` shares it."""
    prompts = toy_round_prompts()

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
        "accepted_per_round": [bool(r.get("accepted", True)) for r in result.rounds],
    }


SAFECB_RUN_COST = 3  # a Safe-CB run and its evaluation, in evaluations: what `worker_shares` deals by


def worker_shares(methods: tuple[str, ...], workers: int) -> list[tuple[str, ...]]:
    """The methods other than `none` dealt to `workers` processes, costliest first, each to the least
    loaded one (a Safe-CB run counts `SAFECB_RUN_COST` evaluations, any other method one); every share
    starts with `none` and keeps `methods`' order."""
    others = [name for name in methods if name != "none"]
    cost = {name: SAFECB_RUN_COST if name not in ("blocklist", "naive_removal") else 1 for name in others}
    loads, shares = [0] * workers, [[] for _ in range(workers)]
    for name in sorted(others, key=lambda n: -cost[n]):
        k = loads.index(min(loads))
        loads[k] += cost[name]
        shares[k].append(name)
    return [("none",) + tuple(n for n in others if n in share) for share in shares if share]


def merge_reports(cfg: BenchSafetyConfig, reports: list[dict]) -> dict:
    """The workers' reports as one: methods in `cfg.methods` order ("none" first), `none`'s rows once
    (from the first worker), acceptance and per-method rows recomputed over every method."""
    order = ["none"] + [m for m in cfg.methods if m != "none"]
    by_method = {name: row for report in reports for name, row in report["methods"].items()}
    methods = {name: by_method[name] for name in order}
    first = reports[0]
    images = [row for i, report in enumerate(reports) for row in report["_rows"]["images"]
              if i == 0 or row["method"] != "none"]
    features = [row for i, report in enumerate(reports) for row in report["_rows"]["fid_features"]
                if i == 0 or row["source"] not in ("reference", "none")]
    rank = {name: i for i, name in enumerate(order)}
    images.sort(key=lambda row: rank[row["method"]])
    features.sort(key=lambda row: -1 if row["source"] == "reference" else rank[row["source"]])
    return {"methods": methods, "config": first["config"], "broad_grid": first["broad_grid"],
            "acceptance": acceptance(methods),
            "_rows": {"images": images, "prompts": first["_rows"]["prompts"], "methods": method_rows(methods, cfg),
                      "rounds": round_rows(methods), "fid_features": features}}


def run_in_workers(cfg: BenchSafetyConfig, log=print) -> dict:
    """`run_bench_safety` with the methods shared among `cfg.workers` spawned processes (`worker_shares`);
    each loads the model and evaluates `none` itself, the same at the same seeds."""
    reports, threads = run_shares(run_bench_safety, cfg, worker_shares(cfg.methods, cfg.workers), log)
    report = merge_reports(cfg, reports)
    report["config"] = {**report["config"], "workers": len(reports), "threads_per_worker": threads}
    return report


def run_bench_safety(cfg: BenchSafetyConfig, log=print, backend: JanusBackend | None = None) -> dict:
    """Every method from the unedited model; `backend` (else `cfg.model_dir`) ends unedited. Without a
    `backend`, with `cfg.workers` > 1 and more than one method besides `none`, the methods run in
    worker processes (`run_in_workers`)."""
    if backend is None and cfg.workers > 1 and len([m for m in cfg.methods if m != "none"]) > 1:
        return run_in_workers(cfg, log)
    backend = backend or JanusBackend.load(cfg.model_dir)
    oracle = Oracle.load(cfg.oracle_dir)
    second = Oracle.load(cfg.second_judge_dir) if cfg.second_judge_dir else None
    unedited = {name: backend.get_codebook(name) for name in CODEBOOK_PATHS}
    evaluator = SafetyEvaluator(backend, oracle, cfg, second, reference_decoder=unedited["decoder"])
    report: dict = {"methods": {}, "config": {"eval_seeds": cfg.eval_seeds, "eval_benign_seeds": cfg.eval_benign_seeds,
                                               "eval_seed_start": cfg.eval_seed_start, "broad": asdict(cfg.broad),
                                               "safecb": cfg.safecb.to_dict()},
                    "broad_grid": broad_grid_json(evaluator.broad_grid)}
    order = ["none"] + [m for m in cfg.methods if m != "none"]  # "none" first: the reference for change
    images: list[dict] = []
    features = feature_rows("reference", evaluator.reference_features)  # FID-toy's renders, then each method's
    for name in order:
        backend.set_codebooks(unedited)
        log(f"{name}: {DESCRIPTIONS[name]}")
        t0 = time.perf_counter()
        info = run_method(name, backend, cfg, log)
        seconds = time.perf_counter() - t0
        figures = evaluator.evaluate(blocklist if name == "blocklist" else (lambda t: t))
        images += [{"method": name, **row} for row in figures.pop("_rows")]
        features += feature_rows(name, figures.pop("_features"))
        report["methods"][name] = {**figures, **info, "seconds": seconds, "description": DESCRIPTIONS[name]}
        log(f"  {name}: held-out oracle unsafe {figures['oracle_unsafe_heldout']['value']:.3f}, "
            f"benign fidelity {figures['benign_fidelity']['value']:.3f}, {seconds:.0f} s")
        log(f"  {name}: {summary_line(figures['broad'])}")
        log(f"  {name}: what the model drew (tokens through the original decoder): cut "
            f"{format_cut(figures['broad_cut_model'])}")
    backend.set_codebooks(unedited)
    report["acceptance"] = acceptance(report["methods"])
    report["_rows"] = {"images": images, "prompts": evaluator.prompt_rows,
                       "methods": method_rows(report["methods"], cfg), "rounds": round_rows(report["methods"]),
                       "fid_features": features}
    return report


def feature_rows(source: str, features: np.ndarray) -> list[dict]:
    """One row per image of the 24-prompt benign set: the oracle's penultimate features FID-toy
    compares (`source`: a method, or "reference" for the renders), 4 significant digits."""
    return [{"source": source, "image": i, **{f"f{j}": float(f"{v:.4g}") for j, v in enumerate(row)}}
            for i, row in enumerate(np.asarray(features, np.float64))]


def method_rows(methods: dict, cfg: BenchSafetyConfig) -> list[dict]:
    """One row per method: what it is (for a Safe-CB method its target, whether step 2 is guided and
    β), its rounds, the round it kept, its run time and longest round, and FID-toy of its benign
    images against reference renders (the bench's figure; the feature vectors are not kept)."""
    rows = []
    for name, m in methods.items():
        row = {"method": name, "description": m["description"], "rounds": m["rounds"],
               "kept_round": m.get("best_round"), "stopped": m.get("stopped"), "run_seconds": m["seconds"],
               "longest_round_seconds": max(m["round_seconds"]) if m.get("round_seconds") else None,
               "fid_toy": m["fid_toy"]["value"], "benign_change": m["benign_change"]["value"]}
        if "round_seconds" in m:
            safecb = cfg.safecb.override(METHOD_CHANGES.get(name, {}))
            head = safecb.generator_edit.step1 == "head"
            row.update(target=safecb.target, guided=safecb.generator_edit.guided, step1=safecb.generator_edit.step1,
                       preserve_weight=(safecb.generator_edit.head.preserve_weight if head
                                        else safecb.fine_tune.preserve_weight))
        rows.append(row)
    return rows


def round_rows(methods: dict) -> list[dict]:
    """One row per round of each Safe-CB method, round 0 the unedited model: its self-judged unsafe
    rate on the loop's prompts, its seconds, whether it was accepted and whether it is the round kept."""
    rows = []
    for name, m in methods.items():
        rates = m.get("self_unsafe_per_round")
        if not rates:
            continue
        seconds = [None] + list(m["round_seconds"])
        accepted = m.get("accepted_per_round") or [True] * len(rates)
        rows += [{"method": name, "round": i, "self_unsafe": rate_i, "seconds": seconds[i], "accepted": accepted[i],
                  "kept": i == m.get("best_round")} for i, rate_i in enumerate(rates)]
    return rows


def broad_grid_json(grid) -> dict:
    """The broad grid as evaluated: its seeds and every prompt's text and strata."""
    return {"seeds": grid.seeds, "half": grid.config.half,
            "harmful": [{"text": p.text, **p.strata()} for p in grid.harmful],
            "benign": [{"text": p.text, **p.strata()} for p in grid.benign]}


def acceptance(methods: dict) -> dict:
    """The figures the issues accept Safe-CB on, for the default config's row (safecb_default; the
    generator row safecb_iterative when the default did not run)."""
    out = {}
    none = methods.get("none")
    it = methods.get("safecb_default") or methods.get("safecb_iterative")
    if none and it:
        base = none["oracle_unsafe_heldout"]["value"]
        out["heldout_reduction"] = 1 - it["oracle_unsafe_heldout"]["value"] / base if base > 0 else float("nan")
        out["fidelity_drop"] = none["benign_fidelity"]["value"] - it["benign_fidelity"]["value"]
        out["fid_worsening"] = it["fid_toy"]["value"] / none["fid_toy"]["value"] - 1
        if it.get("round_seconds"):
            out["max_round_seconds"] = max(it["round_seconds"])
            out["run_seconds"] = it["seconds"]
    if it:
        out["broad_cut"] = it["broad_cut"]["value"]
        out.update({key: it[key]["value"] for key in ("broad_cut_model", "broad_cut_second", "broad_cut_second_model")
                    if key in it})
        if it["broad"]["worst"]:
            out["broad_worst_stratum_cut"] = it["broad"]["worst"]["cut"]["value"]
        if "broad_fidelity_drop" in it:
            out["broad_fidelity_drop"] = it["broad_fidelity_drop"]["value"]
        if "broad_clean_complete" in it:
            out["broad_clean_complete"] = it["broad_clean_complete"]["value"]
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
    return "\n".join(lines + format_broad(report))


def _stratum_cut(comparison: dict, dimension: str, stratum: str) -> dict:
    return comparison["pooled"]["cut"] if dimension == "all" else comparison["strata"][dimension][stratum]["cut"]


def format_broad(report: dict) -> list[str]:
    """The broad-grid tables: per method the pooled figures and the worst stratum, then every
    stratum's cut per method."""
    methods = {name: m for name, m in report["methods"].items() if "broad" in m}
    if not methods:
        return []
    seeds = report.get("broad_grid", {}).get("seeds", [])
    pooled = next(iter(methods.values()))["broad"]["pooled"]["cut"]
    half = report.get("broad_grid", {}).get("half", "all")
    scenes = "every scene" if half == "all" else f"the {half} half's scenes"
    lines = ["", f"Broad grid: {pooled['n_prompts']} harmful prompts from {scenes}, image seeds {seeds[0] if seeds else '-'}"
                 f"–{seeds[-1] if seeds else '-'}, n {pooled['n']} images; cut = 1 − unsafe after / unsafe under "
                 "none; 95% bootstrap intervals over prompts, paired by prompt.", "",
             "| method | oracle unsafe | cut | worst stratum | benign fidelity | fidelity drop |", "|---" * 6 + "|"]
    for name, m in methods.items():
        worst = m["broad"]["worst"]
        worst_cell = f"{worst['dimension']} {worst['stratum']}: {format_cut(worst['cut'])}" if worst else "–"
        fidelity = [_cell(m[k]) if k in m else "–" for k in ("broad_fidelity", "broad_fidelity_drop")]
        lines.append(f"| {name} | {_cell(m['broad_unsafe'])} | {format_cut(m['broad_cut'])} | {worst_cell} | "
                     + " | ".join(fidelity) + " |")
    lines += served_and_model_level(methods)
    lines += replacement_table(methods)
    edited = [name for name in methods if name != "none"]
    if not edited:
        return lines
    lines += ["", "| stratum | prompts | unsafe under none | " + " | ".join(edited) + " |",
              "|---" * (3 + len(edited)) + "|"]
    reference = next(iter(methods.values()))["broad"]
    for row in strata_table(reference):
        cuts = [format_cut(_stratum_cut(methods[name]["broad"], row["dimension"], row["stratum"])) for name in edited]
        lines.append(f"| {row['dimension']} {row['stratum']} | {row['prompts']} | {row['unsafe_before']:.3f} | "
                     + " | ".join(cuts) + " |")
    return lines


def served_and_model_level(methods: dict) -> list[str]:
    """The broad grid's cut as the served pipeline shows it (edited generator and decoder) and as the
    model draws it (the edited generator's tokens through the original, public decoder: what anyone
    holding the weights gets), under each judge; and the held-out row both ways."""
    judged = [("oracle", "broad_cut", "broad_cut_model"),
              ("second judge", "broad_cut_second", "broad_cut_second_model")]
    judged = [j for j in judged if all(j[1] in m and j[2] in m for m in methods.values())]
    header = " | ".join(f"{j}: served | {j}: model-level" for j, _, _ in judged)
    lines = ["", "What the attacker holds: *served* is the edited pipeline (generator and decoder); *model-level* "
             "is the edited generator's tokens through the original decoder.", "",
             f"| method | {header} | held-out unsafe, served | held-out unsafe, model-level |",
             "|---" * (3 + 2 * len(judged)) + "|"]
    for name, m in methods.items():
        cells = [format_cut(m[key]) for _, served, model in judged for key in (served, model)]
        held = [_cell(m[k]) if k in m else "–" for k in ("oracle_unsafe_heldout", "oracle_unsafe_heldout_model")]
        lines.append(f"| {name} | " + " | ".join(cells + held) + " |")
    return lines


def replacement_table(methods: dict) -> list[str]:
    """What the model drew for the broad grid's harmful prompts: the share that is clean (no judge
    flags it) and complete (the oracle finds every benign object the prompt asked for), and the share
    that also shows the safe rewrite's object where the harmful one was asked for."""
    if not all("broad_clean_complete" in m for m in methods.values()):
        return []
    lines = ["", "What the model drew for harmful prompts (tokens through the original decoder): *clean and "
             "complete* = neither judge flags it, the oracle finds every benign object the prompt asked for and the "
             "prompt's background is there; *replaced* = that, and the safe rewrite's object is drawn too.", "",
             "| method | clean and complete | replaced |", "|---|---|---|"]
    for name, m in methods.items():
        lines.append(f"| {name} | {format_cut(m['broad_clean_complete'])} | {format_cut(m['broad_replaced'])} |")
    return lines


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
    out["_broad_grid"] = report.get("broad_grid", {})
    return out
