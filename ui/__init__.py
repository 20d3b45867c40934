"""Gradio front end: `build_demo(services) -> gr.Blocks`, one module per tab. No module-level model.

The tabs read and write only through the store (db/) and call `safecb` entry points; long work is a
job in the store that the runner (jobs/runner.py) executes, so a page reload or an app restart loses
nothing that finished.
"""

from __future__ import annotations

import os

# Before torch is first imported (the tabs import safecb): OpenMP threads sleep instead of spinning
# while they wait. Spinning threads made a round ~7x slower on a busy machine (docs/studio.md,
# "Threads"). This covers `python -m ui bench`; app.py sets the same. Set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import gradio as gr

from .codebook_tab import build_codebook_tab
from .common import run_choices
from .errors import guard_handlers
from .export_tab import build_export_tab
from .flagged_tab import build_flagged_tab
from .generate_tab import build_generate_tab
from .metrics_tab import build_metrics_tab
from .pairs_tab import build_pairs_tab
from .redteam_tab import build_redteam_tab
from .run_tab import build_run_tab
from .services import Services
from .walkthrough_tab import build_walkthrough_tab

# Passed to `launch(css=...)` (Gradio 6 takes CSS at launch): tiny pixel images stay crisp, and those
# marked safecb-grow fill their box (larger on a wide screen or a projector); tabs are
# padded less so all nine fit in one row of the bar down to 800 px (narrower, the bar wraps); the seed
# strip's captions may take the thumbnail's whole width, so P(unsafe) is not cut off.
CSS = """
.safecb-pixels img { image-rendering: pixelated; }
.safecb-grow img { width: 100% !important; height: 100% !important; object-fit: contain; }
.tab-container button[role="tab"] { padding-left: 7px; padding-right: 7px; font-size: 13px; }
#seed-strip .caption-label { max-width: calc(100% - 8px); }
"""
# Passed to `launch(theme=...)`: Gradio's default theme with the system's fonts. Its own font, served
# from the app without internet, is a subset that lacks some capitals ("Safe-CB" drew its B in a
# fallback font).
THEME = gr.themes.Default(font=("ui-sans-serif", "system-ui", "sans-serif"),
                          font_mono=("ui-monospace", "Consolas", "monospace"))
# Passed to `launch(head=...)`: narrow windows lose most of the page margin. (Gradio scopes `css` rules
# to elements inside the app, and the margin belongs to the element around it.)
HEAD = """<style>
@media (max-width: 1000px) { .main.app { padding-left: 8px !important; padding-right: 8px !important;
                                         margin: 0 !important; max-width: 100% !important; } }
</style>"""


def _model_line(services: Services) -> str:
    b = services.backend
    name = Path(b.source).name or "model"
    runner = "in-process job runner" if services.runner is not None else "jobs run by a separate worker"
    return (
        f"Model: `{name}` · {b.codebook_size} codes · {b.grid_size}×{b.grid_size} tokens · "
        f"{b.image_size}×{b.image_size} px · {b.device.type} · {services.store.dialect} store · {runner}"
    )


MODEL_WORK = ("on_generate", "on_strip", "on_compare", "on_draw", "on_show")  # handlers that run the model, a decode or UMAP
MODEL_QUEUE = "model"  # their shared concurrency id: one at a time, in order, whoever clicked
QUEUE_MAX = 64  # requests waiting in the app's queue at most; more are refused with "queue full"
# Gradio's upload and output cache: every 10 minutes, files older than an hour are deleted (and all
# of them when the app stops), so uploads cannot fill the disk. An import copies what it keeps.
CACHE_CLEANUP = (600, 3600)


def share_model_queue(demo: gr.Blocks) -> gr.Blocks:
    """Put every model-work handler in one queue that runs one request at a time, so a crowd
    clicking Generate cannot run N model calls at once on one machine."""
    for block_fn in demo.fns.values():
        if block_fn.name in MODEL_WORK:
            block_fn.concurrency_id, block_fn.concurrency_limit = MODEL_QUEUE, 1
    return demo


def build_demo(services: Services) -> gr.Blocks:
    with gr.Blocks(title="Safe-CB Studio", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(
            "# Safe-CB Studio\n"
            "Codebook safety exploration for autoregressive unified image generators.  \n"
            + _model_line(services) + "  \n"
            "**Try it:** generate a harmful example prompt → start a run in *Run* (on the toy model a round takes "
            "about a minute on two CPU cores) → pick the run under *Compare codebooks* → attack its best round in "
            "*Red team*."
        )
        with gr.Tabs(overflow_behavior="wrap") as tabs:  # every tab stays visible: a narrow window wraps the bar
            with gr.Tab("Generate & compare", id="generate"):
                compare_run = build_generate_tab(services)
            with gr.Tab("Run", id="run"):
                compare_this_run, shown_run = build_run_tab(services)
            with gr.Tab("Flagged", id="flagged"):
                build_flagged_tab(services)
            with gr.Tab("Pairs", id="pairs"):
                build_pairs_tab(services)
            with gr.Tab("Codebook map", id="codebook"):
                build_codebook_tab(services)
            with gr.Tab("Metrics", id="metrics"):
                build_metrics_tab(services)
            with gr.Tab("Red team", id="redteam"):
                build_redteam_tab(services)
            with gr.Tab("Export / import", id="export"):
                build_export_tab(services)
            with gr.Tab("Walkthrough", id="walkthrough"):
                build_walkthrough_tab(services)
        # the end of a run: straight to Compare, with the run picked (its best round goes on the right)
        compare_this_run.click(lambda run_id: (gr.Tabs(selected="generate"),
                                               gr.update(choices=run_choices(services.store), value=run_id)),
                               [shown_run], [tabs, compare_run], api_name=False)
    return guard_handlers(share_model_queue(demo))


__all__ = ["CACHE_CLEANUP", "CSS", "HEAD", "QUEUE_MAX", "THEME", "Services", "build_demo"]
