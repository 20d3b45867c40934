"""Janus-Pro-1B's shape in transformers' JanusConfig layout, built with random weights: what the speed
bench times and what a real round's cost model is measured on. Speed does not depend on weight
values, so the weights are random (built on the meta device and filled by tiling one random block:
a copy pass instead of transformers' per-tensor normal_ init)."""

from __future__ import annotations

import copy

import torch

# Janus-Pro-1B as published, in transformers' JanusConfig layout. Sources:
# [a] hf-internal-testing/tiny-processor-janus/config.json: the Hugging Face conversion of
#     deepseek-ai/Janus-Pro-1B (text_config and vision_config below, value for value); the same
#     text_config is in pruna-test/tiny_janus/config.json (there cut to 1 layer).
# [b] transformers' models/janus/convert_janus_weights_to_hf.py: which original config.json field
#     fills which JanusConfig field (gen_vision n_embed -> vq embed_dim, image_token_size ->
#     num_embeddings, gen_aligner n_embed -> projection_dim, gen_head image_token_embed ->
#     image_token_embed_dim, aligner n_embed -> vision projection_dim); all other vision and VQ
#     fields are JanusVisionConfig / JanusVQVAEConfig defaults; generation_config.guidance_scale = 5.
# [c] JanusVisionConfig and JanusVQVAEConfig defaults (transformers 5.23, documented against
#     deepseek-community/Janus-Pro-1B): SigLIP-L/16 at 384 px and the VQ-16 tokenizer.
# [d] original Janus-Pro config.json (deepseek-ai/Janus-Pro-7B, e.g. as copied in
#     cyan2k/Janus-Pro-7B-bnb-4bit): gen_vision n_embed 8, image_token_size 16384; the aligner,
#     gen_aligner and gen_head widths equal the language model's hidden size (4096 for 7B), so
#     2048 for 1B, as [a] shows for the aligner (vision projection_dim 2048).
# [e] untied lm_head: DeepSeek-LLM keeps its own output matrix (wnma3mz/Janus-Pro-7B-LM config:
#     tie_word_embeddings false; [b] loads language_model.lm_head.weight with strict=True).
JANUS_PRO_1B = {
    "text_config": {  # [a]
        "model_type": "llama",
        "vocab_size": 102400,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "head_dim": 128,
        "hidden_act": "silu",
        "max_position_embeddings": 16384,
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 100000,
        "eos_token_id": 100001,
        "pad_token_id": 100002,
        "tie_word_embeddings": False,  # [e]
    },
    "vision_config": {  # [a], [c]
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 384,
        "patch_size": 16,  # 24 x 24 = 576 understanding tokens
        "mlp_ratio": 4.0,
        "projection_dim": 2048,  # aligner n_embed [b], [d]
        "depth": 2,  # aligner depth
        "num_image_tokens": 576,
    },
    "vq_config": {  # [b], [c], [d]
        "embed_dim": 8,
        "num_embeddings": 16384,
        "latent_channels": 256,
        "base_channels": 128,
        "channel_multiplier": [1, 1, 2, 2, 4],  # 16x downsampling: 384 px <-> 24 x 24 codes
        "num_res_blocks": 2,
        "projection_dim": 2048,  # gen_aligner n_embed
        "num_hidden_layers": 2,  # gen_aligner depth
        "image_token_embed_dim": 2048,  # gen_head image_token_embed
    },
    "image_token_id": 100581,  # [a]
    "tie_word_embeddings": False,  # [e]
}
JANUS_PRO_GUIDANCE = 5.0  # [b]

# The --quick shape: the same layout with every size cut (close to safecb/models/tiny.py's).
QUICK_SHAPE = {
    "text_config": {"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16,
                    "max_position_embeddings": 256},
    "vision_config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32,
                      "patch_size": 8, "projection_dim": 64, "num_image_tokens": 16},
    "vq_config": {"num_embeddings": 64, "latent_channels": 32, "base_channels": 32,
                  "channel_multiplier": [1, 1, 1, 1], "num_res_blocks": 0, "projection_dim": 64,
                  "image_token_embed_dim": 64},
}


def build_config(quick: bool = False, tokenizer=None):
    """JanusConfig of Janus-Pro-1B (or the quick shape). With a tokenizer, its special-token ids
    replace Janus-Pro's (the stand-in tokenizer numbers them differently; ids do not change speed)."""
    from transformers import JanusConfig

    values = copy.deepcopy(JANUS_PRO_1B)
    if quick:
        for part, changes in QUICK_SHAPE.items():
            values[part].update(changes)
    if tokenizer is not None:
        text = values["text_config"]
        if len(tokenizer) > text["vocab_size"]:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens; the vocabulary only {text['vocab_size']}")
        text.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id)
        values["image_token_id"] = tokenizer.convert_tokens_to_ids(tokenizer.image_token)
    return JanusConfig(**values)


def _tile_into(param: torch.Tensor, block: torch.Tensor) -> None:
    flat = param.view(-1)
    full, rest = divmod(flat.numel(), block.numel())
    if full:
        flat[: full * block.numel()].view(full, -1).copy_(block.expand(full, -1))
    flat[full * block.numel():].copy_(block[:rest])


@torch.no_grad()
def fill_random(model, seed: int, std: float = 0.02) -> None:
    """Weights with the scale of transformers' init (std 0.02, norms 1, biases 0), written fast:
    one random block of prime length tiled through the tensors, each tensor starting where the
    previous one stopped, so no two rows or same-shaped tensors repeat exactly.
    Buffers (rotary tables, position ids) are computed by transformers' own init."""
    period = 1_000_003
    generator = torch.Generator().manual_seed(seed)
    base = torch.empty(period).uniform_(-std * 3**0.5, std * 3**0.5, generator=generator)
    doubled: dict[tuple, torch.Tensor] = {}  # block twice over: any rotation of it is a slice
    offset = 0
    for module in model.modules():
        is_norm = "Norm" in type(module).__name__
        for name, param in module.named_parameters(recurse=False):
            if is_norm:
                param.fill_(1.0 if name == "weight" else 0.0)
            elif name == "bias":
                param.zero_()
            else:
                key = (param.device, param.dtype)
                if key not in doubled:
                    doubled[key] = base.repeat(2).to(param.device, param.dtype)
                _tile_into(param, doubled[key][offset : offset + period])
                offset = (offset + param.numel()) % period
        if next(module.buffers(recurse=False), None) is not None:
            model._init_weights(module)


def build_model(config, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """JanusForConditionalGeneration with random weights, allocated once on `device` in `dtype`
    (buffers stay float32, as after `from_pretrained(dtype=...)`)."""
    from transformers import JanusForConditionalGeneration

    with torch.device("meta"):
        model = JanusForConditionalGeneration(config)
    for param in model.parameters():
        param.data = param.data.to(dtype)  # still on meta: free
    model.to_empty(device=device)
    fill_random(model, seed)
    return model.eval()


def stand_in_processor(tokenizer, config):
    """Janus-Pro's processor around the word-level stand-in tokenizer of `safecb.models.tiny`."""
    from transformers import JanusImageProcessorPil, JanusProcessor

    from .tiny import CHAT_TEMPLATE

    size = config.vision_config.image_size
    image_processor = JanusImageProcessorPil(
        size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    return JanusProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                          use_default_system_prompt=True, num_image_tokens=config.vision_config.num_image_tokens)


def build_backend(quick: bool, device: torch.device, dtype: torch.dtype, seed: int = 0):
    from .backend import JanusBackend
    from .tiny import build_tiny_tokenizer
    from .toy import set_generation_tokens

    tokenizer = build_tiny_tokenizer()
    config = build_config(quick, tokenizer)
    model = build_model(config, device, dtype, seed)
    set_generation_tokens(model, tokenizer)
    source = f"random weights, {'quick' if quick else 'Janus-Pro-1B'} shape"
    return JanusBackend(model, tokenizer, stand_in_processor(tokenizer, config), source=source)


def parameter_counts(model) -> dict[str, int]:
    """Parameters per component and in total (meta tensors count too)."""
    parts = {
        "language_model": ("model.language_model.",),
        "lm_head": ("lm_head.",),
        "vision_model": ("model.vision_model.",),
        "aligner": ("model.aligner.",),
        "vqmodel": ("model.vqmodel.",),
        "generation": ("model.generation_embeddings.", "model.generation_aligner.", "model.generation_head."),
    }
    counts = dict.fromkeys(parts, 0)
    for name, param in model.named_parameters():
        for part, prefixes in parts.items():
            if name.startswith(prefixes):
                counts[part] += param.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


