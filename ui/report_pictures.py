"""The report's pictures, drawn with PIL from what the export gathered (`report.RoundImages`): the
before/after strip (the unedited model against the exported round, the model-level column for a
decoder round) and the labelled grid of residual harmful cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .report import SELF_JUDGE, Case, RoundImages, one_line, score_cell

TILE_PX = 160  # an image's side in the pictures (the toy's 32 pixels, 5 times, nearest neighbour)
FONT_PX = 12
GAP_PX = 6
INK, BAND, PAPER, MISSING = (240, 240, 240), (28, 28, 28), (255, 255, 255), (150, 150, 150)


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=FONT_PX)


def fitted(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    """`text` on one line, cut with "…" to fit `width` pixels."""
    text = one_line(text)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def wrapped(text: str, width: int, max_lines: int) -> list[str]:
    """`text` broken at spaces into at most `max_lines` lines of `width` pixels, the last cut with
    "…" when the text goes on."""
    font, draw = _font(), ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    words = one_line(text).split(" ")
    while words and len(lines) < max_lines - 1:
        line = words.pop(0)
        while words and draw.textlength(f"{line} {words[0]}", font=font) <= width:
            line += " " + words.pop(0)
        lines.append(line)
    return lines + ([" ".join(words)] if words else [])


def text_band(lines: list[str], width: int) -> np.ndarray:
    """Light text on a dark band `width` pixels wide, one line each, each cut to fit."""
    font = _font()
    line_px = round(FONT_PX * 1.35)
    band = Image.new("RGB", (width, line_px * len(lines) + 6), BAND)
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        draw.text((4, 3 + i * line_px), fitted(draw, line, width - 8, font), fill=INK, font=font)
    return np.asarray(band)


def tile(image: np.ndarray | None) -> np.ndarray:
    """The image enlarged to TILE_PX (nearest neighbour), or a grey square saying it is missing."""
    if image is None:
        square = Image.new("RGB", (TILE_PX, TILE_PX), MISSING)
        ImageDraw.Draw(square).text((6, TILE_PX // 2 - FONT_PX), "no image", fill=INK, font=_font())
        return np.asarray(square)
    return np.asarray(Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
                      .resize((TILE_PX, TILE_PX), Image.NEAREST))


def beside(parts: list[np.ndarray], gap: int = 0) -> np.ndarray:
    """Parts side by side, top-aligned, on paper."""
    height = max(p.shape[0] for p in parts)
    width = sum(p.shape[1] for p in parts) + gap * (len(parts) - 1)
    out = np.full((height, width, 3), PAPER, np.uint8)
    left = 0
    for p in parts:
        out[: p.shape[0], left : left + p.shape[1]] = p
        left += p.shape[1] + gap
    return out


def above(parts: list[np.ndarray], gap: int = 0) -> np.ndarray:
    """Parts one under another, left-aligned, on paper."""
    width = max(p.shape[1] for p in parts)
    height = sum(p.shape[0] for p in parts) + gap * (len(parts) - 1)
    out = np.full((height, width, 3), PAPER, np.uint8)
    top = 0
    for p in parts:
        out[top : top + p.shape[0], : p.shape[1]] = p
        top += p.shape[0] + gap
    return out


def headed(title: str, image: np.ndarray | None) -> np.ndarray:
    return above([text_band([title], TILE_PX), tile(image)])


def case_tile(number: int, case: Case, judges: list[str], edits_decoder: bool) -> np.ndarray:
    """One residual case: its image(s) over its label (number, seed, prompt, each judge's score)."""
    if edits_decoder:
        pictures = beside([headed("served", case.served), headed("model-level", case.model_level)])
    else:
        pictures = tile(case.served)
    scores = [f"{judge}: {score_cell(case, judge)}" for judge in judges]
    width = pictures.shape[1]
    prompt = wrapped(case.prompt, width - 8, 2)
    prompt += [""] * (2 - len(prompt))  # every tile of the grid the same height
    label = text_band([f"#{number} · seed {case.seed} · generation {case.generation_id}", *prompt, *scores,
                       f"{SELF_JUDGE}: {case.self_score:.3f}"], width)
    return above([pictures, label])


def residual_picture(images: RoundImages, columns: int = 4) -> np.ndarray:
    """The residual cases as a labelled grid (half as many columns when each case has two images)."""
    columns = max(1, columns // 2) if images.edits_decoder else columns
    tiles = [case_tile(i, case, list(images.judges), images.edits_decoder)
             for i, case in enumerate(images.residual, 1)]
    rows = [beside(tiles[start : start + columns], GAP_PX) for start in range(0, len(tiles), columns)]
    return above(rows, GAP_PX)


def examples_picture(images: RoundImages, exported: int) -> np.ndarray:
    """Before and after: per row the unedited model's image, its safe counterpart, the exported
    round's served image and, when the round edits the decoder, its model-level image; column titles
    on top, each row's prompt and seed under it."""
    titles = [["unedited model", "round 0"], ["safe counterpart", "round 0, same seed"],
              [f"after round {exported}", "served" if images.edits_decoder else "same prompt and seed"]]
    if images.edits_decoder:
        titles.append([f"after round {exported}", "model-level"])
    header = beside([text_band(t, TILE_PX) for t in titles], GAP_PX)
    rows = []
    for row in images.before_after:
        shown = [row.before, row.counterpart, row.after] + ([row.after_model_level] if images.edits_decoder else [])
        strip = beside([tile(image) for image in shown], GAP_PX)
        rows.append(above([strip, text_band([f"seed {row.seed} · {row.prompt}"], strip.shape[1])]))
    return above([header, *rows], GAP_PX)


def png(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(image).save(path, format="PNG")
    return path
