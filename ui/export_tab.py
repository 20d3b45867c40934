"""Export and import.

Export a round of a run: its edited codebooks (safetensors), a report (Markdown and one HTML page
with a headline, the before/after picture, every figure with its interval and n, judge vs oracle
vs reviewer agreement, red-team attacks and definitions, `ui/report.py`; JSON and CSV of the
per-round figures), every reviewer label (CSV) and a manifest (config, seeds, model, file hashes)
that is enough to reproduce the run. Import a codebook file: it is validated (names, shape, dtype,
finite values, model fingerprint) before anything is written, then recorded as a run of its own so
Compare and the Codebook map can use it. Delete a run: after its name is typed to confirm, the
run, everything recorded under it and its files go.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import zipfile
from pathlib import Path

import gradio as gr

from jobs.attack_job import ORIGINAL_ROUND, attack_jobs, read_report, target_name
from jobs.run_prompts import run_prompt_set
from safecb.models.backend import CODEBOOK_PATHS

from .common import InputError, parse_run_id, round_choices, run_choices
from .report import EXAMPLES_PICTURE, html_report, markdown_report
from .services import Services

log = logging.getLogger(__name__)

MAX_IMPORT_BYTES = 512 * 1024 * 1024
FLAT_KEYS = ["round", "self_unsafe", "self_unsafe_rewrite", "self_unsafe_benign", "adherence", "benign_change",
             "pairs", "accepted", "guard", "seconds"]
LABEL_COLUMNS = ["label_id", "generation_id", "round", "kind", "prompt", "seed", "self_score", "self_flagged",
                 "oracle_unsafe", "reviewer", "verdict", "reason", "labelled_at"]
ORACLE_KEYS = ["oracle_unsafe_train", "oracle_unsafe_rewrite", "benign_fidelity", "judge_agreement", "fid_toy"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def flat_round(metrics: dict) -> dict:
    row = {key: metrics.get(key) for key in FLAT_KEYS}
    notes = metrics.get("annotations", {})
    for key in ORACLE_KEYS:
        figure = notes.get(key)
        row[key] = None if figure is None else figure.get("value")
        ci = None if figure is None else figure.get("ci")
        row[f"{key}_ci_low"], row[f"{key}_ci_high"] = (ci or (None, None))
        row[f"{key}_n"] = None if figure is None else figure.get("n")
    return row


def round_attacks(services: Services, run_id: int, round_index: int) -> list[tuple[int, str, str, dict]]:
    """Finished red-team attacks on the round and on the unedited model: (job id, what, budget, report)."""
    out = []
    for job in attack_jobs(services.store, run_id):
        attacked = int(job.config["round"])
        if job.status != "finished" or attacked not in (round_index, ORIGINAL_ROUND):
            continue
        report = read_report(services.artifacts(run_id).path, job.id)
        if report is not None:
            out.append((job.id, target_name(attacked), job.config["budget"], report))
    return sorted(out, key=lambda row: row[0])


def export_round(services: Services, run_id, round_index) -> tuple[list[str], str]:
    """Write the export files; -> (paths, status)."""
    run_id = parse_run_id(run_id)
    run = services.store.get_run(run_id)
    if run is None:
        raise InputError(f"There is no run #{run_id}.")
    rounds = services.store.list_rounds(run_id)
    if round_index in (None, ""):
        raise InputError("Pick the round to export.")
    record = next((r for r in rounds if r.index == int(round_index)), None)
    if record is None or not record.snapshot_path or not services.snapshot_file(record.snapshot_path).exists():
        raise InputError(f"Run #{run_id} has no snapshot for round {round_index}.")
    out = services.export_dir(run_id, record.index)
    out.mkdir(parents=True, exist_ok=True)
    codebooks = out / "codebooks.safetensors"
    shutil.copyfile(services.snapshot_file(record.snapshot_path), codebooks)
    rows = [{**flat_round(r.metrics), "round": r.index} for r in rounds]
    agreement = services.store.agreement_counts(run_id)
    (out / "report.json").write_text(json.dumps(
        {"run": {"id": run.id, "name": run.name, "model": run.model_source, "status": run.status},
         "exported_round": record.index, "rounds": [r.metrics for r in rounds], "agreement": agreement},
        indent=2))
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    picture = services.artifacts(run_id).examples(record.index)
    if picture is not None:
        shutil.copyfile(picture, out / EXAMPLES_PICTURE)
    else:  # an earlier export of this round may have left one
        (out / EXAMPLES_PICTURE).unlink(missing_ok=True)
    threshold = run.config.get("safecb", {}).get("mining", {}).get("threshold")
    text = markdown_report(run, rounds, record.index, agreement, round_attacks(services, run_id, record.index),
                           picture is not None, threshold)
    (out / "report.md").write_text(text)
    pictures = {EXAMPLES_PICTURE: (out / EXAMPLES_PICTURE).read_bytes()} if picture is not None else {}
    (out / "report.html").write_text(html_report(text, pictures, f"Safe-CB report: run #{run.id} round {record.index}"))
    labels = services.store.run_labels(run_id)
    with open(out / "labels.csv", "w", newline="") as f:  # every reviewer label, the whole history
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(labels)
    names = ["codebooks.safetensors", "report.md", "report.html", "report.json", "report.csv", "labels.csv"]
    if picture is not None:
        names.append(EXAMPLES_PICTURE)
    evaluation = services.artifacts(run_id).evaluation_path  # real-image oracles: versions, classes, thresholds
    if evaluation.exists():
        shutil.copyfile(evaluation, out / evaluation.name)
        names.append(evaluation.name)
    safecb = run.config.get("safecb", {})
    manifest = {
        "model": run.model_source, "fingerprint": services.backend.fingerprint, "run": run.id,
        "round": record.index, "config": safecb,
        "prompts": run_prompt_set(run, services.artifacts(run_id).path), "i2p": run.config.get("i2p"),
        "seeds": {"harmful": safecb.get("mining", {}).get("seeds"),
                  "benign": safecb.get("mining", {}).get("benign_seeds"), "run": safecb.get("seed")},
        "files": {p.name: sha256(p) for p in sorted(out.iterdir()) if p.name != "manifest.json"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    names.append("manifest.json")
    bundle = out / f"safecb-run-{run.id:04d}-round-{record.index:03d}.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.write(out / name, name)
    files = [str(bundle)] + [str(out / name) for name in names]
    return files, (f"Exported run #{run_id} round {record.index}: one zip with the codebooks, "
                   f"the report (Markdown and HTML), "
                   f"{len(labels)} reviewer label(s) (labels.csv) and the manifest.")


def import_codebook(services: Services, file_path, name) -> tuple[int, str]:
    """Validate an uploaded codebook file and record it as a run. -> (run id, status)."""
    if not file_path:
        raise InputError("Choose a .safetensors codebook file to import.")
    path = Path(file_path)
    if path.suffix != ".safetensors":
        raise InputError(f"{path.name} is not a .safetensors file.")
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise InputError(f"{path.name} is larger than {MAX_IMPORT_BYTES >> 20} MB.")
    tensors = services.backend.read_codebook_file(path)  # CodebookError (a ValueError) says what is wrong
    digest = sha256(path)
    for earlier in services.store.list_runs(limit=1000):
        if earlier.config.get("imported") and earlier.config.get("sha256") == digest:
            raise InputError(f"This file was imported already, as run #{earlier.id} ({earlier.name}): "
                             "compare or export that run instead.")
    label = (name or "").strip()[:80] or f"imported: {path.name}"
    run_id = services.store.create_run(label, services.backend.source,
                                       {"imported": path.name, "tensors": sorted(tensors), "sha256": digest})
    try:
        target = services.artifacts(run_id).import_codebooks(path)
    except OSError as exc:  # e.g. a full disk: leave no run behind that says it holds the file
        services.store.delete_run(run_id)
        shutil.rmtree(services.artifacts(run_id).path, ignore_errors=True)
        raise InputError(f"Could not store {path.name}: {exc.strerror or exc}. Nothing was imported.") from None
    services.store.add_round(run_id, 0, {"imported": True, "accepted": True, "file": path.name},
                             target.relative_to(services.runs_root).as_posix())
    services.store.update_run_status(run_id, "finished")
    changed = [n for n in tensors if not bool((tensors[n] == services.reference[n]).all())]
    return run_id, (f"Imported {path.name} as run #{run_id} ({', '.join(sorted(tensors))}; "
                    f"differs from the original in: {', '.join(changed) or 'nothing'}). Compare it in Generate & compare.")


def delete_run(services: Services, run_value, typed_name: str) -> str:
    """Delete a run once its name is typed back: the store's records (rounds, generations, labels,
    pairs, snapshots), its run directory and its exports. Refused while a job works on it."""
    run_id = parse_run_id(run_value)
    run = services.store.get_run(run_id)
    if run is None:
        raise InputError(f"There is no run {run_id} (it may have been deleted already).")
    if (typed_name or "").strip() != run.name:
        raise InputError(f"To delete run {run_id}, type its name exactly: {run.name}")
    if services.store.live_job(run_id) is not None:
        raise InputError(f"Run {run_id} has a queued or running job: cancel it in the Run tab first.")
    services.store.delete_run(run_id)
    directories = [services.artifacts(run_id).path,
                   *services.runs_root.parent.glob(f"exports/run-{run_id:04d}-round-*")]
    for directory in directories:
        services.forget_snapshots_under(directory)
        shutil.rmtree(directory, ignore_errors=True)
    return f"Deleted run {run_id} ({run.name}): its rounds, images, labels, pairs and files."


def build_export_tab(services: Services) -> None:
    gr.Markdown("### Export a round\nOne zip: the round's codebooks, the report (Markdown, JSON, CSV), every "
                "reviewer label (labels.csv) and a manifest to reproduce it.")
    with gr.Row():
        run = gr.Dropdown(allow_custom_value=True, choices=run_choices(services.store), value=None, label="Run", scale=3, elem_id="export-run")
        round_pick = gr.Dropdown(allow_custom_value=True, choices=[], label="Round", scale=2, elem_id="export-round")
        export = gr.Button("Export", variant="primary", scale=1, elem_id="export")
    export_status = gr.Markdown(elem_id="export-status")
    files = gr.File(label="Files", file_count="multiple", interactive=False, elem_id="export-files")
    gr.Markdown(f"### Import a codebook\nA `.safetensors` file with some of {', '.join(CODEBOOK_PATHS)}, saved from "
                "this model. It is checked before anything is written.")
    with gr.Row():
        upload = gr.File(label="Codebook file", file_types=[".safetensors"], type="filepath", elem_id="import-file")
        with gr.Column():
            import_name = gr.Textbox(label="Name (optional)", max_length=80)
            do_import = gr.Button("Import", elem_id="import")
    import_status = gr.Markdown(elem_id="import-status")
    gr.Markdown("### Delete a run\nRemoves the run, its rounds, images, reviewers' labels and files. "
                "This cannot be undone: export what you want to keep first.")
    with gr.Row():
        doomed = gr.Dropdown(allow_custom_value=True, choices=run_choices(services.store), value=None, label="Run",
                             scale=3, elem_id="delete-run")
        confirm = gr.Textbox(label="Type the run's name to confirm", max_length=200, scale=3, elem_id="delete-confirm")
        do_delete = gr.Button("Delete run", variant="stop", scale=1, elem_id="delete")
    delete_status = gr.Markdown(elem_id="delete-status")

    def on_run(run_id):
        rounds = round_choices(services.store, run_id) if run_id not in (None, "") else []
        return gr.update(choices=rounds, value=rounds[-1][1] if rounds else None)

    def on_export(run_id, round_index):
        try:
            paths, message = export_round(services, run_id, round_index)
            return paths, message
        except ValueError as exc:
            gr.Warning(str(exc))
            return None, f"⚠ {exc}"
        except Exception as exc:
            log.exception("export failed")
            return None, f"⚠ Export failed ({type(exc).__name__}: {exc})."

    def on_import(file_path, name):
        try:
            run_id, message = import_codebook(services, file_path, name)
            return message, gr.update(choices=run_choices(services.store))
        except ValueError as exc:  # InputError and CodebookError
            gr.Warning(str(exc))
            return f"⚠ Not imported: {exc}", gr.update()
        except Exception as exc:
            log.exception("import failed")
            return f"⚠ Not imported ({type(exc).__name__}: {exc}).", gr.update()

    def on_delete(run_id, typed_name):
        try:
            message = delete_run(services, run_id, typed_name)
        except InputError as exc:
            gr.Warning(str(exc))
            return f"⚠ Not deleted: {exc}", gr.update(), gr.update()
        choices = run_choices(services.store)
        return message, gr.update(choices=choices, value=None), ""

    run.focus(lambda: gr.update(choices=run_choices(services.store)), None, [run], api_name=False)
    doomed.focus(lambda: gr.update(choices=run_choices(services.store)), None, [doomed], api_name=False)
    do_delete.click(on_delete, [doomed, confirm], [delete_status, doomed, confirm], api_name="delete_run")
    run.change(on_run, [run], [round_pick], api_name=False)
    export.click(on_export, [run, round_pick], [files, export_status], api_name="export")
    do_import.click(on_import, [upload, import_name], [import_status, run], api_name="import_codebook")
