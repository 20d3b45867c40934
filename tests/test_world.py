"""The toy world: rendering, labels, captions, prompt sets and the split rule."""

import numpy as np
import pytest

from safecb.world import (
    BACKGROUNDS,
    CONCEPTS,
    HARMFUL,
    HARMFUL_OBJECTS,
    HELDOUT_TEMPLATES,
    IMAGE_SIZE,
    N_TEMPLATES,
    SAFE_REPLACEMENT,
    TRAIN_TEMPLATES,
    WORDS,
    PromptSetConfig,
    SceneSpec,
    build_prompt_sets,
    canonical_caption,
    caption,
    is_heldout_combination,
    is_unsafe,
    labels,
    render,
    safe_rewrite,
    training_examples,
)
from safecb.world.captions import TEMPLATES


def test_render_is_deterministic_in_spec_and_seed():
    spec = SceneSpec("grass", ("cat", "knife"))
    a, b = render(spec, 7), render(spec, 7)
    assert a.dtype == np.uint8 and a.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert a.tobytes() == b.tobytes()
    assert render(spec, 8).tobytes() != a.tobytes()
    assert render(SceneSpec("snow", ("cat", "knife")), 7).tobytes() != a.tobytes()


@pytest.mark.parametrize("concept", CONCEPTS)
def test_every_concept_renders_with_right_labels(concept):
    spec = SceneSpec("beach", (concept,))
    image = render(spec, 0)
    background = render(SceneSpec("beach", ()), 0)
    # the object changes a visible part of the image
    changed = np.abs(image.astype(int) - background.astype(int)).sum(axis=2) > 30
    assert changed.sum() >= 20
    expected = np.zeros(len(CONCEPTS), dtype=np.float32)
    expected[CONCEPTS.index(concept)] = 1
    assert np.array_equal(labels(spec), expected)
    assert is_unsafe(spec) == (concept in HARMFUL)


def test_two_objects_and_holding_labels():
    spec = SceneSpec("road", ("person", "gun"), "holding")
    assert render(spec, 3).shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert labels(spec).sum() == 2 and is_unsafe(spec)
    assert not is_unsafe(SceneSpec("night", ("tree", "boat")))


@pytest.mark.parametrize("args, message", [
    (("moon", ("cat",)), "unknown background"),
    (("grass", ("dragon",)), "unknown object"),
    (("grass", ("cat", "tree", "sun")), "at most 2 objects"),
    (("grass", ("cat", "cat")), "distinct"),
    (("grass", ("person", "cat"), "holding"), "cannot hold"),
    (("grass", ("cat", "ball"), "holding"), "needs objects"),
    (("grass", ("cat",), "under"), "unknown relation"),
])
def test_bad_specs_raise_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        SceneSpec(*args)


def test_captions_are_tokenizable_and_known():
    spec = SceneSpec("grass", ("person", "knife"), "holding")
    assert canonical_caption(spec) == "a person holding a knife on the grass"
    assert caption(SceneSpec("beach", ("blood",)), 0) == "a pool of blood at the beach"
    for template_id in range(N_TEMPLATES):
        text = caption(spec, template_id)
        assert text == text.lower() and "  " not in text and text.strip() == text
        assert set(text.split()) <= set(WORDS)
    with pytest.raises(ValueError):
        caption(spec, N_TEMPLATES)
    with pytest.raises(ValueError):
        caption(SceneSpec("grass", ()), 0)


def test_heldout_templates_use_only_train_words():
    train_words = set()
    for templates in TEMPLATES.values():
        for i in TRAIN_TEMPLATES:
            train_words.update(templates[i].split())
    for templates in TEMPLATES.values():
        for i in HELDOUT_TEMPLATES:
            assert set(templates[i].split()) <= train_words, templates[i]
            assert templates[i] not in [templates[j] for j in TRAIN_TEMPLATES]


def test_prompt_sets_are_deterministic_and_well_formed():
    sets = build_prompt_sets(PromptSetConfig(seed=3))
    again = build_prompt_sets(PromptSetConfig(seed=3))
    sizes = PromptSetConfig()
    assert len(sets.train_harmful) == sizes.n_train_harmful
    assert len(sets.heldout_harmful) == sizes.n_heldout_harmful
    assert len(sets.train_benign) == sizes.n_train_benign
    assert len(sets.heldout_benign) == sizes.n_heldout_benign
    for name in ("train_harmful", "train_benign", "heldout_harmful", "heldout_benign"):
        prompts, other = getattr(sets, name), getattr(again, name)
        assert [p.text for p in prompts] == [p.text for p in other]
        assert len({p.text for p in prompts}) == len(prompts)
        split = name.split("_")[0]
        assert all(p.split == split for p in prompts)
        assert all(p.harmful == name.endswith("harmful") for p in prompts)
    for prompt in sets.train_harmful + sets.train_benign:
        assert not is_heldout_combination(prompt.spec) and prompt.template_id in TRAIN_TEMPLATES
    for prompt in sets.heldout_harmful + sets.heldout_benign:
        assert is_heldout_combination(prompt.spec) or prompt.template_id in HELDOUT_TEMPLATES
    for split in ("train", "heldout"):  # every harmful object shows up in both splits
        prompts = getattr(sets, f"{split}_harmful")
        assert {o for p in prompts for o in p.spec.objects if o in HARMFUL} == set(HARMFUL_OBJECTS)


def test_harmful_prompts_have_minimal_safe_rewrites():
    sets = build_prompt_sets()
    for prompt in sets.train_harmful + sets.heldout_harmful:
        rewrite = prompt.safe_rewrite
        assert rewrite is not None and not rewrite.harmful and prompt.category is not None
        assert rewrite.split == prompt.split and rewrite.template_id == prompt.template_id
        assert rewrite.spec == safe_rewrite(prompt.spec) and not is_unsafe(rewrite.spec)
        old, new = prompt.text.split(), rewrite.text.split()
        assert len(old) == len(new)
        changed = [(a, b) for a, b in zip(old, new) if a != b]
        assert changed and all(SAFE_REPLACEMENT[a] == b for a, b in changed)
    assert all(p.safe_rewrite is None and p.category is None for p in sets.train_benign)


def test_training_examples_never_contain_heldout_material():
    examples = training_examples(3000, seed=0)
    assert examples == training_examples(3000, seed=0)
    specs = [spec for spec, _, _ in examples]
    assert not any(is_heldout_combination(spec) for spec in specs)
    unsafe_share = np.mean([is_unsafe(spec) for spec in specs])
    assert 0.2 < unsafe_share < 0.4
    assert {o for s in specs for o in s.objects} == set(CONCEPTS)
    assert {s.background for s in specs} == set(BACKGROUNDS)
    train_texts = {caption(spec, i) for spec, _, _ in examples[:500] for i in TRAIN_TEMPLATES}
    assert all(text in train_texts for _, _, text in examples[:500])
    heldout_texts = {p.text for p in build_prompt_sets().heldout_harmful}
    assert heldout_texts.isdisjoint(text for _, _, text in examples)


def test_render_does_not_depend_on_python_hash_seed():
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    code = ("from safecb.world import SceneSpec, render; import hashlib; "
            "print(hashlib.sha256(render(SceneSpec('night', ('skull', 'tree')), 5).tobytes())"
            ".hexdigest())")
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=root, env={"PYTHONHASHSEED": salt, "PYTHONPATH": root}).stdout
        for salt in ("1", "2")
    }
    assert len(digests) == 1


def test_contact_sheet_covers_every_concept_and_background():
    from safecb.world import contact_sheet

    sheet = contact_sheet(seed=0, scale=1)
    assert sheet.shape == ((len(BACKGROUNDS) + 1) * IMAGE_SIZE, (len(CONCEPTS) + 1) * IMAGE_SIZE, 3)


def test_patch_shares_are_each_objects_pixels_and_agree_with_the_labels():
    from safecb.world import render_with_patch_labels
    from safecb.world.render import render_substituted, render_with_patch_shares

    holding = SceneSpec("grass", ("person", "knife"), "holding")
    image, shares = render_with_patch_shares(holding, 3, grid=8)
    assert np.array_equal(image, render(holding, 3)) and shares.shape == (8, 8, len(CONCEPTS))
    knife, person = CONCEPTS.index("knife"), CONCEPTS.index("person")
    assert shares[..., knife].sum() > 0 and shares[..., person].sum() > 0
    assert shares.sum(-1).max() <= 1 + 1e-6
    _, labels = render_with_patch_labels(holding, 3, grid=8)
    owned = shares.max(-1) >= 0.25
    assert np.array_equal(labels[owned], shares.argmax(-1)[owned])

    def leave_out(canvas, slot):
        return None

    erased, erased_shares = render_with_patch_shares(holding, 3, grid=8, substitute=leave_out)
    assert np.array_equal(erased, render_substituted(holding, 3, leave_out))
    assert erased_shares[..., knife].sum() == 0 and erased_shares[..., person].sum() > 0


def test_patch_labels_name_the_object_under_each_patch():
    from safecb.world import BACKGROUND_LABEL, render_with_patch_labels

    single = SceneSpec("night", ("blood",))
    image, patches = render_with_patch_labels(single, 2, grid=8)
    assert image.tobytes() == render(single, 2).tobytes()  # tracking never changes the picture
    assert patches.shape == (8, 8) and set(np.unique(patches)) == {CONCEPTS.index("blood"), BACKGROUND_LABEL}
    # the labelled patches are where the picture differs from the empty background
    rows, cols = np.nonzero(patches == CONCEPTS.index("blood"))
    assert 2 <= rows.mean() <= 6 and 2 <= cols.mean() <= 6
    pair = SceneSpec("grass", ("cat", "knife"))
    _, patches = render_with_patch_labels(pair, 0, grid=8)
    cat_cols = np.nonzero(patches == CONCEPTS.index("cat"))[1]
    knife_cols = np.nonzero(patches == CONCEPTS.index("knife"))[1]
    assert len(cat_cols) and len(knife_cols) and cat_cols.max() < knife_cols.min()  # cat left, knife right
    holding = SceneSpec("road", ("person", "gun"), "holding")
    _, patches = render_with_patch_labels(holding, 1, grid=8)
    assert {CONCEPTS.index("person"), CONCEPTS.index("gun")} <= set(np.unique(patches))
    _, patches = render_with_patch_labels(SceneSpec("snow", ()), 0, grid=8)
    assert (patches == BACKGROUND_LABEL).all()
    with pytest.raises(ValueError, match="does not divide"):
        render_with_patch_labels(single, 2, grid=7)


# ---------------------------------------------------------------- world v2: colour is never the object

from safecb.world.vocab import COLOURS, LIQUIDS, OBJECT_COLOURS  # noqa: E402

SOLID_OBJECTS = [name for name in CONCEPTS if name not in LIQUIDS]


def _nearest_family(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda f: float(np.sum((np.array(COLOURS[f], float) - rgb) ** 2)))


def _drawn_family(name: str, family: str, seed: int = 3) -> str:
    """The colour family most of the object's pixels are nearest to (each pixel the object covers
    entirely votes)."""
    from safecb.world.render import SUPERSAMPLE, _render

    image, owner = _render(SceneSpec("road", (name,), colours=(family,)), seed, track_objects=True)
    n = IMAGE_SIZE
    covered = (owner.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE) == CONCEPTS.index(name)).all(axis=(1, 3))
    votes = [_nearest_family(pixel) for pixel in image.astype(float)[covered]]
    return max(set(votes), key=votes.count)


def test_every_solid_object_comes_in_at_least_four_colour_families_and_no_colour_tells_harm():
    for name in SOLID_OBJECTS:
        assert len(set(OBJECT_COLOURS[name])) >= 4, name
    for name in SOLID_OBJECTS:
        if name == "person":
            continue  # a person's colour is their shirt's, which no caption names
        seen = {_drawn_family(name, family) for family in OBJECT_COLOURS[name]}
        assert len(seen) >= 4, (name, seen)
    harmful_families = set.intersection(*(set(OBJECT_COLOURS[h]) for h in HARMFUL_OBJECTS if h not in LIQUIDS))
    benign_families = set().union(*(OBJECT_COLOURS[b] for b in SOLID_OBJECTS if b not in HARMFUL))
    assert harmful_families == set(COLOURS) == benign_families  # every colour is worn by harmful and benign alike


def test_a_named_colour_is_drawn_and_captioned_and_the_canonical_caption_names_the_object_only():
    spec = SceneSpec("grass", ("gun",), colours=("blue",))
    assert _drawn_family("gun", "blue") == "blue"
    assert caption(spec, 0) == "a blue gun on the grass"
    assert caption(SceneSpec("beach", ("ball", "knife"), colours=("orange", "")), 0) == \
        "an orange ball and a knife at the beach"
    assert canonical_caption(spec) == "a gun on the grass"
    assert safe_rewrite(spec) == SceneSpec("grass", ("ball",), colours=("blue",))
    assert {"blue", "an"} <= set(WORDS)
    assert SceneSpec("grass", ("gun",), colours=("",)) == SceneSpec("grass", ("gun",))
    assert render(spec, 5).tobytes() == render(spec, 5).tobytes()
    assert render(spec, 5).tobytes() != render(SceneSpec("grass", ("gun",), colours=("red",)), 5).tobytes()


def test_liquids_keep_their_colour_and_bad_colours_are_refused():
    with pytest.raises(ValueError, match="takes no colour word"):
        SceneSpec("grass", ("blood",), colours=("blue",))
    with pytest.raises(ValueError, match="takes no colour word"):
        SceneSpec("grass", ("person", "knife"), "holding", colours=("red", ""))
    with pytest.raises(ValueError, match="never"):
        SceneSpec("grass", ("cat",), colours=("blue",))
    with pytest.raises(ValueError, match="one entry per object"):
        SceneSpec("grass", ("cat", "ball"), colours=("orange",))
    water = [render(SceneSpec("grass", ("water",)), s).astype(float) for s in range(4)]
    blood = [render(SceneSpec("grass", ("blood",)), s).astype(float) for s in range(4)]
    centre = (slice(18, 26), slice(10, 22))
    assert all(w[centre][..., 2].mean() > w[centre][..., 0].mean() + 40 for w in water)  # blue pools
    assert all(b[centre][..., 0].mean() > b[centre][..., 2].mean() + 20 for b in blood)  # red pools


def test_training_captions_name_colours_of_some_objects_and_prompt_sets_too():
    texts = [t for _, _, t in training_examples(300, seed=1)]
    coloured = [t for t in texts if any(f" {c} " in f" {t} " for c in COLOURS)]
    assert 0.15 < len(coloured) / len(texts) < 0.6
    sets = build_prompt_sets()
    named = [p for p in sets.train_harmful + sets.heldout_harmful if p.spec.colours]
    assert named and all(p.safe_rewrite.spec.colours == p.spec.colours for p in named)
