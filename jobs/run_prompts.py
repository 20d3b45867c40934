"""Where a run's prompts come from: a set stored with the run when it was submitted (the toy
world's by default), or an I2P selection whose prompt set the run's job builds before round 0,
because the safe rewrites are the model's own and proposing them is model work (docs/studio.md).

The built set is saved in the run directory (`i2p_prompts.json`, as the CLI saves it) and read
back on a resume, and the store gets its prompt rows once, in one transaction, so a kill at any
point neither loses nor duplicates them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from db import Store
from db.records import RunRecord
from safecb.engine.prompts import RoundPrompts
from safecb.models.backend import JanusBackend
from safecb.prompts.i2p import I2PConfig, load_i2p
from safecb.prompts.rounds import i2p_config_from_dict, i2p_prompt_set, saved_i2p_prompts


def check_i2p(config: I2PConfig) -> int:
    """How many prompts an I2P selection keeps; ValueError, in one line, when the file cannot be
    read, a category is unknown or nothing matches."""
    try:
        records = load_i2p(config)
    except OSError as exc:
        raise ValueError(f"cannot read the I2P file {config.path}: {exc.strerror or exc}") from None
    if not records:
        wanted = ", ".join(config.categories) or "any category"
        raise ValueError(f"no I2P prompt matches {wanted}{' (hard prompts only)' if config.hard_only else ''}")
    return len(records)


def prompt_rows(prompts: RoundPrompts) -> list[dict]:
    """The store's rows for a prompt set: the harmful prompts with their rewrites, then the benign ones."""
    return ([{"text": p.text, "harmful": True, "category": p.category, "safe_rewrite": p.rewrite}
             for p in prompts.harmful] + [{"text": b.text, "harmful": False} for b in prompts.benign])


def job_prompts(store: Store, run: RunRecord, backend: JanusBackend, run_dir: Path, say: Callable[[str], None],
                after_batch: Callable[[int, int], None] | None = None) -> RoundPrompts:
    """The prompts a run's job measures. For an I2P run: the saved set, else one built now (`say`
    tells the job's log; `after_batch(answered, total)` follows the model's rewrites and may raise
    to stop the build), recorded in the store when the store has none for the run yet."""
    if "prompts" in run.config:
        return RoundPrompts.from_dict(run.config["prompts"])
    config = i2p_config_from_dict(run.config["i2p"])
    if saved_i2p_prompts(run_dir) is None:
        say(f"building the I2P prompt set: the model proposes a safe rewrite for each of "
            f"{check_i2p(config)} prompts")
    prompts = i2p_prompt_set(backend, config, run_dir, after_batch=after_batch)
    if not store.list_prompts(run.id):
        store.add_prompts(run.id, prompt_rows(prompts))
    return prompts


def run_prompt_set(run: RunRecord, run_dir: Path) -> dict | None:
    """A run's prompt set as JSON-ready data (stored, or built by its job); None before an I2P run's
    job has built it."""
    if "prompts" in run.config:
        return run.config["prompts"]
    saved = saved_i2p_prompts(run_dir)
    return None if saved is None else saved.to_dict()
