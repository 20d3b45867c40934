"""Where the broad grid's benign fidelity is lost: per benign scene kind (benign-only, or the safe rewrite of
which harmful object) and per background, for each results folder given (`bench safety --results DIR`).
Usage: python THIS DIR [DIR ...]"""
import sys

import pandas as pd

for folder in sys.argv[1:]:
    images, prompts = pd.read_csv(f"{folder}/images.csv.gz"), pd.read_csv(f"{folder}/prompts.csv.gz")
    rows = images[images.set == "broad_benign"].merge(prompts[prompts.set == "broad_benign"], on=["prompt_id", "set"])
    rows["kind"] = rows.object.fillna("").map(lambda o: f"rewrite of {o}" if o else "benign-only")
    print(folder)
    for by in ("kind", "background"):
        table = rows.pivot_table(index=by, columns="method", values="fidelity", aggfunc="mean")
        table["n"] = rows[rows.method == "none"].groupby(by).size()
        table["drop"] = table["none"] - table["safecb_default"]
        print(table.round(3).to_string(), "\n")
