"""Fused q/k/v and gate/up projections without a second copy of the weights.

On a GPU a decoding step is faster with one [q; k; v] matmul and one [gate; up] matmul per layer
than with five (fewer kernel launches). On the CPU it is slower: at Janus-Pro-1B's shape one
[2048 -> 6144] matmul took 52.8 ms against 45.3 ms for three [2048 -> 2048] ones (320 rows, 2
threads), so there `layer_weights(lm, fuse=False)` keeps the model's five projections.

Concatenating the weights would keep a fused copy beside the model's own (+41% memory at
Janus-Pro-1B's shape), so instead the weights are moved, once, into one tensor per group and each
`nn.Linear` keeps a row-slice view of it: the model's forward, its optimisers and `load_state_dict`
read and write the same storage the sampler multiplies with.

A later `model.to(...)` or a replaced `weight.data` breaks the views; `fused_layers` checks them
on every call and fuses again when they no longer hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FusedLayer:
    """One decoder layer's weights; fused, q/k/v and gate/up as single tensors (views, not copies)."""

    norm1: torch.Tensor
    qkv_w: torch.Tensor | None  # None: not fused, use `projections`
    qkv_b: torch.Tensor | None
    o_proj: torch.nn.Module
    norm2: torch.Tensor
    gate_up_w: torch.Tensor | None  # None: not fused
    gate_up_b: torch.Tensor | None
    down: torch.nn.Module
    act: object
    eps: float
    n_q: int  # query width (heads x head_dim)
    n_kv: int  # key/value width (kv heads x head_dim)
    projections: tuple = ()  # unfused: the q, k, v, gate and up nn.Linear modules


def _stacked_views_hold(base: torch.Tensor | None, parts: list[torch.Tensor]) -> bool:
    """True when `parts` are consecutive row slices of `base`, in order, covering it."""
    if base is None or any(p.device != base.device or p.dtype != base.dtype for p in parts):
        return False
    rows = 0
    for p in parts:
        expected = base.data_ptr() + rows * base.stride(0) * base.element_size()
        if p.data_ptr() != expected or not p.is_contiguous() or p.shape[1:] != base.shape[1:]:
            return False
        rows += p.shape[0]
    return rows == base.shape[0]


def stack_in_place(params: list[torch.nn.Parameter], base: torch.Tensor | None) -> torch.Tensor:
    """One tensor holding `params` row after row, each param's data now a view into it.

    Returns `base` untouched when the views already hold; otherwise moves the values into a new
    tensor (the old storages are freed once nothing else refers to them)."""
    if _stacked_views_hold(base, [p.data for p in params]):
        return base
    # Not an inference tensor even when called under inference_mode: the model may train later.
    with torch.inference_mode(False), torch.no_grad():
        stacked = torch.cat([p.detach() for p in params])
    row = 0
    for p in params:
        n = p.shape[0]
        p.data = stacked[row : row + n]
        row += n
    return stacked


def _fuse_layer(layer) -> FusedLayer:
    a, m = layer.self_attn, layer.mlp
    qkv = [a.q_proj, a.k_proj, a.v_proj]
    gate_up = [m.gate_proj, m.up_proj]
    a._safecb_qkv_w = stack_in_place([p.weight for p in qkv], getattr(a, "_safecb_qkv_w", None))
    a._safecb_qkv_b = (stack_in_place([p.bias for p in qkv], getattr(a, "_safecb_qkv_b", None))
                       if a.q_proj.bias is not None else None)
    m._safecb_gate_up_w = stack_in_place([p.weight for p in gate_up], getattr(m, "_safecb_gate_up_w", None))
    m._safecb_gate_up_b = (stack_in_place([p.bias for p in gate_up], getattr(m, "_safecb_gate_up_b", None))
                           if m.gate_proj.bias is not None else None)
    return FusedLayer(
        norm1=layer.input_layernorm.weight,
        qkv_w=a._safecb_qkv_w,
        qkv_b=a._safecb_qkv_b,
        o_proj=a.o_proj,
        norm2=layer.post_attention_layernorm.weight,
        gate_up_w=m._safecb_gate_up_w,
        gate_up_b=m._safecb_gate_up_b,
        down=m.down_proj,
        act=m.act_fn,
        eps=layer.input_layernorm.variance_epsilon,
        n_q=a.q_proj.weight.shape[0],
        n_kv=a.k_proj.weight.shape[0],
    )


def _plain_layer(layer) -> FusedLayer:
    a, m = layer.self_attn, layer.mlp
    return FusedLayer(norm1=layer.input_layernorm.weight, qkv_w=None, qkv_b=None, o_proj=a.o_proj,
                      norm2=layer.post_attention_layernorm.weight, gate_up_w=None, gate_up_b=None, down=m.down_proj,
                      act=m.act_fn, eps=layer.input_layernorm.variance_epsilon, n_q=a.q_proj.weight.shape[0],
                      n_kv=a.k_proj.weight.shape[0],
                      projections=(a.q_proj, a.k_proj, a.v_proj, m.gate_proj, m.up_proj))


def fused_layers(lm) -> list[FusedLayer]:
    """Every decoder layer of a Llama-style model with fused projections, fused in place on the
    first call and again whenever the views stopped holding (cheap to check: pointer arithmetic)."""
    return [_fuse_layer(layer) for layer in lm.layers]


def layer_weights(lm, fuse: bool) -> list[FusedLayer]:
    """Fused layers (GPU) or the model's own projections (CPU), as the module docstring says."""
    return fused_layers(lm) if fuse else [_plain_layer(layer) for layer in lm.layers]


def extra_bytes(lm) -> int:
    """Bytes the fusion keeps beside the model's parameters: 0 while every view holds."""
    params = {p.data_ptr() for p in lm.parameters()}
    total = 0
    for layer in lm.layers:
        for holder, name in ((layer.self_attn, "_safecb_qkv_w"), (layer.self_attn, "_safecb_qkv_b"),
                             (layer.mlp, "_safecb_gate_up_w"), (layer.mlp, "_safecb_gate_up_b")):
            base = getattr(holder, name, None)
            if base is not None and base.data_ptr() not in params:
                total += base.numel() * base.element_size()
    return total
