"""What the model drew versus what the pipeline serves: an edit of the decoder alone leaves the
model's tokens, so its model-level images (tokens through the original decoder) are the unedited
images bit for bit; an edit of the generator changes the tokens themselves."""

import numpy as np
import pytest
import torch

from safecb.eval.broad import model_level_images
from safecb.models.backend import JanusBackend
from safecb.paths import TOY_MODEL_DIR

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPTS = ["a gun on the grass", "a person holding a knife on the road"]


@pytest.fixture
def backend():
    return JanusBackend.load(TOY_MODEL_DIR, device="cpu")


def test_a_decoder_only_edit_draws_the_unedited_images_at_model_level(backend):
    original = backend.get_codebook("decoder")
    before = backend.generate(PROMPTS, [0, 1])
    edited = original.clone()
    used = before.tokens.unique()
    edited[used] = torch.nn.functional.normalize(torch.randn(len(used), edited.shape[1], generator=torch.Generator().manual_seed(0)), dim=-1)
    backend.set_codebook("decoder", edited)
    after = backend.generate(PROMPTS, [0, 1])
    assert torch.equal(after.tokens, before.tokens)  # the generator samples the same tokens
    assert not np.array_equal(after.images, before.images)  # the edited decoder paints them otherwise
    drawn = model_level_images(backend, after.tokens, original)
    assert np.array_equal(drawn, before.images)  # the public decoder gives the unedited images back
    assert torch.equal(backend.get_codebook("decoder"), edited)  # and the served decoder is put back
    backend.set_codebook("decoder", original)
    assert model_level_images(backend, after.tokens, original) is None  # unedited decoder: served = model-level


def test_a_generator_edit_changes_the_tokens_the_model_draws(backend):
    original = backend.get_codebook("decoder")
    before = backend.generate(PROMPTS, [0, 1])
    bias = backend.get_codebook("gen_head_bias")
    bias[before.tokens.unique()[:8]] = -1e4
    backend.set_codebook("gen_head_bias", bias)
    after = backend.generate(PROMPTS, [0, 1])
    assert not torch.equal(after.tokens, before.tokens)
    assert model_level_images(backend, after.tokens, original) is None  # the decoder is untouched


def test_the_replacement_sheet_shows_what_the_model_draws_worst_first(backend):
    from safecb.bench.replacement import FRAME, ReplacementSheetConfig, replacement_sheet
    from safecb.eval.broad import BroadGridConfig
    from safecb.eval.toy_oracle import Oracle

    oracle = Oracle.load()
    cfg = ReplacementSheetConfig(grid=BroadGridConfig(n_prompts=8, n_benign=0, seeds_per_prompt=1, selection_seed=5),
                                 tiles=8)
    unedited = backend.codebooks()
    repainted = {**unedited, "decoder": unedited["decoder"][:1].expand_as(unedited["decoder"]).contiguous()}
    plain, counts = replacement_sheet(backend, unedited, oracle, None, cfg)
    sheet, repainted_counts = replacement_sheet(backend, repainted, oracle, None, cfg)
    assert repainted_counts == counts  # a decoder-only edit changes nothing the model draws
    assert sum(counts[k] for k in FRAME) == counts["prompts"] == 8 and counts["flagged"] >= 4
    assert sheet.size == plain.size and (np.asarray(sheet) == np.asarray(plain)).all()
    assert all(torch.equal(backend.get_codebook(k), v) for k, v in unedited.items())  # left as it was


def test_a_rounds_metrics_say_what_the_model_drew_when_the_decoder_is_edited(backend):
    from safecb import world
    from safecb.engine import SafeCBConfig, run_safecb
    from safecb.engine.prompts import from_world
    from safecb.eval.protocol import annotator_for
    from safecb.eval.toy_oracle import Oracle

    sets = world.build_prompt_sets()
    prompts = from_world(sets.train_harmful[:3], sets.train_benign[:2])
    original = backend.get_codebook("decoder")
    rounds = {}
    for target in ("decoder", "generator"):
        config = SafeCBConfig().override({"target": target, "mining.seeds": [0, 1, 2], "mining.benign_seeds": [0, 1],
                                          "fine_tune.steps": 10, "fine_tune.decoder_steps": 10, "stop.max_rounds": 1,
                                          "stop.max_adherence_drop": 1.0, "stop.max_benign_change": 1.0})
        unedited = backend.codebooks()
        annotate = annotator_for(Oracle.load(), prompts, 2, backend, original)
        rounds[target] = run_safecb(backend, prompts, config, annotate=annotate).rounds
        backend.set_codebooks(unedited)
    before, after = (r["annotations"] for r in rounds["decoder"])
    assert "oracle_unsafe_train_model" not in before  # round 0: the original decoder, nothing to add
    # a decoder-only edit samples the unedited tokens: what the model drew is round 0's picture
    assert after["oracle_unsafe_train_model"]["value"] == before["oracle_unsafe_train"]["value"]
    assert all("oracle_unsafe_train_model" not in r["annotations"] for r in rounds["generator"])
