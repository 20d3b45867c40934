"""The per-token decoding loop with fixed shapes, replayed as CUDA graphs on a GPU.

At batch 1 a decoding step of Janus-Pro-1B launches some 400 small kernels; launched one by one
from Python, that launching costs more than the matmuls. Here every step has the same shapes (the
position is a one-element tensor, attention reads a fixed slice of the KV cache and a mask hides
what is not written yet), so the whole step (decoder, generation head, guidance, sampling, the
next code's input row) is captured once and replayed per token.

Attention reads the cache in buckets of `BUCKET` positions, one graph per bucket, so a step near
the start of an image does not read the whole cache. A `StaticDecoder` holds its KV cache and
graphs between calls of the same shape (one decoder per model: `release` frees it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .fusion import fused_layers

BUCKET = 128  # cache positions per attention bucket (one graph each)
WIDTH_STEP = 16  # prompts are left-padded to a multiple of this, so prompt lengths share decoders


def _attention_inputs(h, norm, qkv_w, cos, sin, eps: float, n_q: int, n_kv: int):
    """A Llama layer's work before attention: norm, q/k/v projection, rotary embedding.

    The rotation is written as rotate_half (negate and swap the halves), not as the matmul with
    `sampler._rotation` that the eager loops use: under torch.compile it joins the multiply-add
    in one pointwise kernel, where the matmul would be a kernel of its own in every layer."""
    b, t, d = h.shape
    hd = cos.shape[-1]
    x = F.rms_norm(h, (d,), norm, eps)
    qkv = F.linear(x, qkv_w).view(b, t, -1, hd).transpose(1, 2)
    q_heads, qk_heads = n_q // hd, (n_q + n_kv) // hd
    qk = qkv[:, :qk_heads]
    first, second = qk.chunk(2, dim=-1)
    qk = qk * cos + torch.cat((-second, first), dim=-1) * sin
    return qk[:, :q_heads], qk[:, q_heads:], qkv[:, qk_heads:]


def _after_attention(h, att, o_w, norm, gate_up_w, down_w, eps: float):
    """A Llama layer's work after attention: output projection, residuals, norm, SiLU MLP."""
    b, t, d = h.shape
    h = h + F.linear(att.transpose(1, 2).reshape(b, t, -1), o_w)
    x = F.rms_norm(h, (d,), norm, eps)
    gate, up = F.linear(x, gate_up_w).chunk(2, dim=-1)
    return h + F.linear(F.silu(gate) * up, down_w)


_COMPILED: tuple | None = None


def compiled_blocks() -> tuple:
    """`_attention_inputs` and `_after_attention` through torch.compile, built once per process.
    The KV-cache writes and attention stay outside, so no compiled graph mutates its inputs."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = (torch.compile(_attention_inputs, fullgraph=True), torch.compile(_after_attention, fullgraph=True))
    return _COMPILED


def compilable(lm) -> bool:
    """The compiled blocks cover Llama layers without biases and with SiLU (Janus-Pro's)."""
    layer = lm.layers[0]
    a, m = layer.self_attn, layer.mlp
    return (getattr(lm.config, "hidden_act", None) == "silu" and a.q_proj.bias is None and a.o_proj.bias is None
            and m.gate_proj.bias is None and m.down_proj.bias is None)


@dataclass(frozen=True)
class DecodeShape:
    """Everything a captured step depends on besides the weights."""

    rows: int  # sequences decoded together: conditional, then unconditional (with guidance)
    cond_rows: int  # images
    width: int  # padded prompt length
    n_tokens: int  # image codes per image
    cfg_weight: float
    temperature: float
    top_k: int
    keep_hidden: bool  # also keep the conditional rows' hidden state at each image position
    dtype: torch.dtype
    device: str
    compiled: bool = False  # the layers' work around attention through torch.compile

    @property
    def length(self) -> int:
        return math.ceil((self.width + self.n_tokens) / BUCKET) * BUCKET


def weights_key(model, table: torch.Tensor) -> tuple:
    """Addresses of every tensor a captured step reads: a graph replays on these addresses."""
    inner = model.model
    params = list(inner.language_model.parameters()) + list(inner.generation_head.parameters())
    return tuple(p.data_ptr() for p in params) + (table.data_ptr(),)


class StaticDecoder:
    def __init__(self, model, shape: DecodeShape, settings, table: torch.Tensor, use_graphs: bool):
        from .sampler import KVCache, _rotation

        self.model, self.shape, self.settings, self.table = model, shape, settings, table
        self.lm = model.model.language_model
        self.head = model.model.generation_head
        cfg = self.lm.config
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        like = torch.empty(0, dtype=shape.dtype, device=shape.device)
        n, length, rows, b = shape.n_tokens, shape.length, shape.rows, shape.cond_rows
        self.cache = KVCache(len(self.lm.layers), rows, cfg.num_key_value_heads, length, self.head_dim, like)
        self.cos = like.new_zeros(rows, length, self.head_dim)
        self.sin = like.new_zeros(rows, length, self.head_dim)
        self.key_valid = torch.ones(rows, length, dtype=torch.bool, device=shape.device)
        self.zero_bias = like.new_zeros(rows, length)
        self.cache_index = torch.arange(length, device=shape.device)
        self.uniforms = torch.zeros(b, n, dtype=torch.float64, device=shape.device)
        self.feed = torch.zeros(rows, dtype=torch.long, device=shape.device)
        self.at = torch.full((1,), shape.width, dtype=torch.long, device=shape.device)
        self.tokens = torch.zeros(b, n, dtype=torch.long, device=shape.device)
        self.kept = like.new_zeros(b, n, cfg.hidden_size) if shape.keep_hidden else None
        self.layers = fused_layers(self.lm)
        self.rot = _rotation(self.head_dim, like)
        self.compiled = compiled_blocks() if shape.compiled else None
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        if use_graphs:
            self._capture()

    def bucket_end(self, attended: int) -> int:
        return min(math.ceil(attended / BUCKET) * BUCKET, self.shape.length)

    def _emit(self, hidden: torch.Tensor, k: torch.Tensor) -> None:
        """Code number k of every image from the hidden states that predict it; feeds it back."""
        from .sampler import pick_tokens

        b = self.shape.cond_rows
        if self.kept is not None:
            self.kept.index_copy_(1, k, hidden[:b].unsqueeze(1))
        logits = self.head(hidden).float()
        if self.shape.cfg_weight != 1.0:
            logits = torch.lerp(logits[b:], logits[:b], self.shape.cfg_weight)
        token = pick_tokens(logits, self.uniforms.index_select(1, k).squeeze(1), self.settings)
        self.tokens.index_copy_(1, k, token.unsqueeze(1))
        self.feed.copy_(token.repeat(self.shape.rows // b))

    def _step(self, end: int) -> None:
        """Feed the last code at cache index `at`, attend over the first `end` positions, emit
        the next code, advance `at`: fixed shapes, tensors only, no host synchronisation."""
        from .sampler import lm_forward

        at = self.at
        embeds = self.table.index_select(0, self.feed).unsqueeze(1).to(self.shape.dtype)
        cos, sin = self.cos.index_select(1, at), self.sin.index_select(1, at)
        allowed = self.key_valid[:, :end] & (self.cache_index[:end] <= at)
        bias = self.zero_bias[:, :end].masked_fill(~allowed, float("-inf"))[:, None, None, :]
        hidden = lm_forward(self.lm, embeds, cos, sin, bias, self.cache, self.layers, self.rot, at=at, end=end,
                            compiled=self.compiled)
        self._emit(hidden[:, -1], at - (self.shape.width - 1))
        at.add_(1)

    def _capture(self) -> None:
        ends = sorted({self.bucket_end(self.shape.width + k) for k in range(1, self.shape.n_tokens)})
        if not ends:
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside capture: kernel choice, workspaces, compilation
            for end in [ends[0], *ends]:
                self.at.fill_(self.shape.width)
                self._step(end)
        torch.cuda.current_stream().wait_stream(side)
        pool = torch.cuda.graph_pool_handle()
        for end in ends:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._step(end)
            self.graphs[end] = graph

    def run(self, first_hidden: torch.Tensor, uniforms: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
            key_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode after a prefill that filled `self.cache` up to `width`. `cos`/`sin` cover the
        positions [0, width + n_tokens), `key_valid` the prompt's [rows, width]."""
        width, n = self.shape.width, self.shape.n_tokens
        self.uniforms.copy_(uniforms)
        self.cos[:, : width + n].copy_(cos)
        self.sin[:, : width + n].copy_(sin)
        self.key_valid[:, :width].copy_(key_valid)
        self._emit(first_hidden, torch.zeros(1, dtype=torch.long, device=self.at.device))
        self.at.fill_(width)
        for k in range(1, n):
            end = self.bucket_end(width + k)  # feeding code k-1 at index width+k-1 reads width+k keys
            if self.graphs:
                self.graphs[end].replay()
            else:
                self._step(end)
        kept = None if self.kept is None else self.kept.clone()
        return self.tokens.clone(), kept


def static_decoder(model, shape: DecodeShape, settings, table: torch.Tensor, use_graphs: bool) -> StaticDecoder:
    """The model's decoder for this shape and these weights; built (and captured) when either changed."""
    fused_layers(model.model.language_model)  # fuse (in place) before reading the weights' addresses
    key = (shape, bool(use_graphs), weights_key(model, table))
    cached = getattr(model, "_safecb_decoder", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    release(model)
    decoder = StaticDecoder(model, shape, settings, table, use_graphs)
    model._safecb_decoder = (key, decoder)
    return decoder


def release(model) -> None:
    """Free the model's cached decoder (its KV cache and graphs)."""
    if getattr(model, "_safecb_decoder", None) is not None:
        model._safecb_decoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def held_bytes(model) -> int:
    """Bytes the cached decoder holds between calls (its KV cache and buffers; graph pools aside)."""
    cached = getattr(model, "_safecb_decoder", None)
    if cached is None:
        return 0
    d = cached[1]
    tensors = d.cache.keys + d.cache.values + [d.cos, d.sin, d.zero_bias, d.uniforms, d.tokens]
    if d.kept is not None:
        tensors.append(d.kept)
    return sum(t.numel() * t.element_size() for t in tensors)
