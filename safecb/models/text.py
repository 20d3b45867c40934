"""The model's own text path: greedy text-in, text-out generation with no image, used to propose
safe rewrites of real prompts."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .backend import JanusBackend


def text_generation_ids(backend: JanusBackend, instruction: str) -> list[int]:
    """Token ids that ask the language model `instruction` with no image (text-in, text-out)."""
    if backend.chat:
        conv = [{"role": "user", "content": [{"type": "text", "text": instruction}]}]
        owner = backend.processor if backend.processor is not None else backend.tokenizer
        text = owner.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        if getattr(backend.processor, "use_default_system_prompt", False):
            # what JanusProcessor does for text generation: Janus-Pro's chats start with it
            from transformers.models.janus.processing_janus import DEFAULT_SYSTEM_PROMPT

            text = DEFAULT_SYSTEM_PROMPT + text
        return backend.tokenizer(text).input_ids
    # the toy's layout: its questions are lower-case words between BOS and SEP
    sep = backend.tokenizer.sep_token
    tail = [backend.tokenizer.convert_tokens_to_ids(sep)] if sep is not None else []
    words = backend.tokenizer(instruction.lower(), add_special_tokens=False).input_ids
    return [backend.bos_id] + words + tail


@torch.no_grad()
def generate_text(backend: JanusBackend, instructions: list[str], max_new_tokens: int = 64, batch_size: int = 8,
                  after_batch: Callable[[int, int], None] | None = None) -> list[str]:
    """Greedy answers of the language model, stopped at EOS; prompts are left-padded into batches.
    `after_batch(answered, total)` is called after each batch (progress; it may raise to stop)."""
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens and batch_size must be at least 1, got {max_new_tokens}, {batch_size}")
    language_model = backend.model.model.language_model
    lm_head = backend.model.lm_head
    eos = backend.tokenizer.eos_token_id
    answers = []
    for start in range(0, len(instructions), batch_size):
        rows = [text_generation_ids(backend, text) for text in instructions[start : start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[backend.pad_id] * (width - len(r)) + r for r in rows], device=backend.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=backend.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = language_model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        done = torch.zeros(len(rows), dtype=torch.bool, device=backend.device)
        steps = []
        for _ in range(max_new_tokens):
            nxt = lm_head(out.last_hidden_state[:, -1]).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            steps.append(nxt)
            done |= nxt == eos
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            positions = positions[:, -1:] + 1
            out = language_model(input_ids=nxt[:, None], attention_mask=mask, position_ids=positions,
                                 past_key_values=out.past_key_values, use_cache=True)
        for row in torch.stack(steps, 1).cpu().tolist():
            row = row[: row.index(eos)] if eos in row else row
            answers.append(backend.tokenizer.decode(row, skip_special_tokens=True).strip())
        if after_batch is not None:
            after_batch(len(answers), len(instructions))
    return answers


