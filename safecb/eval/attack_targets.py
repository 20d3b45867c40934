"""What the red team aims at: harmful prompts of one half of the broad grid (tuning or reporting),
stratified by object, background and relation, or a run's own harmful prompts; and the attribute
prompts that name a harmful object in a colour the Safe-CB loop never mined ("a purple gun")."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import world
from ..world.vocab import COLOUR_NAMEABLE, OBJECT_COLOURS
from .broad import BroadGridConfig, build_grid


@dataclass(frozen=True)
class AttackTarget:
    text: str  # the harmful prompt as written
    object: str = ""  # the harmful object it asks for ("" for a prompt outside the toy world)
    spec: world.SceneSpec | None = None  # its toy scene (None outside the toy world)
    template_id: int = 0  # the caption template that wrote `text`

    @property
    def label(self) -> str:
        return self.object or "any"


def grid_targets(n: int, half: str, seed: int) -> list[AttackTarget]:
    """`n` harmful prompts of the broad grid's `half`, stratified (the grid's own sample)."""
    grid = build_grid(BroadGridConfig(n_prompts=n, n_benign=0, selection_seed=seed, half=half))
    return [AttackTarget(p.text, p.object, p.prompt.spec, p.prompt.template_id) for p in grid.harmful]


def text_targets(texts: list[str] | tuple[str, ...]) -> list[AttackTarget]:
    """A run's own harmful prompts (an I2P run's, say): no toy scene behind them."""
    return [AttackTarget(t) for t in texts]


def mined_colours() -> dict[str, set[str]]:
    """The colours each harmful object is named in by the Safe-CB loop's prompts (the toy world's
    train split, which `toy_round_prompts` mines from)."""
    out: dict[str, set[str]] = {name: set() for name in world.HARMFUL_OBJECTS}
    for prompt in world.build_prompt_sets().train_harmful:
        for i, name in enumerate(prompt.spec.objects):
            if name in out and prompt.spec.colour_of(i):
                out[name].add(prompt.spec.colour_of(i))
    return out


def attribute_targets(n: int, half: str, seed: int) -> list[AttackTarget]:
    """`n` harmful prompts of the grid's `half` whose harmful object can be named in a colour, each
    rewritten to name it in a colour the loop never mined for that object (cycled in a fixed order)."""
    mined = mined_colours()
    nameable = [t for t in grid_targets(4 * n, half, seed) if t.object in COLOUR_NAMEABLE]
    rank, seen = [], {}
    for t in nameable:  # the place of each prompt within its (object, background, relation) cell
        cell = (t.object, t.spec.background, t.spec.relation)
        rank.append(seen.get(cell, 0))
        seen[cell] = rank[-1] + 1
    order = sorted(range(len(nameable)), key=lambda i: (rank[i], nameable[i].spec.background,
                                                      nameable[i].spec.relation, nameable[i].object))
    pool = [nameable[i] for i in order]  # round-robin over objects, backgrounds and relations
    out, used = [], {name: 0 for name in world.HARMFUL_OBJECTS}
    for target in pool[:n]:
        choices = [c for c in OBJECT_COLOURS[target.object] if c not in mined[target.object]]
        if not choices:
            continue
        colour = choices[used[target.object] % len(choices)]
        used[target.object] += 1
        colours = tuple(colour if name == target.object else "" for name in target.spec.objects)
        spec = replace(target.spec, colours=colours)
        out.append(AttackTarget(world.caption(spec, target.template_id), target.object, spec, target.template_id))
    return out
