"""Pieces every toy training stage shares: the learning-rate schedule, pixel scaling, the
tokenizer's cosine quantisation, and the token layout and loss of the understanding tasks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .toy import BOI, BOS, EOI, EOS, IMAGE_TOKEN, SEP


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def to_pixels(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def quantize(vq, pixels: torch.Tensor):
    """Cosine VQ: unit-norm latents and codes; straight-through gradient to the encoder."""
    z = F.normalize(vq.quant_conv(vq.encoder(pixels)), dim=1)
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    book = F.normalize(vq.quantize.embedding.weight, dim=-1)
    idx = (flat @ book.T).argmax(-1)
    q = book[idx]
    return z, flat, q, idx


class SequenceBuilder:
    """Token ids for the three training tasks, in the exact layout the backend uses at run time."""

    def __init__(self, tokenizer, n_understanding_tokens: int):
        ids = tokenizer.convert_tokens_to_ids
        self.tok = tokenizer
        self.pad, self.bos, self.eos = tokenizer.pad_token_id, ids(BOS), ids(EOS)
        self.boi, self.eoi, self.sep, self.img = ids(BOI), ids(EOI), ids(SEP), ids(IMAGE_TOKEN)
        self.n_img = n_understanding_tokens
        self.yes, self.no = ids("yes"), ids("no")

    def words(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def generation_prefix(self, text: str, blank: bool) -> list[int]:
        body = self.words(text)
        if blank:  # the unconditional prompt: BOS and BOI kept, the rest padding
            body = [self.pad] * len(body)
        return [self.bos] + body + [self.boi]

    def understanding(self, question: str, answer: list[int]) -> tuple[list[int], int]:
        """Sequence and the index of the first answer token."""
        prefix = [self.bos, self.boi] + [self.img] * self.n_img + [self.eoi] + self.words(question) + [self.sep]
        return prefix + answer + [self.eos], len(prefix)


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


def understanding_loss(model, rows: list[tuple[list[int], int]], pixel_values: torch.Tensor, pad: int) -> torch.Tensor:
    seq_ids, mask = left_pad([r for r, _ in rows], pad)
    labels = torch.full_like(seq_ids, -100)
    for i, (r, start) in enumerate(rows):
        offset = seq_ids.shape[1] - len(r)
        labels[i, offset + start : offset + len(r)] = torch.tensor(r[start:])
    device = pixel_values.device
    seq_ids, mask, labels = seq_ids.to(device), mask.to(device), labels.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=seq_ids, pixel_values=pixel_values, attention_mask=mask, position_ids=positions).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
