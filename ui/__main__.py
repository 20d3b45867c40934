"""`python -m ui bench --json PATH`: the studio's speed figures (ui/bench_app.py).
`python -m ui labelset import|export`: the labelled set of generations in the review queue (ui/labelset.py).
`python -m ui examples`: the seed at which each Generate example shows what it names (ui/demo_examples.py).

The headless job runner is `python -m jobs worker`; `python -m safecb` is the library's CLI.
"""

from __future__ import annotations

import sys

USAGE = "usage: python -m ui {bench,labelset,examples} [options]   (add --help after it for its options)"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() if argv else USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "bench":
        from .bench_app import main as bench_main

        return bench_main(rest)
    if command == "labelset":
        from .labelset import main as labelset_main

        return labelset_main(rest)
    if command == "examples":
        from .demo_examples import main as examples_main

        return examples_main(rest)
    print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
