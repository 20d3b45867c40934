"""Small pieces several tabs share: run and round pickers, image upscaling, input errors."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from db import Store

DISPLAY_PX = 256  # small images are upscaled (nearest neighbour) to about this size
BLUR_RADIUS = 3.0  # on the 32-pixel toy image: shapes stay guessable, details do not


class InputError(ValueError):
    """Something the user typed or picked is unusable; the message says what to change."""


def run_label(run) -> str:
    return f"#{run.id} · {run.name} · {run.status}"


def run_choices(store: Store) -> list[tuple[str, int]]:
    """(label, run id) for a dropdown, newest first."""
    return [(run_label(r), r.id) for r in store.list_runs()]


def round_choices(store: Store, run_id: int | None, with_original: bool = False) -> list[tuple[str, int]]:
    """(label, round index) of a run's finished rounds; -1 stands for the unedited model."""
    out = [("original (unedited)", -1)] if with_original else []
    if run_id is None:
        return out
    for r in store.list_rounds(int(run_id)):
        m = r.metrics
        if m.get("imported"):
            out.append((f"imported codebook ({m.get('file', '')})", r.index))
            continue
        flag = "" if m.get("accepted", True) else " · rejected"
        out.append((f"round {r.index} · self-unsafe {m.get('self_unsafe', float('nan')):.2f}{flag}", r.index))
    return out


def parse_run_id(value) -> int:
    if value in (None, ""):
        raise InputError("Pick a run first (start one in the Run tab).")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"Not a run id: {value!r}.") from None


def upscale(image: np.ndarray, target: int = DISPLAY_PX) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor so a 32×32 image shows as crisp 256×256 pixels."""
    factor = max(1, round(target / max(image.shape[:2])))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def png_to_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def blurred(image: np.ndarray) -> np.ndarray:
    """A flagged image as reviewers first see it: blurred until they choose to reveal it."""
    radius = BLUR_RADIUS * max(image.shape[:2]) / 32
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def name_tag(image: np.ndarray, text: str) -> np.ndarray:
    """The image with `text` on a dark band across its top, so a side of a slider says what it is
    (on a projector too). Same shape as the image."""
    picture = Image.fromarray(image).convert("RGB")
    size = max(12, picture.height // 16)
    font = ImageFont.load_default(size=size)
    band = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(band)
    draw.rectangle([0, 0, picture.width, int(size * 1.5)], fill=(0, 0, 0, 170))
    draw.text((size // 3, size // 5), text, fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(picture.convert("RGBA"), band).convert("RGB"))
