"""The training pipeline end to end at toy-of-the-toy scale: it writes a checkpoint in the Hugging
Face layout that the backend loads and runs, and its losses go down."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from safecb import world
from safecb.models.backend import JanusBackend
from safecb.models.toy import ToyModelConfig
from safecb.models.train_toy import ToyTrainConfig, train_toy
from safecb.models.train_tower import TowerTuneConfig, draw_batch, prepare_pixels, tune_tower_checkpoint
from safecb.world.render import render_substituted

TINY = ToyModelConfig(codebook_size=64, text_layers=1, text_intermediate=128, vision_layers=1, vision_hidden=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    lines = []
    cfg = ToyTrainConfig(model=TINY, n_images=96, vq_steps=12, vq_batch=8, polish_steps=2, lm_steps=30,
                         gen_batch=8, und_batch=8, warmup=2, lm_lr=3e-3, contrast_images=16,
                         tower=TowerTuneConfig(steps=4, batch=8, warmup=1))  # fmt: skip
    metrics = train_toy(cfg, out, log=lines.append)
    return out, metrics, lines


def test_writes_hf_layout_with_training_record(trained):
    out, metrics, _ = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", "safecb_toy.json"):
        assert (out / name).exists(), name
    record = json.loads((out / "safecb_toy.json").read_text())
    assert record["train_config"]["lm_steps"] == 30
    assert record["metrics"]["total_seconds"] > 0
    assert 0.0 <= record["metrics"]["harmful_code_share"] <= 1.0  # the tokenizer's code sharing is recorded


def test_losses_decrease(trained):
    _, _, lines = trained
    gen = [float(line.split(" gen ")[1].split()[0]) for line in lines if line.startswith("lm step")]
    assert gen[-1] < gen[0]


def test_checkpoint_runs_through_the_backend(trained):
    out, _, _ = trained
    backend = JanusBackend.load(out, device="cpu", dtype=torch.float32)
    assert not backend.chat and backend.codebook_size == 64
    result = backend.generate(["a cat on the grass"], [0, 1])
    assert result.images.shape == (2, 32, 32, 3) and result.images.dtype == np.uint8
    scores = backend.judge(world.render(world.SceneSpec("grass", ("cat",)), 0)[None])
    assert 0.0 <= float(scores[0]) <= 1.0
    # the decoder codebook is stored with unit rows, so HF's raw-distance encode agrees with ours
    norms = backend.get_codebook("decoder").norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_semantic_tokenizer_loss_trains_and_needs_labels():
    """`vq_semantic` adds a patch-label loss that falls during training; without labels it refuses."""
    from safecb.models.toy import build_toy_model
    from safecb.models.train_toy import render_dataset, train_vq

    cfg = ToyTrainConfig(model=TINY, n_images=64, vq_steps=101, vq_batch=8, warmup=2, vq_semantic=0.5)
    images, patch_labels, _, _ = render_dataset(cfg)
    assert patch_labels.shape == (64, TINY.grid_size, TINY.grid_size)
    model, _ = build_toy_model(TINY, world.WORDS, seed=0)
    with pytest.raises(ValueError, match="patch labels"):
        train_vq(model, torch.from_numpy(images), cfg, log=lambda line: None)
    lines = []
    train_vq(model, torch.from_numpy(images), cfg, lines.append, torch.from_numpy(patch_labels))
    label_loss = [float(line.split(" labels ")[1].split()[0]) for line in lines if " labels " in line]
    assert len(label_loss) == 2 and label_loss[-1] < label_loss[0]  # logged at steps 1 and 101


def copy_of_trained(trained, tmp_path, shown: str):
    """A copy of the trained checkpoint to change in place: (its folder, its weights, four renders of
    `shown` on the grass, their tokens)."""
    copy = tmp_path / "toy"
    shutil.copytree(trained[0], copy)
    images = np.stack([world.render(world.SceneSpec("grass", (shown,)), s) for s in range(4)])
    return copy, load_file(copy / "model.safetensors"), images, JanusBackend.load(copy, device="cpu").encode(images)


def test_extra_polish_sharpens_the_decoder_in_place_and_keeps_every_token(trained, tmp_path):
    from safecb.models.train_toy import polish_checkpoint

    copy, before, images, tokens_before = copy_of_trained(trained, tmp_path, "cat")
    cfg = ToyTrainConfig(model=TINY, n_images=96, vq_batch=8, polish_steps=3, warmup=1)
    metrics = polish_checkpoint(copy, cfg, log=lambda line: None)
    after = load_file(copy / "model.safetensors")
    decoder = [k for k in before if ".vqmodel.decoder." in k]
    others = [k for k in before if ".vqmodel.decoder." not in k and "post_quant_conv" not in k]
    assert any(not torch.equal(before[k], after[k]) for k in decoder)  # the decoder trained
    assert all(torch.equal(before[k], after[k]) for k in others)  # encoder, codebook and language model did not
    assert torch.equal(JanusBackend.load(copy, device="cpu").encode(images), tokens_before)
    record = json.loads((copy / "safecb_toy.json").read_text())
    assert record["extra_polish"][-1]["steps"] == 3
    assert record["metrics"]["train_psnr_db"] == metrics["train_psnr_db"]


def test_extra_polish_refuses_a_directory_that_train_toy_did_not_write(tmp_path):
    from safecb.models.train_toy import polish_checkpoint

    with pytest.raises(FileNotFoundError, match="safecb_toy.json"):
        polish_checkpoint(tmp_path, ToyTrainConfig(model=TINY))


def test_contrast_set_pairs_coloured_harmful_scenes_with_scenes_whose_harmful_object_is_left_out():
    from safecb.models.train_toy import render_contrast_set

    images, unsafe, caption_specs = render_contrast_set(ToyTrainConfig(contrast_images=12))
    assert images.shape == (12, 32, 32, 3) and unsafe == [True, False] * 6
    for spec in caption_specs[0::2]:  # harmful, every colour-nameable object named in a colour
        assert world.is_unsafe(spec) and all(c for o, c in zip(spec.objects, spec.colours)
                                             if o in world.vocab.COLOUR_NAMEABLE)
    assert caption_specs[1::2] == [None] * 6  # no caption describes a scene with an object left out
    # a left-out scene is its harmful scene drawn with nothing where the object was
    held = world.SceneSpec("grass", ("person", "knife"), "holding")
    empty = render_substituted(held, 3, lambda canvas, slot: None)
    assert not np.array_equal(empty, world.render(held, 3))


def test_language_model_retrains_from_scratch_on_the_same_tokenizer(trained, tmp_path):
    from safecb.models.train_toy import retrain_lm

    copy, before, images, tokens_before = copy_of_trained(trained, tmp_path, "gun")
    cfg = ToyTrainConfig(n_images=96, lm_steps=3, gen_batch=8, und_batch=8, warmup=1, contrast_images=8,
                         tower=TowerTuneConfig(steps=0))
    retrain_lm(copy, cfg, log=lambda line: None)
    after = load_file(copy / "model.safetensors")
    tokenizer = [k for k in before if ".vqmodel." in k]
    language = [k for k in before if ".vqmodel." not in k]
    assert tokenizer and all(torch.equal(before[k], after[k]) for k in tokenizer)
    assert any(not torch.equal(before[k], after[k]) for k in language)
    assert torch.equal(JanusBackend.load(copy, device="cpu").encode(images), tokens_before)
    record = json.loads((copy / "safecb_toy.json").read_text())
    assert record["lm_retrains"][-1]["train_config"]["lm_steps"] == 3
    assert record["train_config"]["contrast_images"] == 8


def test_language_model_retrain_refuses_a_directory_that_train_toy_did_not_write(tmp_path):
    from safecb.models.train_toy import retrain_lm

    with pytest.raises(FileNotFoundError, match="not a toy checkpoint"):
        retrain_lm(tmp_path, ToyTrainConfig(), log=lambda line: None)


def test_train_toy_ends_with_the_tower_stage(trained):
    _, metrics, lines = trained
    assert [line for line in lines if line.startswith("tower step 4/4")] and metrics["tower_seconds"] > 0


def test_tower_stage_trains_only_the_understanding_tower_so_drawings_stay_bit_for_bit(trained, tmp_path):
    copy, before, _, _ = copy_of_trained(trained, tmp_path, "gun")
    drawn_before = JanusBackend.load(copy, device="cpu").generate(["a gun on the grass"], [0, 1]).images
    tune_tower_checkpoint(copy, TowerTuneConfig(steps=3, batch=8, warmup=1), log=lambda line: None)
    after = load_file(copy / "model.safetensors")
    tower = [k for k in before if k.startswith(("model.vision_model.", "model.aligner."))]
    rest = [k for k in before if k not in tower]
    assert tower and any(not torch.equal(before[k], after[k]) for k in tower)
    assert rest and all(torch.equal(before[k], after[k]) for k in rest)
    assert np.array_equal(JanusBackend.load(copy, device="cpu").generate(["a gun on the grass"], [0, 1]).images,
                          drawn_before)
    record = json.loads((copy / "safecb_toy.json").read_text())
    assert record["tower_tunes"][-1]["config"]["steps"] == 3 and record["train_config"]["tower"]["steps"] == 3


def test_tower_batches_teach_shape_not_context_or_colour(trained):
    """Safety questions are half unsafe; weapon-less harmful scenes count as safe; palettes change
    only on scenes without a liquid."""
    config = TowerTuneConfig(batch=64, left_out_share=1.0, palette_prob=1.0, recon_share=0.0)
    batch = draw_batch(np.random.default_rng(0), config)
    safety = [i for i, task in enumerate(batch["tasks"]) if task == "safety"]
    assert safety == list(range(32)) and batch["tasks"][32:] == ["caption"] * 32
    assert batch["unsafe"][:16] == [True] * 16 and all(world.is_unsafe(batch["specs"][i]) for i in range(16))
    # left_out_share 1: every safe safety example is a harmful scene drawn with its harmful object left out
    assert batch["unsafe"][16:32] == [False] * 16 and all(world.is_unsafe(batch["specs"][i]) for i in range(16, 32))
    for i in range(16, 32):
        spec, seed = batch["specs"][i], batch["seeds"][i]
        assert np.array_equal(batch["images"][i], render_substituted(spec, seed, lambda canvas, slot: None))
        assert not np.array_equal(batch["images"][i], world.render(spec, seed))
    liquid = [any(o in world.vocab.LIQUIDS for o in s.objects) for s in batch["specs"]]
    assert batch["recolourable"] == [not x for x in liquid] and any(liquid) and not all(liquid)
    model = JanusBackend.load(trained[0], device="cpu").model
    pixels = prepare_pixels(model, batch["images"], batch["recolourable"], config, torch.Generator().manual_seed(0))
    original = torch.from_numpy(batch["images"]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    changed = (pixels - original).abs().flatten(1).amax(1) > 1e-4
    assert changed.tolist() == batch["recolourable"]


def test_tower_presence_labels_name_what_each_image_shows(trained):
    """The presence signal's targets are the drawn objects: a harmful scene drawn without its
    harmful object is labelled with its benign objects only."""
    batch = draw_batch(np.random.default_rng(1), TowerTuneConfig(batch=32, left_out_share=1.0))
    harmful = [world.CONCEPTS.index(h) for h in world.HARMFUL_OBJECTS]
    for i, spec in enumerate(batch["specs"]):
        expected = world.labels(spec)
        if 8 <= i < 16:  # the safe safety examples: drawn with the harmful object left out
            expected[harmful] = 0.0
        assert np.array_equal(batch["presence"][i], expected), (i, spec)
    assert batch["presence"][:8, harmful].sum(1).min() == 1 and batch["presence"][8:16, harmful].sum() == 0


def test_tower_patch_labels_follow_the_pixels_each_object_drew():
    """The dense shape signal's targets: an object's share of a patch is the share of its pixels it
    drew; a weapon left out owns no pixel, a drawn one owns some patch."""
    config = TowerTuneConfig(batch=32, left_out_share=1.0)
    batch = draw_batch(np.random.default_rng(2), config, grid=8)
    shares = batch["patch_shares"]
    assert shares.shape == (32, 64, len(world.CONCEPTS))
    assert shares.min() >= 0 and shares.sum(-1).max() <= 1 + 1e-6
    harmful = [world.CONCEPTS.index(h) for h in world.HARMFUL_OBJECTS]
    assert shares[8:16][..., harmful].sum() == 0  # drawn with the harmful object left out
    for i in range(8):  # unsafe safety examples: their harmful object owns a real part of some patch
        assert shares[i][:, harmful].max() >= config.patch_min_share, batch["specs"][i]
    # a patch's shares are what the image-level presence says is there
    assert np.array_equal(shares.max(1) > 0, batch["presence"] > 0)


def test_tower_presence_phase_trains_the_encoder_alone_then_the_tower(trained, tmp_path):
    """Presence steps touch only the vision encoder (the aligner waits for the understanding
    tasks); with a presence weight the tower stage still leaves every drawing weight untouched."""
    copy, before, _, _ = copy_of_trained(trained, tmp_path, "gun")
    lines = []
    tune_tower_checkpoint(copy, TowerTuneConfig(steps=0, presence_steps=3, batch=8, warmup=1), log=lines.append)
    after = load_file(copy / "model.safetensors")
    encoder = [k for k in before if k.startswith("model.vision_model.")]
    assert any(not torch.equal(before[k], after[k]) for k in encoder)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in encoder)
    assert [line for line in lines if line.startswith("shape step 3/3")]
    tune_tower_checkpoint(copy, TowerTuneConfig(steps=2, presence_steps=2, presence_weight=1.0, patch_weight=1.0,
                                                batch=8, warmup=1), log=lambda line: None)
    again = load_file(copy / "model.safetensors")
    tower = [k for k in before if k.startswith(("model.vision_model.", "model.aligner."))]
    assert any(not torch.equal(after[k], again[k]) for k in tower if k.startswith("model.aligner."))
    assert all(torch.equal(before[k], again[k]) for k in before if k not in tower)


def test_language_model_stage_can_draw_its_understanding_examples_fresh_at_every_step(trained, tmp_path,
                                                                                       monkeypatch):
    """With `und_fresh`, every step's understanding examples are a new `draw_batch` of the training
    combinations (palette changes, weapon-less scenes), the fixed scenes never used for them."""
    from safecb.models import train_toy
    from safecb.models.train_toy import retrain_lm

    drawn = []

    def spy(rng, config):
        drawn.append(config)
        return draw_batch(rng, config)

    monkeypatch.setattr(train_toy, "draw_batch", spy)
    monkeypatch.setattr(train_toy, "_fixed_understanding_loss", lambda *a, **k: pytest.fail("fixed scenes used"))
    copy, before, images, tokens_before = copy_of_trained(trained, tmp_path, "gun")
    cfg = ToyTrainConfig(n_images=96, lm_steps=3, gen_batch=8, und_batch=8, warmup=1, und_fresh=True,
                         tower=TowerTuneConfig(steps=0))
    metrics = retrain_lm(copy, cfg, log=lambda line: None)
    assert len(drawn) == 3 and all(c.batch == 8 and not c.heldout_combinations for c in drawn)
    assert np.isfinite(metrics["final_und_loss"])
    assert torch.equal(JanusBackend.load(copy, device="cpu").encode(images), tokens_before)
    assert json.loads((copy / "safecb_toy.json").read_text())["train_config"]["und_fresh"] is True
