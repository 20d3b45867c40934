"""The tiny Janus that Safe-CB Studio trains on its toy world and ships in assets/.

It is a `JanusForConditionalGeneration` like Janus-Pro, only small: same modules, same names,
same file layout on disk, so every code path that runs on it runs on Janus-Pro too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    JanusConfig,
    JanusForConditionalGeneration,
    JanusImageProcessor,
    JanusProcessor,
    PreTrainedTokenizerFast,
)

# Special tokens, named as in Janus-Pro's tokenizer so one backend serves both.
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
IMAGE_TOKEN, BOI, EOI, SEP = "<image_placeholder>", "<begin_of_image>", "<end_of_image>", "<sep>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IMAGE_TOKEN, BOI, EOI, SEP]

# Words of the questions the understanding path is trained on (the world adds its caption words).
QUESTION_WORDS = "is this image unsafe ? answer yes or no . describe the".split()


@dataclass
class ToyModelConfig:
    image_size: int = 32  # pixels per side of generated and understood images
    grid_size: int = 8  # visual tokens per side (image_size / 4: three VQ levels, two downsamples)
    codebook_size: int = 512  # K, number of visual codes
    code_dim: int = 16  # d, dimension of a decoder codebook row (Janus-Pro uses 8)
    vq_channels: int = 32  # VQ encoder/decoder base width (a multiple of 32 for GroupNorm)
    vq_channel_multiplier: tuple[int, ...] = (1, 2, 2)  # width per VQ level; len-1 downsamples
    text_hidden: int = 128  # language model width
    text_layers: int = 4  # language model depth
    text_heads: int = 4  # attention heads
    text_intermediate: int = 384  # MLP width of the language model
    vision_hidden: int = 128  # understanding encoder (SigLIP-style ViT) width
    vision_layers: int = 3  # understanding encoder depth
    vision_patch: int = 4  # ViT patch size; (image_size / patch)^2 image tokens in understanding
    max_positions: int = 256  # longest sequence the language model handles


def build_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the toy world's words, with Janus-Pro's special token names."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in sorted(set(words) | set(QUESTION_WORDS)):
        if word not in vocab:
            vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        extra_special_tokens={"image_token": IMAGE_TOKEN, "boi_token": BOI, "eoi_token": EOI, "sep_token": SEP},
    )


def build_janus_config(cfg: ToyModelConfig, tokenizer: PreTrainedTokenizerFast) -> JanusConfig:
    n_image_tokens = (cfg.image_size // cfg.vision_patch) ** 2
    text_config = dict(
        model_type="llama",
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    vision_config = dict(
        hidden_size=cfg.vision_hidden,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=4,
        image_size=cfg.image_size,
        patch_size=cfg.vision_patch,
        projection_dim=cfg.text_hidden,
        mlp_ratio=4.0,
        num_image_tokens=n_image_tokens,
        depth=2,
    )
    vq_config = dict(
        embed_dim=cfg.code_dim,
        num_embeddings=cfg.codebook_size,
        latent_channels=cfg.vq_channels * cfg.vq_channel_multiplier[-1],
        base_channels=cfg.vq_channels,
        channel_multiplier=list(cfg.vq_channel_multiplier),
        num_res_blocks=1,
        projection_dim=cfg.text_hidden,
        image_token_embed_dim=cfg.text_hidden,
        num_hidden_layers=2,
    )
    config = JanusConfig(
        text_config=text_config,
        vision_config=vision_config,
        vq_config=vq_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        tie_word_embeddings=False,
    )
    # JanusConfig derives the VQ grid from the understanding encoder; the toy keeps them equal.
    config.vq_config.num_patches = cfg.grid_size
    return config


def build_processor(cfg: ToyModelConfig, tokenizer: PreTrainedTokenizerFast) -> JanusProcessor:
    image_processor = JanusImageProcessor(
        size={"height": cfg.image_size, "width": cfg.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pad=False,
    )
    n_image_tokens = (cfg.image_size // cfg.vision_patch) ** 2
    return JanusProcessor(image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=n_image_tokens)


def set_generation_tokens(model, tokenizer) -> None:
    """Special-token ids in the generation config, as transformers' image `generate` expects."""
    gen = model.generation_config
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.generation_kwargs = {"boi_token_id": tokenizer.convert_tokens_to_ids(tokenizer.boi_token)}


def build_toy_model(cfg: ToyModelConfig, words: list[str], seed: int = 0):
    """Fresh, randomly initialised toy Janus with its tokenizer and processor."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(words)
    config = build_janus_config(cfg, tokenizer)
    model = JanusForConditionalGeneration(config)
    set_generation_tokens(model, tokenizer)
    return model, build_processor(cfg, tokenizer)


def save_checkpoint(model, processor, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write the Hugging Face layout (config, safetensors, tokenizer, processor)."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    if extra is not None:
        (out / "safecb_toy.json").write_text(json.dumps(extra, indent=2, default=str))
    return out


def toy_config_dict(cfg: ToyModelConfig) -> dict:
    return asdict(cfg)
