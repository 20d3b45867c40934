"""Attacks on each defence (`bench attack`, results/attack), from one row per attack instance, one
per validation image, one per option tried on the tuning half and one per prompt of the token-reuse
probe.

An attack's success rate is the share of its instances that succeed: instances aim at different
harmful prompts, so it carries a Wilson interval. Image shares pool each instance's images, which
are not independent, so their intervals resample whole instances (for relearning and the swap-back:
prompts). A cell whose rows belong to another method (the blocklist's soft attack is the unedited
model's; a Safe-CB method built with the same config as an earlier one is that one) reads that
method's rows. Where the default falls short of `safecb.targets.ATTACK_TARGETS`, the checks say so."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..targets import ATTACK_TARGETS
from .stats import Figure, cluster_sums, clustered, fmt, share, wilson

NEEDS = ("attack",)

HEADINGS = {"discrete": "prompt search", "soft": "soft prompt", "attribute": "attribute prompt (a colour never mined)",
            "prefix": "image prefix", "swap_back": "swap-back (model-level)", "relearn": "relearning"}
DEFENCES = {  # table columns, in order: method -> label
    "none": "no edit",
    "blocklist": "keyword blocklist",
    "naive_removal": "naive code removal",
    "safecb_generator": "generator target, conditional fit",
    "safecb_guided": "guided generator target",
    "decoder_target": "decoder target",
    "default": "**the default**",
}
HEADLINE = ("discrete", "soft", "attribute", "swap_back")  # the README's line of success rates
MISSING = "–"  # a figure whose method or attack the rows do not hold


def label(key: str) -> str:
    attack, _, setting = key.partition(" ")
    return HEADINGS.get(attack, attack) + (f", {setting}" if setting else "")


class Attacks:
    """The attack rows, with each (method, attack key) cell's instances and images found through `cells`."""

    def __init__(self, evidence):
        self.cells = evidence["cells"].fillna("")
        self.instances = evidence["instances"].fillna({"setting": ""})
        self.images = evidence["images"].fillna({"setting": ""})
        self.tuning = evidence.tables.get("tuning")
        self.reuse = evidence.tables.get("reuse")
        self.methods = list(evidence["methods"]["method"])
        self.meta = evidence.meta
        keys = self.cells["attack"] + np.where(self.cells["setting"] != "", " " + self.cells["setting"], "")
        self.cells = self.cells.assign(key=keys)

    def keys(self) -> list[str]:
        """Every attack key the bench ran, in the bench's order."""
        return list(dict.fromkeys(self.cells["key"]))

    def source(self, method: str, key: str) -> str | None:
        """The method whose rows hold this cell, or None when the bench did not run it."""
        row = self.cells[(self.cells["method"] == method) & (self.cells["key"] == key)]
        return None if row.empty else str(row["rows_from"].iloc[0])

    def _rows(self, frame: pd.DataFrame, method: str, key: str) -> pd.DataFrame:
        attack, _, setting = key.partition(" ")
        source = self.source(method, key)
        return frame[(frame["method"] == source) & (frame["attack"] == attack) & (frame["setting"] == setting)]

    def instance_rows(self, method: str, key: str) -> pd.DataFrame:
        return self._rows(self.instances, method, key)

    def image_rows(self, method: str, key: str, view: str, role: str = "attack") -> pd.DataFrame:
        rows = self._rows(self.images, method, key)
        return rows[(rows["view"] == view) & (rows["role"] == role)]

    def asr(self, method: str, key: str, judge: str = "oracle") -> Figure | None:
        """Share of successful instances by `judge` ("oracle" or "second"), Wilson interval."""
        rows = self.instance_rows(method, key)
        column = "success" if judge == "oracle" else "second_success"
        if rows.empty or column not in rows or rows[column].isna().any():
            return None
        return wilson(int(rows[column].astype(bool).sum()), len(rows))

    def image_share(self, method: str, key: str, view: str | None = None, role: str = "attack",
                    judge: str = "oracle") -> Figure | None:
        """Share of the attack's validation images `judge` calls unsafe, resampling instances."""
        view = view or ("model" if key == "swap_back" else "served")
        rows = self.image_rows(method, key, view, role)
        column = f"{judge}_unsafe"
        if rows.empty or column not in rows or rows[column].isna().any():
            return None
        return share(rows[column].astype(bool), rows["instance"])

    def unedited_rows(self) -> pd.DataFrame:
        """The unedited model's images of the plain harmful prompts at the validation seeds."""
        return self.image_rows("none", "swap_back", "model")

    def relearned_ratio(self, method: str, key: str, judge: str = "oracle") -> Figure | None:
        """Unsafe image share after relearning over the unedited model's, on the same prompts and
        seeds, by `judge`, resampling prompts (paired)."""
        after, before = self.image_rows(method, key, "served"), self.unedited_rows()
        column = f"{judge}_unsafe"
        if after.empty or before.empty or column not in after or after[column].isna().any():
            return None
        joined = after.merge(before, on=["instance", "seed"], suffixes=("_after", "_before"))
        sums = cluster_sums(joined["instance"], joined[f"{column}_before"].astype(float),
                            joined[f"{column}_after"].astype(float))
        return clustered(lambda t: t[..., 1] / t[..., 0], sums, len(joined))

    def token_reuse(self, method: str) -> Figure | None:
        """Σ harmful arrangements drawn by the method / by the unedited model, resampling prompts."""
        if self.reuse is None:
            return None
        rows = self.reuse[self.reuse["method"] == method]
        if rows.empty:
            return None
        sums = cluster_sums(rows["instance"], rows["edited"].astype(float), rows["unedited"].astype(float))
        return clustered(lambda t: t[..., 0] / t[..., 1], sums, len(rows))

    def n(self, key: str | None = None) -> int | None:
        """Instances per defence of one attack (of every attack: the most common count)."""
        frame = self.instances
        if key is not None:
            attack, _, setting = key.partition(" ")
            frame = frame[(frame["attack"] == attack) & (frame["setting"] == setting)]
        sizes = frame.groupby(["method", "attack", "setting"]).size()
        return None if sizes.empty else int(sizes.mode().iloc[0])

    def shown(self) -> list[str]:
        """The defences in the tables: every method run, less the guided target when the default
        repeats it."""
        out = [m for m in DEFENCES if m in self.methods]
        if "default" in out and self.source("default", "discrete") == "safecb_guided" and "safecb_guided" in out:
            out.remove("safecb_guided")
        return out


def _cell(figure: Figure | None, counts: tuple[int, int] | None = None, digits: int = 2) -> str:
    if figure is None:
        return MISSING
    text = fmt(figure, digits)
    return text + (f" ({counts[0]}/{counts[1]})" if counts else "")


def _asr_cell(a: Attacks, method: str, key: str, judge: str = "oracle") -> str:
    figure = a.asr(method, key, judge)
    text = _cell(figure, (round(figure.value * figure.n), figure.n) if figure is not None else None)
    if text != MISSING and a.source(method, key) != method and a.source(method, key) == "none":
        text += " (as no edit)"
    return text


def _head(a: Attacks) -> list[str]:
    methods = a.shown()
    return ["| attack | " + " | ".join(DEFENCES[m] for m in methods) + " |", "|---" * (len(methods) + 1) + "|"]


def table(a: Attacks, judge: str = "oracle") -> str:
    """Success rate by `judge` per attack (down) and defence (across), relearning aside."""
    lines = _head(a)
    for key in a.keys():
        if not key.startswith("relearn"):
            lines.append(f"| {label(key)} | " + " | ".join(_asr_cell(a, m, key, judge) for m in a.shown()) + " |")
    return "\n".join(lines)


def image_table(a: Attacks) -> str:
    """Unsafe image shares per attack and defence, the swap-back's served view and token reuse."""
    lines = _head(a)
    methods = a.shown()
    for key in a.keys():
        if key.startswith("relearn"):
            continue
        lines.append(f"| {label(key)} | " + " | ".join(_cell(a.image_share(m, key)) for m in methods) + " |")
        if key == "swap_back":
            lines.append("| the same tokens as the service shows them | " +
                         " | ".join(_cell(a.image_share(m, key, "served", "attack")) for m in methods) + " |")
    lines.append("| token reuse: the unedited model's harmful code arrangements still drawn | " +
                 " | ".join(_cell(a.token_reuse(m)) if m not in ("none", "blocklist") else "1 (its weights)"
                            for m in methods) + " |")
    return "\n".join(lines)


def relearn_table(a: Attacks) -> str:
    """Unsafe image share after relearning, per (pictures, steps) and edited defence."""
    methods = [m for m in a.shown() if m not in ("none", "blocklist")]
    keys = [k for k in a.keys() if k.startswith("relearn")]
    unedited = a.unedited_rows()
    base = MISSING if unedited.empty else _cell(share(unedited["oracle_unsafe"].astype(bool), unedited["instance"]))
    lines = ["| fine-tuned on | " + " | ".join(DEFENCES[m] for m in methods) + " |",
             "|---" * (len(methods) + 1) + "|",
             "| nothing (the edited model) | " + " | ".join(
                 _cell(a.image_share(m, keys[0], "served", "start")) if keys else MISSING for m in methods) + " |"]
    for key in keys:
        lines.append(f"| {key.partition(' ')[2]} | " + " | ".join(_cell(a.image_share(m, key)) for m in methods) + " |")
    lines.append("| the unedited model, no fine-tuning, for comparison | " + " | ".join([base] * len(methods)) + " |")
    return "\n".join(lines)


def tuning_table(a: Attacks) -> str:
    """Each option tried on the tuning half per defence: successes of n, the chosen one in bold."""
    if a.tuning is None or a.tuning.empty:
        return MISSING
    attacks = list(dict.fromkeys(a.tuning["attack"]))
    lines = ["| defence | " + " | ".join(HEADINGS.get(x, x) for x in attacks) + " |",
             "|---" * (len(attacks) + 1) + "|"]
    for method in [m for m in a.shown() if m in set(a.tuning["method"])]:
        cells = []
        for attack in attacks:
            rows = a.tuning[(a.tuning["method"] == method) & (a.tuning["attack"] == attack)]
            parts = [(f"**{r.option}**" if bool(r.chosen) else r.option) + f" {int(r.successes)}/{int(r.instances)}"
                     for r in rows.itertuples()]
            cells.append(", ".join(parts) or MISSING)
        lines.append(f"| {DEFENCES[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


JUDGES = {"oracle": "", "second": ", second judge"}  # the checks hold under each judge


def check_value(a: Attacks, method: str, key: str, figure: str, judge: str = "oracle") -> Figure | None:
    if figure == "relearned_ratio":
        return a.relearned_ratio(method, key, judge)
    value = a.asr(method, key, judge)
    if value is None or figure == "asr":
        return value
    return Figure(value.hi, np.nan, np.nan, value.n)  # the Wilson upper end, itself the figure


def check_rows(a: Attacks) -> list[tuple[str, str, Figure | None, str, float, bool | None]]:
    """Each of ATTACK_TARGETS under each judge: (check, whose, figure, op, limit, holds; None when not run)."""
    out = []
    for name, (method, key, figure, op, bound) in ATTACK_TARGETS.items():
        for judge, suffix in JUDGES.items():
            value = check_value(a, method, key, figure, judge)
            holds = None if value is None else (value.value <= bound if op == "<=" else value.value >= bound)
            out.append((name, ("unedited" if method == "none" else "default") + suffix, value, op, bound, holds))
    return out


def checks(a: Attacks) -> str:
    """Each check under each judge: the figure, the limit and whether it holds."""
    lines = ["| check | figure | limit | holds |", "| --- | --- | --- | --- |"]
    for name, who, value, op, bound, holds in check_rows(a):
        verdict = "not run" if holds is None else "yes" if holds else "**falls short**"
        lines.append(f"| {name} ({who}) | {MISSING if value is None else fmt(value, 2)} | {op} {bound:g} | {verdict} |")
    return "\n".join(lines)


def short_of(a: Attacks) -> str:
    """The checks the default or the attacks fall short of under either judge, in words ("soft"
    for a missed rate and a missed upper end alike), separated by semicolons."""
    missed = [name.removesuffix(", upper end") + (" (unedited)" if who.startswith("unedited") else "")
              for name, who, _, _, _, holds in check_rows(a) if holds is False]
    return "; ".join(dict.fromkeys(missed)) if missed else "none"


def _successes(a: Attacks, method: str, key: str) -> str:
    rows = a.instance_rows(method, key)
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
    return " / ".join(MISSING if a.asr(method, k) is None else fmt(a.asr(method, k), 2, interval) for k in HEADLINE)


def _validation(a: Attacks) -> str:
    """"12 validation images at seeds 1500+": images per instance and the first validation seed."""
    rows = a.images[(a.images["role"] == "attack") & (a.images["view"] == a.images["view"].iloc[0])]
    per_instance = rows.groupby(["method", "attack", "setting", "instance"]).size()
    return f"{int(per_instance.mode().iloc[0])} validation images at seeds {int(rows['seed'].min())}+"


def figures(evidence) -> dict[str, str]:
    a = Attacks(evidence["attack"])
    n = a.n()
    wall = a.meta.get("wall_seconds")
    ratio = a.relearned_ratio("default", "relearn 8 images, 50 steps")
    reuse = a.token_reuse("default")
    return {
        "attack.table": table(a),
        "attack.table_second": table(a, "second"),
        "attack.image_table": image_table(a),
        "attack.relearn_table": relearn_table(a),
        "attack.tuning_table": tuning_table(a),
        "attack.checks": checks(a),
        "attack.short_of": short_of(a),
        "attack.validation": _validation(a),
        "attack.n": MISSING if n is None else str(n),
        "attack.wall_time": MISSING if wall is None else f"{wall / 60:.0f} min ({wall:,.0f} s)",
        "attack.decoder_swap_back_successes": _successes(a, "decoder_target", "swap_back"),
        "attack.default_swap_back_successes": _successes(a, "default", "swap_back"),
        "attack.default_soft_successes": _successes(a, "default", "soft"),
        "attack.default_swap_back_agreement": _agreement(a, "default"),
        "attack.default_relearned_ratio": MISSING if ratio is None else fmt(ratio, 2),
        "attack.default_token_reuse": MISSING if reuse is None else fmt(reuse, 2),
        "attack.headline_label": f"prompt search / soft prompt / attribute prompt / swap-back (n {n} each)",
        "attack.headline_default": _headline(a, "default", True),
        "attack.headline_decoder_target": _headline(a, "decoder_target", False),
        "attack.headline_unedited": _headline(a, "none", False),
    }
