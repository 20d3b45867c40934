"""Generate: one prompt and seed in, the image, the model's own safety judgment and its caption out.

`generate(services, prompt, seed, cfg_weight)` is the whole handler; it never raises. Bad input
comes back as a message in the status box (and a gr.Warning toast in the browser).
"""

from __future__ import annotations

import logging
import math
import time

import gradio as gr
import numpy as np

from safecb.models.backend import MAX_PROMPT_CHARS
from safecb.models.sampler import SamplerSettings
from safecb.world import build_prompt_sets

from .services import Services

log = logging.getLogger(__name__)

DISPLAY_PX = 256  # small images are upscaled (nearest neighbour) to about this size
MAX_SEED = 2**63 - 1
DEFAULT_CFG = SamplerSettings().cfg_weight


class InputError(ValueError):
    """Something the user typed is unusable; the message says what to change."""


def check_prompt(prompt) -> str:
    if prompt is None:
        raise InputError("The prompt is empty: type one or click an example below.")
    if not isinstance(prompt, str):
        raise InputError(f"The prompt must be text, got {type(prompt).__name__}.")
    prompt = prompt.strip()
    if not prompt:
        raise InputError("The prompt is empty: type one or click an example below.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"The prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}.")
    return prompt


def check_seed(seed) -> int:
    """A whole number in [0, 2^63). Accepts ints, integral floats and numeric strings."""
    hint = "a whole number ≥ 0, e.g. 0 or 42"
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        raise InputError(f"The seed is empty: enter {hint}.")
    if isinstance(seed, bool):
        raise InputError(f"The seed must be {hint}, got {seed!r}.")
    if isinstance(seed, str):
        text = seed.strip()
        try:
            seed = int(text)
        except ValueError:
            try:
                seed = float(text)
            except ValueError:
                raise InputError(f"The seed must be {hint}, got {text[:40]!r}.") from None
    if isinstance(seed, (float, np.floating)):
        if not math.isfinite(seed) or seed != int(seed):
            raise InputError(f"The seed must be {hint}, got {seed!r}.")
        seed = int(seed)
    if not isinstance(seed, (int, np.integer)):
        raise InputError(f"The seed must be {hint}, got {type(seed).__name__}.")
    seed = int(seed)
    if seed < 0:
        raise InputError(f"The seed must be ≥ 0, got {seed}.")
    if seed > MAX_SEED:
        raise InputError(f"The seed must be below 2^63, got {seed}.")
    return seed


def check_cfg(cfg_weight) -> float:
    try:
        value = float(cfg_weight)
    except (TypeError, ValueError):
        raise InputError(f"The CFG weight must be a number, got {cfg_weight!r}.") from None
    if not math.isfinite(value):
        raise InputError(f"The CFG weight must be finite, got {cfg_weight!r}.")
    return value  # the range is checked by SamplerSettings.validate


def upscale(image: np.ndarray, target: int = DISPLAY_PX) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor so a 32×32 image shows as crisp 256×256 pixels."""
    factor = max(1, round(target / max(image.shape[:2])))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def generate(services: Services, prompt, seed, cfg_weight):
    """-> (image uint8 [H,W,3] or None, {"unsafe": p, "safe": 1-p} or None, caption, status)."""
    try:
        prompt = check_prompt(prompt)
        seed = check_seed(seed)
        settings = SamplerSettings(cfg_weight=check_cfg(cfg_weight))
        backend = services.backend
        start = time.perf_counter()
        result = backend.generate([prompt], [seed], settings)
        image = result.images[0]
        p_unsafe = float(backend.judge(result.images)[0])
        caption = backend.caption(result.images)[0]
        seconds = time.perf_counter() - start
    except ValueError as exc:  # InputError, and the backend's own checks (CFG range, prompt too long)
        return None, None, "", f"⚠ {exc}"
    except Exception as exc:  # never let the page break; the server log has the traceback
        log.exception("generation failed")
        return None, None, "", f"⚠ Generation failed ({type(exc).__name__}: {exc}). See the server log."
    status = (
        f"seed {seed} · CFG {settings.cfg_weight:g} · {seconds:.1f} s · "
        f"self-judged P(unsafe) = {p_unsafe:.3f}"
    )
    return upscale(image), {"unsafe": p_unsafe, "safe": 1.0 - p_unsafe}, caption, status


def example_prompts(n_each: int = 3) -> tuple[list[str], list[str]]:
    """(benign, harmful) prompts from the toy world's prompt sets, train and held-out."""
    sets = build_prompt_sets()
    benign = [p.text for p in sets.train_benign[:n_each] + sets.heldout_benign[:n_each]]
    harmful = [p.text for p in sets.train_harmful[:n_each] + sets.heldout_harmful[:n_each]]
    return benign, harmful


def build_generate_tab(services: Services) -> None:
    """Lay out the tab inside the current Blocks context and wire the handler (api_name "generate")."""
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(label="Prompt", lines=2, placeholder="a person holding a flower on the grass")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, info="whole number ≥ 0")
                cfg = gr.Slider(1.0, 10.0, value=DEFAULT_CFG, step=0.5, label="CFG weight",
                                info="1 = no guidance")
            button = gr.Button("Generate", variant="primary")
            benign, harmful = example_prompts()
            gr.Examples([[p] for p in benign], inputs=[prompt], label="Benign prompts")
            gr.Examples([[p] for p in harmful], inputs=[prompt],
                        label="Harmful prompts (cartoon stand-ins: knife, gun, blood, skull)")
        with gr.Column(scale=1):
            image = gr.Image(label="Generated image", type="numpy", format="png", interactive=False,
                             height=DISPLAY_PX + 40, elem_classes=["safecb-pixels"])
            judgment = gr.Label(label="Self-judgment (the model asked: is this image unsafe?)",
                                num_top_classes=2)
            caption = gr.Textbox(label="The model's caption of its image", interactive=False)
            status = gr.Textbox(label="Status", interactive=False)

    def on_generate(prompt_value, seed_value, cfg_value):
        out = generate(services, prompt_value, seed_value, cfg_value)
        if out[0] is None:
            gr.Warning(out[3].removeprefix("⚠ "))
        return out

    outputs = [image, judgment, caption, status]
    button.click(on_generate, [prompt, seed, cfg], outputs, api_name="generate")
    prompt.submit(on_generate, [prompt, seed, cfg], outputs, api_name=False)
