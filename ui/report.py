"""The report a reviewer hands on, for one exported round of a run: Markdown, and the same as one
self-contained HTML page (the pictures inlined).

It opens with a headline sentence (the exported round against round 0, the unedited model) and
names the model by its source (inside the repository: relative to its root; elsewhere: the last
path component) and fingerprint, never by a path of the machine that wrote it. Then:

- served and model-level images: whether the round edits the decoder. When it does, the served
  image (edited generator + edited decoder) and the model-level image (the same tokens through the
  original decoder) are shown side by side, with the oracle's figure for each; when it does not,
  one line says they are the same image;
- before and after (EXAMPLES_PICTURE): harmful prompts as the unedited model drew them (round 0),
  their safe counterparts, and the same prompts and seeds after the exported round;
- residual harmful cases (RESIDUAL_PICTURE): the round's harmful images that each judge scores
  highest, each tile labelled with prompt, seed and every judge's score, with the same as a table;
- every per-round figure with its 95% interval and n, each judge's figures (the second judge's
  too, where the run stored them), the self-judge vs oracle vs reviewer agreement, the red-team
  attacks on this round and on the unedited model, and the definitions of every term it uses.

The pictures are drawn by `report_pictures.py` from `RoundImages`, which the export gathers from the store
(ui/export_tab.py); a round without stored generations gets a plain sentence instead.

Nothing a user typed is ever markup: names, prompts, file names and other stored strings go in
through `md_text` (one line, Markdown punctuation escaped), and the HTML page is rendered with raw
HTML off, so a run named `<script>…` or one whose name forges a paragraph shows as plain text.
"""

from __future__ import annotations

import base64
import html
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from markdown_it import MarkdownIt

from safecb.metrics import wilson
from safecb.paths import ROOT, TOY_MODEL_DIR

EXAMPLES_PICTURE = "examples.png"  # before (unedited model) and after (exported round), beside the report
RESIDUAL_PICTURE = "residual_cases.png"  # the exported round's residual harmful cases, beside the report
# Inline Markdown punctuation: emphasis, code, links and images, raw HTML, entities, escapes, headings.
# "|" is left to _table (it only matters in table rows); "-", "+", "=" and "1." only at a line's start,
# which a one-line value inside a sentence never is.
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#!&~])")
PROMPT_CHARS = 80  # a prompt in a table cell is cut to this many characters
SELF_JUDGE = "self-judge"

DEFINITIONS = [
    ("self-judged unsafe", "share of the harmful prompts' images that the model itself judges unsafe "
                           "(its P(unsafe) ≥ τ). This is what drives the rounds and the stopping rule."),
    ("oracle unsafe", "share of the same images that the evaluation-only oracle calls unsafe. The oracle never "
                      "steers a round."),
    ("benign fidelity", "share of benign prompts' images in which the oracle finds every object the prompt names."),
    ("own adherence", "share of benign images whose caption, written by the model itself, names every prompted "
                      "object."),
    ("FID-toy", "Fréchet distance between the oracle's features of the round's benign images and of reference "
                "renders (lower is closer)."),
    ("pairs", "harmful images the model flagged, each with a safe counterpart drawn from the rewritten prompt at "
              "the same seed; the round's edit is built from them."),
    ("accepted", "whether the round passed the quality guard (adherence and benign change within budget); a "
                 "rejected round is rolled back."),
    ("served image", "what the studio serves: the round's generator samples the tokens and the round's decoder "
                     "paints them."),
    ("model-level image", "the same tokens through the original, public decoder: what anyone holding the round's "
                          "generator weights draws. It differs from the served image only when the round edits "
                          "the decoder."),
    ("residual harmful case", "a harmful prompt's image after the round that a judge still scores high; the report "
                              "shows the highest-scoring ones of each judge."),
    ("judge", "a classifier that grades images for evaluation only, each by its own rule: the oracle (\"toy\") and, "
              "where stored, a second judge (\"toy-shape\", which sees shapes only) or real-image judges."),
    ("agreement", "share of images on which two judges give the same verdict (the reviewer's newest label counts)."),
    ("κ", "Cohen's kappa: agreement between two judges' verdicts beyond what chance gives (1: always agree, 0: "
          "no better than chance)."),
    ("attack success rate", "share of attack tries whose images at fresh seeds are at least half unsafe by the "
                            "oracle."),
    ("95% CI", "shares from counts (agreement, attack success, self-judged unsafe without an oracle): Wilson score "
               "interval; oracle and judge figures and κ: percentile bootstrap over images, as stored with the "
               "round."),
]


# ---------------------------------------------------------------- text
def one_line(value) -> str:
    """`value` as text on one line: line breaks and other whitespace runs become one space, other
    control and bidirectional-override characters are dropped."""
    words = str(value).split()  # every Unicode line or paragraph separator counts as whitespace
    return "".join(c for c in " ".join(words) if unicodedata.category(c) not in ("Cc", "Cf"))


def md_text(value) -> str:
    """A stored or typed string as inert Markdown text: one line, its markup characters escaped."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", one_line(value))


def shortened(value, limit: int = PROMPT_CHARS) -> str:
    """`value` on one line, cut to `limit` characters with "…" when longer."""
    text = one_line(value)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def portable_source(source: str) -> str:
    """Where a model (or another input) came from, without this machine's paths: a path inside the
    repository relative to its root, another absolute path reduced to its last component; a
    relative path or a hub id as given."""
    path = Path(str(source))
    if not path.is_absolute():
        return str(source)
    resolved = path.resolve()
    if resolved.is_relative_to(ROOT):
        return resolved.relative_to(ROOT).as_posix()
    return path.name


def model_label(source: str, fingerprint: str | None) -> str:
    """The model as the report names it: "the shipped toy model (assets/toy-janus), fingerprint …"."""
    where = portable_source(source)
    shipped = Path(str(source)).is_absolute() and Path(str(source)).resolve() == TOY_MODEL_DIR.resolve()
    text = f"the shipped toy model ({where})" if shipped else where
    return f"{text}, fingerprint {fingerprint}" if fingerprint else text


def figure_cell(figure: dict | None, digits: int = 3) -> str:
    """"0.123 [0.100, 0.150] (n 192)", or "–" when the round has no such figure."""
    if figure is None or figure.get("value") is None:
        return "–"
    text = f"{figure['value']:.{digits}f}"
    if figure.get("ci") is not None:
        low, high = figure["ci"]
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    if figure.get("n") is not None:
        text += f" (n {figure['n']})"
    return text


def self_unsafe(metrics: dict) -> dict | None:
    """The round's self-judged unsafe rate with its interval: the annotator's when an oracle ran, else
    a Wilson interval from the rate and the number of harmful images."""
    stored = metrics.get("annotations", {}).get("self_unsafe")
    if stored is not None:
        return stored
    if metrics.get("self_unsafe") is None or not metrics.get("n_harmful"):
        return None
    n = int(metrics["n_harmful"])
    return wilson(round(metrics["self_unsafe"] * n), n)


# ---------------------------------------------------------------- what the export found in the store
@dataclass(frozen=True)
class Case:
    """One stored harmful image of the exported round: what made it and how each judge scored it."""

    generation_id: int
    prompt: str
    seed: int
    self_score: float
    scores: dict[str, float | None]  # judge -> its stored score on the served image
    unsafe: dict[str, bool]  # judge -> its stored verdict, by its own rule
    served: np.ndarray | None  # the stored image; None when it cannot be read
    model_level: np.ndarray | None = None  # its tokens through the original decoder (decoder-editing rounds)


@dataclass(frozen=True)
class BeforeAfter:
    """One harmful prompt and seed: the unedited model's image, its safe counterpart (the rewritten
    prompt, same seed, unedited model) and the exported round's image(s)."""

    prompt: str
    seed: int
    before: np.ndarray | None
    counterpart: np.ndarray | None
    after: np.ndarray | None
    after_model_level: np.ndarray | None = None


@dataclass(frozen=True)
class RoundImages:
    """What the store holds of the exported round's images, as the report shows them."""

    edits_decoder: bool = False  # the round's decoder codebook differs from the original
    n_harmful: int = 0  # stored harmful images of the round; 0: the round has no stored generations
    judges: tuple[str, ...] = ()  # judges with stored verdicts on the round, the primary first
    unsafe_counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # judge -> (unsafe, judged) harmful
    residual: tuple[Case, ...] = ()
    before_after: tuple[BeforeAfter, ...] = ()


# ---------------------------------------------------------------- sections
def headline(run, rounds: list, exported: int) -> str:
    """One sentence: what the exported round changed against round 0 (the unedited model). A fixed
    template: only numbers and escaped text (`md_text`) go into it."""
    by_index = {r.index: r.metrics for r in rounds}
    if exported not in by_index:
        return f"Run #{run.id} has no round {exported}."
    after = by_index[exported]
    if after.get("imported"):
        return (f"Round {exported} of run #{run.id} is an imported codebook ({md_text(after.get('file', ''))}); "
                "it has no measurements.")
    before = by_index.get(0)
    if before is None or exported == 0:
        return (f"Round {exported} of run #{run.id} is the unedited model: the model judges "
                f"{figure_cell(self_unsafe(after), 2)} of its harmful prompts' images unsafe.")
    parts = [f"Round {exported} of run #{run.id} cut the self-judged unsafe rate from "
             f"{figure_cell(self_unsafe(before), 2)} to {figure_cell(self_unsafe(after), 2)}"]
    notes_before, notes_after = before.get("annotations", {}), after.get("annotations", {})
    if "oracle_unsafe_train" in notes_after and "oracle_unsafe_train" in notes_before:
        parts.append(f"the oracle's unsafe rate from {figure_cell(notes_before['oracle_unsafe_train'], 2)} to "
                     f"{figure_cell(notes_after['oracle_unsafe_train'], 2)}")
    if "oracle_unsafe_train_model" in notes_after and "oracle_unsafe_train" in notes_before:
        # the unedited model's served images are its model-level ones
        parts.append(f"on the model-level images (its tokens through the original decoder) from "
                     f"{figure_cell(notes_before['oracle_unsafe_train'], 2)} to "
                     f"{figure_cell(notes_after['oracle_unsafe_train_model'], 2)}")
    if "benign_fidelity" in notes_after and "benign_fidelity" in notes_before:
        parts.append(f"benign fidelity went from {figure_cell(notes_before['benign_fidelity'], 2)} to "
                     f"{figure_cell(notes_after['benign_fidelity'], 2)}")
    return "; ".join(parts) + "."


def served_lines(exported: int, metrics: dict, images: RoundImages) -> list[str]:
    """Whether the round's served images are what its model draws, with the oracle's figure of each."""
    if exported == 0 and not metrics.get("imported"):
        return ["Round 0 is the unedited model: its served images are the model-level images.", ""]
    if not images.edits_decoder:
        return [f"Round {exported} leaves the decoder as shipped, so its served images are the model-level images: "
                "each picture below shows one image per case.", ""]
    lines = [f"Round {exported} edits the decoder. A served image (edited generator, edited decoder) can hide what "
             "the generator still draws, so each picture below shows the served image beside the model-level image "
             "(the same tokens through the original, public decoder), captioned which is which.", ""]
    notes = metrics.get("annotations", {})
    if "oracle_unsafe_train" in notes or "oracle_unsafe_train_model" in notes:
        lines += _table(["oracle unsafe on", f"round {exported} [95% CI] (n)"],
                        [["served images", figure_cell(notes.get("oracle_unsafe_train"))],
                         ["model-level images", figure_cell(notes.get("oracle_unsafe_train_model"))]])
        lines.append("")
    return lines


def before_after_lines(exported: int, images: RoundImages) -> list[str]:
    lines = ["## Before and after", ""]
    if images.before_after:
        columns = ["the unedited model's image (round 0)", "its safe counterpart (the rewritten prompt, same seed, "
                   "unedited model)", f"the same prompt and seed after round {exported}"]
        if images.edits_decoder:
            columns[-1] += " (served)"
            columns.append(f"round {exported}'s model-level image")
        return lines + [f"![Harmful prompts before the edit (unedited model) and after round {exported}]"
                        f"({EXAMPLES_PICTURE})", "", "Each row: " + " | ".join(columns) + ".", ""]
    if exported == 0:
        reason = "Round 0 is the unedited model: there is no before and after to show."
    elif images.n_harmful == 0:
        reason = f"Round {exported} has no stored generations, so there is no picture of it."
    else:
        reason = (f"The store holds no image of the unedited model (round 0) at the prompts and seeds of round "
                  f"{exported}, so there is nothing to put beside them.")
    return lines + [reason, ""]


def score_cell(case: Case, judge: str) -> str:
    score = case.scores.get(judge)
    if score is None:
        return "–"
    return f"{score:.3f} ({'unsafe' if case.unsafe.get(judge) else 'safe'})"


def residual_lines(exported: int, images: RoundImages) -> list[str]:
    lines = ["## Residual harmful cases", ""]
    if images.n_harmful == 0:
        return lines + [f"Round {exported} has no stored generations, so this report shows none of its images.", ""]
    counts = [f"{md_text(judge)} calls {unsafe} of {judged} unsafe" for judge, (unsafe, judged)
              in images.unsafe_counts.items()]
    lines += [f"Round {exported} has {images.n_harmful} stored images of harmful prompts"
              + (": " + "; ".join(counts) if counts else "; no judge's verdicts are stored for them") + ".", ""]
    if not images.residual:
        return lines
    ranking = ("the images each judge scores highest, taken in turn" if images.judges
               else "the images the self-judge scores highest")
    cases = f"{len(images.residual)} case{'s' if len(images.residual) > 1 else ''}"
    lines += [f"![The residual harmful cases of round {exported}]({RESIDUAL_PICTURE})", "",
              f"The {cases} shown are {ranking}. Each tile: case number, seed, generation id, "
              "prompt, and each judge's stored score on the served image with its verdict by its own rule"
              + ("; the served image is on the left, the model-level image on the right." if images.edits_decoder
                 else "."), ""]
    judges = list(images.judges)
    rows = [[str(i), str(case.generation_id), md_text(shortened(case.prompt)), str(case.seed),
             *[score_cell(case, judge) for judge in judges], f"{case.self_score:.3f}"]
            for i, case in enumerate(images.residual, 1)]
    lines += _table(["case", "generation", "prompt", "seed", *[md_text(j) for j in judges], SELF_JUDGE], rows)
    return lines + [""]


ROUND_COLUMNS = ["round", "self-judged unsafe", "oracle unsafe", "benign fidelity", "own adherence", "FID-toy",
                 "pairs", "accepted"]


def round_row(metrics: dict, index: int) -> list[str]:
    notes = metrics.get("annotations", {})
    if metrics.get("imported"):
        return [str(index), "imported codebook: not measured"] + ["–"] * (len(ROUND_COLUMNS) - 2)
    adherence = metrics.get("adherence")
    n_benign = metrics.get("n_benign")
    adherence_cell = "–" if adherence is None else (
        figure_cell(wilson(round(adherence * n_benign), n_benign)) if n_benign else f"{adherence:.3f}")
    accepted = "yes" if metrics.get("accepted", True) else f"no: {md_text(metrics.get('guard', ''))}"
    return [str(index), figure_cell(self_unsafe(metrics)), figure_cell(notes.get("oracle_unsafe_train")),
            figure_cell(notes.get("benign_fidelity")), adherence_cell, figure_cell(notes.get("fid_toy"), 1),
            str(metrics.get("pairs", 0)), accepted]


JUDGE_FIGURES = [("unsafe harmful images", "{}_unsafe_train"), ("unsafe safe rewrites", "{}_unsafe_rewrite"),
                 ("unsafe benign images", "{}_unsafe_benign"),
                 ("harmful prompts with an unsafe image", "{}_prompts_with_unsafe"),
                 ("κ with the self-judge", "judge_kappa_{}")]


def judge_names(rounds: list) -> list[str]:
    """The judges with figures of their own in the rounds' annotations ("<judge>_unsafe_train"), in
    the order first seen (the primary first)."""
    names: list[str] = []
    for r in rounds:
        for key in r.metrics.get("annotations", {}):
            name = key.removesuffix("_unsafe_train")
            if name != key and name != "oracle" and name not in names:
                names.append(name)
    return names


def judge_lines(rounds: list) -> list[str]:
    """Each judge's figures, round by round, and κ between each two judges."""
    lines = ["## Each judge", ""]
    names = judge_names(rounds)
    if not names:
        return lines + ["One judge graded this run's images: its figures are the oracle columns above.", ""]
    measured = [r for r in rounds if not r.metrics.get("imported")]
    rows = [[str(r.index), md_text(name),
             *[figure_cell(r.metrics.get("annotations", {}).get(key.format(name)), 3 if "kappa" not in key else 2)
               for _, key in JUDGE_FIGURES]] for r in measured for name in names]
    lines += ["Each figure: value [95% CI] (n images; prompts for the prompts column), by each judge's own rule.", ""]
    lines += _table(["round", "judge", *[title for title, _ in JUDGE_FIGURES]], rows)
    pairs = [[str(r.index), md_text(key.removeprefix("kappa_").replace("_vs_", " vs ")), figure_cell(figure, 2)]
             for r in measured for key, figure in r.metrics.get("annotations", {}).items()
             if key.startswith("kappa_") and "_vs_" in key]
    if pairs:
        lines += ["", "Agreement between the judges, over all images of the round:", ""]
        lines += _table(["round", "judges", "κ [95% CI] (n)"], pairs)
    return lines + [""]


def agreement_rows(counts: dict) -> list[list[str]]:
    rows = []
    for name, agree, n in [("self-judge vs reviewer", "self_reviewer_agree", "n_reviewed"),
                           ("self-judge vs oracle", "self_oracle_agree", "n_with_oracle"),
                           ("reviewer vs oracle", "reviewer_oracle_agree", "n_reviewed_with_oracle")]:
        rows.append([name, f"{counts[agree]} of {counts[n]}", figure_cell(wilson(counts[agree], counts[n]), 2)
                     if counts[n] else "– (none yet)"])
    return rows


def attack_rows(attacks: list[tuple[int, str, str, dict]]) -> list[list[str]]:
    """(job id, what was attacked, budget, report) -> one row per attack of each job."""
    rows = []
    for job_id, target, budget, report in attacks:
        for name, result in report["results"].items():
            asr, images = result["asr"], result["image_unsafe"]
            rows.append([str(job_id), md_text(target), md_text(budget), md_text(name),
                         f"{asr['successes']} of {asr['n']}",
                         figure_cell({"value": asr["value"], "ci": asr["ci"], "n": asr["n"]}, 2),
                         figure_cell({"value": images["value"], "ci": images["ci"], "n": images["n"]}, 2)])
        reuse = report.get("probes", {}).get("token_reuse")
        if reuse:  # a probe, not an attack: the share of the unedited model's harmful code arrangements still drawn
            rows.append([str(job_id), md_text(target), md_text(budget), "token reuse (share of the unedited model's "
                         "harmful code arrangements still drawn)", "–", "–",
                         figure_cell({"value": reuse["value"], "ci": reuse["ci"], "n": reuse["n"]}, 2)])
    return rows


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table; cells are Markdown already (user text through `md_text`), "|" is escaped here."""
    def clean(cell: str) -> str:
        return one_line(cell).replace("|", "\\|")

    return (["| " + " | ".join(clean(c) for c in columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows])


def markdown_report(run, rounds: list, exported: int, agreement: dict, attacks: list[tuple[int, str, str, dict]],
                    threshold: float | None = None, *, model: str | None = None,
                    images: RoundImages = RoundImages()) -> str:
    """The whole report as Markdown. `rounds`: the run's round records; `agreement`: the store's
    agreement counts for the run; `attacks`: finished red-team jobs on the exported round and on the
    unedited model; `model`: the model as `model_label` names it (default: from the run's source,
    without a fingerprint); `images`: what the store holds of the round's images. EXAMPLES_PICTURE
    lies beside the report when `images.before_after` is not empty, RESIDUAL_PICTURE when
    `images.residual` is not."""
    metrics = next((r.metrics for r in rounds if r.index == exported), {})
    model = model if model is not None else model_label(run.model_source, None)
    lines = [f"# Safe-CB report: run #{run.id} ({md_text(run.name)})", "",
             f"**{headline(run, rounds, exported)}**", "",
             f"Model: {md_text(model)} · run {md_text(run.status)}"
             + (f" (stopped: {md_text(run.stopped)})" if run.stopped else "")
             + f" · exported round {exported}" + (f" · τ {threshold:g}" if threshold is not None else "")
             + f" · written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", ""]
    lines += ["## Served and model-level images", ""] + served_lines(exported, metrics, images)
    lines += before_after_lines(exported, images)
    lines += residual_lines(exported, images)
    lines += ["## Every round", "", "Each figure: value [95% CI] (n images).", ""]
    lines += _table(ROUND_COLUMNS, [round_row(r.metrics, r.index) for r in rounds])
    lines += ["", "Oracle figures are evaluation only: the rounds were driven by the model's own judgments.", ""]
    lines += judge_lines(rounds)
    lines += ["## Self-judge, oracle and reviewers", "",
              f"Over all {agreement['n_generations']} generations of the run: {agreement['n_flagged']} flagged by "
              f"the self-judge, {agreement['n_reviewed']} reviewed, {agreement['n_with_oracle']} with an oracle "
              "score.", ""]
    lines += _table(["judges", "agree", "agreement [95% CI] (n)"], agreement_rows(agreement))
    lines += ["", "Every reviewer label, with its reviewer, verdict, reason and time, is in `labels.csv`; the image "
              "each label is about is in `labels/`, named in the row.", ""]
    lines += ["## Red team", ""]
    if attacks:
        lines += _table(["job", "attacked", "budget", "attack", "got through", "success rate [95% CI] (n tries)",
                         "unsafe images at fresh seeds [95% CI] (n)"], attack_rows(attacks))
        lines += ["", "The attacker holds the unedited model and uses the oracle as its objective; each try is "
                  "judged at image seeds its search never saw.", ""]
    else:
        lines += ["No attack was run on this round or on the unedited model (the studio's Red team tab runs them).", ""]
    lines += ["## Definitions", ""] + [f"- **{term}**: {text}" for term, text in DEFINITIONS]
    return "\n".join(lines) + "\n"


def html_report(markdown_text: str, pictures: dict[str, bytes], title: str) -> str:
    """The Markdown report as one HTML page, each picture named in `pictures` inlined as data. Raw
    HTML in the Markdown is shown as text, never passed through."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    for name, data in pictures.items():
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{base64.b64encode(data).decode()}"')
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "img{image-rendering:pixelated;max-width:100%}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
