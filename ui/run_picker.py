"""The run dropdown's refresh, shared by the codebook-map and metrics tabs (a candidate for ui/common.py)."""

from __future__ import annotations

import logging

import gradio as gr

from .common import run_choices
from .services import Services

log = logging.getLogger(__name__)


def refresh_runs(services: Services, current=None):
    """-> (run dropdown update, status). Keeps the current run when it still exists, else the newest.
    Never raises: a store error comes back as a "⚠ ..." status."""
    try:
        choices = run_choices(services.store)
    except Exception as exc:
        log.exception("could not list runs")
        return gr.update(), f"⚠ Could not read the runs ({type(exc).__name__}: {exc})."
    ids = [v for _, v in choices]
    if not ids:
        return gr.update(choices=[], value=None), "No runs yet: start one in the Run tab, then refresh."
    try:
        keep = int(current) if current not in (None, "") and int(current) in ids else ids[0]
    except (TypeError, ValueError):
        keep = ids[0]
    return gr.update(choices=choices, value=keep), f"{len(ids)} run(s)."
