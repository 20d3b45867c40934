"""Small pieces several tabs share: run and round pickers, image upscaling, input errors."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

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
