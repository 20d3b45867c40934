"""Walkthrough: one finished round explained step by step for teaching sessions, with the pictures
each step made: generate → self-judge → mine pairs → Harmful Space → step 1 → step 2 → evaluate.
Everything shown is read back from the store and the run's artifacts; nothing is recomputed.
"""

from __future__ import annotations

import logging

import gradio as gr
import numpy as np
from PIL import Image

from safecb.engine.steps import TARGET_CODEBOOK
from safecb.viz import (
    harmful_space_figure,
    harmful_space_plane,
    paired_separation,
    patch_image,
    prepare_rows,
    projection_share,
)

from .common import (
    InputError,
    parse_run_id,
    png_to_array,
    round_choices,
    run_choices,
    teaching_round,
    upscale,
    whole_number,
)
from .round_images import model_level_images
from .services import Services

log = logging.getLogger(__name__)

N_STEPS = 7
STRIP = 6  # images per step


def _strip(images: list[np.ndarray]) -> np.ndarray | None:
    if not images:
        return None
    gap = np.full((images[0].shape[0], 2, 3), 255, np.uint8)
    row = [x for image in images for x in (image, gap)][:-1]
    return upscale(np.concatenate(row, axis=1), 128 * len(images))


def _grid(images: list[np.ndarray], per_row: int) -> np.ndarray | None:
    """Rows of `per_row` images (each row a strip), stacked."""
    if not images or per_row < 1:
        return None
    rows = [_strip(images[i : i + per_row]) for i in range(0, len(images), per_row)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def read_space(services: Services, run: int, index: int):
    """The round's Harmful Space basis [d, r], or None when the run's files are not on this machine."""
    directory = services.artifacts(run)
    return directory.read_space(index) if directory.path.exists() else None


def space_codes(services: Services, run: int, index: int, target: str, books: dict) -> list[int]:
    """The codes whose rows (of the codebook the Harmful Space was built in) lie most in it."""
    basis = read_space(services, run, index)
    name = TARGET_CODEBOOK.get(target, "decoder")
    if basis is None or name not in books or books[name].shape[1] != basis.shape[0]:
        return []
    share = projection_share(prepare_rows(name, books[name]), basis.numpy())
    return [int(c) for c in np.argsort(-share)[:STRIP]]


MAX_SPACE_POINTS = 600  # codes per side drawn in the Harmful Space picture


def space_picture(services: Services, run_id, round_index):
    """The round's mined pairs in the plane of its Harmful Space: at every token position where a
    pair's grids differ, the harmful side's code and the safe side's code, as rows of the codebook
    the space was built in (before the round). -> (figure, share of those positions where the harmful
    code lies further along the space's top direction than its safe partner), or None when the
    run's files or pairs are not here."""
    run, index = parse_run_id(run_id), whole_number(round_index, "round")
    after = {r.index: r.metrics for r in services.store.list_rounds(run)}.get(index, {})
    name = TARGET_CODEBOOK.get(after.get("target", "generator"), "decoder")
    basis = read_space(services, run, index)
    pairs = services.store.list_pairs(run, index)
    try:
        books = services.codebooks_for(run, index - 1)
    except ValueError:
        return None
    if basis is None or not pairs or name not in books or books[name].shape[1] != basis.shape[0]:
        return None
    generations = services.store.get_generations([i for p in pairs for i in (p.harmful_generation_id,
                                                                              p.safe_generation_id)])
    harmful_codes, safe_codes = [], []
    for p in pairs:
        h, s = (np.asarray(generations[i].tokens) for i in (p.harmful_generation_id, p.safe_generation_id))
        harmful_codes.append(h[h != s])
        safe_codes.append(s[h != s])
    harmful_codes, safe_codes = np.concatenate(harmful_codes), np.concatenate(safe_codes)
    if len(harmful_codes) == 0:
        return None
    keep = np.random.default_rng(0).permutation(len(harmful_codes))[:MAX_SPACE_POINTS]
    rows = prepare_rows(name, books[name])
    h_xy, s_xy, names = harmful_space_plane(rows[harmful_codes[keep]], rows[safe_codes[keep]], basis.numpy())
    separated = paired_separation(h_xy, s_xy)
    figure = harmful_space_figure(h_xy, s_xy, names,
                                  title=f"Run #{run}, round {index}: where the pairs' codes differ, in the "
                                        f"{name} codebook")
    return figure, separated


def same_seed_benign(store, run: int, index: int) -> list[list]:
    """[before row, after row] of up to STRIP benign generations at the same prompt and seed."""
    def benign(round_index):
        return {(g.prompt, g.seed): g for g in store.list_generations(run, round_index, limit=2000)
                if g.settings.get("kind") == "benign"}
    before, after = benign(index - 1), benign(index)
    keys = [k for k in before if k in after][:STRIP]
    return [[before[k] for k in keys], [after[k] for k in keys]]


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _oracle(metrics: dict, key: str):
    figure = metrics.get("annotations", {}).get(key)
    return None if figure is None else figure["value"]


def model_level_rows(services: Services, run: int, index: int) -> tuple[str, np.ndarray | None]:
    """For a round that edits the decoder: a few of its harmful-prompt images as served (top row) and
    their tokens through the original, public decoder (bottom row: what the model drew), with a note."""
    harmful = [g for g in services.store.list_generations(run, index, limit=2000)
               if g.settings.get("kind") == "harmful"][:STRIP]
    drawn = model_level_images(services, harmful)
    shown = [g for g in harmful if g.id in drawn]
    if not shown:
        return "", None
    grid = _grid([png_to_array(g.image_png) for g in shown] + [drawn[g.id] for g in shown], len(shown))
    return (" Below: this round's harmful-prompt images as served (top row, the edited decoder) and their tokens "
            "through the original, public decoder (bottom row): what the model drew, which anyone holding the "
            "weights sees."), grid


def _stacked(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Two pictures one above the other, the narrower padded white on the right."""
    width = max(top.shape[1], bottom.shape[1])
    pad = [np.pad(x, ((0, 8), (0, width - x.shape[1]), (0, 0)), constant_values=255) for x in (top, bottom)]
    return np.concatenate(pad)


def _oracle_rose(before: dict, after: dict) -> str:
    """A note when the independent oracle's unsafe rate went up in the round: the self-judge and the
    rule that accepts a round do not see the oracle, so a round can be accepted while it got worse."""
    a, b = _oracle(before, "oracle_unsafe_train"), _oracle(after, "oracle_unsafe_train")
    if a is None or b is None or b <= a:
        return ""
    return (f" **Note: the oracle's unsafe rate went up in this round ({_pct(a)} → {_pct(b)})**: the loop never "
            "sees the oracle, and its own judge read this round differently from the independent one.")


def walkthrough(services: Services, run_id, round_index) -> list[tuple[str, np.ndarray | None]]:
    """Seven (markdown, picture or None) steps explaining round `round_index` of a run."""
    run = parse_run_id(run_id)
    if round_index in (None, ""):
        raise InputError("Pick a round (1 or later: round 0 only measures the unedited model).")
    index = whole_number(round_index, "round")
    rounds = {r.index: r.metrics for r in services.store.list_rounds(run)}
    if index < 1 or index not in rounds or index - 1 not in rounds:
        raise InputError(f"Run #{run} has no finished round {index} with a round before it.")
    before, after = rounds[index - 1], rounds[index]
    store = services.store
    previous = store.list_generations(run, index - 1, limit=2000)
    harmful = [g for g in previous if g.settings.get("kind") == "harmful"]
    flagged = [g for g in harmful if g.flagged]
    pairs = store.list_pairs(run, index)
    steps = []

    steps.append((
        f"**1 · Generate.** The model (as it was after round {index - 1}) drew every harmful prompt, its safe rewrite "
        f"and every benign prompt with fixed seeds: {before.get('n_harmful', len(harmful))} harmful and "
        f"{before.get('n_benign', '?')} benign images. A few harmful-prompt images:",
        _strip([png_to_array(g.image_png) for g in harmful[:STRIP]])))
    steps.append((
        f"**2 · Self-judge.** The same model looked at each image through its understanding path and answered "
        f"*is this image unsafe?* It flagged {_pct(before.get('self_unsafe'))} of harmful-prompt images, "
        f"{_pct(before.get('self_unsafe_rewrite'))} of rewrites and {_pct(before.get('self_unsafe_benign'))} of "
        f"benign images (oracle, for reference only: {_pct(_oracle(before, 'oracle_unsafe_train'))} of harmful). "
        "Some flagged images (P(unsafe) " + ", ".join(f"{g.self_score:.2f}" for g in flagged[:STRIP]) + "):",
        _strip([png_to_array(g.image_png) for g in flagged[:STRIP]])))
    pair_ids = [i for p in pairs[:STRIP // 2] for i in (p.harmful_generation_id, p.safe_generation_id)]
    pair_generations = store.get_generations(pair_ids)
    pair_images = [png_to_array(pair_generations[i].image_png) for i in pair_ids]  # harmful, safe, harmful, …
    steps.append((
        f"**3 · Mine pairs.** Each flagged image was paired with its prompt's safe rewrite at the same seed when that "
        f"was judged safe, else at the first safe seed: {after.get('pairs', len(pairs))} pairs "
        f"({after.get('pairs_same_seed', '?')} at the same seed). Harmful, safe, harmful, safe, …",
        _strip(pair_images)))
    target = after.get("target", "generator")
    try:  # the snapshots are on this machine only when the runner shares the runs folder
        books_before, books_after = services.codebooks_for(run, index - 1), services.codebooks_for(run, index)
    except ValueError:
        books_before = books_after = None
    top = space_codes(services, run, index, target, books_before) if books_before is not None else []
    steps.append((
        f"**4 · Harmful Space.** The differences between harmful and safe embeddings at the token positions where "
        f"the pairs differ were stacked and factorised (SVD); the top {after.get('space_rank', '?')} direction(s) keep "
        f"{_pct(after.get('space_energy'))} of their energy. The codes that lie most in it, as the decoder draws "
        f"them (codes {', '.join(map(str, top)) or '–'}): this is what the round calls harmful. The Codebook map "
        "tab colours every code by it.",
        _strip([patch_image(services.backend, books_before, c) for c in top])))
    if target == "generator" and "head_fit_kl" in after:
        (fit_before, fit_after), (_, kept_after) = after["head_fit_kl"], after.get("head_kept_kl", [0.0, float("nan")])
        step1 = (f"the whole generation head (both layers) fitted, as guidance samples, toward what each harmful "
                 f"prompt's safe rewrite draws over the same image prefix: the gap fell from {fit_before:.2f} to "
                 f"{fit_after:.2f} nats, while the benign generations and the rewrites' own moved by "
                 f"{kept_after:.4f} nats")
    elif target == "generator":
        step1 = (f"a closed-form edit of the generation head inside the null space of the benign keys (rank "
                 f"{after.get('null_space_rank', '?')}), moving harmful contexts toward the rewrite's outputs; largest "
                 f"change of a benign logit {after.get('benign_logit_change', float('nan')):.2e}")
    else:
        codes = after.get("harmful_codes", [])
        shown = ", ".join(map(str, codes[:8])) + (", …" if len(codes) > 8 else "")
        step1 = f"{len(codes)} harmful codes ({shown}) were moved off the Harmful Space"
    edited = [int(c) for c in after.get("harmful_codes", [])][:STRIP] or top
    patches = [patch_image(services.backend, book, c) for book in (books_before, books_after) for c in edited
               ] if books_before is not None else []
    steps.append((f"**5 · Step 1: remove harmful mappings** ({target} target): {step1}. Top row: codes "
                  f"{', '.join(map(str, edited))} before the round; bottom row: after it (steps 1 and 2).",
                  _grid(patches, len(edited))))
    if "step2_steps" in after:
        loss = after.get("step2_heldout_kl", after.get("step2_heldout_mse"))
        step2 = (f"{after['step2_steps']} projected steps, every update kept out of the Harmful Space; held-out loss "
                 f"{loss:.4f}" if loss is not None else f"{after['step2_steps']} projected steps")
    elif "head_fit_kl" in after:
        step2 = ("not run after a whole-head fit: the fit's own second term keeps the benign generations as they "
                 "were")
    else:
        step2 = "off for this run (the step-1-only ablation)"
    benign_pairs = same_seed_benign(store, run, index)
    steps.append((f"**6 · Step 2: fine-tune inside the harmless space.** {step2}. Benign prompts are meant to "
                  "come out as before: top row before the round, bottom row after it, same prompts and seeds.",
                  _grid([png_to_array(g.image_png) for row in benign_pairs for g in row], len(benign_pairs[0]))
                  if benign_pairs and benign_pairs[0] else None))
    examples = services.artifacts(run).examples(index)
    picture = np.asarray(Image.open(examples).convert("RGB")) if examples is not None else None
    drawn_note, drawn = model_level_rows(services, run, index) if target in ("decoder", "both") else ("", None)
    if drawn is not None:
        picture = drawn if picture is None else _stacked(picture, drawn)
    verdict = ("accepted" if after.get("accepted", True) else
               f"**rejected by the quality guard** ({after.get('guard')}) and rolled back")
    steps.append((
        f"**7 · Evaluate.** Generating again with the edited model: self-judged unsafe "
        f"{_pct(before.get('self_unsafe'))} → {_pct(after.get('self_unsafe'))}; oracle "
        f"{_pct(_oracle(before, 'oracle_unsafe_train'))} → {_pct(_oracle(after, 'oracle_unsafe_train'))}; the model's "
        f"own prompt adherence on benign prompts {_pct(before.get('adherence'))} → {_pct(after.get('adherence'))}; "
        f"same-seed benign change {after.get('benign_change', 0):.4f}. The round was {verdict}.{_oracle_rose(before, after)} "
        "Rows: harmful before | safe counterpart | same prompt and seed after." + drawn_note, picture))
    return steps


GLOSSARY = """
| term | what it means here |
|---|---|
| **codebook** | the table of vectors a visual token stands for; the *decoder* codebook turns tokens into pixels, the generation head (*generator* target) turns the model's state into token probabilities |
| **self-judge** | the model asked about its own image: "is this image unsafe? answer yes or no." gives P(unsafe) |
| **τ (flag threshold)** | an image is flagged when its self-judged P(unsafe) is at least τ (default 0.5) |
| **harmful / safe pair** | a flagged image of a harmful prompt and a safe image of its rewrite, whose codes are compared |
| **Harmful Space** | the few directions along which harmful codes differ from their safe counterparts: the top singular vectors of the pairs' embedding differences |
| **harmless space** | everything orthogonal to the Harmful Space; step 2 may only move codes inside it |
| **null space** | directions the benign prompts' states never use; the last-layer edit (`generator_edit.step1` "alphaedit") is confined to them so benign images do not change, while the default whole-head fit keeps benign images by a penalty on their change instead |
| **step 1 / step 2** | step 1 edits the codebook to map harmful codes to safe ones; step 2 fine-tunes it inside the harmless space so images stay faithful |
| **ε (epsilon)** | a round counts as an improvement when the self-judged unsafe rate drops by at least ε (default 0.01) |
| **patience** | rounds stop after this many rounds without improvement over the best round (default 2); the best round is kept |
| **oracle** | an independent judge used only to *evaluate* (the toy oracle, NudeNet, open_nsfw); the loop never reads it |
| **Cohen's κ** | agreement of two judges beyond chance: 1 perfect, 0 chance |
| **FID-toy** | Fréchet distance between the oracle's features of generated and rendered benign scenes; lower is closer |
| **[a, b] (n …)** | a 95% bootstrap interval and the number of images behind a figure |
"""


SPACE_NOTE = ("**The Harmful Space, drawn.** Each dot is a code at a token position where a mined pair's two images "
              "differ: red the harmful image's code, blue the safe image's. Left to right is the Harmful Space's top "
              "direction: the further right, the more of the 'harmful minus safe' difference a code carries. Step 1 "
              "moves the red codes' rows off the Harmful Space; step 2 may change rows only in directions outside it.")
CLEARLY_SEPARATED = 0.8  # share of paired positions above which the picture is said to separate the two sides


def space_reading(separated: float) -> str:
    """SPACE_NOTE, and what the picture shows: whether the top direction separates the two sides."""
    if separated >= CLEARLY_SEPARATED:
        reading = (f"At {separated:.0%} of these positions the harmful code lies right of its safe partner: the "
                   "direction separates the two sides.")
    else:
        reading = (f"The two clouds overlap: the harmful code lies right of its safe partner at only "
                   f"{separated:.0%} of these positions. A pair's two images are drawn from different prompts, "
                   "so they differ at most positions, most of them background (sky, grass, road); only the "
                   "few positions that show the object carry the harm, and those are the red dots far right.")
    return f"{SPACE_NOTE}\n\n{reading}"


def build_walkthrough_tab(services: Services) -> None:
    gr.Markdown("### One round, step by step\nPick a finished round of a run to see what each step did.")
    with gr.Accordion("Glossary: τ, ε, patience, Harmful Space, null space, κ, FID-toy, …", open=False,
                      elem_id="walk-glossary"):
        gr.Markdown(GLOSSARY)
    with gr.Row():
        run = gr.Dropdown(allow_custom_value=True, choices=run_choices(services.store), value=None, label="Run", scale=3, elem_id="walk-run")
        round_pick = gr.Dropdown(allow_custom_value=True, choices=[], label="Round", scale=2, elem_id="walk-round")
        show = gr.Button("Explain", variant="primary", scale=1, elem_id="walk-explain")
    status = gr.Markdown()
    texts, pictures = [], []
    for i in range(N_STEPS):
        with gr.Row():
            texts.append(gr.Markdown(elem_id=f"walk-step-{i + 1}"))
            pictures.append(gr.Image(show_label=False, type="numpy", format="png", interactive=False, visible=False,
                                     elem_classes=["safecb-pixels"]))
        if i == 3:  # under step 4: the Harmful Space itself
            space_note = gr.Markdown(visible=False, elem_id="walk-space-note")
            space_plot = gr.Plot(visible=False, show_label=False, elem_id="walk-space")

    def on_run(run_id):  # opens on the round that made the largest difference (ui.common.teaching_round)
        rounds = [(label, i) for label, i in round_choices(services.store, run_id) if i >= 1] if run_id else []
        value = teaching_round(services.store, run_id) if rounds else None
        return gr.update(choices=rounds, value=value)

    def on_show(run_id, round_index):
        try:
            steps = walkthrough(services, run_id, round_index)
        except ValueError as exc:
            gr.Warning(str(exc))
            return [f"⚠ {exc}"] + [gr.update()] * (2 * N_STEPS + 2)
        except Exception as exc:
            log.exception("walkthrough failed")
            return [f"⚠ {type(exc).__name__}: {exc}"] + [gr.update()] * (2 * N_STEPS + 2)
        out = [""] + [text for text, _ in steps]
        out += [gr.update(value=picture, visible=picture is not None) for _, picture in steps]
        drawn = space_picture(services, run_id, round_index)
        figure, note = (None, "") if drawn is None else (drawn[0], space_reading(drawn[1]))
        out += [gr.update(value=note, visible=figure is not None), gr.update(value=figure, visible=figure is not None)]
        return out

    run.focus(lambda: gr.update(choices=run_choices(services.store)), None, [run], api_name=False)
    run.change(on_run, [run], [round_pick], api_name=False)
    show.click(on_show, [run, round_pick], [status] + texts + pictures + [space_note, space_plot],
               api_name="walkthrough")
