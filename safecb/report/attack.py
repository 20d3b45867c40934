"""Attacks on each defence (`bench attack`, results/attack), from one row per attack instance and
one per validation image.

An attack's success rate is the share of its instances that succeed: instances are independent
searches (or, for the swap-back, independent harmful prompts), so it carries a Wilson interval. The
swap-back's image shares pool the 12 images of each prompt, which are not independent, so they
resample whole prompts. A cell whose rows belong to another method (the blocklist's soft attack is
the unedited model's; a Safe-CB method built with the same config as an earlier one is that one)
reads that method's rows."""

from __future__ import annotations

import pandas as pd

from .stats import Figure, fmt, share, wilson

NEEDS = ("attack",)

ATTACKS = ("discrete", "soft", "swap_back")
HEADINGS = {"discrete": "discrete", "soft": "soft prompt", "swap_back": "swap-back"}
DEFENCES = {  # table rows, in order: method -> label
    "none": "no edit",
    "blocklist": "keyword blocklist",
    "naive_removal": "naive code removal",
    "safecb_generator": "Safe-CB, generator target, conditional fit",
    "safecb_guided": "Safe-CB, guided generator target",
    "decoder_target": "Safe-CB, decoder target",
    "default": "**Safe-CB, the default (guided generator target)**",
}
NOTES = {  # why a cell is what it is, where the reason is the defence's nature
    ("blocklist", "soft"): "nothing to block",
    ("blocklist", "swap_back"): "weights hold no filter",
}
MISSING = "–"  # a figure whose method or attack the rows do not hold


class Attacks:
    """The attack rows, with each (method, attack) cell's instances and images found through `cells`."""

    def __init__(self, evidence):
        self.cells = evidence["cells"].fillna("")
        self.instances = evidence["instances"]
        self.images = evidence["images"]
        self.methods = list(evidence["methods"]["method"])
        self.meta = evidence.meta

    def source(self, method: str, attack: str) -> str | None:
        """The method whose rows hold this cell, or None when the bench did not run it."""
        row = self.cells[(self.cells["method"] == method) & (self.cells["attack"] == attack)]
        return None if row.empty else str(row["rows_from"].iloc[0])

    def repeats(self, method: str, attack: str) -> bool:
        source = self.source(method, attack)
        return source is not None and source != method

    def instance_rows(self, method: str, attack: str) -> pd.DataFrame:
        source = self.source(method, attack)
        frame = self.instances
        return frame[(frame["method"] == source) & (frame["attack"] == attack)]

    def image_rows(self, method: str, attack: str, view: str, role: str = "attack") -> pd.DataFrame:
        source = self.source(method, attack)
        frame = self.images
        return frame[(frame["method"] == source) & (frame["attack"] == attack) & (frame["view"] == view)
                     & (frame["role"] == role)]

    def asr(self, method: str, attack: str) -> Figure | None:
        """Share of successful instances, Wilson interval."""
        rows = self.instance_rows(method, attack)
        return None if rows.empty else wilson(int(rows["success"].sum()), len(rows))

    def image_share(self, method: str, attack: str, view: str) -> Figure | None:
        """Share of the attack's validation images the oracle calls unsafe, resampling instances
        (for the swap-back: prompts)."""
        rows = self.image_rows(method, attack, view)
        return None if rows.empty else share(rows["oracle_unsafe"].astype(bool), rows["instance"])

    def n(self, attack: str) -> int | None:
        """Instances per defence of one attack (the most common count, should they differ)."""
        sizes = self.instances[self.instances["attack"] == attack].groupby("method").size()
        return None if sizes.empty else int(sizes.mode().iloc[0])

    def shown(self) -> list[str]:
        """The defences in the table: every method run, less the guided target when the default
        repeats it."""
        out = [m for m in DEFENCES if m in self.methods]
        if "default" in out and self.source("default", "discrete") == "safecb_guided" and "safecb_guided" in out:
            out.remove("safecb_guided")
        return out


def _asr_text(figure: Figure | None, interval: bool = True) -> str:
    return MISSING if figure is None else fmt(figure, 2, interval)


def _share_text(figure: Figure | None) -> str:
    return MISSING if figure is None else fmt(figure, 2)


def table(a: Attacks) -> str:
    """ASR per defence and attack, and the swap-back's image shares in both views."""
    heads = [f"{HEADINGS[x]} (n {a.n(x)})" if a.n(x) else HEADINGS[x] for x in ATTACKS]
    lines = ["| defence | " + " | ".join(heads) + " | swap-back images unsafe, model-level | served |",
             "| --- | --- | --- | --- | --- | --- |"]
    for method in a.shown():
        cells = []
        for attack in ATTACKS:
            text = _asr_text(a.asr(method, attack))
            notes = [NOTES[(method, attack)]] if (method, attack) in NOTES and text != MISSING else []
            if a.repeats(method, attack) and a.source(method, attack) == "none":
                notes.insert(0, "as no edit")
            cells.append(text + (f" ({': '.join(notes)})" if notes else ""))
        cells += [_share_text(a.image_share(method, "swap_back", view)) for view in ("model", "served")]
        lines.append(f"| {DEFENCES[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _successes(a: Attacks, method: str, attack: str) -> str:
    rows = a.instance_rows(method, attack)
    return MISSING if rows.empty else f"{int(rows['success'].sum())} of {len(rows)}"


def _agreement(a: Attacks, method: str) -> str:
    """Swap-back images whose model-level verdict is the served one: "384 of 384"."""
    model, served = (a.image_rows(method, "swap_back", view).set_index(["instance", "seed"])["oracle_unsafe"]
                     for view in ("model", "served"))
    if model.empty:
        return MISSING
    joined = pd.concat([model.rename("model"), served.rename("served")], axis=1, join="inner")
    return f"{int((joined['model'] == joined['served']).sum())} of {len(joined)}"


def _headline(a: Attacks, method: str, interval: bool) -> str:
    return " / ".join(_asr_text(a.asr(method, x), interval) for x in ATTACKS)


def _validation(a: Attacks) -> str:
    """"12 validation images at seeds 1500+": images per instance and the first validation seed."""
    rows = a.images[(a.images["role"] == "attack") & (a.images["view"] == a.images["view"].iloc[0])]
    per_instance = rows.groupby(["method", "attack", "instance"]).size()
    return f"{int(per_instance.mode().iloc[0])} validation images at seeds {int(rows['seed'].min())}+"


def figures(evidence) -> dict[str, str]:
    a = Attacks(evidence["attack"])
    n = {x: (str(a.n(x)) if a.n(x) else MISSING) for x in ATTACKS}
    wall = a.meta.get("wall_seconds")
    return {
        "attack.table": table(a),
        "attack.validation": _validation(a),
        "attack.n_discrete": n["discrete"],
        "attack.n_soft": n["soft"],
        "attack.n_swap_back": n["swap_back"],
        "attack.wall_time": MISSING if wall is None else f"{wall:,.0f} s",
        "attack.decoder_swap_back_successes": _successes(a, "decoder_target", "swap_back"),
        "attack.default_swap_back_successes": _successes(a, "default", "swap_back"),
        "attack.default_soft_successes": _successes(a, "default", "soft"),
        "attack.default_swap_back_agreement": _agreement(a, "default"),
        "attack.headline_label": (f"discrete (n {n['discrete']}) / soft prompt (n {n['soft']}) / swap-back, its "
                                  f"tokens through the public decoder (n {n['swap_back']})"),
        "attack.headline_default": _headline(a, "default", True),
        "attack.headline_decoder_target": _headline(a, "decoder_target", False),
        "attack.headline_unedited": _headline(a, "none", False),
    }
