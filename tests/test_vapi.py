"""VAπ on the real toy model with tiny schedules: the pure pieces against their defining
properties, the frozen parts staying bit-identical, exact resume, step 3 inside a Safe-CB round
with an exact rollback, the CLI, and one clear error for each bad config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from safecb import world
from safecb.engine import SafeCBConfig, run_safecb
from safecb.engine.prompts import from_world
from safecb.models.backend import JanusBackend
from safecb.paths import TOY_MODEL_DIR
from safecb.vapi.checkpoint import VapiCheckpoint
from safecb.vapi.config import VapiConfig
from safecb.vapi.data import toy_data
from safecb.vapi.generator import trainable_parameters
from safecb.vapi.objective import clipped_policy_loss, group_advantages, kl_to_reference, noisy_context
from safecb.vapi.reward import local_rewards
from safecb.vapi.train import train_vapi

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def backend():
    return JanusBackend.load(TOY_MODEL_DIR, device="cpu")


@pytest.fixture(scope="module")
def data(backend):
    return toy_data(backend, 24, seed=0)


def tiny(**overrides) -> VapiConfig:
    cfg = VapiConfig(steps=3, batch=3, group=4, warmup=1, lr=1e-3, checkpoint_every=2)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def state(backend) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in backend.model.state_dict().items()}


# ---------------------------------------------------------------- pure pieces
def test_group_advantages_standardise_each_group_and_clip():
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(5, 8, generator=g) * 3 + 7
    adv = group_advantages(rewards, clip=5.0)
    assert torch.allclose(adv.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(adv.std(1), torch.ones(5), atol=1e-4)
    assert torch.allclose(group_advantages(2.5 * rewards - 4.0), adv, atol=1e-4)  # affine-invariant
    assert torch.equal(group_advantages(torch.full((2, 4), 3.0)), torch.zeros(2, 4))  # no signal, no push
    outlier = torch.zeros(1, 40)
    outlier[0, 0] = 1.0  # standardised, it would be (40 − 1) / √40 ≈ 6.2
    assert group_advantages(outlier, clip=5.0)[0, 0] == 5.0
    per_token = group_advantages(torch.randn(2, 6, 10, generator=g))  # groups along dim 1, tokens apart
    assert torch.allclose(per_token.mean(1), torch.zeros(2, 10), atol=1e-5)
    with pytest.raises(ValueError, match="G ≥ 2"):
        group_advantages(torch.zeros(3, 1))


@pytest.mark.parametrize(
    "advantage, log_ratio, sign",
    [
        (1.0, 0.0, -1),  # inside the clip range a good sample's log-prob is pushed up (gradient < 0)
        (-1.0, 0.0, 1),  # and a bad sample's pushed down
        (1.0, 0.5, 0),  # ratio e^0.5 > 1 + ε: a good sample already pushed enough, no gradient
        (-1.0, -0.5, 0),  # ratio e^-0.5 < 1 − ε: a bad sample already pushed down enough
        (1.0, -0.5, -1),  # the pessimistic bound keeps pulling a good sample that fell back
        (-1.0, 0.5, 1),  # and keeps pushing a bad sample that rose
    ],
)
def test_clipped_objective_gradient_sign(advantage, log_ratio, sign):
    logp_old = torch.full((1, 1, 3), -2.0)
    logp = (logp_old + log_ratio).requires_grad_(True)
    loss = clipped_policy_loss(logp, logp_old, torch.tensor([[advantage]]), eps=0.2)
    loss.backward()
    assert torch.all(torch.sign(logp.grad) == sign), logp.grad


def test_per_token_advantages_only_move_their_token():
    logp_old = torch.full((1, 1, 2), -1.0)
    logp = logp_old.clone().requires_grad_(True)
    clipped_policy_loss(logp, logp_old, torch.tensor([[[2.0, 0.0]]]), eps=0.2).backward()
    assert logp.grad[0, 0, 0] < 0 and logp.grad[0, 0, 1] == 0


def test_kl_estimate_is_zero_at_the_reference_and_positive_elsewhere():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.equal(kl_to_reference(logp, logp), torch.zeros(3))
    assert (kl_to_reference(logp, logp + torch.tensor([0.3, -0.7, 1.0])) > 0).all()


def test_local_rewards_average_the_neighbourhood():
    reward_map = torch.zeros(1, 4, 4)
    reward_map[0, 0, 0] = 9.0
    local = local_rewards(reward_map, radius=1).view(4, 4)
    assert local[0, 0] == pytest.approx(9.0 / 4)  # corner: 4 patches in reach
    assert local[1, 1] == pytest.approx(1.0) and local[3, 3] == 0.0
    assert torch.equal(local_rewards(reward_map, radius=0), reward_map.flatten(1))


def test_noisy_context_replaces_about_p_of_the_context():
    tokens = torch.zeros(64, 65, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    assert noisy_context(tokens, 0.0, 512, g).shape == (64, 64)
    assert torch.equal(noisy_context(tokens, 0.0, 512, g), tokens[:, :-1])
    changed = (noisy_context(tokens, 0.5, 512, g) != 0).float().mean()
    assert 0.45 < changed < 0.55


@pytest.mark.parametrize(
    "field, value, message",
    [("group", 1, "group G"), ("lr", -1e-4, "lr"), ("noise", 1.5, "noise"), ("method", "ppo", "method"),
     ("trainable", "vqmodel", "trainable"), ("steps", -1, "steps"), ("credit", "pixel", "credit")],
)
def test_bad_configs_fail_with_one_clear_message(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny(**{field: value}).validate()


# ---------------------------------------------------------------- training on the real toy
@pytest.mark.parametrize("method", ["grpo", "ste"])
def test_only_the_generator_changes(backend, data, method):
    before = state(backend)
    trained = set(trainable_parameters(backend, "generator"))
    train_vapi(backend, data, tiny(method=method, credit="local", kl=0.1))
    after = state(backend)
    frozen_prefixes = ("model.vqmodel.", "model.vision_model.", "model.aligner.", "lm_head.")
    frozen = [n for n in before if n.startswith(frozen_prefixes)]
    assert any(n.startswith("model.vqmodel.quantize.embedding") for n in frozen)  # the decoder codebook
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in trained)
    assert any(not torch.equal(before[n], after[n]) for n in trained)
    assert all(p.requires_grad for p in backend.model.parameters())  # flags are handed back
    backend.model.load_state_dict(before)


def test_resume_continues_the_same_schedule(backend, data, tmp_path):
    before = state(backend)
    cfg = tiny(steps=4, kl=0.05, updates_per_batch=2)
    full = train_vapi(backend, data, cfg, out_dir=tmp_path / "full")
    straight = state(backend)
    backend.model.load_state_dict(before)

    calls = iter(range(100))
    first = train_vapi(backend, data, cfg, out_dir=tmp_path / "cut", should_stop=lambda: next(calls) >= 3)
    assert first.stopped_early and first.steps_done == 3
    backend.model.load_state_dict(before)  # a fresh process: the model starts from the shipped weights
    resumed = train_vapi(backend, data, cfg, out_dir=tmp_path / "cut")
    assert resumed.steps_done == 4 and len(resumed.history) == 4
    assert all(torch.equal(straight[n], t) for n, t in state(backend).items())
    assert [h["reward"] for h in resumed.history] == [h["reward"] for h in full.history]
    saved = VapiCheckpoint(tmp_path / "cut").read_state()
    assert saved["step"] == 4 and set(saved["adam_steps"].values()) == {8.0}  # 4 steps x 2 updates

    with pytest.raises(ValueError, match="another VAπ config"):
        train_vapi(backend, data, tiny(steps=5), out_dir=tmp_path / "cut")
    backend.model.load_state_dict(before)


# ---------------------------------------------------------------- step 3 in a Safe-CB round
def test_step3_changes_generator_codebooks_and_rollback_restores_everything(backend, tmp_path):
    sets = world.build_prompt_sets()
    prompts = from_world(sets.train_harmful[:3], sets.train_benign[:2])
    cfg = SafeCBConfig()
    cfg.mining.seeds, cfg.mining.benign_seeds = [0, 1, 2], [0, 1]
    cfg.fine_tune.steps, cfg.fine_tune.check_every = 10, 5
    cfg.stop.max_rounds, cfg.stop.max_benign_change = 2, 0.0  # any change trips the guard: rollback
    cfg.vapi.enabled, cfg.vapi.steps, cfg.vapi.batch, cfg.vapi.group = True, 2, 4, 4
    assert SafeCBConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    before = state(backend)
    seen = []
    result = run_safecb(backend, prompts, cfg, run_dir=tmp_path / "run", on_event=lambda e: seen.append(e.stage))
    assert "step 3: VAπ" in seen and result.rounds[1]["vapi_steps"] == 2
    assert result.rounds[1]["vapi_frozen_codes"] >= 0  # step 3 was confined (cfg.vapi.confine is on by default)
    assert "quality guard" in result.stopped and result.best_round == 0
    assert all(torch.equal(before[n], t) for n, t in state(backend).items())  # the whole model, bit for bit
    snapshot = backend.read_codebook_file(tmp_path / "run" / "round_001" / "codebooks.safetensors")
    assert not torch.equal(snapshot["gen_embed"], before["model.generation_embeddings.weight"])  # step 3 ran

    cfg.vapi.trainable = "generator"  # would change tensors a rollback cannot restore
    with pytest.raises(ValueError, match="codebooks"):
        cfg.validate()


# ---------------------------------------------------------------- the CLI
def test_cli_vapi_trains_checkpoints_resumes_and_refuses_bad_input(tmp_path):
    out = tmp_path / "vapi"
    cmd = [sys.executable, "-m", "safecb", "vapi", "--out", str(out), "--steps", "2", "--images", "16",
           "--batch", "2", "--group", "2", "--threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("state.json", "generator.safetensors", "optimizer.safetensors", "model/config.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "state.json").read_text())["step"] == 2
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # finished: nothing to redo
    assert again.returncode == 0 and "2/2 steps" in again.stdout

    bad = subprocess.run(cmd[:-2] + ["--group", "1", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error:")
    assert "group" in bad.stderr


def test_fid_change_is_zero_for_the_same_images_and_positive_toward_the_reference():
    import numpy as np

    from safecb.bench.vapi import fid_change_with_interval

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(400, 4))
    before = reference + 1.0 + 0.5 * rng.normal(size=(400, 4))  # shifted and noisier than the reference
    same = fid_change_with_interval(before, before.copy(), reference, n_boot=50)
    assert same["value"] == 0 and same["ci"][0] < 0 < same["ci"][1] and same["n"] == 400
    closer = before - 0.8  # most of the shift removed: FID drops from about 4 to under 1
    change = fid_change_with_interval(before, closer, reference, n_boot=50)
    assert 0.6 < change["value"] < 1 and change["ci"][0] > 0.5
    worse = fid_change_with_interval(before, before + 1.0, reference, n_boot=50)
    assert worse["ci"][1] < 0  # farther from the reference: a negative gain
    with pytest.raises(ValueError, match="same rows"):
        fid_change_with_interval(before, closer[:-1], reference, n_boot=5)
    with pytest.raises(ValueError, match="strata"):
        fid_change_with_interval(before, closer, reference, n_boot=5, strata=np.zeros(3))


def test_fid_change_of_two_draws_from_one_model_has_an_interval_around_zero():
    """The noise check's defining property: two independent draws of the same prompts from the same
    distribution (what the unedited model gives at two seed sets) have a true gain of 0, which
    the interval must hold even when luck makes the estimate itself sizeable."""
    import numpy as np

    from safecb.bench.vapi import fid_change_with_interval

    rng = np.random.default_rng(3)
    prompts, seeds = 20, 10
    strata = np.repeat(np.arange(prompts), seeds)
    centres = 2 * rng.normal(size=(prompts, 4))[strata]
    reference = centres + rng.normal(size=(len(strata), 4))
    first, second = (centres + 0.5 + 1.3 * rng.normal(size=(len(strata), 4)) for _ in range(2))
    null = fid_change_with_interval(first, second, reference, n_boot=100, strata=strata)
    assert null["value"] != 0 and null["ci"][0] < 0 < null["ci"][1]


def test_resampling_within_strata_keeps_every_stratum_and_its_count():
    import numpy as np

    from safecb.bench.vapi import resample_within

    strata = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    rows = resample_within(strata, np.random.default_rng(0))
    assert len(rows) == len(strata) and (strata[rows] == strata).all()  # every row redrawn from its own stratum
    draws = np.stack([resample_within(strata, np.random.default_rng(s)) for s in range(50)])
    assert set(draws[:, :3].ravel()) == {0, 1, 2}  # with replacement, over the whole stratum


def test_bench_vapi_quick_writes_every_key(tmp_path, capsys):
    from safecb.cli import main

    out = tmp_path / "bench_vapi.json"
    assert main(["bench", "vapi", "--quick", "--variants", "grpo", "--no-safecb", "--threads", "1",
                 "--eval-seed-start", "2000", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["eval_seed_start"] == 2000  # sweeps tune on seeds apart from the reported ones
    for key in ("fid_toy_before", "fid_toy_after", "fidelity_before", "fidelity_after", "seconds", "fid_toy_gain",
                "fid_toy_gain_cfg"):
        assert isinstance(report[key], float), key
    # the gain is the ratio the two FID-toy figures give
    assert report["fid_toy_gain"] == pytest.approx(1 - report["fid_toy_after"] / report["fid_toy_before"], abs=1e-9)
    assert report["acceptance"]["fid_relative_improvement"] == report["fid_toy_gain"]
    assert isinstance(report["fid_toy_gain_null"], float)  # the noise check: the unedited model at other seeds
    for key in ("fid_toy_before", "fidelity_after_cfg", "reward_after", "fid_toy_gain", "fid_toy_gain_null"):
        lo, hi = report["intervals"][key]["ci"]
        # the interval holds its estimate (to float rounding: a bootstrap of identical values may end 1 ulp off)
        assert lo - 1e-12 <= report[key] <= hi + 1e-12 and report["intervals"][key]["n"] > 0
    # the floors: other renders of the same scenes sit closer to the reference than their tokenizer
    # reconstructions (at --quick sizes FID's small-sample bias can put either above the model's drawings)
    assert 0 <= report["fid_toy_renders_floor"] < report["fid_toy_tokenizer_floor"]
    assert main(["bench", "vapi", "--quick", "--set", "no_such_field=1"]) == 2
    assert "--set" in capsys.readouterr().err
