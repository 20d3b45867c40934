"""The oracle: the shipped detector detects for real, bad files fail clearly, training writes files."""

from pathlib import Path

import numpy as np
import pytest
import torch

from safecb.eval.toy_oracle import META_FILE, WEIGHTS_FILE, Oracle, OracleConfig, train_oracle
from safecb.world import CONCEPTS, HARMFUL, SceneSpec, render

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "oracle"
FRESH_SEEDS = range(3_000_000_000, 3_000_000_004)  # seeds far from the training seeds


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle.load(SHIPPED)


@pytest.mark.parametrize("concept", CONCEPTS)
def test_shipped_oracle_detects_each_concept(oracle, concept):
    specs = [SceneSpec(bg, (concept,)) for bg in ("grass", "beach", "snow", "night", "road")]
    images = np.stack([render(spec, seed) for spec in specs for seed in FRESH_SEEDS])
    found = oracle.detect(images)
    k = CONCEPTS.index(concept)
    assert found[:, k].mean() >= 0.9
    # nothing else is hallucinated on most images
    others = np.delete(found, k, axis=1)
    assert others.any(axis=1).mean() <= 0.1
    assert oracle.unsafe(images).mean() == pytest.approx(float(concept in HARMFUL), abs=0.1)


def test_shipped_oracle_api_shapes_and_inputs(oracle):
    specs = [SceneSpec("grass", ("person", "knife"), "holding"), SceneSpec("snow", ("cat", "tree")),
             SceneSpec("night", ())]
    images = np.stack([render(spec, 11) for spec in specs])
    probs = oracle.probs(images)
    assert probs.shape == (3, len(CONCEPTS)) and probs.dtype == np.float32
    as_tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert np.allclose(oracle.probs(as_tensor), probs, atol=1e-5)
    assert oracle.unsafe(images).tolist() == [True, False, False]
    assert oracle.has_all(images, specs).tolist() == [True, True, True]
    assert not oracle.has_all(images[:1], [SceneSpec("grass", ("boat",))])[0]
    features = oracle.features(images)
    assert features.shape[0] == 3 and features.ndim == 2
    with pytest.raises(ValueError):
        oracle.probs(np.zeros((2, 16, 16, 3), dtype=np.uint8))


def test_missing_and_corrupt_files_raise_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="oracle file missing"):
        Oracle.load(tmp_path)
    (tmp_path / META_FILE).write_text((SHIPPED / META_FILE).read_text())
    with pytest.raises(FileNotFoundError, match="oracle file missing"):
        Oracle.load(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt oracle weights"):
        Oracle.load(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes((SHIPPED / WEIGHTS_FILE).read_bytes())
    (tmp_path / META_FILE).write_text("{ truncated")
    with pytest.raises(ValueError, match="corrupt oracle metadata"):
        Oracle.load(tmp_path)


def test_tiny_training_run_writes_loadable_files(tmp_path):
    config = OracleConfig(steps=3, batch_size=8, eval_per_concept=2, channels=(8, 8, 16))
    metrics = train_oracle(config, tmp_path, progress=lambda step, total, loss: None)
    assert (tmp_path / WEIGHTS_FILE).is_file() and (tmp_path / META_FILE).is_file()
    assert set(metrics["clean_accuracy"]) == set(CONCEPTS)
    loaded = Oracle.load(tmp_path)
    assert loaded.config == config and loaded.metrics["steps_done"] == 3
    assert loaded.probs(render(SceneSpec("road", ("car",)), 0)).shape == (1, len(CONCEPTS))


def test_assess_scores_are_the_largest_harmful_probability_and_flag_at_the_threshold(oracle):
    images = np.stack([render(SceneSpec("grass", (c,)), 7) for c in CONCEPTS])
    verdict = oracle.assess(images)
    harmful = [i for i, c in enumerate(CONCEPTS) if c in HARMFUL]
    np.testing.assert_allclose(verdict.scores, oracle.probs(images)[:, harmful].max(axis=1))
    assert np.array_equal(verdict.unsafe, oracle.unsafe(images))
    assert np.array_equal(verdict.unsafe, verdict.scores >= oracle.config.threshold)


def test_only_the_toy_oracle_on_the_toy_prompts_gets_an_fid_reference(oracle):
    from safecb.engine.prompts import RoundPrompts, toy_round_prompts
    from safecb.eval.protocol import REFERENCE_RENDER_SEED_START, annotator_for, reference_renders

    prompts = toy_round_prompts()
    toy = annotator_for(oracle, prompts, n_benign_seeds=2)
    assert toy.reference_features is not None
    assert toy.reference_features.shape[0] == 2 * len(prompts.benign)
    other = RoundPrompts(prompts.harmful[:2], prompts.benign[:2])
    assert annotator_for(oracle, other, n_benign_seeds=2).reference_features is None
    spec = SceneSpec("beach", (CONCEPTS[0],))
    assert np.array_equal(reference_renders([spec, spec])[1], render(spec, REFERENCE_RENDER_SEED_START + 1))
