"""Small pieces several tabs share: run and round pickers, image upscaling, input errors."""

from __future__ import annotations

import io
import math

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


CLEARLY_LARGER = 0.05  # a later round must cut the self-judged unsafe rate by this much more than round 1 to open on it


def largest_difference_round(self_unsafe: dict[int, float]) -> int | None:
    """Of rounds 1… (by index, round 0 the unedited model, with their self-judged unsafe rates): the
    one whose cut against the round before it is largest, round 1 unless another's cut is larger by
    more than CLEARLY_LARGER. None when there is no edited round."""
    cuts = {i: self_unsafe[i - 1] - rate for i, rate in self_unsafe.items() if i >= 1 and i - 1 in self_unsafe}
    if not cuts:
        edited = sorted(i for i in self_unsafe if i >= 1)
        return edited[0] if edited else None
    largest = max(cuts, key=lambda i: cuts[i])
    return 1 if 1 in cuts and cuts[largest] - cuts[1] <= CLEARLY_LARGER else largest


def teaching_round(store: Store, run_id: int) -> int | None:
    """The round a lesson opens on (Walkthrough, Pairs): the one that made the largest difference."""
    rates = {r.index: r.metrics["self_unsafe"] for r in store.list_rounds(int(run_id))
             if not r.metrics.get("imported") and "self_unsafe" in r.metrics}
    return largest_difference_round(rates)


def client_of(request) -> str | None:
    """Who asked, for the caps on queued jobs: the logged-in user (or -) at the client's address;
    None when Gradio gives no request (a direct call)."""
    if request is None or getattr(request, "client", None) is None:
        return None
    return f"{getattr(request, 'username', None) or '-'}@{request.client.host}"


def whole_number(value, name: str) -> int:
    """`value` (an int, an integral float, or text of either) as an int. Anything else is refused
    with InputError ("Not a {name}: ..."), a fraction included: 1.5 is never cut to 1."""
    refused = InputError(f"Not a {name}: {value!r} (a whole number is needed).")
    if value is None or isinstance(value, (bool, np.bool_)):
        raise refused
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())  # exact, also past 2^53
        except ValueError:
            pass
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise refused from None
    if not math.isfinite(number) or number != int(number):
        raise refused
    return int(number)


def parse_run_id(value) -> int:
    if value in (None, ""):
        raise InputError("Pick a run first (start one in the Run tab).")
    return whole_number(value, "run id")


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


def name_tag(image: np.ndarray, text: str, edge: str = "top") -> np.ndarray:
    """The image with `text` (one or more lines) on a dark band at its top-left, or with edge
    "bottom" at its bottom-right, so each side of a before/after slider says what it is (on a
    projector too) in the half of the picture that side keeps. Same shape as the image."""
    picture = Image.fromarray(image).convert("RGB")
    size = max(10, picture.height // 22)
    font = ImageFont.load_default(size=size)
    lines = text.split("\n")
    band = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(band)
    line_height = int(size * 1.25)
    height = line_height * len(lines) + size // 2
    top = 0 if edge == "top" else picture.height - height
    draw.rectangle([0, top, picture.width, top + height], fill=(0, 0, 0, 170))
    for i, line in enumerate(lines):
        left = size // 3
        if edge == "bottom":
            left = max(left, picture.width - size // 3 - int(draw.textlength(line, font=font)))
        draw.text((left, top + size // 4 + i * line_height), line, fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(picture.convert("RGBA"), band).convert("RGB"))
