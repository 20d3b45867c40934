"""Generate & compare: one prompt and seed in, the image, the model's own safety judgment and its
caption out; then the same prompt and seed under two codebooks (the original model vs any round of
any run, or round vs round) on a before/after slider.

`generate(...)` and `compare(...)` are the whole handlers; they never raise. Bad input comes back
as a message in the status box (and a gr.Warning toast in the browser).
"""

from __future__ import annotations

import logging
import math
import time

import gradio as gr
import numpy as np

from safecb.engine.measure import benign_change
from safecb.eval.broad import model_level_images
from safecb.models.backend import MAX_PROMPT_CHARS
from safecb.models.sampler import SamplerSettings

from .common import InputError, name_tag, parse_run_id, round_choices, run_choices, upscale, whole_number
from .demo_examples import example_prompt_sets, example_seeds
from .services import Services

log = logging.getLogger(__name__)

MAX_SEED = 2**53 - 1  # the browser sends numbers as JavaScript doubles: larger ones arrive rounded
DEFAULT_CFG = SamplerSettings().cfg_weight
ORIGINAL = -1  # the round picker's value for the unedited model


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
    """A whole number in [0, 2^53 - 1]. Accepts ints, integral floats and numeric strings. Larger
    seeds are refused, not used: the browser would have rounded them (9007199254740993 arrives as
    9007199254740992), so the image would not be the seed the user typed."""
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
        raise InputError(f"The seed must be at most 2^53 - 1 = {MAX_SEED} (the browser cannot send larger whole "
                         f"numbers exactly), got {seed}.")
    return seed


def check_cfg(cfg_weight) -> float:
    try:
        value = float(cfg_weight)
    except (TypeError, ValueError):
        raise InputError(f"The CFG weight must be a number, got {cfg_weight!r}.") from None
    if not math.isfinite(value):
        raise InputError(f"The CFG weight must be finite, got {cfg_weight!r}.")
    return value  # the range is checked by SamplerSettings.validate


def generate(services: Services, prompt, seed, cfg_weight):
    """-> (image uint8 [H,W,3] or None, {"unsafe": p, "safe": 1-p} or None, caption, status)."""
    try:
        prompt = check_prompt(prompt)
        seed = check_seed(seed)
        settings = SamplerSettings(cfg_weight=check_cfg(cfg_weight))
        backend = services.backend
        check_known_words(backend, prompt)
        start = time.perf_counter()
        with services.lock:
            backend.set_codebooks(services.reference)
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
    unknown = unknown_words_note(services.backend, prompt)
    return upscale(image), {"unsafe": p_unsafe, "safe": 1.0 - p_unsafe}, caption, (
        f"{unknown}\n\n{status}" if unknown else status)


STRIP_SEEDS = 8  # seeds the seed strip draws at once


def known_words(backend, limit: int = 80) -> str:
    """The model's vocabulary as a list to read, cut after `limit` words."""
    known = backend.vocabulary()
    return ", ".join(known[:limit]) + (", …" if len(known) > limit else "")


def check_known_words(backend, prompt: str) -> None:
    """Refuse a prompt none of whose words the model knows: it would draw from no prompt at all (a
    word-level tokenizer drops unknown words), and a judged picture of that reads as the prompt's."""
    words = backend.prompt_text(prompt).split()
    unknown = set(backend.unknown_words(prompt))
    if words and all(word in unknown for word in words):
        raise InputError(f"The model knows none of these words, so it would draw from no prompt at all: nothing "
                         f"was drawn. Words it knows: {known_words(backend, 40)}.")


def seed_strip(services: Services, prompt, first_seed, cfg_weight, n: int = STRIP_SEEDS):
    """The prompt at n consecutive seeds in one batch, each captioned "seed S · P" with its seed and
    the model's own P(unsafe), the most unsafe framed in red: to find a telling example.
    -> ([(image, caption)], status); never raises."""
    try:
        prompt = check_prompt(prompt)
        check_known_words(services.backend, prompt)
        first = check_seed(first_seed)
        if first > MAX_SEED - (n - 1):
            raise InputError(f"The first seed of a strip of {n} must be at most {MAX_SEED - (n - 1)}, got {first}.")
        settings = SamplerSettings(cfg_weight=check_cfg(cfg_weight))
        seeds = list(range(first, first + n))
        start = time.perf_counter()
        with services.lock:
            services.backend.set_codebooks(services.reference)
            result = services.backend.generate([prompt], seeds, settings)
            scores = [float(p) for p in services.backend.judge(result.images)]
        seconds = time.perf_counter() - start
    except ValueError as exc:
        return [], f"⚠ {exc}"
    except Exception as exc:
        log.exception("seed strip failed")
        return [], f"⚠ Seed strip failed ({type(exc).__name__}: {exc}). See the server log."
    most = max(range(n), key=lambda i: scores[i])
    items = [(framed(upscale(image, 128)) if i == most else upscale(image, 128), f"seed {s} · {p:.2f}")
             for i, (image, s, p) in enumerate(zip(result.images, seeds, scores))]
    unknown = unknown_words_note(services.backend, prompt)
    status = (f"Seeds {seeds[0]}–{seeds[-1]} in {seconds:.1f} s; most unsafe by the model's own judgment: seed "
              f"{seeds[most]} ({scores[most]:.2f}, framed in red). Click an image to use its seed.")
    return items, f"{unknown}\n\n{status}" if unknown else status


def toast_text(message: str) -> str:
    """A status message's first sentence-group for a toast: the list of known words stays in the status."""
    return message.split("\n\n")[0].split(" Words it knows:")[0].removeprefix("⚠ ")


def framed(image: np.ndarray, width: int = 5, colour=(220, 30, 30)) -> np.ndarray:
    """The image with a coloured frame drawn inside its edge: the strip's most telling seed."""
    out = image.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


def unknown_words_note(backend, prompt: str) -> str:
    """A warning naming the prompt's words the model does not know, with the words it does."""
    unknown = backend.unknown_words(prompt)
    if not unknown:
        return ""
    listed = known_words(backend)
    names = ", ".join(f"“{w}”" for w in unknown)
    return (f"⚠ The model does not know {names}: it drew the prompt without {'it' if len(unknown) == 1 else 'them'}. "
            f"Words it knows: {listed}.")


def _round_value(value) -> int | None:
    """A round picker's value as a round index; None for the unedited model. A fraction is refused."""
    if value in (None, "", ORIGINAL, str(ORIGINAL)):
        return None
    return whole_number(value, "round")


def compare(services: Services, prompt, seed, cfg_weight, run_id, round_a, round_b):
    """Same prompt and seed under round A's and round B's codebooks (ORIGINAL = the unedited model).
    -> ((image A, image B) for the slider or None, markdown, status). When round B edits the decoder,
    the pictures hold a third image: what its generator drew, i.e. its tokens through the original
    (public) decoder, which is what anyone holding the weights gets."""
    try:
        prompt = check_prompt(prompt)
        seed = check_seed(seed)
        settings = SamplerSettings(cfg_weight=check_cfg(cfg_weight))
        a, b = _round_value(round_a), _round_value(round_b)
        run = parse_run_id(run_id) if (a is not None or b is not None) else None
        books = [services.codebooks_for(run, a), services.codebooks_for(run, b)]
        backend = services.backend
        start = time.perf_counter()
        images, scores, drawn = [], [], None
        original_decoder = services.reference["decoder"]
        with services.lock:
            try:
                for book in books:
                    backend.set_codebooks(book)
                    result = backend.generate([prompt], [seed], settings)
                    images.append(result.images[0])
                    scores.append(float(backend.judge(result.images)[0]))
                drawn = model_level_images(backend, result.tokens, original_decoder)  # right side's codebooks are set
                if drawn is not None:
                    drawn = (drawn[0], float(backend.judge(drawn)[0]))
            finally:
                backend.set_codebooks(services.reference)
        seconds = time.perf_counter() - start
    except ValueError as exc:
        return None, "", f"⚠ {exc}"
    except Exception as exc:
        log.exception("compare failed")
        return None, "", f"⚠ Compare failed ({type(exc).__name__}: {exc}). See the server log."
    names = ["original" if r is None else f"run #{run} round {r}" for r in (a, b)]
    change = benign_change(images[0], images[1])
    text = (f"| | {names[0]} (left) | {names[1]} (right) |\n|---|---|---|\n"
            f"| self-judged P(unsafe) | {scores[0]:.3f} | {scores[1]:.3f} |\n")
    if drawn is not None:
        text += (f"| what the model drew (right's tokens, original decoder) | | {drawn[1]:.3f} |\n\n"
                 "The right side edits the decoder: its generator still samples tokens that the original, public "
                 "decoder paints as below.")
    text += f"\n\nSame-seed pixel change (MSE): {change:.4f}"
    status = f"seed {seed} · CFG {settings.cfg_weight:g} · {seconds:.1f} s"
    notes = [unknown_words_note(services.backend, prompt)]
    if a is None and b is None:
        notes.append("⚠ Both sides are the original model. Start a run in the Run tab, or pick a run, "
                     "to compare the original with an edited round.")
    notes = "\n\n".join(n for n in notes if n)
    pictures = tuple(name_tag(upscale(image), f"{name}\nP(unsafe) {score:.2f}", edge)
                     for image, name, score, edge in zip(images, names, scores, ("top", "bottom")))
    if drawn is not None:
        pictures += (name_tag(upscale(drawn[0]), f"what {names[1]} drew\nP(unsafe) {drawn[1]:.2f}", "top"),)
    return pictures, text, f"{notes}\n\n{status}" if notes else status


def best_round(services: Services, run_id) -> int | None:
    """The round a run ended on (its best), once it has ended."""
    run = services.store.get_run(int(run_id))
    return None if run is None else run.best_round


def example_prompts(n_each: int = 3) -> tuple[list[str], list[str]]:
    """(benign, harmful) example prompt texts from the toy world's prompt sets, train and held-out."""
    benign, harmful = example_prompt_sets(n_each)
    return [p.text for p in benign], [p.text for p in harmful]


def build_generate_tab(services: Services) -> gr.Dropdown:
    """Lay out the tab inside the current Blocks context and wire its handlers (api_names "generate",
    "seed_strip", "compare"). Three columns on one screen: the controls (prompt, seed, CFG, which
    codebooks to compare, examples), the generated image with the model's judgment, and the
    before/after slider; narrower windows stack them. -> the compare run picker (the Run tab's
    "compare this run" sets it)."""
    with gr.Row():
        with gr.Column(scale=4, min_width=300):
            prompt = gr.Textbox(label="Prompt", lines=1, max_lines=3,
                                placeholder="a person holding a flower on the grass (Enter generates)",
                                elem_id="generate-prompt")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, step=1, info="whole number ≥ 0")
                cfg = gr.Slider(1.0, 10.0, value=DEFAULT_CFG, step=0.5, label="CFG weight",
                                info="1 = no guidance")
            with gr.Row():
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                strip_button = gr.Button(f"Try {STRIP_SEEDS} seeds", elem_id="seed-strip-button")
            # right under the controls, so a presenter sees it without scrolling
            strip = gr.Gallery(label=f"{STRIP_SEEDS} seeds: seed · P(unsafe), most unsafe in red (click to use)",
                               columns=STRIP_SEEDS // 2, height=270, allow_preview=False, visible=False,
                               elem_classes=["safecb-pixels"], elem_id="seed-strip")
            gr.Markdown("**Compare codebooks**: the same prompt and seed, left and right on the slider.")
            run = gr.Dropdown(allow_custom_value=True, choices=run_choices(services.store), value=None, label="Run",
                              elem_id="compare-run")
            with gr.Row():
                original = round_choices(services.store, None, with_original=True)
                round_a = gr.Dropdown(allow_custom_value=True, choices=original, value=ORIGINAL, label="Left",
                                      elem_id="compare-left")
                round_b = gr.Dropdown(allow_custom_value=True, choices=original, value=ORIGINAL, label="Right",
                                      elem_id="compare-right")
            compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
            benign, harmful = example_prompts()
            suggested = example_seeds(services.backend.fingerprint)  # a seed that shows what each names
            examples = [gr.Examples([[p, suggested.get(p, 0)] for p in benign], inputs=[prompt, seed],
                                    label="Benign prompts (click to generate at a seed that shows them)"),
                        gr.Examples([[p, suggested.get(p, 0)] for p in harmful], inputs=[prompt, seed],
                                    label="Harmful prompts (cartoon stand-ins: knife, gun, blood, skull; click to "
                                          "generate at a seed that shows them)")]
        with gr.Column(scale=3, min_width=280):
            image = gr.Image(label="Generated image", type="numpy", format="png", interactive=False,
                             height=440, elem_classes=["safecb-pixels", "safecb-grow"],
                             elem_id="generate-image")  # fills its column
            judgment = gr.Label(label="Self-judgment (the model asked: is this image unsafe?)",
                                num_top_classes=2)
            caption = gr.Textbox(label="The model's caption of its image", interactive=False)
            status = gr.Textbox(label="Status", interactive=False)
        with gr.Column(scale=3, min_width=280):
            slider = gr.ImageSlider(show_label=False, type="numpy", format="png", interactive=False,
                                    elem_classes=["safecb-pixels"], elem_id="compare-slider")
            drawn = gr.Image(label="What the model drew: the right side's tokens through the original (public) decoder",
                             type="numpy", format="png", interactive=False, visible=False,
                             elem_classes=["safecb-pixels"], elem_id="compare-drawn")
            table = gr.Markdown("Pick a run and press *Compare*: its left and right codebooks draw the prompt "
                                "at the seed on the left, and the slider shows both.", elem_id="compare-table")
            compare_status = gr.Textbox(label="Compare status", interactive=False, elem_id="compare-status")
            gr.DeepLinkButton("Copy a link to this comparison", copied_value="Link copied", size="md",
                              elem_classes=["safecb-deep-link"])  # the link reopens the page as it is now

    def on_generate(prompt_value, seed_value, cfg_value):
        out = generate(services, prompt_value, seed_value, cfg_value)
        if out[0] is None:  # bad input: say why, and keep what is shown
            gr.Warning(toast_text(out[3]))
            return gr.update(), gr.update(), gr.update(), out[3]
        if out[3].startswith("⚠"):  # drawn, with words the model does not know: a toast, in view
            gr.Warning(toast_text(out[3]))
        return out

    strip_seeds = gr.State([])

    def on_strip(prompt_value, seed_value, cfg_value):
        items, message = seed_strip(services, prompt_value, seed_value, cfg_value)
        if not items:
            gr.Warning(toast_text(message))
            return gr.update(), gr.update(), message
        seeds = [int(text.split()[1]) for _, text in items]
        if message.startswith("⚠"):
            gr.Warning(toast_text(message))
        return gr.update(value=items, visible=True), seeds, message

    def on_pick(seeds, event: gr.SelectData):
        if not seeds or event.index is None:
            return gr.update()
        return seeds[int(event.index)]

    outputs = [image, judgment, caption, status]
    button.click(on_generate, [prompt, seed, cfg], outputs, api_name="generate")
    prompt.submit(on_generate, [prompt, seed, cfg], outputs, api_name=False)
    for example in examples:  # clicking an example fills the prompt, then generates it
        example.load_input_event.then(on_generate, [prompt, seed, cfg], outputs, api_name=False)
    strip_button.click(on_strip, [prompt, seed, cfg], [strip, strip_seeds, status], api_name="seed_strip")
    strip.select(on_pick, [strip_seeds], [seed], api_name=False).then(
        on_generate, [prompt, seed, cfg], outputs, api_name=False)
    wire_compare(services, prompt, seed, cfg, run, round_a, round_b, compare_button, slider, drawn, table,
                 compare_status)
    return run


def wire_compare(services: Services, prompt, seed, cfg, run, round_a, round_b, button, slider, drawn, table,
                 status) -> None:
    def on_run(run_id):
        if run_id in (None, ""):
            choices = round_choices(services.store, None, with_original=True)
            return gr.update(choices=choices, value=ORIGINAL), gr.update(choices=choices, value=ORIGINAL)
        choices = round_choices(services.store, run_id, with_original=True)
        best = best_round(services, run_id)
        right = best if best is not None and any(v == best for _, v in choices) else choices[-1][1]
        return gr.update(choices=choices, value=ORIGINAL), gr.update(choices=choices, value=right)

    def on_compare(*values):
        pictures, text, message = compare(services, *values)
        if pictures is None:
            gr.Warning(message.removeprefix("⚠ "))
            return None, gr.update(visible=False), text, message
        third = gr.update(value=pictures[2], visible=True) if len(pictures) > 2 else gr.update(visible=False)
        return pictures[:2], third, text, message

    run.focus(lambda: gr.update(choices=run_choices(services.store)), None, [run], api_name=False)
    run.change(on_run, [run], [round_a, round_b], api_name=False)
    button.click(on_compare, [prompt, seed, cfg, run, round_a, round_b], [slider, drawn, table, status],
                 api_name="compare")
