"""Pairs: the harmful ↔ safe image pairs a round mined, side by side, and where the model itself
puts the harm, per pair and averaged over the round.

Two independent samples differ almost everywhere, so "where the grids differ" does not say where
harmful content lives. Two things the model itself says do:
- **the tint on the harmful image and the pair's heatmap**: each of its codes scored by how much more
  often the model drew that code for harmful prompts than for their safe rewrites, over all the
  images of the round that drew the pair (`safecb.viz.code_contrast`). Background both prompts draw
  scores about 0, so the heat sits on the object;
- **the round's map**: the pairs' own code grids teacher-forced through that model once after the
  harmful prompt and once after the rewrite, each position getting log p(code | harmful prompt) −
  log p(code | rewrite), averaged: how much the harmful wording, and not the rest of the image, made that
  code likely at the moment it was drawn. In raster order the prompt weighs most on the first rows
  (the layout is decided there); later codes are largely explained by the codes above them.
"""

from __future__ import annotations

import logging

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from safecb.viz import code_contrast

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
from .services import Services

log = logging.getLogger(__name__)

MAX_PAIRS_LISTED = 500
MAX_CONTRAST_IMAGES = 5000  # images of a round read to score its codes (harmful prompts against rewrites)


def difference_grid(positions: list[int], grid_size: int) -> np.ndarray:
    """[g, g] 1.0 where the two token grids differ."""
    grid = np.zeros(grid_size * grid_size)
    grid[np.asarray(positions, dtype=int)] = 1.0
    return grid.reshape(grid_size, grid_size)


def overlay(image: np.ndarray, grid: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Tint the image red where `grid` (token cells, values in [0, 1]) is high."""
    cell = image.shape[0] // grid.shape[0]
    mask = np.kron(grid, np.ones((cell, cell)))[..., None] * alpha
    red = np.array([230, 30, 30], dtype=np.float32)
    return (image.astype(np.float32) * (1 - mask) + red * mask).astype(np.uint8)


def heatmap_figure(grid: np.ndarray, title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=grid, colorscale="Reds", zmin=0, zmax=max(1e-9, float(grid.max())),
                               hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>"))
    fig.update_layout(title=title, height=360, width=380, margin=dict(l=20, r=20, t=50, b=20),
                      yaxis=dict(autorange="reversed", scaleanchor="x"))
    return fig


MAX_ATTRIBUTED_PAIRS = 64  # pairs averaged in the round's attribution map (each is two teacher-forced passes)


def context_attributions(services: Services, run: int, round_index: int, pairs: list[tuple]) -> np.ndarray:
    """[P, g, g]: for each (harmful, safe) generation pair, log p(code | harmful prompt) − log p(code |
    rewrite) at each position of the harmful image's grid, under the codebooks it was drawn with (the
    round before the pair's round). Raises ValueError when those codebooks are not on this machine."""
    backend = services.backend
    books = services.codebooks_for(run, round_index - 1)
    codes = torch.tensor([h.tokens for h, _ in pairs] * 2)
    prompts = [h.prompt for h, _ in pairs] + [s.prompt for _, s in pairs]
    with services.lock:
        backend.set_codebooks(books)
        try:
            hidden = backend.teacher_forced_hidden(prompts, codes)
            logits = backend.head_logits(backend.head_keys(hidden.reshape(-1, hidden.shape[-1])))
        finally:
            backend.set_codebooks(services.reference)
    logp = F.log_softmax(logits.reshape(len(prompts), codes.shape[1], -1), -1).gather(-1, codes[..., None])[..., 0]
    g = backend.grid_size
    return (logp[: len(pairs)] - logp[len(pairs):]).numpy().reshape(len(pairs), g, g)


def context_attribution(services: Services, run: int, round_index: int, harmful, safe) -> np.ndarray:
    """[g, g] `context_attributions` of one pair."""
    return context_attributions(services, run, round_index, [(harmful, safe)])[0]


def attribution_figure(grid: np.ndarray, title: str) -> go.Figure:
    bound = max(1e-9, float(np.abs(grid).max()))
    fig = go.Figure(go.Heatmap(z=grid, colorscale="RdBu", reversescale=True, zmin=-bound, zmax=bound,
                               hovertemplate="row %{y}, col %{x}: %{z:+.2f} nats<extra></extra>"))
    fig.update_layout(title=title, height=360, width=380, margin=dict(l=20, r=20, t=50, b=20),
                      yaxis=dict(autorange="reversed", scaleanchor="x"))
    return fig


def list_pairs(services: Services, run_id, round_index) -> tuple[list[tuple[str, int]], go.Figure | None, str]:
    """-> (pair choices, the round's position-frequency heatmap, status)."""
    run = parse_run_id(run_id)
    if round_index in (None, ""):
        raise InputError("Pick a round (pairs are mined from round 1 on).")
    round_index = whole_number(round_index, "round")
    pairs = services.store.list_pairs(run, round_index)
    if not pairs:
        return [], None, f"Run #{run} round {round_index} has no mined pairs (round 0 measures the unedited model)."
    g = services.backend.grid_size
    choices = [(f"pair {i + 1}: generations #{p.harmful_generation_id} ↔ #{p.safe_generation_id} · "
                f"{len(p.positions)} positions differ", p.id) for i, p in enumerate(pairs[:MAX_PAIRS_LISTED])]
    sample = pairs[:MAX_ATTRIBUTED_PAIRS]
    found = services.store.get_generations([i for p in sample for i in (p.harmful_generation_id, p.safe_generation_id)])
    try:
        mean = context_attributions(services, run, round_index,
                                    [(found[p.harmful_generation_id], found[p.safe_generation_id]) for p in sample]
                                    ).mean(axis=0)
        figure = attribution_figure(mean, f"Round {round_index}: mean over {len(sample)} pairs of log p(code | "
                                          "harmful) − log p(code | rewrite)")
    except ValueError:  # the run's snapshots are not on this machine: where the grids differ instead
        frequency = np.mean([difference_grid(p.positions, g) for p in pairs], axis=0)
        figure = heatmap_figure(frequency, f"Round {round_index}: share of {len(pairs)} pairs differing per position")
    return choices, figure, f"{len(pairs)} pair(s) mined for round {round_index}. Pick one to compare."


def round_code_contrast(services: Services, run: int, round_index: int) -> np.ndarray | None:
    """`code_contrast` over the images the model drew in the round before `round_index` (the model
    that drew the round's pairs): harmful-prompt images against their rewrites'. None without both."""
    drawn = services.store.list_generations(run, round_index - 1, limit=MAX_CONTRAST_IMAGES)
    harmful = [g.tokens for g in drawn if g.settings.get("kind") == "harmful" and g.tokens]
    rewrite = [g.tokens for g in drawn if g.settings.get("kind") == "rewrite" and g.tokens]
    if not harmful or not rewrite:
        return None
    return code_contrast(np.concatenate(harmful), np.concatenate(rewrite), services.backend.codebook_size)


def show_pair(services: Services, run_id, round_index, pair_id):
    """-> (harmful image tinted where the model attributes it to the harmful prompt, safe image,
    the attribution heatmap, caption)."""
    run = parse_run_id(run_id)
    if pair_id in (None, ""):
        raise InputError("Pick a pair.")
    round_index, pair_id = whole_number(round_index, "round"), whole_number(pair_id, "pair")
    pair = next((p for p in services.store.list_pairs(run, round_index) if p.id == pair_id), None)
    if pair is None:
        raise InputError(f"Pair {pair_id} is not in run #{run} round {round_index}.")
    harmful = services.store.get_generation(pair.harmful_generation_id)
    safe = services.store.get_generation(pair.safe_generation_id)
    g = services.backend.grid_size
    try:
        attribution = context_attribution(services, run, round_index, harmful, safe)
    except ValueError:  # the run's snapshots are not on this machine
        attribution = None
    caption = (f"**Harmful** (#{harmful.id}): *{harmful.prompt}* · seed {harmful.seed} · self {harmful.self_score:.2f}  \n"
               f"**Safe** (#{safe.id}): *{safe.prompt}* · seed {safe.seed} · self {safe.self_score:.2f}  \n"
               f"{len(pair.positions)} of {g * g} token positions differ between the two samples.")
    if attribution is None:
        grid = difference_grid(pair.positions, g)
        return (upscale(overlay(png_to_array(harmful.image_png), grid)), upscale(png_to_array(safe.image_png)),
                heatmap_figure(grid, "Token positions that differ"),
                caption + " The run's codebooks are not on this machine, so the differing positions are tinted.")
    contrast = round_code_contrast(services, run, round_index)
    if contrast is not None:  # the tint and heatmap: codes the harmful prompts draw and the rewrites do not
        scores = contrast[np.asarray(harmful.tokens)].reshape(g, g)
        tint = np.clip(scores, 0, None) / max(1e-9, float(scores.max()))
        caption += (" Tinted red and in the heatmap: this image's codes that the model drew more often for harmful "
                    f"prompts than for their rewrites in round {round_index - 1} (up to {scores.max():.1f} nats; "
                    "blue: codes the rewrites draw more), which is where the harm is drawn. The round's map below "
                    "shows instead where the harmful wording made each code likely as it was drawn.")
        return (upscale(overlay(png_to_array(harmful.image_png), tint)), upscale(png_to_array(safe.image_png)),
                attribution_figure(scores, "log share among harmful-prompt images − among the rewrites'"), caption)
    tint = np.clip(attribution, 0, None) / max(1e-9, float(attribution.max()))
    caption += (f" Tinted red: where the harmful prompt, rather than its rewrite, made the model draw this image's "
                f"codes (up to {attribution.max():+.1f} nats at one position; the heatmap's blue cells are those "
                "the rewrite explains better).")
    return (upscale(overlay(png_to_array(harmful.image_png), tint)), upscale(png_to_array(safe.image_png)),
            attribution_figure(attribution, "log p(code | harmful) − log p(code | rewrite)"), caption)


def build_pairs_tab(services: Services) -> None:
    with gr.Row():
        run = gr.Dropdown(allow_custom_value=True, choices=run_choices(services.store), value=None, label="Run", scale=3, elem_id="pairs-run")
        round_pick = gr.Dropdown(allow_custom_value=True, choices=[], label="Round", scale=2, elem_id="pairs-round")
        load = gr.Button("Show pairs", variant="primary", scale=1)
    status = gr.Markdown()
    with gr.Row():
        pair = gr.Dropdown(allow_custom_value=True, choices=[], label="Pair", scale=3)
    with gr.Row():
        harmful = gr.Image(label="Harmful (tinted: codes the harmful prompts draw and their rewrites do not)", type="numpy", format="png", interactive=False,
                           elem_classes=["safecb-pixels"])
        safe = gr.Image(label="Safe counterpart", type="numpy", format="png", interactive=False,
                        elem_classes=["safecb-pixels"])
        pair_map = gr.Plot(label="This pair")
    caption = gr.Markdown()
    round_map = gr.Plot(label="The round")

    def guarded(fn, n_out):
        def handler(*args):
            try:
                return fn(*args)
            except InputError as exc:
                gr.Warning(str(exc))
                return (f"⚠ {exc}",) + (gr.update(),) * (n_out - 1) if n_out > 1 else f"⚠ {exc}"
            except Exception as exc:
                log.exception("pairs tab")
                gr.Warning(f"{type(exc).__name__}: {exc}")
                return (f"⚠ {type(exc).__name__}: {exc}",) + (gr.update(),) * (n_out - 1)
        return handler

    def on_run(run_id):
        rounds = [(label, i) for label, i in round_choices(services.store, run_id) if i >= 1] if run_id else []
        return gr.update(choices=rounds, value=teaching_round(services.store, run_id) if rounds else None)

    def on_load(run_id, round_index):
        choices, figure, text = list_pairs(services, run_id, round_index)
        return text, gr.update(choices=choices, value=choices[0][1] if choices else None), figure

    def on_pair(run_id, round_index, pair_id):
        if pair_id in (None, ""):
            return "", gr.update(), gr.update(), gr.update()
        h, s, fig, text = show_pair(services, run_id, round_index, pair_id)
        return text, h, s, fig

    run.focus(lambda: gr.update(choices=run_choices(services.store)), None, [run], api_name=False)
    run.change(on_run, [run], [round_pick], api_name=False)
    load.click(guarded(on_load, 3), [run, round_pick], [status, pair, round_map], api_name="pairs")
    pair.change(guarded(on_pair, 4), [run, round_pick, pair], [caption, harmful, safe, pair_map], api_name=False)
