"""The Generate tab's examples show what they name: each comes with a seed at which the shipped
model draws every object the prompt names (by the oracle), from assets/demo_examples.json."""

import json

import numpy as np

from safecb.eval.toy_oracle import Oracle
from ui.demo_examples import EXAMPLES_FILE, choose_seeds, example_prompt_sets, example_seeds
from ui.generate_tab import example_prompts


def test_the_shipped_file_is_for_the_shipped_model_and_its_examples(toy_backend):
    """Fails when the model or the example prompts change until `python -m ui examples` is rerun."""
    record = json.loads(EXAMPLES_FILE.read_text())
    assert record["model_fingerprint"] == toy_backend.fingerprint
    benign, harmful = example_prompts()
    assert [r["prompt"] for r in record["benign"]] == benign and [r["prompt"] for r in record["harmful"]] == harmful
    assert all(r["shows_all"] for r in record["harmful"]), record["harmful"]
    assert (example_seeds(toy_backend.fingerprint)
            == {r["prompt"]: r["seed"] for r in record["benign"] + record["harmful"]})
    assert example_seeds("another model") == {}


def test_a_chosen_seed_shows_every_object_the_prompt_names(toy_backend):
    oracle = Oracle.load()
    _, harmful = example_prompt_sets()
    chosen = choose_seeds(toy_backend, oracle, harmful[:2], seeds_tried=4)
    for prompt, row in zip(harmful[:2], chosen):
        assert row["prompt"] == prompt.text and 0 <= row["seed"] < 4
        image = toy_backend.generate([prompt.text], [row["seed"]]).images
        assert bool(oracle.has_all(image, [prompt.spec])[0]) == row["shows_all"]
        if not row["shows_all"]:
            assert row["seed"] == 0
    drawn = toy_backend.generate([harmful[0].text], list(range(4))).images
    found = oracle.has_all(drawn, [harmful[0].spec] * 4)
    assert chosen[0]["shows_all"] == bool(np.any(found)) and (not found.any() or chosen[0]["seed"] == int(np.argmax(found)))
