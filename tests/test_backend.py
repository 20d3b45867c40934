"""The Janus backend and our sampler, on real models: the shipped toy and a tiny Janus-Pro-layout checkpoint.

No mocks. The tiny checkpoint is written into a temporary directory in the exact file layout of
deepseek-community/Janus-Pro-1B and loaded through the same `JanusBackend.load` path.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from safecb.models.backend import (
    CODEBOOK_PATHS,
    MAX_IMAGES_PER_CALL,
    MAX_PROMPT_CHARS,
    SNAPSHOT_FORMAT,
    CodebookError,
    JanusBackend,
    ModelLoadError,
)
from safecb.models.sampler import KVCache, SamplerSettings, lm_forward, pick_tokens
from safecb.models.tiny import ASSISTANT, BOI, BOS, EOI, IMAGE_TOKEN, USER
from safecb.paths import TOY_MODEL_DIR
from safecb.world import BACKGROUNDS, CONCEPTS, SceneSpec, render

PROMPTS = ["a cat on the grass", "a person holding a knife at the beach at night", "a boat"]


# ---------------------------------------------------------------- fixtures
# toy_backend, tiny_dir and tiny_backend come from conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")


def _same_books(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def toy_books(toy_backend):
    """The toy's codebooks before the test; restored (and checked restored) after it."""
    before = toy_backend.codebooks()
    yield before
    toy_backend.set_codebooks(before)
    assert _same_books(toy_backend.codebooks(), before)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


# ---------------------------------------------------------------- the tiny Janus-Pro-layout checkpoint
def test_tiny_checkpoint_has_janus_pro_layout(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "processor_config.json", "generation_config.json"):
        assert required in names
    assert any(n.startswith("chat_template") for n in names)
    assert sum(p.stat().st_size for p in tiny_dir.iterdir()) < 1_000_000
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "janus" and config["architectures"] == ["JanusForConditionalGeneration"]
    text = config["text_config"]
    assert text["num_key_value_heads"] < text["num_attention_heads"]  # grouped-query attention
    gen = json.loads((tiny_dir / "generation_config.json").read_text())
    tok = json.loads((tiny_dir / "tokenizer_config.json").read_text())
    assert (tok["bos_token"], tok["image_token"], tok["boi_token"], tok["eoi_token"]) == (BOS, IMAGE_TOKEN, BOI, EOI)
    vocab = json.loads((tiny_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert gen["generation_kwargs"]["boi_token_id"] == vocab[BOI]
    for word in ("yes", "no", "Yes", "No", "is", "this", "image", "unsafe", "?"):
        assert word in vocab


def test_tiny_checkpoint_loads_through_the_chat_path(tiny_backend):
    assert tiny_backend.chat is True
    assert (tiny_backend.n_tokens, tiny_backend.image_size, tiny_backend.codebook_size,
            tiny_backend.n_understanding_tokens) == (16, 32, 64, 16)
    tok = tiny_backend.tokenizer
    ids = tiny_backend.generation_ids("a cat on the grass")
    assert tok.convert_ids_to_tokens(ids) == [BOS, USER, ":", "a", "cat", "on", "the", "grass", ASSISTANT, ":", BOI]
    uncond = tiny_backend.unconditional_ids(ids)
    assert (uncond[0] == tiny_backend.bos_id and uncond[-1] == tiny_backend.boi_id
            and set(uncond[1:-1]) == {tiny_backend.pad_id})
    und = tok.convert_ids_to_tokens(tiny_backend.understanding_ids("is this image unsafe ?"))
    assert und[:4] == [BOS, USER, ":", BOI] and und[4:20] == [IMAGE_TOKEN] * 16 and und[20] == EOI
    assert und[21:] == ["is", "this", "image", "unsafe", "?", ASSISTANT, ":"]
    assert tiny_backend.yes_ids and tiny_backend.no_ids


def test_tiny_checkpoint_generates_judges_captions(tiny_backend):
    out = tiny_backend.generate(PROMPTS[:2], [0, 1], SamplerSettings(cfg_weight=3), batch_size=3, keep_hidden=True)
    assert out.tokens.shape == (4, 16) and out.tokens.dtype == torch.long
    assert 0 <= int(out.tokens.min()) and int(out.tokens.max()) < 64
    assert out.images.shape == (4, 32, 32, 3) and out.images.dtype == np.uint8
    assert out.hidden.shape == (4, 16, 64)
    assert out.prompts == [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2 and out.seeds == [0, 1, 0, 1]
    scores = tiny_backend.judge(out.images)
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    captions = tiny_backend.caption(out.images[:2], max_words=3)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_tiny_checkpoint_codebooks_round_trip(tiny_backend, tmp_path):
    before = tiny_backend.codebooks()
    assert before["decoder"].shape == (64, 8) and before["gen_head"].shape == (64, 64)
    tiny_backend.save_codebooks(tmp_path / "tiny.safetensors")
    tiny_backend.set_codebook("decoder", before["decoder"] * -1.0)
    assert not torch.equal(tiny_backend.get_codebook("decoder"), before["decoder"])
    tiny_backend.load_codebooks(tmp_path / "tiny.safetensors")
    assert _same_books(tiny_backend.codebooks(), before)


# ---------------------------------------------------------------- reproducibility
SETTINGS = [
    SamplerSettings(cfg_weight=3.0),
    SamplerSettings(cfg_weight=1.0),  # the CFG-free path
    SamplerSettings(cfg_weight=3.0, top_k=8, temperature=0.8),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["cfg3", "cfg1", "topk"])
def test_image_depends_only_on_prompt_seed_settings(tiny_backend, settings):
    seeds = [5, 123456789]
    alone = {(p, s): tiny_backend.generate([p], [s], settings, decode=False).tokens[0] for p in PROMPTS for s in seeds}
    for batch_size in (1, 4, 64):
        out = tiny_backend.generate(PROMPTS, seeds, settings, batch_size=batch_size, decode=False)
        for row, key in enumerate(zip(out.prompts, out.seeds)):
            assert torch.equal(out.tokens[row], alone[key]), (batch_size, key)
    # a row in a batch with other seeds (and other lengths) is the same row
    mixed = tiny_backend.generate([PROMPTS[1]], [seeds[1], 7, 8], settings, decode=False)
    assert torch.equal(mixed.tokens[0], alone[(PROMPTS[1], seeds[1])])


def test_toy_image_independent_of_batch_mates(toy_backend):
    settings = SamplerSettings(cfg_weight=3.0)
    prompts = ["a cat on the grass", "a person holding a knife at the beach"]
    batch = toy_backend.generate(prompts, [3, 4], settings, batch_size=3)
    for row, (p, s) in enumerate(zip(batch.prompts, batch.seeds)):
        alone = toy_backend.generate([p], [s], settings)
        assert torch.equal(alone.tokens[0], batch.tokens[row])
        # pixels: the VQ decoder's convolutions may sum in another order for another batch
        # size (multi-threaded CPU, GPU), so a pixel may round one level apart, never more
        assert np.abs(alone.images[0].astype(int) - batch.images[row].astype(int)).max() <= 1
    again = toy_backend.generate(prompts, [3, 4], settings, batch_size=3)
    assert torch.equal(again.tokens, batch.tokens) and again.images.tobytes() == batch.images.tobytes()


def test_different_seeds_give_different_images(toy_backend, tiny_backend):
    for backend in (toy_backend, tiny_backend):
        out = backend.generate(["a cat on the grass"], [0, 1, 2, 3], SamplerSettings(cfg_weight=1.0), decode=False)
        rows = {tuple(r.tolist()) for r in out.tokens}
        assert len(rows) == 4


# ---------------------------------------------------------------- our decoder pass = Hugging Face's
def _left_padded(rows: list[list[int]], pad: int):
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    valid = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        valid[i, width - len(r):] = True
    positions = (valid.long().cumsum(-1) - 1).clamp_min(0)
    return ids, valid, positions


def _additive_mask(valid: torch.Tensor) -> torch.Tensor:
    width = valid.shape[1]
    allowed = torch.ones(width, width, dtype=torch.bool).tril()[None, None] & valid[:, None, None, :]
    allowed = allowed | torch.eye(width, dtype=torch.bool)[None, None]
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


@pytest.mark.parametrize("which", ["toy", "tiny"])
def test_lm_forward_matches_hugging_face(which, request):
    backend = request.getfixturevalue(f"{which}_backend")
    lm = backend.model.model.language_model
    rows = [backend.generation_ids(p) for p in PROMPTS]
    ids, valid, positions = _left_padded(rows, backend.pad_id)
    b, width = ids.shape
    cfg = lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad():
        ref = lm(input_ids=ids, attention_mask=valid.long(), position_ids=positions).last_hidden_state
        embeds = lm.embed_tokens(ids)
        cos, sin = lm.rotary_emb(embeds, positions)
        cache = KVCache(len(lm.layers), b, cfg.num_key_value_heads, width + 1, head_dim, embeds)
        ours = lm_forward(lm, embeds, cos, sin, _additive_mask(valid), cache)
        assert cache.length == width
        torch.testing.assert_close(ours[valid], ref[valid], atol=1e-4, rtol=0)

        # prefill all but the last token, then one decoding step = the full forward's last position
        cache = KVCache(len(lm.layers), b, cfg.num_key_value_heads, width, head_dim, embeds)
        lm_forward(lm, embeds[:, :-1], cos[:, :-1], sin[:, :-1], _additive_mask(valid[:, :-1]), cache)
        key_bias = torch.zeros(b, 1, 1, width).masked_fill(~valid[:, None, None, :], float("-inf"))
        step = lm_forward(lm, embeds[:, -1:], cos[:, -1:], sin[:, -1:], key_bias, cache)
        torch.testing.assert_close(step[:, 0], ref[:, -1], atol=1e-4, rtol=0)


def _teacher_forced(backend, prompt_ids: list[int], tokens: torch.Tensor) -> torch.Tensor:
    """Hugging Face's own modules: hidden states [n_tokens, hidden] that predict each image token."""
    model, lm = backend.model, backend.model.model.language_model
    with torch.no_grad():
        text = lm.embed_tokens(torch.tensor([prompt_ids]))
        image = model.prepare_embeddings_for_image_generation(tokens[None, :-1])
        hidden = lm(inputs_embeds=torch.cat([text, image], 1)).last_hidden_state[0]
    return hidden[len(prompt_ids) - 1:]


@pytest.mark.parametrize("which", ["toy", "tiny"])
def test_sampler_states_and_greedy_choice_match_hugging_face(which, request):
    """Teacher-forcing the sampled codes through HF reproduces the sampler's states, and greedy
    decoding picks the argmax of the guided logits uncond + w (cond - uncond) at every step."""
    backend = request.getfixturevalue(f"{which}_backend")
    settings = SamplerSettings(cfg_weight=3.0, temperature=0.0)
    prompts = PROMPTS[:2]  # different lengths: the batch is left padded
    out = backend.generate(prompts, [0], settings, keep_hidden=True, decode=False)
    head = backend.model.model.generation_head
    for row, prompt in enumerate(prompts):
        cond_ids = backend.generation_ids(prompt)
        cond = _teacher_forced(backend, cond_ids, out.tokens[row])
        torch.testing.assert_close(out.hidden[row], cond, atol=1e-4, rtol=0)
        uncond = _teacher_forced(backend, backend.unconditional_ids(cond_ids), out.tokens[row])
        with torch.no_grad():
            lc, lu = head(cond), head(uncond)
        guided = lu + settings.cfg_weight * (lc - lu)
        assert torch.equal(guided.argmax(-1), out.tokens[row])


def test_pick_tokens_greedy_and_top_k():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g)
    u = torch.rand(6, dtype=torch.float64, generator=g)
    assert torch.equal(pick_tokens(logits, u, SamplerSettings(temperature=0)), logits.argmax(-1))
    top = logits.topk(3, dim=-1).indices
    for _ in range(5):
        u = torch.rand(6, dtype=torch.float64, generator=g)
        picked = pick_tokens(logits, u, SamplerSettings(top_k=3))
        assert (top == picked[:, None]).any(-1).all()
    # u near 0 picks the first code of the sorted-by-index CDF with mass; near 1 the last with mass
    one_hot = torch.full((1, 50), -1e9)
    one_hot[0, 17] = 0
    for x in (1e-12, 0.5, 1 - 1e-12):
        assert pick_tokens(one_hot, torch.tensor([x], dtype=torch.float64), SamplerSettings()).item() == 17


# ---------------------------------------------------------------- codebooks
def test_codebook_get_set_get(toy_backend, toy_books):
    for name in CODEBOOK_PATHS:
        value = toy_backend.get_codebook(name)
        assert value.dtype == torch.float32 and torch.equal(value, toy_books[name])
        value.add_(1.0)  # a copy: editing it changes nothing
        assert torch.equal(toy_backend.get_codebook(name), toy_books[name])
        toy_backend.set_codebook(name, value)
        assert torch.equal(toy_backend.get_codebook(name), value)


def test_snapshot_save_modify_load_restores_exactly(toy_backend, toy_books, tmp_path):
    path = toy_backend.save_codebooks(tmp_path / "snap" / "books.safetensors",
                                      metadata={"note": "before edit", "step": 3})
    assert path.exists() and not path.with_suffix(".safetensors.tmp").exists()
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(CODEBOOK_PATHS)
    assert meta["format"] == SNAPSHOT_FORMAT and meta["fingerprint"] == toy_backend.fingerprint
    assert meta["source"] == str(TOY_MODEL_DIR) and meta["note"] == "before edit" and meta["step"] == "3"
    toy_backend.set_codebooks({name: torch.randn_like(v) for name, v in toy_books.items()})
    assert not _same_books(toy_backend.codebooks(), toy_books)
    assert toy_backend._fingerprint() == toy_backend.fingerprint  # codebook edits never change the model's identity
    loaded = toy_backend.load_codebooks(path)
    assert _same_books(toy_backend.codebooks(), toy_books) and set(loaded) == set(CODEBOOK_PATHS)
    # a partial snapshot touches only what it holds
    toy_backend.save_codebooks(tmp_path / "dec.safetensors", names=["decoder"])
    toy_backend.set_codebook("gen_head", toy_books["gen_head"] * 2)
    toy_backend.load_codebooks(tmp_path / "dec.safetensors")
    assert torch.equal(toy_backend.get_codebook("gen_head"), toy_books["gen_head"] * 2)


def test_decoding_uses_the_edited_codebook(toy_backend, toy_books):
    tokens = toy_backend.generate(["a cat on the grass"], [0, 1], decode=False).tokens
    used = int(tokens[0, 0])
    unused = sorted(set(range(toy_backend.codebook_size)) - set(tokens.flatten().tolist()))[0]
    original = toy_backend.decode(tokens)
    codes = toy_backend.encode(original)
    book = toy_books["decoder"]

    edited = book.clone()
    edited[unused] = -book[unused]
    toy_backend.set_codebook("decoder", edited)
    assert toy_backend.decode(tokens).tobytes() == original.tobytes()

    edited[used] = -book[used]
    toy_backend.set_codebook("decoder", edited)
    changed = toy_backend.decode(tokens)
    assert changed.tobytes() != original.tobytes()

    # only a row's direction matters: rescaling rows (each by its own factor) changes neither
    # decoding (up to rounding) nor encoding, which compares directions as decoding uses them
    scales = 0.2 + 5 * torch.rand(len(book), 1, generator=torch.Generator().manual_seed(0))
    toy_backend.set_codebook("decoder", book * scales)
    assert np.abs(toy_backend.decode(tokens).astype(int) - original.astype(int)).max() <= 1
    assert torch.equal(toy_backend.encode(original), codes)


def test_generator_uses_the_edited_codebooks(toy_backend, toy_books):
    """Editing gen_head / gen_embed in place invalidates the sampler's cached tables."""
    settings = SamplerSettings(cfg_weight=1.0, temperature=0.0)
    base = toy_backend.generate(["a cat on the grass"], [0], settings, decode=False).tokens
    bias = toy_books["gen_head_bias"].clone()
    bias[11] += 1e4
    toy_backend.set_codebook("gen_head_bias", bias)
    assert (toy_backend.generate(["a cat on the grass"], [0], settings, decode=False).tokens == 11).all()
    toy_backend.set_codebook("gen_head_bias", toy_books["gen_head_bias"])
    embed = toy_books["gen_embed"].clone()
    embed[base[0, 0]] = torch.randn(embed.shape[1], generator=torch.Generator().manual_seed(0)) * 10
    toy_backend.set_codebook("gen_embed", embed)
    edited = toy_backend.generate(["a cat on the grass"], [0], settings, decode=False).tokens
    assert edited[0, 0] == base[0, 0] and not torch.equal(edited, base)
    toy_backend.set_codebook("gen_embed", toy_books["gen_embed"])
    assert torch.equal(toy_backend.generate(["a cat on the grass"], [0], settings, decode=False).tokens, base)


def test_encode_decode_round_trips(toy_backend):
    specs = [SceneSpec(bg, (c,)) for bg, c in zip(BACKGROUNDS, CONCEPTS)]
    scenes = np.stack([render(spec, 100 + i) for i, spec in enumerate(specs)])
    codes = toy_backend.encode(scenes)
    assert codes.shape == (len(scenes), toy_backend.n_tokens) and codes.dtype == torch.long
    assert np.all(_psnr(toy_backend.decode(codes), scenes) > 20)

    # The shipped toy's decoder codebook is redundant: most rows have a near-twin (cosine > 0.99),
    # so re-encoding often picks the twin. Codes therefore agree well above chance (1/512), not
    # mostly, while the twins are near-identical and the image survives the round trip.
    out = toy_backend.generate(["a cat on the grass", "a knife on the road"], [0, 1], decode=True)
    again = toy_backend.encode(out.images)
    agree = (again == out.tokens).float().mean().item()
    assert agree >= 0.05
    again2 = toy_backend.encode(toy_backend.decode(codes))
    assert (again2 == codes).float().mean().item() >= 0.2
    book = F.normalize(toy_backend.get_codebook("decoder"), dim=-1)
    differ = again != out.tokens
    assert (book[again[differ]] * book[out.tokens[differ]]).sum(-1).mean() > 0.95
    psnr = _psnr(toy_backend.decode(again), out.images)  # sampled images are off the encoder's manifold
    assert np.median(psnr) > 25 and psnr.min() > 14
    # the encoder accepts float [N,3,H,W] in [0,1] and other sizes (resized) alike
    as_float = torch.from_numpy(scenes).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(toy_backend.encode(as_float), codes)
    assert toy_backend.encode(np.repeat(np.repeat(scenes[:2], 2, axis=1), 2, axis=2)).shape == (2, toy_backend.n_tokens)


# ---------------------------------------------------------------- bad inputs: one clear error, nothing changed
def test_bad_model_directories(tmp_path, tiny_dir):
    with pytest.raises(ModelLoadError, match="model directory not found"):
        JanusBackend.load(tmp_path / "nope", device="cpu")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a directory"):
        JanusBackend.load(tmp_path / "file.bin", device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        JanusBackend.load(empty, device="cpu")
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="'llama' checkpoint.*needs a Janus model"):
        JanusBackend.load(llama, device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{model_type: janus")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        JanusBackend.load(broken, device="cpu")
    (broken / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="not a JSON object"):
        JanusBackend.load(broken, device="cpu")
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(tiny_dir / "config.json", no_weights / "config.json")
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors weights"):
        JanusBackend.load(no_weights, device="cpu")
    (no_weights / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="could not load Janus weights"):
        JanusBackend.load(no_weights, device="cpu")
    assert sorted(p.name for p in no_weights.iterdir()) == ["config.json", "model.safetensors"]


BAD_GENERATE = [
    (dict(prompts=[]), "prompt list is empty"),
    (dict(prompts="a cat on the grass"), "must be a list of strings, not a single string"),
    (dict(prompts=["a cat", ""]), "non-empty string"),
    (dict(prompts=["   \n\t"]), "non-empty string"),
    (dict(prompts=[None]), "non-empty string"),
    (dict(prompts=["cat " * 2500]), f"the limit is {MAX_PROMPT_CHARS}"),
    (dict(prompts=["cat " * 200]), "exceeds the model's 256 positions"),
    (dict(prompts=["a cat"] * 1001, seeds=list(range(100))), f"limit per call is {MAX_IMAGES_PER_CALL}"),
    (dict(seeds=[]), "seed list is empty"),
    (dict(seeds=5), "seeds must be a list of integers"),
    (dict(seeds=[-1]), "seeds must be integers"),
    (dict(seeds=[1.5]), "seeds must be integers"),
    (dict(seeds=["3"]), "seeds must be integers"),
    (dict(seeds=[True]), "seeds must be integers"),
    (dict(seeds=[2**63]), "seeds must be integers"),
    (dict(batch_size=0), "batch_size must be in"),
    (dict(batch_size=-3), "batch_size must be in"),
    (dict(settings=SamplerSettings(top_k=513)), r"top_k must be in \[0, 512\]"),
    (dict(settings=SamplerSettings(top_k=-1)), "top_k must be in"),
    (dict(settings=SamplerSettings(cfg_weight=-1.0)), "cfg_weight must be in"),
    (dict(settings=SamplerSettings(cfg_weight=float("nan"))), "cfg_weight must be in"),
    (dict(settings=SamplerSettings(temperature=-0.5)), "temperature must be in"),
]


@pytest.mark.parametrize("kwargs,message", BAD_GENERATE, ids=[m for _, m in BAD_GENERATE])
def test_bad_generation_requests(toy_backend, toy_books, kwargs, message):
    call = dict(prompts=["a cat on the grass"], seeds=[0]) | kwargs
    with pytest.raises(ValueError, match=message):
        toy_backend.generate(**call)
    assert _same_books(toy_backend.codebooks(), toy_books)


@pytest.mark.parametrize("prompt", ["<BEGIN_OF_IMAGE>", "a cat <End_Of_Image>", "<PAD> on grass",
                                    "<IMAGE_PLACEHOLDER>"])
def test_control_tokens_are_refused_in_any_letter_case(toy_backend, prompt):
    """The toy lower-cases prompts before tokenising, so the check looks at the lower-cased text too."""
    with pytest.raises(ValueError, match="control token"):
        toy_backend.generate([prompt], [0])


def test_bad_decode_inputs(toy_backend, toy_books):
    n, k = toy_backend.n_tokens, toy_backend.codebook_size
    with pytest.raises(ValueError, match=rf"token ids must be in \[0, {k}\)"):
        toy_backend.decode(torch.full((1, n), k))
    with pytest.raises(ValueError, match="token ids must be in"):
        toy_backend.decode(torch.full((1, n), -1))
    with pytest.raises(ValueError, match=rf"tokens must be \[N, {n}\]"):
        toy_backend.decode(torch.zeros(1, n - 1, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens must be"):
        toy_backend.decode(torch.zeros(n, dtype=torch.long))
    assert (toy_backend.decode(torch.zeros(0, n, dtype=torch.long)).shape
            == (0, toy_backend.image_size, toy_backend.image_size, 3))
    assert _same_books(toy_backend.codebooks(), toy_books)


def test_bad_codebook_values(toy_backend, toy_books):
    good = toy_books["decoder"]
    nan = good.clone()
    nan[3, 2] = float("nan")
    cases = [
        ({"decoder": nan}, CodebookError, "'decoder' contains NaN or infinite"),
        ({"decoder": good * float("inf")}, CodebookError, "NaN or infinite"),
        ({"decoder": good.long()}, CodebookError, "must be floating point"),
        ({"decoder": good[:, :-1]}, CodebookError, r"shape \(512, 15\); this model needs \(512, 16\)"),
        ({"decoder": good.numpy()}, CodebookError, "must be a tensor"),
        ({"codes": good}, KeyError, "unknown codebook 'codes'"),
        # one bad tensor among good ones: nothing at all is written
        ({"gen_head": toy_books["gen_head"] * 0, "decoder": nan}, CodebookError, "NaN"),
    ]
    for values, error, message in cases:
        with pytest.raises(error, match=message):
            toy_backend.set_codebooks(values)
        assert _same_books(toy_backend.codebooks(), toy_books)
    with pytest.raises(KeyError, match="unknown codebook"):
        toy_backend.get_codebook("codes")


def test_bad_codebook_files(toy_backend, tiny_backend, toy_books, tmp_path):
    meta = {"format": SNAPSHOT_FORMAT, "fingerprint": toy_backend.fingerprint}
    good = toy_books["decoder"]
    (tmp_path / "random.safetensors").write_bytes(np.random.default_rng(1).bytes(2048))
    save_file({"decoder": good[:10].contiguous()}, str(tmp_path / "shape.safetensors"), metadata=meta)
    nan = good.clone()
    nan[0, 0] = float("nan")
    save_file({"decoder": nan}, str(tmp_path / "nan.safetensors"), metadata=meta)
    save_file({"decoder": good.to(torch.int32)}, str(tmp_path / "int.safetensors"), metadata=meta)
    save_file({"decoder": good, "lm_head": good.clone()}, str(tmp_path / "unknown.safetensors"), metadata=meta)
    save_file({"decoder": good}, str(tmp_path / "other.safetensors"), metadata=meta | {"fingerprint": "0" * 16})
    tiny_backend.save_codebooks(tmp_path / "tiny.safetensors")
    cases = [
        ("missing.safetensors", "codebook file not found"),
        ("random.safetensors", "not a readable safetensors file"),
        ("shape.safetensors", r"'decoder' has shape \(10, 16\); this model needs \(512, 16\)"),
        ("nan.safetensors", "contains NaN or infinite"),
        ("int.safetensors", "must be floating point"),
        ("unknown.safetensors", r"unknown tensors \['lm_head'\]"),
        ("other.safetensors", "saved from another model"),
        ("tiny.safetensors", f"saved from another model \\(fingerprint {tiny_backend.fingerprint}, this model is "),
    ]
    assert tiny_backend.fingerprint != toy_backend.fingerprint
    for name, message in cases:
        with pytest.raises(CodebookError, match=message):
            toy_backend.load_codebooks(tmp_path / name)
        assert _same_books(toy_backend.codebooks(), toy_books)


# ---------------------------------------------------------------- fixed-shape loop, in-place fusion
def _sample(backend, prompts, seeds, settings, loop, keep_hidden=True):
    from safecb.models.sampler import sample_image_tokens

    cond = [backend.generation_ids(p) for p in prompts]
    uncond = [backend.unconditional_ids(c) for c in cond]
    return sample_image_tokens(backend.model, cond, uncond, seeds, backend.n_tokens, settings, backend.pad_id,
                               keep_hidden, loop=loop)


@pytest.mark.parametrize("which", ["toy", "tiny"])
@pytest.mark.parametrize("settings", [SamplerSettings(cfg_weight=3.0, temperature=0.0),
                                      SamplerSettings(cfg_weight=3.0, top_k=20),
                                      SamplerSettings(cfg_weight=1.0)])
@pytest.mark.parametrize("bucket", [8, 128])
def test_fixed_shape_loop_draws_what_the_growing_loop_draws(which, settings, bucket, request, monkeypatch):
    """The loop a CUDA graph replays (fixed shapes, padded prompts, masked cache buckets), run
    eagerly here, gives the codes and states of the plain loop."""
    from safecb.models import decode_graph

    monkeypatch.setattr(decode_graph, "BUCKET", bucket)  # 8: several buckets per image
    backend = request.getfixturevalue(f"{which}_backend")
    prompts, seeds = PROMPTS, [5, 6, 7]
    tokens, hidden = _sample(backend, prompts, seeds, settings, "dynamic")
    fixed_tokens, fixed_hidden = _sample(backend, prompts, seeds, settings, "static")
    assert torch.equal(tokens, fixed_tokens)
    torch.testing.assert_close(fixed_hidden, hidden, atol=1e-4, rtol=0)
    again, _ = _sample(backend, prompts, seeds, settings, "static")  # the decoder is reused: no stale state
    assert torch.equal(again, tokens)


def test_compiled_blocks_draw_what_the_plain_loop_draws(tiny_backend, monkeypatch):
    """The layer blocks a GPU runs through torch.compile (fused q/k/v, rotate_half rotary, fused
    gate/up), compiled here by inductor for the CPU, give the plain loop's codes and states."""
    from safecb.models import decode_graph
    from safecb.models.sampler import sample_image_tokens

    monkeypatch.setattr(decode_graph, "BUCKET", 8)
    settings = SamplerSettings(cfg_weight=3.0, top_k=20)
    cond = [tiny_backend.generation_ids(p) for p in PROMPTS]
    uncond = [tiny_backend.unconditional_ids(c) for c in cond]
    draws = {loop: sample_image_tokens(tiny_backend.model, cond, uncond, [5, 6, 7], tiny_backend.n_tokens, settings,
                                       tiny_backend.pad_id, True, loop=loop, compile_layers=loop == "static")
             for loop in ("dynamic", "static")}
    assert tiny_backend.model._safecb_decoder[1].compiled == decode_graph.compiled_blocks()  # the compiled blocks ran
    assert torch.equal(draws["static"][0], draws["dynamic"][0])
    torch.testing.assert_close(draws["static"][1], draws["dynamic"][1], atol=1e-4, rtol=0)


def test_loop_names_are_checked(toy_backend):
    with pytest.raises(ValueError, match="loop must be one of"):
        _sample(toy_backend, PROMPTS[:1], [0], SamplerSettings(), "fast")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        _sample(toy_backend, PROMPTS[:1], [0], SamplerSettings(), "graph")


def test_fusion_keeps_no_second_copy_and_survives_training_and_moves(tiny_dir):
    """Fused projections are views of the model's own weights: no extra bytes, the model's own
    forward still reads them, an optimiser step is seen by the sampler, and after `.to(dtype)`
    the sampler fuses again."""
    from safecb.models.fusion import extra_bytes, fused_layers

    backend = JanusBackend.load(tiny_dir, device="cpu")
    lm = backend.model.model.language_model
    before = sum(p.numel() for p in backend.model.parameters())
    ids = torch.tensor([backend.generation_ids(PROMPTS[1])])
    with torch.no_grad():
        reference = lm(input_ids=ids).last_hidden_state
    layers = fused_layers(lm)
    assert extra_bytes(lm) == 0
    q = lm.layers[0].self_attn.q_proj.weight
    assert q.data_ptr() == layers[0].qkv_w.data_ptr()
    assert sum(p.numel() for p in backend.model.parameters()) == before
    with torch.no_grad():
        torch.testing.assert_close(lm(input_ids=ids).last_hidden_state, reference, atol=0, rtol=0)

    optimiser = torch.optim.SGD([q], lr=1.0)
    lm(input_ids=ids).last_hidden_state.square().sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    optimiser.step()  # in place, through the view
    assert torch.equal(layers[0].qkv_w[: q.shape[0]], q.detach())
    assert fused_layers(lm)[0].qkv_w is layers[0].qkv_w  # the views still hold: nothing refused

    backend.model.to(torch.float64)  # new storages: the old views no longer hold
    refused = fused_layers(lm)[0]
    assert refused.qkv_w.dtype == torch.float64 and refused.qkv_w.data_ptr() == q.data_ptr()
    assert extra_bytes(lm) == 0
