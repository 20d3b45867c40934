"""Our own image-token sampler for Janus-style generators.

Why not `JanusForConditionalGeneration.generate(generation_mode="image")`: it crashes for
guidance <= 1, draws every row from one shared RNG (so an image depends on its batch-mates) and
pays Python overhead per step that dominates at small batch. This sampler runs the language
model's own weights with a preallocated KV cache, batched classifier-free guidance (or none at
weight 1), and one uniform number per (row, token) drawn from that row's own seed: an image
depends only on (prompt, seed, settings).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .decode_graph import WIDTH_STEP, DecodeShape, compilable, static_decoder
from .fusion import FusedLayer, fused_layers, layer_weights

LOOPS = ("auto", "dynamic", "static", "graph")


@dataclass
class SamplerSettings:
    cfg_weight: float = 3.0  # classifier-free guidance weight; 1.0 takes the CFG-free path
    temperature: float = 1.0  # softmax temperature; 0 means greedy (argmax)
    top_k: int = 0  # keep the k most likely codes before sampling; 0 keeps all

    def validate(self, codebook_size: int) -> None:
        if not (0.0 <= self.cfg_weight <= 50.0):
            raise ValueError(f"cfg_weight must be in [0, 50], got {self.cfg_weight}")
        if not (0.0 <= self.temperature <= 10.0):
            raise ValueError(f"temperature must be in [0, 10], got {self.temperature}")
        if not (0 <= self.top_k <= codebook_size):
            raise ValueError(f"top_k must be in [0, {codebook_size}], got {self.top_k}")


class KVCache:
    """Preallocated keys/values for every layer: [batch, kv_heads, max_len, head_dim]."""

    def __init__(self, n_layers: int, batch: int, kv_heads: int, max_len: int, head_dim: int, like: torch.Tensor):
        shape = (batch, kv_heads, max_len, head_dim)
        self.keys = [like.new_zeros(shape) for _ in range(n_layers)]
        self.values = [like.new_zeros(shape) for _ in range(n_layers)]
        self.length = 0


def resolve_loop(loop: str, device: torch.device) -> str:
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
    if loop == "graph" and device.type != "cuda":
        raise ValueError("loop 'graph' needs a CUDA device")
    if loop == "auto":
        graphs = device.type == "cuda" and os.environ.get("SAFECB_CUDA_GRAPHS", "1") != "0"
        return "graph" if graphs else "dynamic"
    return loop


def _rotation(hd: int, like: torch.Tensor) -> torch.Tensor:
    """R with x @ R == rotate_half(x) == cat(-x2, x1): one matmul instead of four ops."""
    r = like.new_zeros(hd, hd)
    half = hd // 2
    r[half:, :half] = -torch.eye(half)
    r[:half, half:] = torch.eye(half)
    return r


def _add_linear(h: torch.Tensor, x: torch.Tensor, linear: torch.nn.Module) -> torch.Tensor:
    """h + linear(x) as one matmul with accumulation (one kernel fewer per call on a GPU)."""
    if linear.bias is not None:
        return h + linear(x)
    flat = torch.addmm(h.reshape(-1, h.shape[-1]), x.reshape(-1, x.shape[-1]), linear.weight.t())
    return flat.view(h.shape)


def lm_forward(
    lm,
    embeds: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor | None,
    cache: KVCache,
    layers: list[FusedLayer] | None = None,
    rot: torch.Tensor | None = None,
    at: torch.Tensor | None = None,
    end: int | None = None,
    compiled: tuple | None = None,
):
    """One pass of a Llama-style decoder over new positions; returns final-norm hidden states.

    `cos`/`sin` are the rotary tables for the new positions [batch, new, head_dim]; `mask` is an
    additive float mask [batch, 1, new, attended] (0 or -inf), or None when nothing is masked
    (a single new position attending to an unpadded prefix). `layers` and `rot` may be passed in
    to save their lookup on every decoding step.

    By default the new keys go at `cache.length` and attention reads the cache up to them. With
    `at` (a one-element tensor: the cache index of a single new position) and `end` (how many
    cache positions attention reads, `mask` hiding those not yet written) every shape is fixed
    whatever the position: what a replayed CUDA graph needs. `cache.length` is then not moved.
    `compiled` (with `at`): `decode_graph.compiled_blocks()`, the layer's work before and after
    attention as torch.compile'd functions (fewer, fused kernels per step)."""
    b, t, _ = embeds.shape
    hd = cos.shape[-1]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rot = _rotation(hd, embeds) if rot is None else rot
    h = embeds
    start = cache.length
    attended = start + t if at is None else end
    for i, f in enumerate(fused_layers(lm) if layers is None else layers):
        if compiled is not None:
            before, after = compiled
            q, k, v = before(h, f.norm1, f.qkv_w, cos, sin, f.eps, f.n_q, f.n_kv)
            cache.keys[i].index_copy_(2, at, k)
            cache.values[i].index_copy_(2, at, v)
            att = F.scaled_dot_product_attention(q, cache.keys[i][:, :, :end], cache.values[i][:, :, :end],
                                                 attn_mask=mask, scale=hd**-0.5, enable_gqa=f.n_kv != f.n_q)
            h = after(h, att, f.o_proj.weight, f.norm2, f.gate_up_w, f.down.weight, f.eps)
            continue
        x = F.rms_norm(h, (h.shape[-1],), f.norm1, f.eps)
        if f.qkv_w is not None:
            qkv = F.linear(x, f.qkv_w, f.qkv_b)
        else:
            qkv = torch.cat([project(x) for project in f.projections[:3]], dim=-1)
        qkv = qkv.view(b, t, -1, hd).transpose(1, 2)
        n_q, n_qk = f.n_q // hd, (f.n_q + f.n_kv) // hd
        qk = qkv[:, :n_qk]
        qk = torch.addcmul(qk * cos, qk @ rot, sin)
        keys, values = cache.keys[i], cache.values[i]
        if at is None:
            keys[:, :, start : start + t] = qk[:, n_q:]
            values[:, :, start : start + t] = qkv[:, n_qk:]
        else:
            keys.index_copy_(2, at, qk[:, n_q:])
            values.index_copy_(2, at, qkv[:, n_qk:])
        att = F.scaled_dot_product_attention(
            qk[:, :n_q],
            keys[:, :, :attended],
            values[:, :, :attended],
            attn_mask=mask,
            scale=hd**-0.5,
            enable_gqa=f.n_kv != f.n_q,
        )
        h = _add_linear(h, att.transpose(1, 2).reshape(b, t, -1), f.o_proj)
        x = F.rms_norm(h, (h.shape[-1],), f.norm2, f.eps)
        if f.gate_up_w is not None:
            gate, up = F.linear(x, f.gate_up_w, f.gate_up_b).chunk(2, dim=-1)
        else:
            gate, up = f.projections[3](x), f.projections[4](x)
        h = _add_linear(h, f.act(gate) * up, f.down)
    if at is None:
        cache.length += t
    return F.rms_norm(h, (h.shape[-1],), lm.norm.weight, lm.norm.variance_epsilon)


def generator_input_table(inner) -> torch.Tensor:
    """aligner(generation_embeddings) for every code [K, hidden], cached until a weight changes.

    Feeding a sampled code is then one row lookup instead of an embedding and an MLP per step."""
    params = list(inner.generation_embeddings.parameters()) + list(inner.generation_aligner.parameters())
    key = tuple((p.data_ptr(), p._version) for p in params)
    cached = getattr(inner, "_safecb_input_table", None)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            table = inner.generation_aligner(inner.generation_embeddings.weight)
        cached = (key, table)
        inner._safecb_input_table = cached
    return cached[1]


def row_uniforms(seeds: list[int], n_tokens: int, device) -> torch.Tensor:
    """One uniform number per (row, token) from each row's own seed: the only randomness used."""
    rows = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        rows.append(torch.rand(n_tokens, generator=gen, dtype=torch.float64))
    return torch.stack(rows).to(device)


def pick_tokens(logits: torch.Tensor, u: torch.Tensor, settings: SamplerSettings) -> torch.Tensor:
    """Inverse-CDF sampling with per-row uniforms u [B]; greedy at temperature 0."""
    if settings.temperature == 0:
        return logits.argmax(-1)
    logits = logits.double()
    if settings.temperature != 1.0:
        logits = logits / settings.temperature
    if settings.top_k:
        values, index = logits.topk(settings.top_k, dim=-1)
    else:
        values, index = logits, None
    cdf = values.softmax(-1).cumsum(-1)
    choice = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).clamp_max(cdf.shape[-1] - 1)
    if index is not None:
        choice = index.gather(-1, choice)
    return choice.squeeze(-1)


@torch.inference_mode()
def sample_image_tokens(
    model,
    prompt_ids: list[list[int]],
    uncond_ids: list[list[int]] | None,
    seeds: list[int],
    n_tokens: int,
    settings: SamplerSettings,
    pad_id: int,
    keep_hidden: bool = False,
    prompt_embeds: list[torch.Tensor] | None = None,
    loop: str = "auto",
    compile_layers: bool | None = None,
    prefix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample `n_tokens` visual codes per prompt. Returns tokens [B, n] and optionally the
    conditional rows' final hidden states at each image position [B, n, hidden].

    `prompt_embeds`, when given, holds one [len(prompt_ids[i]), hidden] tensor per conditional row
    that replaces the embeddings of prompt_ids[i] (which then only set the row's length); the
    unconditional rows always embed their ids.

    `loop` picks the decoding loop: "dynamic" (shapes grow with the position: least work per
    step), "static" (fixed shapes, `decode_graph.StaticDecoder`, run eagerly), "graph" (the static
    loop replayed as CUDA graphs) or "auto": graph on CUDA unless SAFECB_CUDA_GRAPHS=0, else
    dynamic. All give the same codes up to floating-point summation order. `compile_layers`
    (fixed-shape loops only; None: SAFECB_COMPILE=1) runs each layer's work around attention
    through torch.compile.

    `prefix` [B, P] forces each row's first P codes (an image's top rows given, the model continues):
    they are fed back as if sampled, and the row's own uniforms are used from position P on. A prefix
    runs the dynamic loop."""
    inner = model.model
    lm = inner.language_model
    device = next(model.parameters()).device
    dtype = lm.embed_tokens.weight.dtype
    use_cfg = settings.cfg_weight != 1.0
    rows = list(prompt_ids) + (list(uncond_ids) if use_cfg else [])
    b = len(prompt_ids)
    loop = "dynamic" if prefix is not None else resolve_loop(loop, device)
    if prefix is not None:
        prefix = torch.as_tensor(prefix, dtype=torch.long)
        if prefix.ndim != 2 or len(prefix) != b or prefix.shape[1] > n_tokens:
            raise ValueError(f"prefix must be [{b}, P <= {n_tokens}] codes, got {tuple(prefix.shape)}")
        prefix = prefix.to(device)

    width = max(len(r) for r in rows)
    if loop != "dynamic":
        width = math.ceil(width / WIDTH_STEP) * WIDTH_STEP
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):  # left padding, positions counted over real tokens only
        ids[i, width - len(r) :] = torch.tensor(r)
        valid[i, width - len(r) :] = True
    ids, valid = ids.to(device), valid.to(device)
    positions = (valid.long().cumsum(-1) - 1).clamp_min(0)

    cfg = lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    embeds = lm.embed_tokens(ids)
    for i, given in enumerate(prompt_embeds or []):  # left-padded like the ids
        embeds[i, width - len(given) :] = given.to(device, dtype)
    layers, rot = layer_weights(lm, fuse=device.type != "cpu"), _rotation(head_dim, embeds)
    table = generator_input_table(inner)
    decoder = None
    if loop != "dynamic":
        if compile_layers is None:
            compile_layers = os.environ.get("SAFECB_COMPILE", "0") == "1"
        shape = DecodeShape(len(rows), b, width, n_tokens, settings.cfg_weight, settings.temperature, settings.top_k,
                            keep_hidden, dtype, str(device), compiled=bool(compile_layers) and compilable(lm))
        decoder = static_decoder(model, shape, settings, table, use_graphs=loop == "graph")
        cache = decoder.cache
        cache.length = 0
    else:
        cache = KVCache(len(lm.layers), len(rows), cfg.num_key_value_heads, width + n_tokens, head_dim, embeds)
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    allowed = causal[None, None] & valid[:, None, None, :]
    allowed = allowed | torch.eye(width, dtype=torch.bool, device=device)[None, None]  # pad rows attend to self
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))
    # Rotary tables for every position this call will use, computed once.
    all_pos = torch.cat([positions, positions[:, -1:] + 1 + torch.arange(n_tokens, device=device)], 1)
    cos_all, sin_all = lm.rotary_emb(embeds, all_pos)
    hidden = lm_forward(lm, embeds, cos_all[:, :width], sin_all[:, :width], mask, cache, layers, rot)[:, -1]

    uniforms = row_uniforms(seeds, n_tokens, device)
    if decoder is not None:
        return decoder.run(hidden, uniforms, cos_all, sin_all, valid)
    padded = not bool(valid.all())
    key_valid = torch.cat([valid, torch.ones(len(rows), n_tokens, dtype=torch.bool, device=device)], 1)
    key_bias = torch.zeros(key_valid.shape, dtype=dtype, device=device).masked_fill(~key_valid, float("-inf"))
    tokens = torch.empty(b, n_tokens, dtype=torch.long, device=device)
    kept = torch.empty(b, n_tokens, hidden.shape[-1], dtype=dtype, device=device) if keep_hidden else None
    for step in range(n_tokens):
        if keep_hidden:
            kept[:, step] = hidden[:b]
        logits = inner.generation_head(hidden).float()
        if use_cfg:
            logits = torch.lerp(logits[b:], logits[:b], settings.cfg_weight)  # uncond + w (cond - uncond)
        if prefix is not None and step < prefix.shape[1]:
            token = prefix[:, step]
        else:
            token = pick_tokens(logits, uniforms[:, step], settings)
        tokens[:, step] = token
        if step == n_tokens - 1:
            break
        feed = token.repeat(2) if use_cfg else token
        embeds = table[feed].unsqueeze(1).to(dtype)
        step_mask = key_bias[:, None, None, : width + step + 1] if padded else None
        at = width + step
        step_cos, step_sin = cos_all[:, at : at + 1], sin_all[:, at : at + 1]
        hidden = lm_forward(lm, embeds, step_cos, step_sin, step_mask, cache, layers, rot)[:, -1]
    return tokens, kept
