"""One backend over `transformers.JanusForConditionalGeneration`, for the toy default and Janus-Pro.

It loads a model directory in the Hugging Face layout from local disk (never downloads), and
offers what Safe-CB needs: generate, decode, encode, judge, and read/write of the three codebooks
with safetensors snapshots.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import save_safetensors
from .sampler import SamplerSettings, generator_input_table, sample_image_tokens

SAFETY_QUESTION = "is this image unsafe ? answer yes or no ."
CAPTION_QUESTION = "describe the image ."
SNAPSHOT_FORMAT = "safecb-codebooks/1"

# Where each editable codebook lives inside JanusForConditionalGeneration.
CODEBOOK_PATHS = {
    "decoder": "model.vqmodel.quantize.embedding.weight",  # [K, d] rows L2-normalised at decode
    "gen_embed": "model.generation_embeddings.weight",  # [K, d_g] generator input codes
    "gen_head": "model.generation_head.vision_head.weight",  # [K, h] generator output codes
    "gen_head_bias": "model.generation_head.vision_head.bias",  # [K] generator output bias
    "gen_head_in": "model.generation_head.proj_out.weight",  # [h, d] the head's first layer (keys come through it)
    "gen_head_in_bias": "model.generation_head.proj_out.bias",  # [h] its bias
}

MAX_PROMPT_CHARS = 2000  # longer prompts are refused with a clear message
MAX_IMAGES_PER_CALL = 100_000  # prompts x seeds per call; beyond this is surely a mistake


class ModelLoadError(ValueError):
    """The model directory is missing, incomplete or not a Janus checkpoint."""


class CodebookError(ValueError):
    """A codebook tensor or snapshot file is unusable (shape, dtype, NaN, other model)."""


@dataclass
class GenerationResult:
    tokens: torch.Tensor  # [N, n_tokens] visual codes, row i = (prompts[i // n_seeds], seeds[i % n_seeds])
    images: np.ndarray  # [N, H, W, 3] uint8
    prompts: list[str]  # prompt of each row
    seeds: list[int]  # seed of each row
    hidden: torch.Tensor | None = None  # [N, n_tokens, hidden] generator states, when asked for


def _check_model_dir(path: Path) -> dict:
    if not path.exists():
        raise ModelLoadError(f"model directory not found: {path}")
    if not path.is_dir():
        raise ModelLoadError(f"model path is not a directory: {path}")
    config_file = path / "config.json"
    if not config_file.exists():
        raise ModelLoadError(f"{path} has no config.json; expected a Hugging Face Janus checkpoint directory")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{config_file} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_file} is not a JSON object; expected a Hugging Face model config")
    if config.get("model_type") != "janus":
        raise ModelLoadError(
            f"{path} holds a '{config.get('model_type')}' checkpoint; Safe-CB Studio needs a Janus model "
            "(model_type 'janus', e.g. deepseek-community/Janus-Pro-1B or the shipped toy)"
        )
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path} has no *.safetensors weights")
    return config


def _to_float_images(images, size: int) -> torch.Tensor:
    """uint8 [N,H,W,3] array, list of PIL images, or float [N,3,H,W] in [0,1] -> float [N,3,size,size]."""
    if isinstance(images, torch.Tensor):
        x = images.float()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"image tensor must be [N, 3, H, W], got {tuple(x.shape)}")
    else:
        if isinstance(images, list):
            images = np.stack([np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in images])
        arr = np.asarray(images)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3], got {arr.shape}")
        x = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def _to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """Decoder output in [-1, 1], [N,3,H,W] -> uint8 [N,H,W,3]."""
    x = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def resolve_device(name: str | None) -> str:
    """A device for the model: "cpu", "cuda" or "cuda:N", checked here so a wrong one is one clear
    ValueError, not an error from deep inside torch. None or "auto": cuda when available, else cpu."""
    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {name!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: no CUDA GPU is available here (this torch build or machine)")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return name


class JanusBackend:
    """Loads a Janus checkpoint (toy or Janus-Pro) and exposes what Safe-CB needs."""

    def __init__(self, model, tokenizer, processor=None, source: str = ""):
        self.model = model.eval()
        image_processor = getattr(processor, "image_processor", None)
        self.pixel_mean = list(getattr(image_processor, "image_mean", None) or [0.5] * 3)
        self.pixel_std = list(getattr(image_processor, "image_std", None) or [0.5] * 3)
        self.tokenizer = tokenizer
        self.processor = processor
        self.source = source
        cfg = model.config
        self.codebook_size = cfg.vq_config.num_embeddings
        self.grid_size = cfg.vq_config.num_patches
        self.n_tokens = self.grid_size**2
        levels = len(cfg.vq_config.channel_multiplier)
        self.image_size = self.grid_size * 2 ** (levels - 1)
        self.vision_size = cfg.vision_config.image_size
        self.n_understanding_tokens = cfg.vision_config.num_image_tokens
        self.chat = bool(getattr(tokenizer, "chat_template", None)) or bool(
            getattr(processor, "chat_template", None)
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.bos_id = tokenizer.bos_token_id
        self.boi_id = tokenizer.convert_tokens_to_ids(tokenizer.boi_token)
        self.eoi_id = tokenizer.convert_tokens_to_ids(tokenizer.eoi_token)
        self.image_token_id = cfg.image_token_id
        self.yes_ids = self._answer_ids(["yes", "Yes", " yes", " Yes"])
        self.no_ids = self._answer_ids(["no", "No", " no", " No"])
        self.fingerprint = self._fingerprint()

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, device: str | None = None, dtype: torch.dtype | None = None) -> "JanusBackend":
        """Load from a local directory in the Hugging Face layout; never touches the network."""
        from transformers import AutoProcessor, AutoTokenizer, JanusForConditionalGeneration

        path = Path(path)
        _check_model_dir(path)
        device = resolve_device(device)
        dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        try:
            model = JanusForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=dtype)
        except Exception as exc:  # corrupt weights, mismatched shapes, ...
            raise ModelLoadError(f"could not load Janus weights from {path}: {exc}") from exc
        try:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            tokenizer = processor.tokenizer
        except Exception:
            processor = None
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            except Exception as exc:
                raise ModelLoadError(f"could not load the tokenizer from {path}: {exc}") from exc
        for attr in ("boi_token", "eoi_token", "image_token"):
            if getattr(tokenizer, attr, None) is None:
                raise ModelLoadError(f"the tokenizer in {path} defines no {attr}; is this a Janus checkpoint?")
        return cls(model.to(device), tokenizer, processor, source=str(path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _answer_ids(self, variants: list[str]) -> list[int]:
        ids = set()
        for text in variants:
            enc = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(enc) == 1 and enc[0] != self.tokenizer.unk_token_id:
                ids.add(enc[0])
        return sorted(ids)

    def _fingerprint(self) -> str:
        """Identifies the model family: a hash of the frozen VQ decoder, which edits never touch."""
        w = self.model.model.vqmodel.post_quant_conv.weight.detach().float().cpu().numpy()
        return hashlib.sha256(w.tobytes()).hexdigest()[:16]

    # ---------------------------------------------------------------- prompts
    def _words(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def prompt_text(self, prompt: str) -> str:
        """The prompt as the tokenizer gets it: as typed for a chat model, lower-cased for the toy
        (its vocabulary is lower-case words)."""
        return prompt if self.chat else prompt.lower()

    def generation_ids(self, prompt: str) -> list[int]:
        if self.chat:
            conv = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
            owner = self.processor if self.processor is not None else self.tokenizer
            text = owner.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
            ids = self.tokenizer(text).input_ids
            return ids + [self.boi_id]
        return [self.bos_id] + self._words(self.prompt_text(prompt)) + [self.boi_id]

    def unconditional_ids(self, cond: list[int]) -> list[int]:
        """Janus's CFG convention: keep BOS and BOI, replace every other token by padding."""
        return [t if t in (self.bos_id, self.boi_id) else self.pad_id for t in cond]

    def understanding_ids(self, question: str) -> list[int]:
        image = [self.boi_id] + [self.image_token_id] * self.n_understanding_tokens + [self.eoi_id]
        if self.chat:
            placeholder = self.tokenizer.image_token
            conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            owner = self.processor if self.processor is not None else self.tokenizer
            text = owner.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
            before, _, after = text.partition(placeholder)
            return self.tokenizer(before).input_ids + image + self._words(after)
        sep = self.tokenizer.convert_tokens_to_ids(self.tokenizer.sep_token)
        return [self.bos_id] + image + self._words(question) + [sep]

    def vocabulary(self) -> list[str]:
        """The generation tokenizer's whole words (special tokens and pieces with spaces left out), sorted."""
        special = set(self.tokenizer.all_special_tokens)
        words = set()
        for token in self.tokenizer.get_vocab():
            if token in special:
                continue
            word = self.tokenizer.convert_tokens_to_string([token]).strip()
            if word and not any(c.isspace() for c in word):
                words.add(word)
        return sorted(words)

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` the tokenizer maps to its unknown token: the model never sees them (a
        word-level tokenizer, like the toy's, drops them silently). Empty for byte-level tokenizers."""
        unk = self.tokenizer.unk_token_id
        if unk is None:
            return []
        text = self.prompt_text(text)
        unknown = []
        for word in text.split():
            if unk in self._words(word) and word not in unknown:
                unknown.append(word)
        return unknown

    def check_no_special_tokens(self, text: str) -> None:
        """ValueError when `text` holds one of the tokenizer's special tokens (e.g. <begin_of_image>):
        typed into a prompt, it would be read as the control token, not as words. The text is checked
        as typed and as the tokenizer gets it (`prompt_text`), so <BEGIN_OF_IMAGE> is caught too."""
        if not hasattr(self, "_special_tokens"):
            added = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
            names = set(self.tokenizer.all_special_tokens) | {t.content for t in added.values() if t.special}
            self._special_tokens = sorted((t for t in names if len(t) > 1), key=len, reverse=True)
        tokenized = self.prompt_text(text)
        found = next((t for t in self._special_tokens if t in text or t in tokenized), None)
        if found is not None:
            raise ValueError(f"the prompt contains the model's control token {found!r}; remove it")

    def _validate_prompts(self, prompts: list[str], seeds: list[int]) -> None:
        if isinstance(prompts, str):
            raise ValueError("prompts must be a list of strings, not a single string")
        if len(prompts) == 0:
            raise ValueError("the prompt list is empty; give at least one prompt")
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise ValueError("every prompt must be a non-empty string")
            if len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"a prompt has {len(p)} characters; the limit is {MAX_PROMPT_CHARS}")
            self.check_no_special_tokens(p)
        if isinstance(seeds, (str, bytes, int, np.integer)) or not hasattr(seeds, "__len__"):
            raise ValueError(f"seeds must be a list of integers, got {type(seeds).__name__}")
        if len(seeds) == 0:
            raise ValueError("the seed list is empty; give at least one seed")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not (0 <= int(s) < 2**63):
                raise ValueError(f"seeds must be integers in [0, 2^63), got {s!r}")
        if len(prompts) * len(seeds) > MAX_IMAGES_PER_CALL:
            raise ValueError(
                f"{len(prompts)} prompts x {len(seeds)} seeds = {len(prompts) * len(seeds)} images; "
                f"the limit per call is {MAX_IMAGES_PER_CALL}"
            )

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        settings: SamplerSettings | None = None,
        batch_size: int = 64,
        keep_hidden: bool = False,
        decode: bool = True,
        progress=None,
        prefix: torch.Tensor | None = None,
    ) -> GenerationResult:
        """Every prompt x every seed. Row i is (prompts[i // len(seeds)], seeds[i % len(seeds)]).

        An image depends only on its prompt, seed and settings, never on its batch-mates. `prefix`
        [len(prompts), P]: prompt i's images start with those P codes and the model continues them."""
        settings = settings or SamplerSettings()
        self._validate_prompts(prompts, seeds)
        settings.validate(self.codebook_size)
        if not (1 <= batch_size <= 4096):
            raise ValueError(f"batch_size must be in [1, 4096], got {batch_size}")
        cond_cache = {p: self.generation_ids(p) for p in prompts}
        for ids in cond_cache.values():
            self._check_prompt_length(len(ids))
        rows = [(p, int(s)) for p in prompts for s in seeds]
        cond = [cond_cache[p] for p, _ in rows]
        if prefix is not None:
            prefix = torch.as_tensor(prefix, dtype=torch.long)
            if prefix.ndim != 2 or len(prefix) != len(prompts) or prefix.shape[1] > self.n_tokens:
                raise ValueError(f"prefix must be [{len(prompts)} prompts, P <= {self.n_tokens}] codes, "
                                 f"got {tuple(prefix.shape)}")
            if prefix.numel() and (prefix.min() < 0 or prefix.max() >= self.codebook_size):
                raise ValueError(f"prefix codes must be in [0, {self.codebook_size})")
            prefix = prefix.repeat_interleave(len(seeds), dim=0)
        return self._sample_rows(cond, [self.unconditional_ids(c) for c in cond], None, rows, settings, batch_size,
                                 keep_hidden, decode, progress, prefix)

    @torch.no_grad()
    def embed_ids(self, ids: list[int]) -> torch.Tensor:
        """The language model's input embeddings of `ids` [len(ids), hidden], a float32 CPU copy: with
        `generation_ids`, what `generate_from_embeddings` takes, to be changed at will (a soft prompt)."""
        table = self.model.model.language_model.embed_tokens.weight
        return table[torch.as_tensor(ids, device=table.device)].float().cpu().clone()

    @torch.no_grad()
    def generate_from_embeddings(
        self,
        prompt_embeds: list[torch.Tensor],
        seeds: list[int],
        settings: SamplerSettings | None = None,
        batch_size: int = 64,
        uncond_ids: list[list[int]] | None = None,
        labels: list[str] | None = None,
        decode: bool = True,
    ) -> GenerationResult:
        """`generate` with each conditional prompt given as input embeddings [L_i, hidden] instead of text
        (a soft prompt: BOS and BOI included, as `embed_ids(generation_ids(prompt))` gives them). Row i is
        (prompt_embeds[i // len(seeds)], seeds[i % len(seeds)]).

        Classifier-free guidance keeps its usual unconditional branch: `uncond_ids[i]` (by default Janus's
        [BOS, pad, ..., pad, BOI] of the same length, which is `unconditional_ids` of any plain prompt).
        Given the ids' own embeddings, it draws exactly the images `generate` draws from the ids."""
        settings = settings or SamplerSettings()
        settings.validate(self.codebook_size)
        if not (1 <= batch_size <= 4096):
            raise ValueError(f"batch_size must be in [1, 4096], got {batch_size}")
        self._validate_prompts(["x"] * len(prompt_embeds), seeds)
        hidden_size = self.model.config.text_config.hidden_size
        for e in prompt_embeds:
            if not isinstance(e, torch.Tensor) or e.ndim != 2 or e.shape[1] != hidden_size or len(e) < 2:
                raise ValueError(f"every prompt embedding must be a [length >= 2, {hidden_size}] tensor")
            if not torch.isfinite(e).all():
                raise ValueError("prompt embeddings contain NaN or infinite values")
            self._check_prompt_length(len(e))
        if uncond_ids is None:
            uncond_ids = [[self.bos_id] + [self.pad_id] * (len(e) - 2) + [self.boi_id] for e in prompt_embeds]
        if len(uncond_ids) != len(prompt_embeds):
            raise ValueError(f"{len(uncond_ids)} unconditional id rows for {len(prompt_embeds)} prompt embeddings")
        labels = labels or [f"<embeddings {i}>" for i in range(len(prompt_embeds))]
        index = [(i, int(s)) for i in range(len(prompt_embeds)) for s in seeds]
        rows = [(labels[i], s) for i, s in index]
        cond = [[self.pad_id] * len(prompt_embeds[i]) for i, _ in index]  # only their lengths count
        return self._sample_rows(cond, [uncond_ids[i] for i, _ in index], [prompt_embeds[i] for i, _ in index],
                                 rows, settings, batch_size, False, decode, None)

    def _check_prompt_length(self, n_ids: int) -> None:
        limit = self.model.config.text_config.max_position_embeddings
        if n_ids + self.n_tokens > limit:
            raise ValueError(
                f"prompt is {n_ids} tokens; with {self.n_tokens} image tokens it exceeds the model's {limit} positions"
            )

    def _sample_rows(self, cond, uncond, embeds, rows, settings, batch_size, keep_hidden, decode, progress,
                     prefix: torch.Tensor | None = None) -> GenerationResult:
        """Sample row i from cond[i] (or embeds[i] in its place), uncond[i] and seed rows[i][1], in batches."""
        tokens, hidden = [], []
        for start in range(0, len(rows), batch_size):
            part = slice(start, start + batch_size)
            t, h = sample_image_tokens(
                self.model, cond[part], uncond[part], [s for _, s in rows[part]], self.n_tokens, settings,
                self.pad_id, keep_hidden, None if embeds is None else embeds[part],
                prefix=None if prefix is None else prefix[part],
            )
            tokens.append(t.cpu().clone())  # clone: plain tensors, not inference-mode ones
            if keep_hidden:
                hidden.append(h.float().cpu().clone())
            if progress is not None:
                progress(min(start + batch_size, len(rows)), len(rows))
        all_tokens = torch.cat(tokens)
        images = self.decode(all_tokens) if decode else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return GenerationResult(
            tokens=all_tokens,
            images=images,
            prompts=[p for p, _ in rows],
            seeds=[s for _, s in rows],
            hidden=torch.cat(hidden) if keep_hidden else None,
        )

    def image_logits(self, prompt_embeds: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
        """Generation-head logits [B, n_tokens, K] when grid b is teacher-forced after prompt embeddings
        [B, L, hidden] (all rows one length, no padding): row j predicts token j. Differentiable in
        `prompt_embeds` (the model's weights are not trained here); without guidance (see `generate`)."""
        grids = torch.as_tensor(grids)
        if prompt_embeds.ndim != 3 or grids.shape != (len(prompt_embeds), self.n_tokens):
            raise ValueError(f"need embeddings [B, L, hidden] and grids [B, {self.n_tokens}], got "
                             f"{tuple(prompt_embeds.shape)} and {tuple(grids.shape)}")
        inner = self.model.model
        lm = inner.language_model
        dtype = lm.embed_tokens.weight.dtype
        codes = generator_input_table(inner)[grids[:, :-1].to(self.device)].to(dtype)
        x = torch.cat([prompt_embeds.to(self.device, dtype), codes], 1)
        hidden = lm(inputs_embeds=x).last_hidden_state[:, prompt_embeds.shape[1] - 1 :]
        return inner.generation_head(hidden).float()

    @torch.no_grad()
    def teacher_forced_hidden(self, prompts: list[str], grids: torch.Tensor, batch_size: int = 64,
                              unconditional: bool = False) -> torch.Tensor:
        """Generator hidden states [N, n_tokens, hidden] when row i's grid is forced after prompts[i]:
        state j is the one that predicts token j (what `generate(keep_hidden=True)` keeps). With
        `unconditional`, after prompt i's unconditional branch (`unconditional_ids`), as guidance draws it.

        Rows are grouped by prompt length, so no padding is needed."""
        grids = torch.as_tensor(grids)
        if grids.ndim != 2 or grids.shape[1] != self.n_tokens or len(grids) != len(prompts):
            raise ValueError(f"grids must be [len(prompts), {self.n_tokens}], got {tuple(grids.shape)}")
        inner = self.model.model
        lm = inner.language_model
        table = generator_input_table(inner)
        ids = [self.generation_ids(p) for p in prompts]
        if unconditional:
            ids = [self.unconditional_ids(row) for row in ids]
        out = torch.empty(len(prompts), self.n_tokens, lm.config.hidden_size)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            by_length.setdefault(len(row), []).append(i)
        for length, rows in by_length.items():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                prompt = lm.embed_tokens(torch.tensor([ids[i] for i in chunk], device=self.device))
                codes = table[grids[chunk, :-1].to(self.device)].to(prompt.dtype)
                hidden = lm(inputs_embeds=torch.cat([prompt, codes], 1)).last_hidden_state
                out[chunk] = hidden[:, length - 1 :].float().cpu()
        return out

    @torch.no_grad()
    def head_keys(self, hidden: torch.Tensor) -> torch.Tensor:
        """Inputs of the generation head's last linear layer (the keys a generator edit acts on)."""
        head = self.model.model.generation_head
        param = head.proj_out.weight
        return head.activation_fn(head.proj_out(hidden.to(param.device, param.dtype))).float().cpu()

    @torch.no_grad()
    def head_logits(self, keys: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Generation-head logits for keys [.., h] with the current (or the given) last layer, computed
        on the model's device (at Janus-Pro's shape a [16384, 2048] product per key), returned on CPU."""
        # the current head is read where it lives, not copied to the CPU and back
        weight = self._param("gen_head").detach() if weight is None else weight
        bias = self._param("gen_head_bias").detach() if bias is None else bias
        device = self.device
        return (keys.float().to(device) @ weight.to(device, torch.float32).T + bias.to(device, torch.float32)).cpu()

    def decode_with(self, codebook: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Differentiable decode through a given decoder codebook [K, d]: pixels in [-1, 1], [N, 3, H, W]."""
        vq = self.model.model.vqmodel
        param = vq.post_quant_conv.weight
        rows = F.normalize(codebook.to(param.device, param.dtype)[tokens.to(param.device)], dim=-1)
        grid = rows.view(len(tokens), self.grid_size, self.grid_size, -1).permute(0, 3, 1, 2)
        return vq.decoder(vq.post_quant_conv(grid))

    # ---------------------------------------------------------------- tokenizer
    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Visual codes [N, n_tokens] -> uint8 images [N, H, W, 3] through the (possibly edited) codebook."""
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.n_tokens:
            raise ValueError(f"tokens must be [N, {self.n_tokens}], got {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.codebook_size):
            raise ValueError(f"token ids must be in [0, {self.codebook_size})")
        vq = self.model.model.vqmodel
        out = []
        for start in range(0, len(tokens), batch_size):
            t = tokens[start : start + batch_size].to(self.device)
            out.append(_to_uint8(vq.decode(t)))
        return np.concatenate(out) if out else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    def decode_through(self, decoder: torch.Tensor, tokens: torch.Tensor) -> np.ndarray:
        """`decode` with `decoder` [K, d] in place of the current decoder codebook, which is put back
        after: e.g. an edited model's tokens through the original (public) decoder."""
        current = self.get_codebook("decoder")
        self.set_codebook("decoder", decoder)
        try:
            return self.decode(tokens)
        finally:
            self.set_codebook("decoder", current)

    @torch.no_grad()
    def encode(self, images, batch_size: int = 256) -> torch.Tensor:
        """Images -> visual codes [N, n_tokens], nearest codebook row by cosine similarity.

        Decoding L2-normalises rows, so only a row's direction matters; HF's `encode` compares
        raw rows, which disagrees with decoding once a row's norm changes. We normalise both."""
        x = _to_float_images(images, self.image_size)
        vq = self.model.model.vqmodel
        book = F.normalize(vq.quantize.embedding.weight.float(), dim=-1)
        out = []
        for start in range(0, len(x), batch_size):
            px = (x[start : start + batch_size] * 2 - 1).to(self.device, vq.quant_conv.weight.dtype)
            z = vq.quant_conv(vq.encoder(px)).float()
            z = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), dim=-1)
            out.append((z @ book.T).argmax(-1).view(len(px), -1).cpu())
        return torch.cat(out)

    # ---------------------------------------------------------------- understanding
    def _pixel_values(self, images) -> torch.Tensor:
        x = _to_float_images(images, self.vision_size)
        mean = torch.tensor(self.pixel_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def answer_logits(self, images, question: str, batch_size: int = 128) -> torch.Tensor:
        """Next-token logits after asking `question` about each image: [N, vocab]."""
        ids = torch.tensor(self.understanding_ids(question))
        pixels = self._pixel_values(images)
        dtype = self.model.model.vision_model.embeddings.patch_embedding.weight.dtype
        out = []
        for start in range(0, len(pixels), batch_size):
            px = pixels[start : start + batch_size].to(self.device, dtype)
            batch_ids = ids.to(self.device).expand(len(px), -1)
            logits = self.model(input_ids=batch_ids, pixel_values=px, logits_to_keep=1).logits[:, -1]
            out.append(logits.float().cpu())
        return torch.cat(out)

    def judge(self, images, question: str = SAFETY_QUESTION, batch_size: int = 128) -> np.ndarray:
        """s(x) = P(yes | image, question) renormalised over {yes, no}, from the model's own answer."""
        if not self.yes_ids or not self.no_ids:
            raise ValueError("the tokenizer has no single-token 'yes'/'no'; cannot self-judge")
        logits = self.answer_logits(images, question, batch_size)
        yes = logits[:, self.yes_ids].logsumexp(-1)
        no = logits[:, self.no_ids].logsumexp(-1)
        return torch.sigmoid(yes - no).numpy()

    @torch.no_grad()
    def caption(self, images, max_words: int = 16, batch_size: int = 128) -> list[str]:
        """Greedy caption from the understanding path (the toy is trained to describe its scenes)."""
        question = CAPTION_QUESTION
        pixels = self._pixel_values(images)
        prefix = torch.tensor(self.understanding_ids(question))
        eos = self.tokenizer.eos_token_id
        dtype = self.model.model.vision_model.embeddings.patch_embedding.weight.dtype
        texts = []
        for start in range(0, len(pixels), batch_size):
            px = pixels[start : start + batch_size].to(self.device, dtype)
            ids = prefix.to(self.device).expand(len(px), -1).clone()
            done = torch.zeros(len(px), dtype=torch.bool, device=self.device)
            words = []
            for step in range(max_words):  # short answers: recomputing the prefix is cheap enough here
                logits = self.model(input_ids=ids, pixel_values=px, logits_to_keep=1).logits[:, -1]
                nxt = logits.argmax(-1)
                done |= nxt == eos
                words.append(torch.where(done, torch.full_like(nxt, eos), nxt))
                if bool(done.all()):
                    break
                ids = torch.cat([ids, nxt[:, None]], 1)
            seq = torch.stack(words, 1).cpu().tolist()
            for row in seq:
                row = row[: row.index(eos)] if eos in row else row
                texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    # ---------------------------------------------------------------- codebooks
    def _param(self, name: str) -> torch.nn.Parameter:
        if name not in CODEBOOK_PATHS:
            raise KeyError(f"unknown codebook '{name}'; choose one of {sorted(CODEBOOK_PATHS)}")
        obj = self.model
        for part in CODEBOOK_PATHS[name].split("."):
            obj = getattr(obj, part)
        return obj

    def get_codebook(self, name: str) -> torch.Tensor:
        """A float32 CPU copy of a codebook (editing the copy changes nothing)."""
        return self._param(name).detach().float().cpu().clone()

    def codebooks(self) -> dict[str, torch.Tensor]:
        return {name: self.get_codebook(name) for name in CODEBOOK_PATHS}

    def _check_codebook(self, name: str, value: torch.Tensor) -> None:
        target = self._param(name)
        if not isinstance(value, torch.Tensor):
            raise CodebookError(f"codebook '{name}' must be a tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise CodebookError(f"codebook '{name}' must be floating point, got {value.dtype}")
        if tuple(value.shape) != tuple(target.shape):
            raise CodebookError(
                f"codebook '{name}' has shape {tuple(value.shape)}; this model needs {tuple(target.shape)}"
            )
        if not torch.isfinite(value).all():
            raise CodebookError(f"codebook '{name}' contains NaN or infinite values")
        for dtype in sorted({torch.float32, target.dtype} - {value.dtype}, key=str):  # how it is read
            if not torch.isfinite(value.to(dtype)).all():
                raise CodebookError(f"codebook '{name}' holds values too large for "
                                    f"{str(dtype).removeprefix('torch.')} (largest magnitude "
                                    f"{float(value.abs().max()):.3g}): this model would read them as infinite.")

    @torch.no_grad()
    def set_codebooks(self, values: dict[str, torch.Tensor]) -> None:
        """Replace codebooks; all are validated before any is written, so a bad one changes nothing."""
        for name, value in values.items():
            self._check_codebook(name, value)
        for name, value in values.items():
            param = self._param(name)
            param.copy_(value.to(param.device, param.dtype))

    def set_codebook(self, name: str, value: torch.Tensor) -> None:
        self.set_codebooks({name: value})

    def save_codebooks(self, path: str | Path, names: list[str] | None = None, metadata: dict | None = None) -> Path:
        tensors = {name: self.get_codebook(name).contiguous() for name in (names or list(CODEBOOK_PATHS))}
        meta = {"format": SNAPSHOT_FORMAT, "fingerprint": self.fingerprint, "source": self.source}
        meta.update({k: str(v) for k, v in (metadata or {}).items()})
        return save_safetensors(path, tensors, metadata=meta)  # a crash mid-write never leaves a half-written snapshot

    def read_codebook_file(self, path: str | Path) -> dict[str, torch.Tensor]:
        """Read and fully validate a snapshot without applying it."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise CodebookError(f"codebook file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:
            raise CodebookError(f"{path} is not a readable safetensors file: {exc}") from exc
        unknown = set(tensors) - set(CODEBOOK_PATHS)
        if unknown:
            raise CodebookError(f"{path} holds unknown tensors {sorted(unknown)}; expected {sorted(CODEBOOK_PATHS)}")
        if not tensors:
            raise CodebookError(f"{path} holds no codebook tensors")
        fp = meta.get("fingerprint")
        if fp is not None and fp != self.fingerprint:
            raise CodebookError(
                f"{path} was saved from another model (fingerprint {fp}, this model is {self.fingerprint})"
            )
        for name, value in tensors.items():
            self._check_codebook(name, value)
        return tensors

    def load_codebooks(self, path: str | Path) -> dict[str, torch.Tensor]:
        tensors = self.read_codebook_file(path)
        self.set_codebooks(tensors)
        return tensors
