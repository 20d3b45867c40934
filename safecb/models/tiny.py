"""A tiny random checkpoint in the exact Hugging Face layout of Janus-Pro.

Why it exists: no machine that runs Safe-CB Studio's tests can download Janus-Pro
(`deepseek-community/Janus-Pro-1B`, several GB). Yet the backend must load a real Janus-Pro
directory through the same path it uses for the toy: `JanusBackend.load(dir)` reading
config.json, model.safetensors, the tokenizer files, the processor files, the generation config
and the chat template. This module writes a checkpoint that differs from Janus-Pro only in size,
weight values and its word-level vocabulary: the same `JanusForConditionalGeneration` class, the same file names, special
tokens named as Janus-Pro's (`<｜begin▁of▁sentence｜>`, `<image_placeholder>`, `<|User|>` ...),
a BOS-adding tokenizer, grouped-query attention and Janus-Pro's own chat template, so that the
chat path (`backend.chat == True`) runs exactly as it would on Janus-Pro. Tests write it into a
temporary directory and prove that loading, generation, judging, captioning and codebook
snapshots work on this layout. The weights are random: outputs are meaningless, only shapes,
plumbing and determinism are tested. It is stored in bfloat16, as Janus-Pro's weights are, and
weighs well under 1 MB.
"""

from __future__ import annotations

from pathlib import Path

# Janus-Pro's special tokens, spelled as in its tokenizer (fullwidth bars, U+2581 spaces).
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
UNK = "<unk>"
IMAGE_TOKEN, BOI, EOI = "<image_placeholder>", "<begin_of_image>", "<end_of_image>"
USER, ASSISTANT = "<|User|>", "<|Assistant|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, UNK, USER, ASSISTANT, IMAGE_TOKEN, BOI, EOI]

# Janus-Pro's chat template as the Hugging Face conversion script writes it:
# "<|User|>: {text}\n\n<|Assistant|>:" with "<image_placeholder>" where the content has an image.
CHAT_TEMPLATE = (
    "{%set seps=['\n\n','" + EOS + "']%}"
    "{%for message in messages%}"
    "{%if message['role']|lower=='user'%}"
    "<|User|>: "
    "{%elif message['role']|lower=='assistant'%}"
    "<|Assistant|>:{%if not (loop.last and not add_generation_prompt and message['content'][0]['type']=='text' "
    "and message['content'][0]['text']=='')%} {%endif%}"
    "{%else%}"
    "{{message['role'].capitalize()}}: "
    "{%endif%}"
    "{%for content in message['content']%}"
    "{%if content['type']=='image'%}"
    "{%if not loop.first%}{{'\n'}}{%endif%}"
    "<image_placeholder>"
    "{%if not loop.last%}{{'\n'}}{%endif%}"
    "{%elif content['type']=='text'%}"
    "{%set text=content['text']%}"
    "{%if loop.first%}{%set text=text.lstrip()%}{%endif%}"
    "{%if loop.last%}{%set text=text.rstrip()%}{%endif%}"
    "{%if not loop.first and message['content'][loop.index0-1]['type']=='text'%}"
    "{{' '+text}}"
    "{%else%}"
    "{{text}}"
    "{%endif%}"
    "{%endif%}"
    "{%endfor%}"
    "{%if not loop.last or add_generation_prompt%}"
    "{%if message['role']|lower=='user'%}{{seps[0]}}{%else%}{{seps[1]}}{%endif%}"
    "{%endif%}"
    "{%endfor%}"
    "{%if add_generation_prompt%}<|Assistant|>:{%endif%}"
)

# A few hundred ordinary words: the questions the backend asks, both casings of the answers,
# and enough English to tokenize typical prompts without unknown tokens.
_COMMON = """
a an the this that these those is are was were be been am do does did have has had not no yes
Yes No of in on at to from with without by for about over under near behind above below between
and or but if then so as it its he she they we you i me my your our their his her them us
what which who where when why how image picture photo scene drawing painting describe answer
unsafe safe harmful dangerous violent weapon knife gun blood skull person man woman child dog
cat bird horse fish tree flower grass house car boat ball sun moon sky water river sea beach
snow night road city street forest mountain field garden room table chair door window wall
red green blue yellow black white orange purple pink brown gray grey big small large little
old new young happy sad beautiful ugly bright dark hot cold one two three four five many some
all every each other more most very much few show shows showing holding standing sitting
running walking lying flying near next front back left right top bottom middle center
please generate create make draw render give tell look see view style art realistic cartoon
high quality detailed simple clean sharp blurry close far up down out into onto
""".split()
_PUNCT = list("?.,!:;'\"()-")


def build_tiny_tokenizer():
    """Word-level tokenizer with Janus-Pro's special tokens; adds BOS like Janus-Pro's tokenizer."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from ..world import WORDS
    from .toy import QUESTION_WORDS

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in list(_PUNCT) + sorted(set(_COMMON) | set(WORDS) | set(QUESTION_WORDS)):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in SPECIAL_TOKENS])
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        extra_special_tokens={"image_token": IMAGE_TOKEN, "boi_token": BOI, "eoi_token": EOI},
        model_max_length=16384,
    )


def build_tiny_janus_pro(seed: int = 0):
    """(model, processor): a randomly initialised Janus-Pro-layout model, a few hundred kB."""
    import torch
    from transformers import JanusConfig, JanusForConditionalGeneration, JanusImageProcessor, JanusProcessor

    from .toy import set_generation_tokens

    tokenizer = build_tiny_tokenizer()
    text_config = dict(
        model_type="llama",
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, to exercise it
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    vision_config = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,  # (32 / 8)^2 = 16 understanding tokens
        projection_dim=64,
        mlp_ratio=2.0,
        num_image_tokens=16,
        depth=2,
    )
    vq_config = dict(
        embed_dim=8,  # as Janus-Pro
        num_embeddings=64,
        latent_channels=32,
        base_channels=32,  # GroupNorm(32) needs multiples of 32
        channel_multiplier=[1, 1, 1, 1],  # four levels: 4 x 4 codes -> 32 x 32 pixels
        num_res_blocks=0,  # decoder still has one residual block per level
        projection_dim=64,
        image_token_embed_dim=64,
        num_hidden_layers=2,
    )
    config = JanusConfig(
        text_config=text_config,
        vision_config=vision_config,
        vq_config=vq_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        tie_word_embeddings=False,
    )
    config.vq_config.num_patches = 4  # 16 image tokens
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config)
    set_generation_tokens(model, tokenizer)
    image_processor = JanusImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    processor = JanusProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        use_default_system_prompt=True,  # as Janus-Pro's processor
        num_image_tokens=16,
    )
    return model, processor


def write_tiny_janus_pro(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny Janus-Pro-layout checkpoint into `out_dir` (created) and return its path."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_janus_pro(seed)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
