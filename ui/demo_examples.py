"""The Generate tab's example prompts, each with a seed at which the shipped model shows what the
prompt names: `python -m ui examples` writes assets/demo_examples.json.

An example clicked in a demo must show its knife: at seed 0 a prompt can come out as a smudge. For
each example prompt the command draws seeds 0…SEEDS_TRIED-1 with the shipped toy model (default
sampling) and keeps the first seed at which the oracle finds every object the prompt names (the
evaluation oracle picks pictures for a demo here; it never steers Safe-CB). The file records the
model's fingerprint; the app uses its seeds only for that model and seed 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safecb.paths import ROOT, TOY_MODEL_DIR
from safecb.world import Prompt, build_prompt_sets

EXAMPLES_FILE = ROOT / "assets" / "demo_examples.json"
SEEDS_TRIED = 16  # seeds tried per example prompt
EXAMPLES_PER_SET = 3  # prompts from each of the four prompt sets (train/held-out × benign/harmful)


def example_prompt_sets(n_each: int = EXAMPLES_PER_SET) -> tuple[list[Prompt], list[Prompt]]:
    """(benign, harmful) example prompts from the toy world's prompt sets, train and held-out."""
    sets = build_prompt_sets()
    return (sets.train_benign[:n_each] + sets.heldout_benign[:n_each],
            sets.train_harmful[:n_each] + sets.heldout_harmful[:n_each])


def choose_seeds(backend, oracle, prompts: list[Prompt], seeds_tried: int = SEEDS_TRIED) -> list[dict]:
    """Per prompt: the first seed at which the oracle finds every object it names (`shows_all`), or
    seed 0 when no seed tried does."""
    seeds = list(range(seeds_tried))
    images = backend.generate([p.text for p in prompts], seeds).images
    found = oracle.has_all(images, [p.spec for p in prompts for _ in seeds]).reshape(len(prompts), len(seeds))
    chosen = []
    for prompt, row in zip(prompts, found):
        hits = [s for s, ok in zip(seeds, row) if ok]
        chosen.append({"prompt": prompt.text, "seed": hits[0] if hits else 0, "shows_all": bool(hits)})
    return chosen


def write_examples(backend, oracle, path: Path = EXAMPLES_FILE) -> dict:
    benign, harmful = example_prompt_sets()
    record = {"command": "python -m ui examples", "model_fingerprint": backend.fingerprint,
              "seeds_tried": SEEDS_TRIED, "benign": choose_seeds(backend, oracle, benign),
              "harmful": choose_seeds(backend, oracle, harmful)}
    Path(path).write_text(json.dumps(record, indent=2) + "\n")
    return record


def example_seeds(fingerprint: str, path: Path = EXAMPLES_FILE) -> dict[str, int]:
    """{prompt: seed} from the file when it was written for the model with `fingerprint`, else {}."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if record.get("model_fingerprint") != fingerprint:
        return {}
    return {row["prompt"]: int(row["seed"]) for key in ("benign", "harmful") for row in record.get(key, [])}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(TOY_MODEL_DIR), help="the model the seeds are chosen for")
    parser.add_argument("--out", default=str(EXAMPLES_FILE), help="JSON file to write")
    args = parser.parse_args(argv)
    from safecb.eval.toy_oracle import Oracle
    from safecb.models.backend import JanusBackend

    record = write_examples(JanusBackend.load(args.model, device="cpu"), Oracle.load(), Path(args.out))
    for key in ("benign", "harmful"):
        for row in record[key]:
            print(f"{key:8s} seed {row['seed']:2d} {'shows all' if row['shows_all'] else 'NOT FOUND'}  {row['prompt']}")
    return 0
