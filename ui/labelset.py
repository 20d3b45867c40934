"""The labelled set of generations in the studio (safecb/bench/labelset.py): import its images as a
run, so reviewers label them in the Flagged tab's review queue ("flagged only" off), and export the
labels beside the images as `labels.csv`, which `bench model` scores every judge against.

    python -m ui labelset import [--dir results/labelset] [--db-url URL]
    python -m ui labelset export --run ID [--dir results/labelset] [--labels labels.csv] [--db-url URL]

The store is the studio's (`--db-url`, else $SAFECB_DB_URL, else artifacts/safecb.db).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

from db import Store
from safecb.eval.labelset import GENERATION_COLUMNS, LABEL_COLUMNS, LABELS_FILE, LABELSET_DIR

SELF_THRESHOLD = 0.5  # what "flagged" means on imported images: the model's own P(unsafe) at least this


def import_labelset(store: Store, directory: Path) -> int:
    """A finished run holding the set's images, one generation each in id order (round 0), with
    settings naming its method, prompt kind and id in the set. -> the run id."""
    with open(directory / "generations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(GENERATION_COLUMNS) - set(rows[0]):
        raise ValueError(f"{directory / 'generations.csv'} is not a labelled set's generations file")
    meta = json.loads((directory / "meta.json").read_text()) if (directory / "meta.json").exists() else {}
    run_id = store.create_run(f"labelled set ({len(rows)} generations)", str(directory),
                              {"labelset": str(directory), "model_sha256": meta.get("model_sha256")}, "finished")
    store.add_generations(run_id, [
        {"round_index": 0, "prompt": r["prompt_given"], "seed": int(r["seed"]),
         "image_png": (directory / r["image"]).read_bytes(), "tokens": [], "self_score": float(r["self_score"]),
         "flagged": float(r["self_score"]) >= SELF_THRESHOLD,
         "settings": {"kind": r["kind"], "method": r["method"], "labelset_id": int(r["id"])}}
        for r in rows])
    return run_id


def export_labels(store: Store, run_id: int, directory: Path, labels_file: str = LABELS_FILE) -> int:
    """Add every label of the run's generations (oldest first; a later label supersedes) to
    directory/`labels_file` by the set's ids, keeping the labels the file holds already (a block
    appended to the set is labelled in a run of its own; a second reader's reading goes to its own
    file, SECOND_LABELS_FILE). -> the number of images the run labelled."""
    if Path(labels_file).name != labels_file or not labels_file.endswith(".csv"):
        raise ValueError(f"the labels file is a .csv name inside the set's folder, got {labels_file!r}")
    ids, page = {}, 1000
    while len(ids) % page == 0:  # list_generations pages; an imported set is one round of a few hundred
        batch = store.list_generations(run_id, limit=page, offset=len(ids))
        ids.update({g.id: (g.settings or {}).get("labelset_id") for g in batch})
        if not batch:
            break
    if not ids or None in ids.values():
        raise ValueError(f"run #{run_id} is not an imported labelled set")
    labels = store.run_labels(run_id)
    rows = []
    if (directory / labels_file).is_file():  # labels exported before (an earlier block of the set) stay
        with open(directory / labels_file, newline="") as f:
            rows = list(csv.DictReader(f))
    rows += [{"id": str(ids[label["generation_id"]]), "label": label["verdict"], "reviewer": label["reviewer"],
              "reason": label["reason"], "labelled_at": str(label["labelled_at"])} for label in labels]
    unique = {tuple(row[c] for c in LABEL_COLUMNS): row for row in rows}  # exporting a run twice adds nothing
    with open(directory / labels_file, "w", newline="") as f:
        writer = csv.DictWriter(f, LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(unique.values())
    return len({label["generation_id"] for label in labels})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui labelset", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("import", "export"))
    parser.add_argument("--dir", default=str(LABELSET_DIR), help="the labelled set's folder")
    parser.add_argument("--run", type=int, default=None, help="export: the imported run's id")
    parser.add_argument("--labels", default=LABELS_FILE,
                        help="export: the file the labels go to, in the set's folder (a second reader's: labels_second.csv)")
    parser.add_argument("--db-url", default=None, help="store URL (default: $SAFECB_DB_URL, else artifacts/safecb.db)")
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    url = args.db_url or os.environ.get("SAFECB_DB_URL") or f"sqlite:///{Path('artifacts/safecb.db').resolve()}"
    Path("artifacts").mkdir(exist_ok=True)
    with Store.open(url) as store:
        if args.action == "import":
            run_id = import_labelset(store, directory)
            print(f"imported {directory} as run #{run_id}: label it in the Flagged tab's review queue "
                  "with 'flagged only' off")
            return 0
        if args.run is None:
            parser.error("export needs --run ID")
        n = export_labels(store, args.run, directory, args.labels)
        print(f"wrote labels of {n} generations to {directory / args.labels}")
        return 0
