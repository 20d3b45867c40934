"""Codebook map: UMAP of a codebook's rows coloured by their projection on the Harmful Space, drift
arrows from round A to round B, harmful codes marked, and each code's decoded patch on hover.

Handlers are module-level functions of (services, ...) that never raise: bad input or a missing
run comes back as a "⚠ ..." status (and a gr.Warning toast in the browser).

Hover → patch. gr.Plot has only a `change` event in Gradio 6.31 (no click, select or hover), and
plotly's hover labels cannot show images. So the inspector is a gr.HTML whose `js_on_load` binds
plotly's own `plotly_hover` / `plotly_click` events on the map's graph div (Gradio draws it with
plotly.js under the gr.Plot's elem_id) and asks the server for the code's patches through a
gr.HTML server function. The map carries what it shows (run, rounds, codebook) in layout.meta and
each point's code id in customdata, so the inspector needs no other state. Should a Gradio
release change how gr.Plot draws, hover previews stop but nothing breaks: the code-id box below
always shows the patches, and a click on a point fills it.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from safecb.engine import TARGET_CODEBOOK
from safecb.engine.space import HarmfulCodeConfig, harmful_codes
from safecb.viz import (
    CodebookMapConfig,
    codebook_map_figure,
    compute_codebook_map,
    patch_image,
    prepare_rows,
    projection_share,
)

from .common import InputError, parse_run_id, round_choices, run_choices, upscale, whole_number
from .run_picker import refresh_runs
from .services import Services

log = logging.getLogger(__name__)

MAP_ELEM_ID = "safecb-codebook-map"  # the gr.Plot's DOM id; the hover inspector finds the map by it
STATIC_DIR = Path(__file__).parent / "static"  # the hover inspector's HTML, CSS and JS
CODEBOOK_CHOICES = [
    ("the run's target", "auto"),
    ("decoder · VQ codebook [K, d]", "decoder"),
    ("gen_head · generator output codes [K, h]", "gen_head"),
    ("gen_embed · generator input codes [K, d_g]", "gen_embed"),
]
ORIGINAL_ROUND = -1  # round pickers' value for the unedited model


@dataclass
class CodebookTabConfig:
    map: CodebookMapConfig = field(default_factory=CodebookMapConfig)  # UMAP and figure settings
    patch_px: int = 128  # the pinned patch images are upscaled (nearest) to about this size


# ---------------------------------------------------------------- small helpers
def _round_value(value, what: str) -> int:
    if value in (None, ""):
        raise InputError(f"Pick {what}.")
    if isinstance(value, str) and value.strip().lower().startswith("original"):
        return ORIGINAL_ROUND
    try:
        return whole_number(value, "round")
    except InputError:  # a fraction too: round 1.5 is not round 1
        raise InputError(f"{what.capitalize()} is not a round: {value!r}.") from None


def round_label(index: int) -> str:
    return "original" if index == ORIGINAL_ROUND else f"round {index}"


def run_target_codebook(services: Services, run_id: int) -> str:
    run = services.store.get_run(run_id)
    if run is None:
        raise InputError(f"There is no run #{run_id} (refresh the run list).")
    target = (run.config.get("safecb") or {}).get("target", "generator")
    return TARGET_CODEBOOK.get(target, "gen_head")


def _codebook_name(services: Services, run_id: int, value) -> str:
    name = value or "auto"
    if name == "auto":
        return run_target_codebook(services, run_id)
    if name not in {v for _, v in CODEBOOK_CHOICES}:
        raise InputError(f"Unknown codebook {name!r}: pick one of decoder, gen_head, gen_embed.")
    return name


def _codebooks(services: Services, run_id: int, index: int) -> dict:
    return services.codebooks_for(None if index == ORIGINAL_ROUND else run_id,
                                  None if index == ORIGINAL_ROUND else index)


def _round_metrics(services: Services, run_id: int) -> dict[int, dict]:
    return {r.index: dict(r.metrics) for r in services.store.list_rounds(run_id)}


def harmful_space_basis(services: Services, run_id: int, later: int, codebook: str,
                        width: int) -> tuple[np.ndarray | None, str]:
    """The basis of the latest edit up to round `later` when `codebook` is what the run edits, and a
    one-line note of which it is (or why there is none)."""
    if later < 1:
        return None, "no Harmful Space: the unedited model has none (pick an edited round)"
    if codebook != run_target_codebook(services, run_id):
        return None, f"no Harmful Space for {codebook}: this run edits {run_target_codebook(services, run_id)}"
    directory = services.artifacts(run_id)
    if not directory.path.exists():
        return None, f"no Harmful Space: the run directory {directory.path} is not on this machine"
    for index in range(later, 0, -1):
        basis = directory.read_space(index)
        if basis is not None:
            if basis.shape[0] != width:
                return None, f"the saved Harmful Space is {basis.shape[0]}-dimensional, the rows {width}"
            return basis.float().numpy(), f"Harmful Space of round {index} (rank {basis.shape[1]})"
    return None, "no Harmful Space saved for this run (older run directory)"


def pair_grids(services: Services, run_id: int, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What round `index`'s harmful codes were picked from: the harmful and safe token grids of the
    round's stored pairs [P, N], and the benign grids [B, N] of the round the pairs were mined from."""
    pairs = services.store.list_pairs(run_id, index)
    generations = services.store.get_generations(
        [i for p in pairs for i in (p.harmful_generation_id, p.safe_generation_id)])
    kept = [p for p in pairs if p.harmful_generation_id in generations and p.safe_generation_id in generations]
    if not kept:
        empty = torch.zeros((0, 0), dtype=torch.long)
        return empty, empty, empty
    harmful = torch.tensor([generations[p.harmful_generation_id].tokens for p in kept])
    safe = torch.tensor([generations[p.safe_generation_id].tokens for p in kept])
    mined_from = generations[kept[0].harmful_generation_id].round_index
    n = services.store.count_generations(run_id, mined_from)
    benign = [g.tokens for g in services.store.list_generations(run_id, mined_from, limit=n)
              if g.settings.get("kind") == "benign"]
    return harmful, safe, torch.tensor(benign, dtype=torch.long).reshape(len(benign), harmful.shape[1])


def run_code_config(services: Services, run_id: int) -> HarmfulCodeConfig:
    """The harmful-code thresholds the run itself used."""
    run = services.store.get_run(run_id)
    codes = ((run.config.get("safecb") or {}).get("codes") or {}) if run is not None else {}
    return HarmfulCodeConfig(**codes)


def marked_codes(services: Services, run_id: int, later: int) -> tuple[list[int], dict[int, str], str]:
    """The harmful codes of round `later` by the engine's rule (`safecb.engine.space.harmful_codes`,
    with the run's thresholds, on the round's stored pairs), per-code hover notes, and a one-line summary."""
    if later < 1:
        return [], {}, "no harmful codes (unedited model)"
    harmful, safe, benign = pair_grids(services, run_id, later)
    if len(harmful) == 0:
        return [], {}, f"no harmful codes: round {later} has no stored pairs"
    config = run_code_config(services, run_id)
    codes, ratio = harmful_codes(harmful, safe, benign, services.backend.codebook_size, config)
    marked = [int(c) for c in codes]
    where = f"where the {len(harmful)} mined pairs differ (vs. safe and benign grids)"
    seen = harmful[harmful != safe].unique().tolist()  # the harmful grids' codes at those positions
    notes = {int(c): f"{float(ratio[c]):.1f}× over-represented {where}" for c in seen}
    for c in marked:
        notes[c] = f"harmful code: {notes[c]}"
    rule = f"≥ {config.ratio:g}× over-represented {where}, used ≥ {config.min_count}×"
    return marked, notes, f"{len(marked)} harmful codes marked by the engine's rule ({rule})"


# ---------------------------------------------------------------- handlers
def rounds_for_run(services: Services, run_value):
    """-> (round A update, round B update, status): A defaults to the unedited model, B to the last round."""
    try:
        run_id = parse_run_id(run_value)
        a_choices = round_choices(services.store, run_id, with_original=True)
        b_choices = round_choices(services.store, run_id)
        if not b_choices:
            return (gr.update(choices=a_choices, value=ORIGINAL_ROUND), gr.update(choices=[], value=None),
                    f"Run #{run_id} has no finished round yet: wait for round 0, then refresh.")  # a state, not an error: no toast
        last = b_choices[-1][1]
        target = run_target_codebook(services, run_id)
        return (gr.update(choices=a_choices, value=ORIGINAL_ROUND), gr.update(choices=b_choices, value=last),
                f"Run #{run_id}: {len(b_choices)} round(s); it edits {target}. Pick rounds and draw the map.")
    except InputError as exc:
        return gr.update(), gr.update(), f"⚠ {exc}"
    except Exception as exc:
        log.exception("could not list rounds")
        return gr.update(), gr.update(), f"⚠ Could not read the rounds ({type(exc).__name__}: {exc})."


def draw_map(services: Services, run_value, a_value, b_value, codebook_value,
             config: CodebookTabConfig | None = None):
    """-> (plotly figure or None, status, key). `key` ({"run", "a", "b", "codebook"}) names the map
    drawn; the inspector handlers take it back."""
    config = config or CodebookTabConfig()
    try:
        run_id = parse_run_id(run_value)
        a, b = _round_value(a_value, "round A"), _round_value(b_value, "round B")
        if b == ORIGINAL_ROUND and a != ORIGINAL_ROUND:
            a, b = b, a
        name = _codebook_name(services, run_id, codebook_value)
        metrics = _round_metrics(services, run_id)
        for index in (a, b):
            if index != ORIGINAL_ROUND and index not in metrics:
                raise InputError(f"Run #{run_id} has no finished round {index} (refresh the rounds).")
        start = time.perf_counter()
        rows_a = prepare_rows(name, _codebooks(services, run_id, a)[name])
        rows_b = prepare_rows(name, _codebooks(services, run_id, b)[name])
        later = max(a, b)
        basis, space_note = harmful_space_basis(services, run_id, later, name, rows_a.shape[1])
        marked, notes, codes_note = marked_codes(services, run_id, later)
        m = compute_codebook_map(rows_a, rows_b, basis, marked, config.map)
        key = {"run": run_id, "a": a, "b": b, "codebook": name}
        labels = (round_label(a), round_label(b))
        shown = f"{labels[0]} → {labels[1]}" if a != b else labels[1]
        title = f"run #{run_id} · {name} · {shown}"
        fig = codebook_map_figure(m, config.map, title=title, labels=labels, notes=notes, meta={"safecb": key})
    except InputError as exc:
        return None, f"⚠ {exc}", None
    except ValueError as exc:  # a missing snapshot, a codebook from another model
        return None, f"⚠ {exc}", None
    except Exception as exc:
        log.exception("codebook map failed")
        return None, f"⚠ The map failed ({type(exc).__name__}: {exc}). See the server log.", None
    seconds = time.perf_counter() - start
    moved = f"{labels[0]} → {labels[1]}: {int(m.moved.sum())} of {m.codebook_size} rows moved" if a != b else labels[1]
    status = (f"{moved} · {space_note} · {codes_note} · {seconds:.1f} s (UMAP {m.seconds:.1f} s). "
              "Hover a point for its decoded patch.")
    return fig, status, key


@dataclass
class CodeView:
    code: int
    image_a: np.ndarray  # uint8 decoded patch through round A's decoder codebook
    image_b: np.ndarray  # the same through round B's
    text: str  # markdown: share, drift, what the patch is


def view_code(services: Services, key: dict | None, code) -> CodeView:
    """Both rounds' decoded patches of one code, and its figures. Raises InputError on bad input."""
    if not key:
        raise InputError("Draw a map first.")
    if code in (None, ""):
        raise InputError("Enter a code id.")
    try:
        number = float(code)
    except (TypeError, ValueError):
        raise InputError(f"A code id is a whole number, got {code!r}.") from None
    size = services.backend.codebook_size
    if not number.is_integer() or not 0 <= number < size:
        raise InputError(f"A code id is a whole number in [0, {size - 1}], got {code!r}.")
    code = int(number)
    run_id, a, b, name = int(key["run"]), int(key["a"]), int(key["b"]), str(key["codebook"])
    if name not in {value for _, value in CODEBOOK_CHOICES} - {"auto"}:
        raise InputError(f"Unknown codebook {name!r}.")
    books_a, books_b = _codebooks(services, run_id, a), _codebooks(services, run_id, b)
    image_a = patch_image(services.backend, books_a, code)
    image_b = patch_image(services.backend, books_b, code)
    row_a = prepare_rows(name, books_a[name][code : code + 1])
    row_b = prepare_rows(name, books_b[name][code : code + 1])
    lines = [f"**code {code}** in `{name}`"]
    basis, _ = harmful_space_basis(services, run_id, max(a, b), name, row_a.shape[1])
    if basis is not None:
        lines.append(f"projection share {projection_share(row_b, basis)[0]:.3f} "
                     f"({round_label(a)}: {projection_share(row_a, basis)[0]:.3f})")
    moved = float(np.linalg.norm(row_b - row_a))
    lines.append(f"drift {round_label(a)} → {round_label(b)}: {moved:.4f}")
    if name != "decoder":
        lines.append("A generator code has no pixels of its own: the patch is its decoder row; the "
                     "generator edit changes *when* the code is emitted, not how it looks.")
    return CodeView(code, image_a, image_b, "  \n".join(lines))


def inspect_code(services: Services, key: dict | None, code, config: CodebookTabConfig | None = None):
    """-> (patch A or None, patch B or None, markdown). Never raises."""
    config = config or CodebookTabConfig()
    try:
        view = view_code(services, key, code)
    except (InputError, ValueError, KeyError) as exc:
        return None, None, f"⚠ {exc}"
    except Exception as exc:
        log.exception("code inspection failed")
        return None, None, f"⚠ Could not decode the code ({type(exc).__name__}: {exc})."
    return upscale(view.image_a, config.patch_px), upscale(view.image_b, config.patch_px), view.text


def _data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def patch_payload(services: Services, data) -> dict:
    """What the hover inspector's server function `code_patches` answers: data {"run", "a", "b",
    "codebook", "code"} (the map's layout.meta plus a point's code) -> {"ok", "code", "a", "b"
    (PNG data URLs), "label_a", "label_b", "text"} or {"ok": False, "text": why}. Never raises."""
    try:
        if not isinstance(data, dict):
            raise InputError("expected the map's key and a code")
        key = {k: data.get(k) for k in ("run", "a", "b", "codebook")}
        if any(v is None for v in key.values()):
            raise InputError("the map does not say which run it shows; draw it again")
        view = view_code(services, key, data.get("code"))
    except (InputError, ValueError, KeyError) as exc:
        return {"ok": False, "text": str(exc)}
    except Exception as exc:
        log.exception("hover patch failed")
        return {"ok": False, "text": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "code": view.code, "a": _data_url(view.image_a), "b": _data_url(view.image_b),
            "label_a": round_label(int(key["a"])), "label_b": round_label(int(key["b"])),
            "text": view.text.replace("**", "").replace("`", "").replace("*", "")}


# ---------------------------------------------------------------- layout
def _warn(status: str) -> None:
    if status.startswith("⚠"):
        gr.Warning(status.removeprefix("⚠ "))


def build_codebook_tab(services: Services, config: CodebookTabConfig | None = None) -> None:
    """Lay out the tab inside the current Blocks context and wire its handlers."""
    config = config or CodebookTabConfig()
    try:
        initial = run_choices(services.store)
    except Exception:  # the store is down: the refresh button says why
        log.exception("could not list runs")
        initial = []
    def code_patches(data):  # the name the inspector's JS calls: server.code_patches(...)
        return patch_payload(services, data)

    gr.Markdown("UMAP of a codebook's rows, coloured by how much of each row lies in the Harmful Space. "
                "Diamonds mark harmful codes; arrows show how rows moved from round A to round B.")
    with gr.Row():
        run = gr.Dropdown(initial, value=initial[0][1] if initial else None, label="Run", scale=4)
        refresh = gr.Button("↻ Refresh runs", scale=1, min_width=120)
    with gr.Row():
        round_a = gr.Dropdown([], label="Round A (from)", info="original = the unedited model")
        round_b = gr.Dropdown([], label="Round B (to)")
        codebook = gr.Dropdown(CODEBOOK_CHOICES, value="auto", label="Codebook")
        draw = gr.Button("Draw map", variant="primary", min_width=120)
    status = gr.Textbox(label="Status", interactive=False, lines=2)
    key = gr.State(None)
    with gr.Row():
        with gr.Column(scale=3):
            plot = gr.Plot(label="Codebook map", elem_id=MAP_ELEM_ID)
        with gr.Column(scale=1, min_width=260):
            inspector = gr.HTML("", html_template=(STATIC_DIR / "codebook_inspector.html").read_text(),
                                css_template=(STATIC_DIR / "codebook_inspector.css").read_text(),
                                js_on_load=(STATIC_DIR / "codebook_inspector.js").read_text(),
                                map_id=MAP_ELEM_ID, server_functions=[code_patches])
            code = gr.Number(label="Code id", step=1, minimum=0, info="or click a point")
            show = gr.Button("Show patch")
            with gr.Row():
                patch_a = gr.Image(label="Round A", type="numpy", interactive=False, height=150, min_width=110,
                                   elem_classes=["safecb-pixels"])
                patch_b = gr.Image(label="Round B", type="numpy", interactive=False, height=150, min_width=110,
                                   elem_classes=["safecb-pixels"])
            code_text = gr.Markdown()

    def on_load():
        update, message = refresh_runs(services, None)
        a_update, b_update, rounds_message = rounds_for_run(services, update.get("value"))
        return update, a_update, b_update, rounds_message if update.get("value") is not None else message

    def on_refresh(current):
        update, message = refresh_runs(services, current)
        _warn(message)
        return update, message

    def on_run(run_value):
        out = rounds_for_run(services, run_value)
        if run_value not in (None, ""):  # cleared by a refresh with no runs: not the user's mistake
            _warn(out[2])
        return out

    def on_draw(run_value, a_value, b_value, codebook_value):
        fig, message, drawn = draw_map(services, run_value, a_value, b_value, codebook_value, config)
        _warn(message)
        return (fig if fig is not None else gr.update()), message, drawn

    def on_show(drawn, code_value):
        out = inspect_code(services, drawn, code_value, config)
        _warn(out[2])
        return out

    def on_pin(evt: gr.EventData):
        data = dict(getattr(evt, "_data", None) or {})
        drawn = {k: data.get(k) for k in ("run", "a", "b", "codebook")}
        out = inspect_code(services, drawn, data.get("code"), config)
        return (data.get("code"), *out)

    gr.on(None, on_load, None, [run, round_a, round_b, status], api_name=False)  # on page load
    refresh.click(on_refresh, [run], [run, status], api_name=False)
    run.change(on_run, [run], [round_a, round_b, status], api_name=False)
    draw.click(on_draw, [run, round_a, round_b, codebook], [plot, status, key], api_name=False)
    show.click(on_show, [key, code], [patch_a, patch_b, code_text], api_name=False)
    code.submit(on_show, [key, code], [patch_a, patch_b, code_text], api_name=False)
    inspector.click(on_pin, None, [code, patch_a, patch_b, code_text], api_name=False)
