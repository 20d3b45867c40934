"""Safe-CB against its baselines (`python -m safecb bench safety`, results/safety) and what the
default draws instead (`python -m safecb bench replacement`, results/replacement).

Every figure comes from the rows: `images` (one per evaluated image and method), `prompts` (each
prompt's text and strata by id), `methods` and `rounds` of results/safety, and `replacements` and
`rounds` of results/replacement. A prompt id is a cluster: its seeds are not independent, so every
interval resamples whole prompts (`stats`):
- unsafe, clean-and-complete and replaced shares: `stats.share` over the images of one method;
- cuts: `stats.cut`, the method against `none` on the same prompts and seeds (paired), 1 − Σafter /
  Σbefore, as the bench computes them (`safecb.eval.broad.compare`);
- the benign fidelity drop: `stats.mean_difference` of `none` and the method on the broad benign grid,
  each prompt resampled with its images on both sides; with the same images per prompt on both sides
  this is the bench's paired drop (Σbefore − Σafter) / n.
FID-toy: the Fréchet distance between the oracle's features of a method's 24-prompt benign images and
of renders of the same scenes (`fid_features`, 4 significant digits; no interval).
The replacement counts are counts of prompts drawn at one seed (no interval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..evidence import Evidence
from ..metrics import frechet_distance
from .stats import Figure, cut, fmt, mean_difference, pct, share

NEEDS = ("safety", "replacement")

DEFAULT = "safecb_default"  # the default config's row
CONDITIONAL = "safecb_iterative"  # the generator target fitted on the conditional branch
DECODER = "decoder_target"
BLOCKLIST = "blocklist"
STRATA = ("object", "background", "relation", "combination", "phrasing")  # safecb.eval.broad.STRATA
WORST_OVER = ("object", "background", "relation")  # the dimensions the worst strata are named from
SHORT = {"none": "none", "blocklist": "blocklist", "naive_removal": "naive removal", "step1_only": "step 1 only",
         "safecb_one_round": "one round", "safecb_iterative": "conditional fit", "safecb_guided": "guided",
         "decoder_target": "decoder target", "safecb_default": "the default", "head_finetune": "head fine-tuned"}
# how a stratum reads in prose ("knives (67% ...), snow (70%), held weapons (73%)")
STRATUM_WORDS = {("object", "knife"): "knives", ("object", "gun"): "guns", ("object", "skull"): "skulls",
                 ("object", "blood"): "blood", ("relation", "holding"): "held weapons",
                 ("relation", "pair"): "pairs", ("relation", "single"): "lone objects"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
DASH = "–"


# --- reading the rows -------------------------------------------------------------------------------

def _flags(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A bool column of rows that all carry it (a blank cell here is a bench fault)."""
    values = frame[column]
    if values.isna().any():
        raise ValueError(f"column {column!r} is blank in {int(values.isna().sum())} of its rows")
    return values.map(lambda v: v is True or v == "True" or v == 1).to_numpy(bool)


@dataclass
class SafetyRows:
    """results/safety's tables, with the lookups every figure uses."""

    images: pd.DataFrame
    prompts: pd.DataFrame
    methods: pd.DataFrame  # indexed by method, in the bench's order ("none" first)
    rounds: pd.DataFrame
    fid_features: pd.DataFrame  # the oracle's features of each method's benign images, and of the renders

    @classmethod
    def read(cls, evidence: Evidence) -> SafetyRows:
        return cls(evidence["images"], evidence["prompts"], evidence["methods"].set_index("method", drop=False),
                   evidence["rounds"], evidence["fid_features"])

    def has(self, method: str) -> bool:
        return method in self.methods.index

    def of(self, method: str, set_name: str) -> pd.DataFrame:
        """One method's images of one set, in prompt and seed order."""
        rows = self.images[(self.images["method"] == method) & (self.images["set"] == set_name)]
        return rows.sort_values(["prompt_id", "seed"]).reset_index(drop=True)

    def paired(self, method: str, set_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(none's images, the method's images) of a set, row for row the same prompt and seed."""
        before, after = self.of("none", set_name), self.of(method, set_name)
        keys = ["prompt_id", "seed"]
        if not before[keys].equals(after[keys]):
            raise ValueError(f"{method} and none did not draw the same prompts and seeds of {set_name}")
        return before, after


# --- the figures of one method ----------------------------------------------------------------------

def heldout(rows: SafetyRows, method: str, model: bool = False) -> Figure:
    """Oracle unsafe share of the held-out harmful prompts, served or what the model drew."""
    images = rows.of(method, "heldout_harmful")
    return share(_flags(images, "oracle_unsafe_model" if model else "oracle_unsafe"), images["prompt_id"])


def broad_cut(rows: SafetyRows, method: str, judge: str = "oracle", model: bool = False,
              prompt_ids: set | None = None) -> Figure:
    """The broad grid's cut against none under `judge`, served or model-level; only `prompt_ids`
    (a stratum) when given."""
    before, after = rows.paired(method, "broad_harmful")
    if prompt_ids is not None:
        keep = before["prompt_id"].isin(prompt_ids)
        before, after = before[keep], after[keep]
    column = f"{judge}_unsafe_model" if model else f"{judge}_unsafe"
    return cut(_flags(before, column), _flags(after, column), before["prompt_id"])


def broad_share(rows: SafetyRows, method: str, column: str) -> Figure:
    """Share of the broad grid's harmful-prompt images with `column` (clean_complete, replaced)."""
    images = rows.of(method, "broad_harmful")
    return share(_flags(images, column), images["prompt_id"])


def flagged_share(rows: SafetyRows, method: str) -> Figure:
    """Share of the broad grid's harmful-prompt images of what the model drew that either judge flags."""
    images = rows.of(method, "broad_harmful")
    either = _flags(images, "oracle_unsafe_model") | _flags(images, "second_unsafe_model")
    return share(either, images["prompt_id"])


def fidelity_drop(rows: SafetyRows, method: str) -> Figure:
    """Benign fidelity on the broad grid, none minus the method (positive: the method loses objects)."""
    before, after = rows.paired(method, "broad_benign")
    return mean_difference(_flags(before, "fidelity"), before["prompt_id"], _flags(after, "fidelity"),
                           after["prompt_id"])


def same_as_served(rows: SafetyRows, method: str, set_name: str, judge: str = "oracle") -> bool:
    """Whether every model-level verdict equals the served one (the decoder is unedited)."""
    images = rows.of(method, set_name)
    return bool((_flags(images, f"{judge}_unsafe") == _flags(images, f"{judge}_unsafe_model")).all())


def as_unedited(rows: SafetyRows, method: str) -> bool:
    """Whether what the method's model draws is the unedited model's picture for picture: every
    judge's model-level score on every broad-grid image equals none's (a decoder-only edit)."""
    before, after = rows.paired(method, "broad_harmful")
    columns = [c for c in ("oracle_score_model", "second_score_model") if c in before]
    return all(np.array_equal(before[c].to_numpy(), after[c].to_numpy()) for c in columns)


# --- formatting -------------------------------------------------------------------------------------

def _degenerate(figure: Figure) -> bool:
    """No interval worth printing: none, or every resample gave the point estimate."""
    return np.isnan(figure.lo) or (figure.lo == figure.hi == figure.value)


def _text(figure: Figure, percent: bool, bold: bool = False, interval: bool = True) -> str:
    """"0.130 [0.068, 0.203]" or "78% [74%, 81%]" (negative numbers with a minus sign), the value in
    bold when asked; the value alone without an interval or where the interval is a point; "–" where
    the figure is undefined (a cut of a stratum nothing was unsafe in before)."""
    if np.isnan(figure.value):
        return DASH
    form = pct if percent else fmt
    value = form(figure, interval=False)
    rest = "" if not interval or _degenerate(figure) else form(figure)[len(value):]
    value = f"**{value}**" if bold else value
    return (value + rest).replace("-", "−")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def label(rows: SafetyRows, method: str) -> str:
    """The method as the docs name it; a Safe-CB method's β and fit from its own config."""
    row = rows.methods.loc[method]
    beta = f"β {row['preserve_weight']:g}" if pd.notna(row.get("preserve_weight")) else ""
    guided = row.get("guided") in (True, "True")
    if method == DEFAULT:
        fit = "guided" if guided else "conditional fit"
        if row.get("target") == "generator" and row.get("step1") == "head":
            return f"Safe-CB, the default (whole generation head fitted, {fit}, {beta})"
        if row.get("target") == "generator":
            return f"Safe-CB, the default (generator target, {fit}, {beta})"
        return f"Safe-CB, the default ({row.get('target')} target)"
    fixed = {"none": "none", "blocklist": "keyword blocklist", "naive_removal": "naive removal of mined codes",
             "step1_only": "Safe-CB, one round, step 1 only", "safecb_one_round": "Safe-CB, one round, steps 1 and 2",
             "safecb_iterative": f"Safe-CB, generator target fitted on the conditional branch ({beta})",
             "safecb_guided": f"Safe-CB, generator target, guided ({beta})",
             "decoder_target": "Safe-CB, decoder target",
             "head_finetune": "whole generation head fine-tuned, unconstrained"}
    return fixed.get(method, method)


def _served_and_model(served: Figure, model: Figure, same: bool, percent: bool, bold_served: bool) -> str:
    """"served / same", or "served / **model-level**" where what the model draws differs."""
    right = "same" if same else _text(model, percent, bold=True)
    return f"{_text(served, percent, bold=bold_served)} / {right}"


def _rounds_cell(rows: SafetyRows, method: str) -> str:
    row = rows.methods.loc[method]
    return DASH if row["rounds"] == 0 else f"{int(row['rounds'])}, {row['run_seconds']:.0f} s"


def method_table(rows: SafetyRows) -> str:
    """The docs' method table: held-out unsafe, broad cuts per judge, served and model-level, clean
    and complete, fidelity drop, rounds and run time."""
    methods = list(rows.methods.index)
    edited = [m for m in methods if m != "none"]
    cuts = {m: broad_cut(rows, m) for m in edited}
    best = max(edited, key=lambda m: cuts[m].value) if edited else None
    body = []
    for m in methods:
        is_default = m == DEFAULT
        name = f"**{label(rows, m)}**" if is_default else label(rows, m)
        held = _served_and_model(heldout(rows, m), heldout(rows, m, model=True),
                                 same_as_served(rows, m, "heldout_harmful"), False, is_default)
        cells = [name, held]
        for judge in ("oracle", "second"):
            if m == "none":
                cells.append(DASH)
                continue
            served = cuts[m] if judge == "oracle" else broad_cut(rows, m, judge)
            bold = judge == "oracle" and (is_default or m == best)
            cells.append(_served_and_model(served, broad_cut(rows, m, judge, model=True),
                                           same_as_served(rows, m, "broad_harmful", judge), True, bold))
        clean = _text(broad_share(rows, m, "clean_complete"), True)
        if m != "none" and as_unedited(rows, m):
            clean = f"{_text(broad_share(rows, m, 'clean_complete'), True, interval=False)} (as unedited)"
        cells += [clean, DASH if m == "none" else _text(fidelity_drop(rows, m), False), _rounds_cell(rows, m)]
        body.append(cells)
    header = ["method", "held-out unsafe, served / model-level", "broad cut, oracle: served / model-level",
              "broad cut, second judge: served / model-level", "clean and complete", "benign fidelity drop (broad)",
              "rounds, run time"]
    return _table(header, body)


# --- strata -----------------------------------------------------------------------------------------

def strata(rows: SafetyRows) -> list[tuple[str, str, set]]:
    """(dimension, stratum, its broad-grid prompt ids) for every stratum, sorted as the bench prints."""
    prompts = rows.prompts[rows.prompts["set"] == "broad_harmful"]
    out = []
    for dimension in STRATA:
        for value in sorted(prompts[dimension].dropna().unique()):
            out.append((dimension, value, set(prompts.loc[prompts[dimension] == value, "prompt_id"])))
    return out


def strata_table(rows: SafetyRows) -> str:
    """Per stratum: prompts, oracle unsafe share under none, and each edited method's served cut."""
    edited = [m for m in rows.methods.index if m != "none"]
    none = rows.of("none", "broad_harmful")
    groups = [("all", "pooled", set(none["prompt_id"]))] + strata(rows)
    body = []
    for dimension, value, ids in groups:
        keep = none["prompt_id"].isin(ids)
        before = _flags(none[keep], "oracle_unsafe").mean()
        label_text = "all prompts" if dimension == "all" else f"{dimension}: {value}"
        body.append([label_text, str(len(ids)), f"{before:.3f}"]
                    + [_text(broad_cut(rows, m, prompt_ids=ids), True) for m in edited])
    return _table(["stratum", "prompts", "unsafe under none", *[SHORT.get(m, m) for m in edited]], body)


def worst_strata(rows: SafetyRows, method: str = DEFAULT) -> str:
    """The method's lowest-cut stratum of each of object, background and relation, lowest first; the
    first with its interval: "knives (67% [57%, 75%]), snow (70%), held weapons (73%)"."""
    worst = []
    for dimension in WORST_OVER:
        found = [(broad_cut(rows, method, prompt_ids=ids), value) for d, value, ids in strata(rows) if d == dimension]
        found = [(f, v) for f, v in found if not np.isnan(f.value)]
        if found:
            figure, value = min(found, key=lambda fv: fv[0].value)
            worst.append((figure, STRATUM_WORDS.get((dimension, value), value)))
    worst.sort(key=lambda fv: fv[0].value)
    return ", ".join(f"{words} ({_text(figure, True, interval=k == 0)})" for k, (figure, words) in enumerate(worst))


def strata_above(rows: SafetyRows, method: str = DEFAULT, others: tuple[str, ...] = (CONDITIONAL, DECODER)) -> str:
    """In how many strata the method's cut is above every one of `others` (point estimates)."""
    groups = strata(rows)
    above = sum(all(broad_cut(rows, method, prompt_ids=ids).value > broad_cut(rows, o, prompt_ids=ids).value
                    for o in others) for _, _, ids in groups)
    return f"every one of the {len(groups)} strata" if above == len(groups) else f"{above} of the {len(groups)} strata"


# --- rounds -----------------------------------------------------------------------------------------

def rounds_kept(rounds: pd.DataFrame) -> str:
    """"all four were kept (the self-judged rate fell every round)", or how many were and how the rate went."""
    edited = rounds[rounds["round"] > 0]
    accepted = int(_flags(edited, "accepted").sum())
    n = len(edited)
    kept = f"all {NUMBER_WORDS.get(n, n)} were kept" if accepted == n else f"{accepted} of {n} were kept"
    rates = rounds.sort_values("round")["self_unsafe"].to_numpy()
    if (np.diff(rates) < 0).all():
        return f"{kept} (the self-judged rate fell every round)"
    return f"{kept} (the self-judged rate, round by round: {' → '.join(f'{r:.3f}' for r in rates)})"


# --- the figures --------------------------------------------------------------------------------------

def _ran(rows: SafetyRows, *methods: str) -> bool:
    """Whether the bench ran every one of `methods` (a figure of a method it did not run reads "–")."""
    return all(rows.has(m) for m in methods)


def size_figures(rows: SafetyRows, meta: dict) -> dict[str, str]:
    """How many prompts, seeds and images each evaluation holds, and how long the bench ran."""
    first = rows.methods.index[0]
    held, broad, benign = (rows.of(first, s) for s in ("heldout_harmful", "broad_harmful", "broad_benign"))
    seeds = sorted(broad["seed"].unique())
    wall = meta.get("wall_seconds")
    return {
        "heldout_prompts": str(held["prompt_id"].nunique()),
        "heldout_seeds": str(held["seed"].nunique()),
        "heldout_n": f"{len(held):,}",
        "broad_prompts": str(broad["prompt_id"].nunique()),
        "broad_seeds": f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0]),
        "broad_n": f"{len(broad):,}",
        "broad_benign_prompts": str(benign["prompt_id"].nunique()),
        "broad_benign_n": f"{len(benign):,}",
        "benign_prompts": str(rows.of(first, "benign")["prompt_id"].nunique()),
        "bench_minutes": DASH if wall is None else f"{wall / 60:.0f} min",
    }


def fid_toy(rows: SafetyRows, method: str) -> float:
    """FID-toy of a method's benign images against the reference renders, from the kept features."""
    features = rows.fid_features
    columns = [c for c in features.columns if c.startswith("f") and c[1:].isdigit()]

    def of(source: str) -> np.ndarray:
        return features.loc[features["source"] == source, columns].to_numpy(np.float64)

    return frechet_distance(of(method), of("reference"))


METHOD_FIGURES = ("default_heldout", "default_cut_model", "default_fidelity_drop", "default_replaced",
                  "default_clean_complete", "default_worst_strata", "default_longest_round", "default_rounds_kept",
                  "fid_default", "default_strata_above", "decoder_cut", "decoder_cut_model", "decoder_fidelity_drop",
                  "blocklist_cut", "blocklist_heldout", "blocklist_replaced", "default_complete",
                  "default_flagged")  # "–" when their method did not run


def method_figures(rows: SafetyRows) -> dict[str, str]:
    """The tables, and the prose's figures of single methods (the default, the decoder target, the
    blocklist, none)."""
    out = {"methods_table": method_table(rows), "strata_table": strata_table(rows),
           **dict.fromkeys(METHOD_FIGURES, DASH),
           "none_heldout": _text(heldout(rows, "none"), False, interval=False),
           "none_clean_complete": _text(broad_share(rows, "none", "clean_complete"), True, interval=False),
           "none_complete": _text(broad_share(rows, "none", "complete"), True, interval=False),
           "fid_none": f"{fid_toy(rows, 'none'):.1f}"}
    if _ran(rows, DEFAULT):
        row = rows.methods.loc[DEFAULT]
        out.update({
            "default_heldout": _text(heldout(rows, DEFAULT), False, interval=False),
            "default_cut_model": _text(broad_cut(rows, DEFAULT, model=True), True, interval=False),
            "default_fidelity_drop": _text(fidelity_drop(rows, DEFAULT), False),
            "default_replaced": _text(broad_share(rows, DEFAULT, "replaced"), True),
            "default_clean_complete": _text(broad_share(rows, DEFAULT, "clean_complete"), True),
            "default_complete": _text(broad_share(rows, DEFAULT, "complete"), True, interval=False),
            "default_flagged": _text(flagged_share(rows, DEFAULT), True, interval=False),
            "default_worst_strata": worst_strata(rows),
            "default_longest_round": f"{row['longest_round_seconds']:.1f} s",
            "default_rounds_kept": rounds_kept(rows.rounds[rows.rounds["method"] == DEFAULT]),
            "fid_default": f"{fid_toy(rows, DEFAULT):.1f}",
        })
    if _ran(rows, DEFAULT, CONDITIONAL, DECODER):
        out["default_strata_above"] = strata_above(rows)
    if _ran(rows, DECODER):
        out.update({
            "decoder_cut": _text(broad_cut(rows, DECODER), True, interval=False),
            "decoder_cut_model": _text(broad_cut(rows, DECODER, model=True), True, interval=False),
            "decoder_fidelity_drop": _text(fidelity_drop(rows, DECODER), False, interval=False),
        })
    if _ran(rows, BLOCKLIST):
        out.update({
            "blocklist_cut": _text(broad_cut(rows, BLOCKLIST), True, interval=False),
            "blocklist_heldout": _text(heldout(rows, BLOCKLIST), False, interval=False),
            "blocklist_replaced": _text(broad_share(rows, BLOCKLIST, "replaced"), True, interval=False),
        })
    return out


def headline_figures(rows: SafetyRows) -> dict[str, str]:
    """README's headline row: the default on the broad grid, the decoder target and the blocklist."""
    broad = rows.of("none", "broad_harmful")
    out = {"headline_prompts": str(broad["prompt_id"].nunique()), "headline_seeds": str(broad["seed"].nunique())}
    names = ("headline_cut", "headline_cut_model", "headline_cut_second", "headline_fidelity_drop",
             "headline_clean_complete", "headline_decoder", "headline_blocklist")
    out.update(dict.fromkeys(names, DASH))
    if _ran(rows, DEFAULT):
        out.update({
            "headline_cut": _text(broad_cut(rows, DEFAULT), True),
            "headline_cut_model": _text(broad_cut(rows, DEFAULT, model=True), True, interval=False),
            "headline_cut_second": _text(broad_cut(rows, DEFAULT, "second", model=True), True, interval=False),
            "headline_fidelity_drop": _text(fidelity_drop(rows, DEFAULT), False),
            "headline_clean_complete": _text(broad_share(rows, DEFAULT, "clean_complete"), True, interval=False),
        })
    if _ran(rows, DECODER):
        served, model = broad_cut(rows, DECODER), broad_cut(rows, DECODER, model=True)
        out["headline_decoder"] = f"{_text(served, True, interval=False)} / {_text(model, True, interval=False)}"
    if _ran(rows, BLOCKLIST):
        out["headline_blocklist"] = _text(broad_cut(rows, BLOCKLIST), True, interval=False)
    return out


def replacement_figures(evidence: Evidence) -> dict[str, str]:
    """The replacement picture's counts (prompts at one seed) and the run it drew."""
    rows = evidence["replacements"]
    kinds = rows["edited_kind"].value_counts()
    flagged = rows[rows["edited_kind"] == "flagged"]
    one_judge = flagged[_flags(flagged, "edited_oracle_unsafe") != _flags(flagged, "edited_second_unsafe")]
    rounds = evidence["rounds"]
    return {
        "replacement_n": str(len(rows)),
        "replacement_seed": ", ".join(str(s) for s in sorted(rows["seed"].unique())),
        "replacement_clean": str(int(kinds.get("clean", 0))),
        "replacement_incomplete": str(int(kinds.get("incomplete", 0))),
        "replacement_flagged": str(int(kinds.get("flagged", 0))),
        "replacement_one_judge": str(len(one_judge)),
        "replacement_run_rounds": str(int(rounds["round"].max())),
        "replacement_run_seconds": f"{rounds['seconds'].sum():.0f} s",
    }


def figures(evidence: dict[str, Evidence]) -> dict[str, str]:
    rows = SafetyRows.read(evidence["safety"])
    out = {**size_figures(rows, evidence["safety"].meta), **method_figures(rows), **headline_figures(rows),
           **replacement_figures(evidence["replacement"])}
    return {f"safety.{name}": text for name, text in out.items()}
