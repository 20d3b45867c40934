"""Figures in the docs, bound to the rows they come from.

A figure in a Markdown file sits between two HTML comments, invisible once rendered:

    <!-- figure model.kappa_self_oracle -->0.803 [0.743, 0.846]<!-- /figure -->

or, for a whole table, the same comments on lines of their own. `check` compares every marked
text with what the report computes from `results/` and lists each difference; `write` puts the
computed text in place. A marker whose name the report does not know is an error too, so a figure
cannot be left behind when its source goes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"<!-- figure (?P<name>[\w.\-]+) -->(?P<body>.*?)<!-- /figure -->", re.S)


@dataclass(frozen=True)
class Mismatch:
    """A marked figure that differs from the rows."""

    path: Path  # the Markdown file
    line: int  # where the marker starts (1-based)
    name: str  # the figure's name
    found: str  # what the doc says
    expected: str | None  # what the rows give; None when no figure has this name

    def describe(self) -> str:
        if self.expected is None:
            return f"{self.path}:{self.line}: unknown figure {self.name!r}"
        return (f"{self.path}:{self.line}: figure {self.name!r} says {_short(self.found)!r} "
                f"but the rows give {_short(self.expected)!r}")


def _short(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _body(text: str, block: bool) -> str:
    """A figure's text as placed in a doc: a block keeps its own lines between the markers."""
    return f"\n{text.strip()}\n" if block else text


def _is_block(body: str) -> bool:
    return body.startswith("\n")


def markers(text: str) -> list[tuple[str, str, int]]:
    """(name, body, line) of every marked figure in `text`."""
    return [(m["name"], m["body"], text.count("\n", 0, m.start()) + 1) for m in MARKER.finditer(text)]


def check(paths: list[Path], figures: dict[str, str]) -> list[Mismatch]:
    """Every marked figure in `paths` that differs from `figures` (or has no figure)."""
    problems = []
    for path in paths:
        for name, body, line in markers(path.read_text()):
            expected = figures.get(name)
            if expected is None:
                problems.append(Mismatch(path, line, name, body, None))
            elif body != _body(expected, _is_block(body)):
                problems.append(Mismatch(path, line, name, body, expected))
    return problems


def write(paths: list[Path], figures: dict[str, str]) -> list[Path]:
    """Put each computed figure between its markers; returns the files changed. Unknown names are
    left alone (check reports them)."""
    changed = []
    for path in paths:
        text = path.read_text()

        def replace(m: re.Match) -> str:
            if m["name"] not in figures:
                return m.group(0)
            body = _body(figures[m["name"]], _is_block(m["body"]))
            return f"<!-- figure {m['name']} -->{body}<!-- /figure -->"

        new = MARKER.sub(replace, text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def used(paths: list[Path]) -> set[str]:
    """Names of the figures the docs mark."""
    return {name for path in paths for name, _, _ in markers(path.read_text())}


# what reads as a measured figure in prose: a decimal, a percentage or a ratio (integers are counts
# and settings far more often than figures, and are left to review)
FIGURE_LIKE = re.compile(r"(?<![\w.\-/])(?:\d+(?:[.,]\d+)*(?:%|×)|\d*\.\d+)(?![\w.]*\w)")
# a decimal right after one of these is a setting or a version, not a measurement
SETTING_BEFORE = re.compile(r"(?:torch|transformers|Python|CUDA|τ|ε|β|ρ|λ|p|lr|CFG|weight|w|temperature|at|"
                            r"threshold|cut|Janus-Pro|v)\s*=?\s*$", re.I)
# a percentage right before one of these is a confidence level, not a measurement
LEVEL_AFTER = re.compile(r"^\s*(?:bootstrap|interval|confidence|Wilson)", re.I)
UNCHECKED = re.compile(r"```.*?```|`[^`\n]*`|<!--.*?-->|\]\([^)]*\)", re.S)


def unmarked_figures(text: str) -> list[str]:
    """Figure-like numbers in `text` outside figure markers, code, comments and link targets."""
    text = MARKER.sub(" ", text)
    text = UNCHECKED.sub(" ", text)
    return [m.group(0) for m in FIGURE_LIKE.finditer(text)
            if not SETTING_BEFORE.search(text[max(0, m.start() - 16):m.start()])
            and not LEVEL_AFTER.match(text[m.end():m.end() + 16])]
