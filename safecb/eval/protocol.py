"""The evaluation protocol every bench and the studio share: which image seeds are reported on and
which are tuned on, the reference renders FID-toy compares against, and which oracle annotates a run.

Seeds. Training and mining use seeds 0..; configs are tuned on `TUNING_SEED_START`.. and figures are
reported on `BENCH_SEED_START`.., so no reported figure was tuned on. FID-toy's reference set is
each prompt's scene rendered afresh at `REFERENCE_RENDER_SEED_START + i`, seeds no image of the
model was trained on.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import world
from ..engine.prompts import RoundPrompts, toy_round_prompts
from .annotate import OracleAnnotator
from .toy_oracle import Oracle

BENCH_SEED_START = 1000  # first image seed of every reported figure
TUNING_SEED_START = 2000  # first image seed that settings are tuned on
REFERENCE_RENDER_SEED_START = 50_000  # first render seed of FID-toy's reference scenes


def bench_seeds(n: int, start: int = BENCH_SEED_START) -> list[int]:
    return list(range(start, start + n))


def reference_renders(specs: list[world.SceneSpec]) -> np.ndarray:
    """uint8 [N, H, W, 3]: scene i rendered at render seed REFERENCE_RENDER_SEED_START + i."""
    return np.stack([world.render(spec, REFERENCE_RENDER_SEED_START + i) for i, spec in enumerate(specs)])


def toy_benign_renders(n_seeds: int, config: world.PromptSetConfig | None = None) -> np.ndarray:
    """The FID-toy reference for the default round prompts: each toy train benign prompt's scene,
    `n_seeds` renders per prompt."""
    return reference_renders([p.spec for p in world.build_prompt_sets(config).train_benign for _ in range(n_seeds)])


def annotator_for(oracle, prompts: RoundPrompts, n_benign_seeds: int, backend=None,
                  original_decoder: torch.Tensor | None = None) -> OracleAnnotator:
    """The annotator a run reports oracle figures with. FID-toy needs reference renders of the
    benign prompts' scenes, which exist only for the toy oracle on the default toy prompts. With a
    `backend` and its `original_decoder`, rounds whose decoder is edited also report what the model
    drew (`oracle_unsafe_train_model`: the round's tokens through the original decoder)."""
    from .broad import model_level_images

    primary = (getattr(oracle, "members", None) or [oracle])[0]
    toy = isinstance(primary, Oracle) and prompts == toy_round_prompts()
    drawn = None
    if backend is not None and original_decoder is not None:
        def drawn(tokens):
            return model_level_images(backend, tokens, original_decoder)
    return OracleAnnotator(oracle, prompts, toy_benign_renders(n_benign_seeds) if toy else None, drawn=drawn)
