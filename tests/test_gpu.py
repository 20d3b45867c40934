"""The sampler on a CUDA device: CUDA-graph replay against the plain loop and our decoder pass
against Hugging Face's, in bf16 and float32. Skipped where torch sees no GPU (CI has none); run
on a GPU machine with `python -m pytest tests/test_gpu.py`."""

from __future__ import annotations

import pytest
import torch

from safecb.models.backend import JanusBackend
from safecb.models.sampler import KVCache, SamplerSettings, lm_forward, sample_image_tokens
from safecb.models.tiny import write_tiny_janus_pro

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PROMPTS = ["a cat on the grass", "a person holding a knife at the beach at night", "a boat"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_janus_pro(tmp_path_factory.mktemp("tiny-janus-pro"))


def _backend(tiny_dir, dtype) -> JanusBackend:
    return JanusBackend.load(tiny_dir, device="cuda", dtype=dtype)


def _sample(backend, settings, loop):
    cond = [backend.generation_ids(p) for p in PROMPTS]
    uncond = [backend.unconditional_ids(c) for c in cond]
    return sample_image_tokens(backend.model, cond, uncond, [3, 4, 5], backend.n_tokens, settings, backend.pad_id,
                               keep_hidden=True, loop=loop)


@pytest.mark.parametrize("settings", [SamplerSettings(cfg_weight=5.0, temperature=0.0),
                                      SamplerSettings(cfg_weight=5.0), SamplerSettings(cfg_weight=1.0, top_k=8)])
def test_graph_replay_draws_what_the_plain_loop_draws(tiny_dir, settings):
    backend = _backend(tiny_dir, torch.float32)
    tokens, hidden = _sample(backend, settings, "dynamic")
    for loop in ("static", "graph", "graph"):  # the second graph call replays the cached capture
        other_tokens, other_hidden = _sample(backend, settings, loop)
        assert torch.equal(other_tokens, tokens), loop
        torch.testing.assert_close(other_hidden, hidden, atol=1e-4, rtol=0)


def test_graph_replay_in_bf16_stays_with_the_plain_loop(tiny_dir):
    """bf16 sums in another order can flip a near-tie; almost every code must still agree."""
    backend = _backend(tiny_dir, torch.bfloat16)
    settings = SamplerSettings(cfg_weight=5.0, temperature=0.0)
    tokens, _ = _sample(backend, settings, "dynamic")
    graph_tokens, _ = _sample(backend, settings, "graph")
    assert (graph_tokens == tokens).float().mean() >= 0.9


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-4), (torch.bfloat16, 0.1)])
def test_decoder_pass_matches_hugging_face_on_cuda(tiny_dir, dtype, atol):
    backend = _backend(tiny_dir, dtype)
    lm = backend.model.model.language_model
    ids = torch.tensor([backend.generation_ids(PROMPTS[1])], device="cuda")
    cfg = lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad():
        reference = lm(input_ids=ids).last_hidden_state
        embeds = lm.embed_tokens(ids)
        positions = torch.arange(ids.shape[1], device="cuda")[None]
        cos, sin = lm.rotary_emb(embeds, positions)
        cache = KVCache(len(lm.layers), 1, cfg.num_key_value_heads, ids.shape[1], head_dim, embeds)
        causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf"), device="cuda", dtype=dtype).triu(1)
        ours = lm_forward(lm, embeds, cos, sin, causal[None, None], cache)
    torch.testing.assert_close(ours.float(), reference.float(), atol=atol, rtol=0)


def test_compiled_layers_in_graphs_draw_what_the_plain_loop_draws(tiny_dir):
    from safecb.models.decode_graph import compilable

    backend = _backend(tiny_dir, torch.float32)
    assert compilable(backend.model.model.language_model)
    settings = SamplerSettings(cfg_weight=5.0, temperature=0.0)
    tokens, hidden = _sample(backend, settings, "dynamic")
    cond = [backend.generation_ids(p) for p in PROMPTS]
    uncond = [backend.unconditional_ids(c) for c in cond]
    for _ in range(2):
        compiled, compiled_hidden = sample_image_tokens(
            backend.model, cond, uncond, [3, 4, 5], backend.n_tokens, settings, backend.pad_id, keep_hidden=True,
            loop="graph", compile_layers=True)
        assert torch.equal(compiled, tokens)
        torch.testing.assert_close(compiled_hidden, hidden, atol=1e-3, rtol=0)
