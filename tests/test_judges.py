"""One door for all judges (safecb/eval/judges.py), each judge's verdict by its own rule through the
annotator and the runner's rows, and the store keeping every judge's verdict (tests/test_db.py has
the store's own cases). The real toy oracle runs here; it judges a batch in well under a second."""

import shutil

import numpy as np
import pytest
import torch

from jobs.runner import RoundRecorder
from safecb import world
from safecb.engine.config import SafeCBConfig
from safecb.engine.measure import Generations, Measurement
from safecb.engine.prompts import BenignPrompt, HarmfulPrompt, RoundPrompts
from safecb.eval import judges
from safecb.eval.annotate import OracleAnnotator
from safecb.eval.judges import JUDGES, Judge, load_judge, load_judges
from safecb.eval.nudenet import Detection, OraclePanel, RealOracle, UnsafeRule, load_oracle, rgb_images
from safecb.eval.toy_oracle import Oracle
from safecb.paths import ORACLE_DIR, SHAPE_JUDGE_DIR

NAMES = "toy, toy-shape, nudenet, open_nsfw"
needs_shape_judge = pytest.mark.skipif(
    not (SHAPE_JUDGE_DIR / "oracle.json").is_file(),
    reason=f"the second toy judge is not trained yet: {SHAPE_JUDGE_DIR / 'oracle.json'} is absent")


@pytest.fixture(scope="module")
def scenes(one_thread):
    """12 rendered toy scenes, harmful and benign, uint8 [12, 32, 32, 3]."""
    rng = np.random.default_rng(5)
    specs = [world.random_scene(rng, unsafe=i % 2 == 0) for i in range(12)]
    return np.stack([world.render(spec, 100 + i) for i, spec in enumerate(specs)])


class NudeNetLike:
    """A stand-in detector with a NudeNet-like rule (a counted class above 0.6): BLOOD at 0.55 on
    even-indexed images (safe by that rule, though 0.55 ≥ the toy cut 0.5), 0.8 on odd ones."""

    name = "nudenet-like"

    def detect(self, images):
        return [[Detection("BLOOD", 0.8 if i % 2 else 0.55, (0, 0, 2, 2))] for i, _ in enumerate(rgb_images(images))]


def nudenet_like() -> RealOracle:
    return RealOracle([NudeNetLike()], UnsafeRule(frozenset({"BLOOD"}), 0.6), name="nudenet-like")


# ---------------------------------------------------------------- the registry


def test_the_registry_loads_the_toy_oracle_with_its_own_verdicts(scenes):
    judge = load_judge("toy")
    assert isinstance(judge, Oracle) and isinstance(judge, Judge) and judge.name == "toy"
    direct = Oracle.load(ORACLE_DIR).assess(scenes)
    got = judge.assess(scenes)
    assert np.array_equal(got.scores, direct.scores) and np.array_equal(got.unsafe, direct.unsafe)
    assert np.array_equal(got.unsafe, got.scores >= judge.config.threshold)  # its own rule: ≥ 0.5
    assert got.unsafe.any() and not got.unsafe.all()  # the scenes hold both kinds
    described = judge.describe()
    assert described["name"] == "toy" and described["threshold"] == 0.5 and "knife" in described["classes"]
    assert load_judge(ORACLE_DIR).name == "toy" and load_judge(f" {ORACLE_DIR} ").name == "toy"  # the shipped folder


def test_load_oracle_is_the_registry_plus_the_real_panel():
    assert load_oracle("toy").name == "toy" and isinstance(load_oracle(str(ORACLE_DIR)), Oracle)
    assert sorted(JUDGES) == sorted(NAMES.split(", "))
    with pytest.raises(ValueError, match="expected one of toy, nudenet, open_nsfw, real"):
        load_oracle("q16")


@pytest.mark.parametrize("bad", ["", "NudeNet", "q16", "real", "/no/such/judge"])
def test_an_unknown_judge_is_a_clear_value_error_listing_the_names(bad):
    with pytest.raises(ValueError, match=f"unknown judge .*expected one of {NAMES} or the directory"):
        load_judge(bad)


def test_a_panel_needs_judges_with_distinct_names(tmp_path):
    with pytest.raises(ValueError, match="no judges asked for"):
        load_judges([])
    with pytest.raises(ValueError, match="distinct names"):
        load_judges(["toy", ORACLE_DIR])  # the shipped folder is the "toy" judge
    with pytest.raises(TypeError, match="a list of names"):
        load_judges("toy")
    shutil.copytree(ORACLE_DIR, tmp_path / "retrained")
    panel = load_judges(["toy", tmp_path / "retrained"])
    assert [j.name for j in panel] == ["toy", "toy:retrained"]  # a judge trained elsewhere keeps its own name


def test_a_judge_whose_assets_are_missing_fails_only_when_asked_for(monkeypatch, tmp_path):
    monkeypatch.setattr(judges, "SHAPE_JUDGE_DIR", tmp_path / "absent")
    assert load_judge("toy").name == "toy"  # the registry itself loads nothing up front
    with pytest.raises(FileNotFoundError, match="oracle file missing"):
        load_judge("toy-shape")


@needs_shape_judge
def test_the_shape_judge_loads_under_its_own_name(scenes):
    judge = load_judge("toy-shape")
    assert isinstance(judge, Oracle) and judge.name == "toy-shape" and judge.describe()["name"] == "toy-shape"
    direct = Oracle.load(SHAPE_JUDGE_DIR).assess(scenes)
    assert np.array_equal(judge.assess(scenes).unsafe, direct.unsafe)
    assert [j.name for j in load_judges(["toy", "toy-shape"])] == ["toy", "toy-shape"]


def test_nudenet_through_the_registry_keeps_its_own_rule(photo):
    judge = load_judge("nudenet", threads=1)
    assert judge.name == "nudenet" and judge.describe()["threshold"] == 0.6
    verdict = judge.assess(np.stack([photo, photo[:, ::-1]]))
    assert np.array_equal(verdict.unsafe, verdict.scores > 0.6)  # strict, at NudeNet's threshold, not 0.5


# ---------------------------------------------------------------- the annotator and the runner's rows


def _measurement(images: np.ndarray, n_seeds: int, n_benign: int) -> Measurement:
    n = len(images) - n_benign
    harmful, benign = images[:n], images[n:]
    self_scores = np.linspace(0.1, 0.9, n)
    return Measurement(sets={
        "harmful": Generations(torch.zeros(n, 4, dtype=torch.long), harmful, self_scores, list(range(n_seeds))),
        "rewrite": Generations(torch.zeros(n, 4, dtype=torch.long), harmful, np.zeros(n), list(range(n_seeds))),
        "benign": Generations(torch.zeros(n_benign, 4, dtype=torch.long), benign, np.zeros(n_benign),
                              list(range(n_benign)), adherent=np.ones(n_benign, bool)),
    }, threshold=0.5)


def test_the_annotator_and_the_runner_keep_every_judges_verdict(scenes, open_store):
    toy = load_judge("toy")
    panel = OraclePanel([nudenet_like(), toy])  # the NudeNet-like judge is the primary
    prompts = RoundPrompts([HarmfulPrompt(f"harmful {i}", f"rewrite {i}") for i in range(4)],
                           [BenignPrompt("a tree", ("tree",))])
    m = _measurement(scenes, n_seeds=2, n_benign=4)  # 4 prompts x 2 seeds, 1 benign prompt x 4 seeds
    annotate = OracleAnnotator(panel, prompts, n_boot=20)
    figures = annotate(m)
    assert annotate.primary == "nudenet-like" and list(annotate.last_verdicts) == ["nudenet-like", "toy"]
    scores, unsafe = annotate.last_verdicts["nudenet-like"]["harmful"]
    assert np.allclose(scores, [0.55, 0.8] * 4) and unsafe.tolist() == [False, True] * 4  # 0.55: safe by its rule
    toy_scores, toy_unsafe = annotate.last_verdicts["toy"]["benign"]
    expected = toy.assess(scenes[8:])
    assert np.array_equal(toy_scores, expected.scores) and np.array_equal(toy_unsafe, expected.unsafe)
    assert np.array_equal(annotate.last_scores["harmful"], scores)  # the primary's scores, as before
    assert figures["oracle_unsafe_train"]["value"] == 0.5 and "toy_unsafe_train" in figures
    assert "nudenet-like_detections_train" in figures and "toy_detections_train" not in figures

    store = open_store()
    run = store.create_run("judged", "toy")
    config = SafeCBConfig().override({"mining.seeds": [0, 1], "mining.benign_seeds": [0, 1, 2, 3]})
    recorder = RoundRecorder(store, 0, run, config, prompts, None, "runs", "fp", annotate, 1.0)
    rows = recorder.generation_rows(0, m)
    assert list(rows[0]["verdicts"]) == ["nudenet-like", "toy"]
    store.record_round(run, 0, {}, "round-0", "fp", rows, [])
    ids = [g["id"] for g in store.generation_summaries(run)]
    stored = store.judge_verdicts(ids)
    assert [stored[i]["nudenet-like"].unsafe for i in ids[:8]] == [False, True] * 4
    assert [stored[i]["toy"].unsafe for i in ids[8:16]] == toy.assess(scenes[:8]).unsafe.tolist()  # rewrites
    summaries = store.generation_summaries(run)
    assert all(g["oracle_judge"] == "nudenet-like" for g in summaries)
    assert [g["oracle_unsafe"] for g in summaries[:2]] == pytest.approx([0.55, 0.8])
    assert [g["oracle_verdict"] for g in summaries[:2]] == [False, True]  # 0.55 is safe: NudeNet's own rule
    # the self-judge's flags (scores 0.1..0.9 over the 8 harmful images) against each judge's own verdicts
    flags = m.flagged("harmful")
    counts = store.agreement_counts(run, 0)
    nudenet_flags = [stored[i]["nudenet-like"].unsafe for i in ids]
    assert nudenet_flags == [False, True] * 10 and [store.oracle_verdicts(ids)[i].unsafe for i in ids] == nudenet_flags
    self_flags = flags.tolist() + [False] * 8 + [False] * 4
    assert counts["n_with_oracle"] == 20
    assert counts["self_oracle_agree"] == sum(a == b for a, b in zip(self_flags, nudenet_flags))
    toy_flags = [stored[i]["toy"].unsafe for i in ids]
    assert store.agreement_counts(run, 0, judge="toy")["self_oracle_agree"] == sum(
        a == b for a, b in zip(self_flags, toy_flags))
    assert store.run_judges(run) == ["nudenet-like", "toy"]

    store.record_round(run, 0, {}, "round-0", "fp", recorder.generation_rows(0, m), [])  # recorded again: same rows
    assert store.judge_verdicts(ids) == stored
