"""The report a reviewer hands on, for one exported round of a run: Markdown, and the same as one
self-contained HTML page (the pictures inlined).

It opens with a headline sentence (the exported round against the unedited model), shows the
before/after picture the round made, gives every per-round figure with its 95% interval and n,
the self-judge vs oracle vs reviewer agreement, the red-team attacks on this round and on the
unedited model, and defines every term it uses.

Nothing a user typed is ever markup: names, file names and other stored strings go in through
`md_text` (one line, Markdown punctuation escaped), and the HTML page is rendered with raw HTML
off, so a run named `<script>…` or one whose name forges a paragraph shows as plain text.
"""

from __future__ import annotations

import base64
import html
import re
import unicodedata
from datetime import datetime, timezone

from markdown_it import MarkdownIt

from safecb.metrics import wilson

EXAMPLES_PICTURE = "examples.png"  # the round's before/after strip, beside the report in the zip
# Inline Markdown punctuation: emphasis, code, links and images, raw HTML, entities, escapes, headings.
# "|" is left to _table (it only matters in table rows); "-", "+", "=" and "1." only at a line's start,
# which a one-line value inside a sentence never is.
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#!&~])")

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
    ("agreement", "share of images on which two judges give the same verdict (the reviewer's newest label counts)."),
    ("attack success rate", "share of attack tries whose images at fresh seeds are at least half unsafe by the "
                            "oracle."),
    ("95% CI", "shares from counts (agreement, attack success, self-judged unsafe without an oracle): Wilson score "
               "interval; oracle figures: percentile bootstrap over images, as stored with the round."),
]


def one_line(value) -> str:
    """`value` as text on one line: line breaks and other whitespace runs become one space, other
    control and bidirectional-override characters are dropped."""
    words = str(value).split()  # every Unicode line or paragraph separator counts as whitespace
    return "".join(c for c in " ".join(words) if unicodedata.category(c) not in ("Cc", "Cf"))


def md_text(value) -> str:
    """A stored or typed string as inert Markdown text: one line, its markup characters escaped."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", one_line(value))


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
    if "benign_fidelity" in notes_after and "benign_fidelity" in notes_before:
        parts.append(f"benign fidelity went from {figure_cell(notes_before['benign_fidelity'], 2)} to "
                     f"{figure_cell(notes_after['benign_fidelity'], 2)}")
    return "; ".join(parts) + "."


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
    return rows


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table; cells are Markdown already (user text through `md_text`), "|" is escaped here."""
    def clean(cell: str) -> str:
        return one_line(cell).replace("|", "\\|")

    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows])


def markdown_report(run, rounds: list, exported: int, agreement: dict, attacks: list[tuple[int, str, str, dict]],
                    has_picture: bool, threshold: float | None) -> str:
    """The whole report as Markdown. `rounds`: the run's round records; `agreement`: the store's
    agreement counts for the run; `attacks`: finished red-team jobs on the exported round and on the
    unedited model; `has_picture`: whether EXAMPLES_PICTURE lies beside the report."""
    lines = [f"# Safe-CB report: run #{run.id} ({md_text(run.name)})", "",
             f"**{headline(run, rounds, exported)}**", "",
             f"Model {md_text(run.model_source)} · run {md_text(run.status)}"
             + (f" (stopped: {md_text(run.stopped)})" if run.stopped else "")
             + f" · exported round {exported}" + (f" · τ {threshold:g}" if threshold is not None else "")
             + f" · written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", ""]
    if has_picture:
        lines += ["## Before and after", "",
                  f"![Each row: a harmful image before the edit, its safe counterpart, the same prompt and seed "
                  f"after round {exported}]({EXAMPLES_PICTURE})", "",
                  f"Each row: a harmful prompt's image before the edit | its safe counterpart (the rewritten "
                  f"prompt, same seed) | the harmful prompt at the same seed after round {exported}.", ""]
    lines += ["## Every round", "", "Each figure: value [95% CI] (n images).", ""]
    lines += _table(ROUND_COLUMNS, [round_row(r.metrics, r.index) for r in rounds])
    lines += ["", "Oracle figures are evaluation only: the rounds were driven by the model's own judgments.", "",
              "## Self-judge, oracle and reviewers", "",
              f"Over all {agreement['n_generations']} generations of the run: {agreement['n_flagged']} flagged by "
              f"the self-judge, {agreement['n_reviewed']} reviewed, {agreement['n_with_oracle']} with an oracle "
              "score.", ""]
    lines += _table(["judges", "agree", "agreement [95% CI] (n)"], agreement_rows(agreement))
    lines += ["", "Every reviewer label, with its reviewer, verdict, reason and time, is in `labels.csv`.", ""]
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
             "img{image-rendering:pixelated;width:480px;max-width:100%}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
