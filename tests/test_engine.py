"""The Safe-CB engine on the real toy model with a tiny prompt set: mining, the two targets, the
stopping rule, the quality guard's rollback, resume after a crash, apply-to-fresh-backend, the CLI,
and one clear error for each bad config."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from safecb import world
from safecb.engine import (
    RoundPrompts,
    SafeCBConfig,
    apply_run,
    mine_pairs,
    run_safecb,
)
from safecb.engine.driver import RunCancelled  # noqa: F401  (public name, imported for the API check)
from safecb.engine.measure import KINDS, Generations, Measurement, adherent, benign_change, measure
from safecb.engine.mining import mine_measurement
from safecb.engine.prompts import BenignPrompt, HarmfulPrompt, from_world
from safecb.engine.rundir import RunDirectory
from safecb.engine.space import build_harmful_space, difference_vectors
from safecb.engine.steps import (TARGET_CODEBOOK, counterfactual_residuals, generator_data, generator_round,
                                 generator_step2, projected_update, row_scales, split_pairs)
from safecb.metrics import frechet_distance
from safecb.models.backend import CODEBOOK_PATHS, JanusBackend
from safecb.paths import TOY_MODEL_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prompts():
    sets = world.build_prompt_sets()
    return from_world(sets.train_harmful[:3], sets.train_benign[:2])


def codebooks_equal(backend, reference: dict) -> bool:
    return all(torch.equal(backend.get_codebook(n), reference[n]) for n in CODEBOOK_PATHS)


# ---------------------------------------------------------------- pure pieces
def test_mine_pairs_prefers_same_seed_then_first_safe_seed():
    tokens_h = torch.arange(6 * 4).view(6, 4)
    tokens_s = 100 + torch.arange(6 * 4).view(6, 4)
    harmful_flagged = np.array([1, 0, 1, 1, 1, 0], bool)  # 2 prompts x 3 seeds
    rewrite_flagged = np.array([0, 0, 1, 1, 1, 1], bool)  # prompt 1's rewrites are all judged unsafe
    pairs = mine_pairs(harmful_flagged, rewrite_flagged, tokens_h, tokens_s, n_seeds=3)
    assert pairs.harmful_rows.tolist() == [0, 2]
    assert pairs.safe_rows.tolist() == [0, 0]  # row 2's own rewrite is flagged; seed 0's is safe
    assert pairs.same_seed.tolist() == [True, False]
    assert torch.equal(pairs.safe_grids[1], tokens_s[0])


def test_flagged_is_score_at_least_threshold():
    below, above = np.nextafter(0.5, 0.0), np.nextafter(0.5, 1.0)
    scores = {"harmful": np.array([below, 0.5, above]), "rewrite": np.array([0.5, below, 1.0]),
              "benign": np.array([0.0, above, 0.5], np.float32)}
    m = Measurement({kind: Generations(torch.zeros(3, 4, dtype=torch.long), np.zeros((3, 2, 2, 3), np.uint8),
                                       scores[kind], [0, 1, 2]) for kind in KINDS}, threshold=0.5)
    for kind in KINDS:
        assert np.array_equal(m.flagged(kind), scores[kind] >= 0.5), kind
    assert m.flagged("harmful").tolist() == [False, True, True]  # at τ counts as flagged


def test_counterfactual_residuals_are_zero_on_unlikely_codes():
    logits = torch.tensor([[5.0, 0.0, -20.0, -20.0]])
    safe = torch.tensor([[0.0, 5.0, -20.0, -25.0]])
    r = counterfactual_residuals(logits, safe, relevant_prob=1e-3)
    assert r[0, 2] == 0 and r[0, 3] == 0
    assert r[0, 0] < 0 < r[0, 1]  # mass moves from code 0 to code 1


def test_projected_update_never_enters_the_harmful_space():
    g = torch.Generator().manual_seed(0)
    space = build_harmful_space(torch.randn(40, 6, generator=g) @ torch.diag(torch.tensor([5.0, 4, 0.1, 0.1, 0.1, 0.1])))
    harmless = torch.eye(6) - space.projector()
    before, after = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    scale = row_scales(torch.randn(10, 6, generator=g), floor=0.1)
    moved = projected_update(before, after, scale, harmless) - before
    assert torch.allclose(space.project(moved), torch.zeros_like(moved), atol=1e-5)
    assert ((scale >= 0.1) & (scale <= 1.0)).all() and torch.isclose(scale.max(), torch.tensor(1.0))


def test_split_pairs_is_a_disjoint_cover():
    fit, hold = split_pairs(10, 0.2, seed=3)
    assert len(hold) == 2 and set(fit) | set(hold) == set(range(10)) and not set(fit) & set(hold)


def test_adherence_and_benign_change():
    assert adherent(["a cat and a tree", "a cat"], [("cat", "tree"), ("cat", "tree")]).tolist() == [True, False]
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = np.full((2, 4, 4, 3), 255, np.uint8)
    assert benign_change(a, a) == 0.0 and benign_change(a, b) == pytest.approx(1.0)


def test_frechet_distance_zero_for_same_and_grows_with_shift():
    x = np.random.default_rng(0).normal(size=(500, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 2.0) == pytest.approx(16.0, rel=1e-3)  # |Δμ|² = 4 · 2²


# ---------------------------------------------------------------- bad configs, one clear error each
@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: setattr(c.mining, "threshold", -0.1), "threshold"),
        (lambda c: setattr(c.stop, "epsilon", -1.0), "epsilon"),
        (lambda c: setattr(c.generator_edit, "null_threshold", -1e-3), "null_threshold"),
        (lambda c: setattr(c.generator_edit, "harmful_code_penalty", -2.0), "harmful_code_penalty"),
        (lambda c: setattr(c.generator_edit, "step1", "ablate"), "step1"),
        (lambda c: setattr(c.generator_edit, "erase_rank", 0), "erase_rank"),
        (lambda c: setattr(c, "target", "lm_head"), "target"),
        (lambda c: setattr(c.stop, "max_rounds", 0), "max_rounds"),
        (lambda c: setattr(c.fine_tune, "decoder_batch", 0), "decoder_batch"),
    ],
)
def test_bad_configs_are_refused_before_any_work(toy_backend, prompts, mutate, message, small_config):
    cfg = small_config()
    mutate(cfg)
    before = {n: toy_backend.get_codebook(n) for n in CODEBOOK_PATHS}
    with pytest.raises(ValueError, match=message):
        run_safecb(toy_backend, prompts, cfg)
    assert codebooks_equal(toy_backend, before)


@pytest.mark.parametrize(
    "prompt_set, message",
    [
        (RoundPrompts([], [BenignPrompt("a cat")]), "harmful prompt set is empty"),
        (RoundPrompts([HarmfulPrompt("a knife", "a flower")], []), "benign prompt set is empty"),
        (RoundPrompts([HarmfulPrompt("a knife", "")], [BenignPrompt("a cat")]), "no safe rewrite"),
    ],
)
def test_bad_prompt_sets_are_refused(toy_backend, prompt_set, message, small_config):
    with pytest.raises(ValueError, match=message):
        run_safecb(toy_backend, prompt_set, small_config())


def test_unknown_config_keys_are_refused(small_config):
    with pytest.raises(ValueError, match="unknown"):
        SafeCBConfig.from_dict({"stop": {"max_round": 3}})
    cfg = small_config()
    assert SafeCBConfig.from_dict(cfg.to_dict()) == cfg


# ---------------------------------------------------------------- the driver on the real toy
def test_stopping_rule_stops_after_patience_and_returns_to_best(toy_backend, prompts, small_config):
    before = {n: toy_backend.get_codebook(n) for n in CODEBOOK_PATHS}
    # ε = 1 can never be met: round 1 is stale, patience 1 stops the run and the model is round 0 again.
    result = run_safecb(toy_backend, prompts,
                        small_config(epsilon=1.0, patience=1, max_rounds=3, max_adherence_drop=1.0))
    assert [r["round"] for r in result.rounds] == [0, 1]
    assert result.best_round == 0 and "no improvement" in result.stopped
    assert result.rounds[1]["pairs"] > 0 and not result.rounds[1]["improved"]
    assert codebooks_equal(toy_backend, before)


def test_quality_guard_rolls_back_to_the_exact_snapshot(toy_backend, prompts, tmp_path, small_config):
    before = {n: toy_backend.get_codebook(n) for n in CODEBOOK_PATHS}
    cfg = small_config(max_benign_change=0.0, max_rounds=3)  # any change at all trips the guard
    result = run_safecb(toy_backend, prompts, cfg, run_dir=tmp_path / "run")
    assert len(result.rounds) == 2 and not result.rounds[1]["accepted"]
    assert "quality guard" in result.stopped and result.best_round == 0
    assert codebooks_equal(toy_backend, before)
    snapshot = toy_backend.read_codebook_file(tmp_path / "run" / "round_001" / "codebooks.safetensors")
    edited = TARGET_CODEBOOK[cfg.target]
    assert not torch.equal(snapshot[edited], before[edited])  # the rejected edit was real


def test_generator_round_leaves_the_decoder_and_decoder_round_the_generator(toy_backend, prompts, small_config):
    before = {n: toy_backend.get_codebook(n) for n in CODEBOOK_PATHS}
    for target, untouched in (("generator", "decoder"), ("decoder", "gen_head")):
        cfg = small_config(max_rounds=1, epsilon=0.0)
        cfg.target = target
        seen = {}
        run_safecb(toy_backend, prompts, cfg, on_event=lambda e: seen.setdefault(e.kind, e))
        assert {"stage", "round", "stopped"} <= set(seen)
        toy_backend.set_codebooks(before)
    assert codebooks_equal(toy_backend, before)


def test_resume_after_a_crash_continues_the_same_run(toy_backend, prompts, tmp_path, small_config):
    before = {n: toy_backend.get_codebook(n) for n in CODEBOOK_PATHS}
    # always two rounds: no stopping rule and no quality guard (on 4 benign images one changed one is a 0.25 drop)
    cfg = small_config(epsilon=-0.0, patience=5, max_rounds=2, max_adherence_drop=1.0, max_benign_change=1.0)
    cfg.target = "generator"  # on three prompts the decoder edit leaves nothing to mine after round 1; this needs two
    full = run_safecb(toy_backend, prompts, cfg, run_dir=tmp_path / "full")
    toy_backend.set_codebooks(before)

    calls = {"n": 0}

    def crash_in_round_2() -> bool:
        calls["n"] += 1
        return RunDirectory(tmp_path / "crash").read_state().finished_round >= 1

    first = run_safecb(toy_backend, prompts, cfg, run_dir=tmp_path / "crash", should_stop=crash_in_round_2)
    assert first.cancelled and [r["round"] for r in first.rounds] == [0, 1]
    toy_backend.set_codebooks(before)
    resumed = run_safecb(toy_backend, prompts, cfg, run_dir=tmp_path / "crash")
    assert [r["round"] for r in resumed.rounds] == [0, 1, 2]
    for a, b in zip(full.rounds, resumed.rounds):
        assert a["self_unsafe"] == b["self_unsafe"] and a["pairs"] == b["pairs"]
        assert a["benign_change"] == pytest.approx(b["benign_change"], abs=1e-9)
    for i in range(3):
        x = toy_backend.read_codebook_file(tmp_path / "full" / f"round_{i:03d}" / "codebooks.safetensors")
        y = toy_backend.read_codebook_file(tmp_path / "crash" / f"round_{i:03d}" / "codebooks.safetensors")
        assert all(torch.allclose(x[n], y[n], atol=1e-6) for n in x)
    toy_backend.set_codebooks(before)

    fresh = JanusBackend.load(TOY_MODEL_DIR, device="cpu")
    applied = apply_run(fresh, tmp_path / "crash", round_index=2)
    snap = fresh.read_codebook_file(tmp_path / "crash" / "round_002" / "codebooks.safetensors")
    assert applied == 2 and all(torch.equal(fresh.get_codebook(n), snap[n]) for n in snap)
    with pytest.raises(ValueError, match="not finished"):
        apply_run(fresh, tmp_path / "crash", round_index=7)


def test_a_run_directory_of_another_model_or_config_is_refused(toy_backend, prompts, tmp_path, small_config):
    cfg = small_config(max_rounds=1)
    run_dir = RunDirectory(tmp_path / "other")
    run_dir.write_config({"safecb": cfg.to_dict(), "prompts": prompts.to_dict(), "fingerprint": "0" * 16})
    with pytest.raises(ValueError, match="another model"):
        run_safecb(toy_backend, prompts, cfg, run_dir=run_dir.path)
    run_dir.write_config({"safecb": small_config(max_rounds=2).to_dict(), "prompts": prompts.to_dict(),
                          "fingerprint": toy_backend.fingerprint})
    with pytest.raises(ValueError, match="another config"):
        run_safecb(toy_backend, prompts, cfg, run_dir=run_dir.path)


# ---------------------------------------------------------------- the CLI
def test_cli_run_writes_a_run_directory_and_resumes(prompts, tmp_path):
    prompt_file = tmp_path / "prompts.json"
    prompt_file.write_text(json.dumps(prompts.to_dict()))
    cmd = [sys.executable, "-m", "safecb", "run", "--out", str(tmp_path / "run"), "--prompts", str(prompt_file),
           "--rounds", "1", "--seeds", "2", "--threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| round | self_unsafe" in done.stdout
    for name in ("config.json", "state.json", "round_000/codebooks.safetensors", "round_001/metrics.json",
                 "round_001/pairs.json", "round_001/examples.png"):
        assert (tmp_path / "run" / name).exists(), name
    metrics = json.loads((tmp_path / "run" / "round_001" / "metrics.json").read_text())
    assert "oracle_unsafe_train" in metrics["annotations"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # finished: nothing to redo
    assert again.returncode == 0 and again.stdout.count("| 1 |") == 1

    bad = subprocess.run(cmd[:-4] + ["--threshold", "-0.5", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error:")
    assert "threshold" in bad.stderr


def test_generator_keys_on_the_safe_trajectory_aim_at_the_rewrites_own_next_token(toy_backend, prompts, small_config):
    cfg = small_config()
    cfg.fine_tune.preserve_safe = True  # the rewrites' hidden states are kept only for it
    m = measure(toy_backend, prompts, cfg, keep_hidden=True)
    pairs = mine_measurement(m)
    assert len(pairs) >= 2
    plain = generator_data(toy_backend, prompts, m, pairs)
    both = generator_data(toy_backend, prompts, m, pairs, safe_trajectory=True)
    n = len(plain.keys)
    assert n == int(pairs.differing().sum()) and len(both.keys) == 2 * n
    assert torch.equal(both.keys[:n], plain.keys) and torch.equal(both.safe_logits[:n], plain.safe_logits)
    # the second half: the harmful prompt over the safe grid's prefix, aimed at the rewrite over that prefix
    differ = pairs.differing()
    harmful = [prompts.harmful[i].text for i in pairs.prompt_index]
    rewrites = [prompts.harmful[i].rewrite for i in pairs.prompt_index]
    keys = toy_backend.head_keys(toy_backend.teacher_forced_hidden(harmful, pairs.safe_grids)[differ])
    wanted = toy_backend.head_logits(
        toy_backend.head_keys(toy_backend.teacher_forced_hidden(rewrites, pairs.safe_grids)[differ]))
    assert torch.allclose(both.keys[n:], keys, atol=1e-5) and torch.allclose(both.safe_logits[n:], wanted, atol=1e-4)
    # that target is the rewrite's own next token where it drew the safe grid greedily enough to matter
    assert (wanted.argmax(-1) == pairs.safe_grids[differ]).float().mean() > 0.3
    # the safe preserve set: the rewrite generations judged safe, every position; kept only when asked for
    safe = ~m.flagged("rewrite")
    assert len(plain.safe_keys) == int(safe.sum()) * toy_backend.n_tokens
    assert measure(toy_backend, prompts, small_config(), keep_hidden=True).sets["rewrite"].hidden is None


def test_a_guided_edit_fits_what_guidance_samples_and_can_keep_the_unconditional_branch(toy_backend, prompts,
                                                                                       small_config):
    cfg = small_config()
    m = measure(toy_backend, prompts, cfg, keep_hidden=True)
    pairs = mine_measurement(m)
    data = generator_data(toy_backend, prompts, m, pairs, guided=True)
    assert data.uncond_keys.shape == data.keys.shape and data.benign_uncond_keys.shape == data.benign_keys.shape
    # the unconditional branch never sees the prompt: over the same grid, any prompt of one length gives its keys
    grids = pairs.harmful_grids[:1]
    texts = [prompts.harmful[int(pairs.prompt_index[0])].text]
    same_length = " ".join(["a"] * len(texts[0].split()))
    assert torch.allclose(toy_backend.teacher_forced_hidden(texts, grids, unconditional=True),
                          toy_backend.teacher_forced_hidden([same_length], grids, unconditional=True), atol=1e-5)
    head = toy_backend.get_codebook("gen_head")
    reference = {"gen_head": head, "gen_head_bias": toy_backend.get_codebook("gen_head_bias")}
    space = build_harmful_space(difference_vectors(head, pairs.harmful_grids, pairs.safe_grids, normalize_rows=False))
    def kl_moved(keys: torch.Tensor, edited: torch.Tensor) -> float:  # mean KL(before ‖ after) of the distributions
        before = toy_backend.head_logits(keys).log_softmax(-1)
        after = toy_backend.head_logits(keys, edited).log_softmax(-1)
        return float((before.exp() * (before - after)).sum(-1).mean())

    moved = {}
    for keep in (False, True):
        tune = replace(cfg.fine_tune, steps=60, check_every=20, patience=10, preserve_weight=4.0, keep_uncond=keep)
        edited, _ = generator_step2(toy_backend, data, head, torch.ones_like(head), space, reference, tune, 0,
                                    lambda *_: None, guidance=3.0)
        moved[keep] = kl_moved(data.keys, edited), kl_moved(data.uncond_keys, edited)
    assert min(moved[False]) > 0  # the fit moved the head (held-out KL improved)
    assert moved[True][1] < moved[False][1]  # keeping the unconditional branch keeps it closer to where it was
    assert moved[True][1] < moved[True][0]  # and the edit then acts on what the prompt draws


def test_a_harmful_code_penalty_lowers_exactly_those_codes_bias_and_step_2_fits_under_it(toy_backend, prompts,
                                                                                         small_config):
    cfg = small_config()
    cfg.generator_edit.step1 = "alphaedit"
    m = measure(toy_backend, prompts, cfg, keep_hidden=True)
    pairs = mine_measurement(m)
    reference = {n: toy_backend.get_codebook(n) for n in ("gen_head", "gen_head_bias")}
    plain = generator_round(toy_backend, prompts, m, pairs, cfg, reference, lambda *_: None)
    assert set(plain.codebooks) == {"gen_head"}  # off by default: the bias stays
    cfg.generator_edit.harmful_code_penalty = 5.0
    cfg.codes.ratio, cfg.codes.min_count = 1.5, 1  # enough codes pass on a few prompts
    penalised = generator_round(toy_backend, prompts, m, pairs, cfg, reference, lambda *_: None)
    codes = torch.tensor(penalised.info["penalised_codes"], dtype=torch.long)
    assert len(codes) > 0
    change = penalised.codebooks["gen_head_bias"] - reference["gen_head_bias"]
    assert torch.allclose(change[codes], torch.full((len(codes),), -5.0))
    assert int((change != 0).sum()) == len(codes)  # no other code's bias moved
    assert not torch.equal(penalised.codebooks["gen_head"], plain.codebooks["gen_head"])  # step 2 fitted under it
    assert torch.equal(toy_backend.get_codebook("gen_head_bias"), reference["gen_head_bias"])  # model left as found


def test_the_erase_step_makes_the_head_read_mined_keys_as_their_rewrites_keys_along_the_erased_directions(
        toy_backend, prompts, small_config):
    cfg = small_config()
    cfg.fine_tune.enabled = False  # step 1 alone
    cfg.generator_edit.step1, cfg.generator_edit.erase_rank = "erase", 2
    m = measure(toy_backend, prompts, cfg, keep_hidden=True)
    pairs = mine_measurement(m)
    reference = {n: toy_backend.get_codebook(n) for n in ("gen_head", "gen_head_bias")}
    edit = generator_round(toy_backend, prompts, m, pairs, cfg, reference, lambda *_: None)
    assert set(edit.codebooks) == {"gen_head", "gen_head_bias"} and edit.info["erased_rank"] == 2
    data = generator_data(toy_backend, prompts, m, pairs)
    gap = data.keys - data.safe_prefix_keys
    head, bias = edit.codebooks["gen_head"], edit.codebooks["gen_head_bias"]
    before = (gap @ reference["gen_head"].T).norm()
    after = (gap @ head.T).norm()
    assert after < 0.8 * before  # harmful and rewrite keys over the same prefix read closer alike
    assert torch.equal(toy_backend.get_codebook("gen_head"), reference["gen_head"])  # model left as found
    assert not torch.equal(bias, reference["gen_head_bias"])


def test_the_head_formula_is_the_models_own_generation_head(toy_backend):
    from safecb.engine.head_fit import HEAD_TENSORS, head_logits

    head = {name: toy_backend.get_codebook(name) for name in HEAD_TENSORS}
    hidden = torch.randn(7, head["gen_head_in"].shape[1], generator=torch.Generator().manual_seed(0))
    generation_head = toy_backend.model.model.generation_head
    with torch.no_grad():
        expected = generation_head(hidden)
    assert torch.allclose(head_logits(hidden, head, generation_head.activation_fn), expected, atol=1e-5)


def test_fit_head_moves_harmful_contexts_to_their_targets_and_keeps_the_kept_ones():
    """On a small random head: the fit term falls well below where it started, while a large β
    keeps the kept contexts' distributions nearly as they were; every tensor is fitted."""
    from safecb.engine.config import HeadFitConfig
    from safecb.engine.head_fit import HeadFitData, fit_head, guided_logits, kl_to

    g = torch.Generator().manual_seed(1)
    d, h, k = 6, 10, 12
    head = {"gen_head_in": torch.randn(h, d, generator=g), "gen_head_in_bias": torch.randn(h, generator=g),
            "gen_head": torch.randn(k, h, generator=g), "gen_head_bias": torch.randn(k, generator=g)}
    act, w = torch.nn.functional.gelu, 2.0
    harmful, harmful_uncond = torch.randn(40, d, generator=g) + 2.0, torch.randn(40, d, generator=g)
    kept, kept_uncond = torch.randn(60, d, generator=g) - 2.0, torch.randn(60, d, generator=g)
    target = torch.randn(40, k, generator=g) * 3
    with torch.no_grad():
        kept_logits = guided_logits(head, kept, kept_uncond, w, act)
    data = HeadFitData(harmful, harmful_uncond, target, kept, kept_uncond, kept_logits)
    fitted, info = fit_head(data, head, HeadFitConfig(steps=300, lr=1e-2, preserve_weight=20.0, batch=64), w, act,
                            seed=0, progress=lambda *_: None)
    before, after = info["head_fit_kl"]
    assert after < 0.5 * before
    assert info["head_kept_kl"][0] == 0.0 and info["head_kept_kl"][1] < 0.05 * before
    with torch.no_grad():
        assert float(kl_to(target, guided_logits(fitted, harmful, harmful_uncond, w, act))) == pytest.approx(after)
    assert all(not torch.equal(fitted[name], head[name]) for name in head)


def test_the_head_step_edits_the_whole_head_and_changes_what_the_model_draws(toy_backend, prompts, small_config):
    cfg = small_config()
    cfg.generator_edit.step1 = "head"
    cfg.generator_edit.head.steps = 30
    m = measure(toy_backend, prompts, cfg, keep_hidden=True)
    pairs = mine_measurement(m)
    reference = {n: toy_backend.get_codebook(n) for n in CODEBOOK_PATHS}
    edit = generator_round(toy_backend, prompts, m, pairs, cfg, reference, lambda *_: None)
    assert set(edit.codebooks) == {"gen_head_in", "gen_head_in_bias", "gen_head", "gen_head_bias"}
    fit_before, fit_after = edit.info["head_fit_kl"]
    assert fit_after < fit_before
    assert codebooks_equal(toy_backend, reference)  # the round hands back tensors; the model is left as found
    harmful = [p.text for p in prompts.harmful]
    before = toy_backend.generate(harmful, seeds=[0], settings=cfg.sampler)
    toy_backend.set_codebooks(edit.codebooks)
    try:
        after = toy_backend.generate(harmful, seeds=[0], settings=cfg.sampler)
    finally:
        toy_backend.set_codebooks(reference)
    assert not torch.equal(before.tokens, after.tokens)
