"""Gradio front end: `build_demo(services) -> gr.Blocks`, one module per tab. No module-level model."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from .generate_tab import build_generate_tab
from .services import Services

# Passed to `launch(css=...)` (Gradio 6 takes CSS at launch): keep tiny pixel images crisp.
CSS = ".safecb-pixels img { image-rendering: pixelated; }"


def _model_line(services: Services) -> str:
    b = services.backend
    name = Path(b.source).name or "model"
    return (
        f"Model: `{name}` · {b.codebook_size} codes · {b.grid_size}×{b.grid_size} tokens · "
        f"{b.image_size}×{b.image_size} px · {b.device.type}"
    )


def build_demo(services: Services) -> gr.Blocks:
    with gr.Blocks(title="Safe-CB Studio", analytics_enabled=False) as demo:
        gr.Markdown(
            "# Safe-CB Studio\n"
            "Codebook safety exploration for autoregressive unified image generators.  \n"
            + _model_line(services)
        )
        with gr.Tabs():
            with gr.Tab("Generate"):
                build_generate_tab(services)
    return demo


__all__ = ["CSS", "Services", "build_demo"]
