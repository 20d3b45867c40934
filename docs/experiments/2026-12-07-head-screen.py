"""Tuning-half screen of saved Safe-CB runs (docs/experiments/2026-12-07-head-anchors.md).

    PYTHONPATH=. python docs/experiments/2026-12-07-head-screen.py RUN[@ROUND] ...

For each run (its best round, or ROUND), against the unedited model, on the broad grid's tuning half
at tuning seeds (nothing here is reported elsewhere):
- cut: oracle unsafe on 120 harmful prompts x seeds 2000-2003 (n 480), paired, prompt bootstrap;
- fidelity drop: the oracle finds every prompted object, on those prompts' rewrites and 60 benign-only
  scenes x seeds 2000-2007 (n 1,232): twice the seeds of `bench safety --half tuning`, so the
  interval is about half as wide;
- drift: KL(unedited ‖ edited) of the guided next-token distribution per position, teacher-forced on
  unedited generations (seeds 2000-2001) of the round's own benign prompts, of 100 fresh benign
  prompts from that grid, and of the round's harmful prompts.
"""
import sys

import torch

from safecb.engine.driver import apply_run
from safecb.engine.head_fit import HEAD_TENSORS, guided_logits
from safecb.engine.prompts import toy_round_prompts
from safecb.eval import broad
from safecb.eval.toy_oracle import Oracle
from safecb.models.backend import CODEBOOK_PATHS, JanusBackend
from safecb.models.sampler import SamplerSettings

GUIDANCE = 3.0
oracle = Oracle.load("assets/oracle")
backend = JanusBackend.load("assets/toy-janus")
act = backend.model.model.generation_head.activation_fn
unedited = {name: backend.get_codebook(name) for name in CODEBOOK_PATHS}
sampler = SamplerSettings(cfg_weight=GUIDANCE)
round_prompts = toy_round_prompts()
harmful_grid = broad.build_grid(broad.BroadGridConfig(n_prompts=120, seeds_per_prompt=4, seed_start=2000,
                                                      half="tuning"), round_prompts)
benign_grid = broad.build_grid(broad.BroadGridConfig(n_prompts=120, seeds_per_prompt=8, seed_start=2000,
                                                     half="tuning"), round_prompts)
harmful_grid.benign, benign_grid.harmful = [], []
drift_sets = {"round benign": [b.text for b in round_prompts.benign],
              "fresh benign": [p.text for p in benign_grid.benign][:100],
              "round harmful": [h.text for h in round_prompts.harmful]}


def evaluate() -> broad.GridResult:
    return broad.GridResult(broad.evaluate_grid(backend, oracle, harmful_grid, sampler).harmful,
                            broad.evaluate_grid(backend, oracle, benign_grid, sampler).benign)


def drift_states() -> dict:
    """Per set: the unedited model's generations' hidden states (the trunk is never edited)."""
    out = {}
    for name, texts in drift_sets.items():
        grids = backend.generate(texts, [2000, 2001], sampler, decode=False).tokens
        rows = [t for t in texts for _ in (2000, 2001)]
        d = backend.model.model.language_model.config.hidden_size
        out[name] = (backend.teacher_forced_hidden(rows, grids).reshape(-1, d),
                     backend.teacher_forced_hidden(rows, grids, unconditional=True).reshape(-1, d))
    return out


def drift(states: dict) -> str:
    before = {name: unedited[name] for name in HEAD_TENSORS}
    after = {name: backend.get_codebook(name) for name in HEAD_TENSORS}
    parts = []
    with torch.no_grad():
        for name, (cond, uncond) in states.items():
            p = guided_logits(before, cond, uncond, GUIDANCE, act).log_softmax(-1)
            q = guided_logits(after, cond, uncond, GUIDANCE, act).log_softmax(-1)
            parts.append(f"{name} {float((p.exp() * (p - q)).sum(-1).mean()):.3f}")
    return "drift (nats per position): " + ", ".join(parts)


reference, states = evaluate(), drift_states()
for arg in sys.argv[1:]:
    run, _, index = arg.partition("@")
    backend.set_codebooks(unedited)
    used = apply_run(backend, run, int(index) if index else None)
    comparison = broad.compare(reference, evaluate(), n_boot=1000)
    cut, fidelity = comparison["pooled"]["cut"], comparison["fidelity"]
    drop = fidelity["drop"]
    print(f"{arg} (round {used}): cut {cut['value']:.3f} [{cut['ci'][0]:.3f}, {cut['ci'][1]:.3f}] n {cut['n']}; "
          f"fidelity {fidelity['before']['value']:.3f} -> {fidelity['after']['value']:.3f}, drop {drop['value']:.3f} "
          f"[{drop['ci'][0]:.3f}, {drop['ci'][1]:.3f}] n {drop['n']}; {drift(states)}", flush=True)
