"""Export and import.

Export a round of a run as one zip (`export_round`):

- `codebooks.safetensors`: the round's codebooks;
- `report.md` and `report.html` (one page, the pictures inlined; `ui/report.py`): the headline
  (the round against round 0, the unedited model), the model by source and fingerprint, served
  against model-level images, the before/after picture (`examples.png`: the unedited model's images
  beside the round's, from the store), the round's residual harmful cases (`residual_cases.png`:
  the images each judge scores highest, labelled), every figure with its interval and n, each
  judge's figures, judge vs oracle vs reviewer agreement, red-team attacks and definitions;
- `report.json` and `report.csv`: the per-round figures;
- `labels.csv`: every reviewer label of the run, the whole history, oldest first. Each row names
  the image it is about (`image`: `labels/<generation id>.png`, in the zip), and `latest` is True
  on the newest label of that generation by any reviewer: the label the studio's agreement figures
  and review queue count, so an auditor filters `latest` to reproduce them and reads the rest as
  history. Scores are rounded to 3 decimals;
- `manifest.json`: config, seeds, prompts, model, fingerprint and every file's hash: enough to
  reproduce the run.

No file of the export holds a path of the machine that wrote it: a model or input file is named
relative to the repository root when it lies inside it, else by its last path component. Each
export is written in a folder of its own and its files renamed into place, so simultaneous exports
of one round each leave whole files. CSV cells that a spreadsheet would run as a formula are
written as text.

Import a codebook file: it is validated (names, shape, dtype, values finite in the model's own
dtype, model fingerprint when the file carries one) before anything is written, then recorded as
a run of its own, in one store transaction, so Compare and the Codebook map can use it. The same
tensors (by a hash of names, dtypes, shapes and bytes) are imported once, however many imports
race. Delete a run: after its name is typed to confirm, the run, everything recorded under it and
its files go.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path

import gradio as gr
import torch
from gradio.utils import get_upload_folder
from sqlalchemy.exc import SQLAlchemyError

from db import Store
from db.store import DuplicateImport
from jobs.attack_job import ORIGINAL_ROUND, attack_jobs, read_report, target_name
from jobs.run_prompts import run_prompt_set
from safecb.models.backend import CODEBOOK_PATHS

from .common import InputError, parse_run_id, round_choices, run_choices
from .errors import public_message
from .report import (
    EXAMPLES_PICTURE,
    RESIDUAL_PICTURE,
    Case,
    RoundImages,
    html_report,
    markdown_report,
    model_label,
    portable_source,
)
from .report_pictures import examples_picture, png, residual_picture
from .round_images import round_images
from .services import Services

log = logging.getLogger(__name__)

MAX_IMPORT_BYTES = 512 * 1024 * 1024
FLAT_KEYS = ["round", "self_unsafe", "self_unsafe_rewrite", "self_unsafe_benign", "adherence", "benign_change",
             "pairs", "accepted", "guard", "seconds"]
LABEL_COLUMNS = ["label_id", "generation_id", "image", "round", "kind", "prompt", "seed", "self_score",
                 "self_flagged", "oracle_unsafe", "oracle_judge", "oracle_verdict", "reviewer", "verdict", "reason",
                 "labelled_at", "latest"]
LABEL_IMAGES = "labels"  # the zip's folder of labelled images, one <generation id>.png each
ORACLE_KEYS = ["oracle_unsafe_train", "oracle_unsafe_train_model", "oracle_unsafe_rewrite", "benign_fidelity",
               "judge_agreement", "fid_toy"]  # oracle_unsafe_train_model: what the model drew, for decoder edits
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell that starts so (OWASP)
CODEBOOKS = "codebooks.safetensors"
EVALUATION = "evaluation.json"
SCORE_DIGITS = 3  # scores in labels.csv
IMAGES_PER_READ = 200  # generations read from the store at once when copying labelled images


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_safe(row: dict) -> dict:
    """The row with each text cell that a spreadsheet would run as a formula prefixed with a single
    quote, so it shows as text. Numbers stay numbers (a negative figure is no formula)."""
    return {key: "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value
            for key, value in row.items()}


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(csv_safe(row) for row in rows)


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
    """Write the export files; -> (paths: the zip first, then the other files beside it, the
    labelled images aside (they are in the zip and under labels/); status). They are written in a
    fresh folder, then renamed one by one over the round's export folder, the zip last: a
    simultaneous export of the same round never leaves a half-written file there."""
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
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        names, n_labels = write_export(services, run, rounds, record, staging)
        publish(staging, out, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = [str(out / names[-1])] + [str(out / name) for name in names[:-1] if "/" not in name]
    return files, (f"Exported run #{run_id} round {record.index}: one zip with the codebooks, "
                   f"the report (Markdown and HTML), "
                   f"{n_labels} reviewer label(s) (labels.csv) and the manifest.")


def write_export(services: Services, run, rounds: list, record, out: Path) -> tuple[list[str], int]:
    """Write every export file of the round into `out`; -> (file names, the zip's last; label count)."""
    write_codebooks(services.snapshot_file(record.snapshot_path), out / CODEBOOKS)
    fingerprint = run_fingerprint(services, run.id, record.index)
    images = round_images(services, run.id, record.index)
    names = [CODEBOOKS, *write_pictures(images, record.index, out)]
    names += write_report(services, run, rounds, record.index, images, fingerprint, out)
    labels = services.store.run_labels(run.id)
    names += write_labels(services.store, labels, out)
    evaluation = services.artifacts(run.id).evaluation_path  # real-image oracles: versions, classes, thresholds
    if evaluation.exists():
        provenance = json.loads(evaluation.read_text())
        if "model" in provenance:
            provenance["model"] = portable_source(provenance["model"])
        (out / EVALUATION).write_text(json.dumps(provenance, indent=2))
        names.append(EVALUATION)
    names.append(write_manifest(services, run, record.index, fingerprint, names, out))
    bundle = f"safecb-run-{run.id:04d}-round-{record.index:03d}.zip"
    with zipfile.ZipFile(out / bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.write(out / name, name)
    return names + [bundle], len(labels)


def write_codebooks(snapshot: Path, target: Path) -> None:
    """The round's codebooks as stored; when the file's metadata names the model by an absolute
    path (snapshots record where the model was loaded from), rewritten with that made portable."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(snapshot), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        if not Path(metadata.get("source", "")).is_absolute():
            shutil.copyfile(snapshot, target)
            return
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    save_file(tensors, str(target), metadata={**metadata, "source": portable_source(metadata["source"])})


def write_pictures(images: RoundImages, exported: int, out: Path) -> list[str]:
    """The report's pictures that the round has; -> their file names."""
    names = []
    if images.before_after:
        png(examples_picture(images, exported), out / EXAMPLES_PICTURE)
        names.append(EXAMPLES_PICTURE)
    if images.residual:
        png(residual_picture(images), out / RESIDUAL_PICTURE)
        names.append(RESIDUAL_PICTURE)
    return names


def write_report(services: Services, run, rounds: list, exported: int, images: RoundImages, fingerprint: str,
                 out: Path) -> list[str]:
    """report.md, report.html (the pictures written beside it inlined), report.json, report.csv."""
    agreement = services.store.agreement_counts(run.id)
    threshold = run.config.get("safecb", {}).get("mining", {}).get("threshold")
    text = markdown_report(run, rounds, exported, agreement, round_attacks(services, run.id, exported), threshold,
                           model=model_label(run.model_source, fingerprint), images=images)
    (out / "report.md").write_text(text)
    pictures = {name: (out / name).read_bytes() for name in (EXAMPLES_PICTURE, RESIDUAL_PICTURE)
                if (out / name).exists()}
    (out / "report.html").write_text(html_report(text, pictures, f"Safe-CB report: run #{run.id} round {exported}"))
    (out / "report.json").write_text(json.dumps(
        {"run": {"id": run.id, "name": run.name, "model": portable_source(run.model_source),
                 "model_fingerprint": fingerprint, "status": run.status},
         "exported_round": exported, "edits_decoder": images.edits_decoder,
         "rounds": [r.metrics for r in rounds], "agreement": agreement,
         "residual_cases": [residual_record(case) for case in images.residual]}, indent=2))
    rows = [{**flat_round(r.metrics), "round": r.index} for r in rounds]
    write_csv(out / "report.csv", list(rows[0]), rows)
    return ["report.md", "report.html", "report.json", "report.csv"]


def residual_record(case: Case) -> dict:
    return {"generation_id": case.generation_id, "prompt": case.prompt, "seed": case.seed,
            "self_score": case.self_score, "scores": case.scores, "unsafe": case.unsafe}


def write_manifest(services: Services, run, exported: int, fingerprint: str, names: list[str], out: Path) -> str:
    safecb = run.config.get("safecb", {})
    i2p = run.config.get("i2p")
    manifest = {
        "model": portable_source(run.model_source), "fingerprint": fingerprint, "run": run.id,
        "round": exported, "config": safecb,
        "prompts": run_prompt_set(run, services.artifacts(run.id).path),
        "i2p": None if i2p is None else {**i2p, "path": portable_source(i2p.get("path", ""))},
        "seeds": {"harmful": safecb.get("mining", {}).get("seeds"),
                  "benign": safecb.get("mining", {}).get("benign_seeds"), "run": safecb.get("seed")},
        "files": {name: sha256(out / name) for name in sorted(names)},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return "manifest.json"


def run_fingerprint(services: Services, run_id: int, round_index: int) -> str:
    """The fingerprint of the model the round was made with, as its snapshot record holds it; the
    serving model's for an imported round (its import checked the file against this model)."""
    recorded = [s.fingerprint for s in services.store.list_snapshots(run_id) if s.round_index == round_index]
    return recorded[-1] if recorded else services.backend.fingerprint


# ---------------------------------------------------------------- labels.csv and its images
def label_image(generation_id: int) -> str:
    return f"{LABEL_IMAGES}/{generation_id}.png"


def rounded(score: float | None) -> float | None:
    return None if score is None else round(float(score), SCORE_DIGITS)


def label_rows(labels: list[dict]) -> list[dict]:
    """The store's labels as labels.csv rows: each names its image, says whether it is its
    generation's newest label, and has its scores rounded."""
    newest: dict[int, int] = {}
    for row in labels:
        generation = row["generation_id"]
        newest[generation] = max(row["label_id"], newest.get(generation, row["label_id"]))
    return [{**row, "image": label_image(row["generation_id"]),
             "latest": row["label_id"] == newest[row["generation_id"]],
             "self_score": rounded(row["self_score"]), "oracle_unsafe": rounded(row["oracle_unsafe"])}
            for row in labels]


def write_labels(store: Store, labels: list[dict], out: Path) -> list[str]:
    """labels.csv and the image of every labelled generation; -> their file names."""
    write_csv(out / "labels.csv", LABEL_COLUMNS, label_rows(labels))
    ids = sorted({row["generation_id"] for row in labels})
    (out / LABEL_IMAGES).mkdir(exist_ok=True)
    names = ["labels.csv"]
    for start in range(0, len(ids), IMAGES_PER_READ):
        for generation_id, generation in sorted(store.get_generations(ids[start : start + IMAGES_PER_READ]).items()):
            (out / label_image(generation_id)).write_bytes(generation.image_png)
            names.append(label_image(generation_id))
    return names


# ---------------------------------------------------------------- the round's images, from the store
OPTIONAL_EXPORT_FILES = (EXAMPLES_PICTURE, RESIDUAL_PICTURE, EVALUATION)  # in an export only when the round has them


def publish(staging: Path, out: Path, names: list[str]) -> None:
    """Rename each written file over its place in `out` (the last name, the zip, last), and remove
    optional files an earlier export left there that this one does not have. Labelled images under
    labels/ are only added to (labels are append-only); the zip holds exactly this export's."""
    for name in OPTIONAL_EXPORT_FILES:
        if name not in names:
            (out / name).unlink(missing_ok=True)
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out / name)


def content_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order: the same codebooks
    give the same hash whatever the file's metadata or tensor order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_fingerprint(path: Path) -> str | None:
    """The model fingerprint in a safetensors file's metadata, or None when it carries none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("fingerprint")


def read_upload(services: Services, path: Path) -> dict[str, torch.Tensor]:
    """The codebooks in an uploaded file, fully checked; InputError (file names only, no server
    paths) when they cannot be used."""
    if path.suffix != ".safetensors":
        raise InputError(f"{path.name} is not a .safetensors file.")
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise InputError(f"{path.name} is larger than {MAX_IMPORT_BYTES >> 20} MB.")
    try:
        tensors = services.backend.read_codebook_file(path)  # names, shape, floating, finite as read, fingerprint
    except ValueError as exc:  # CodebookError
        raise InputError(str(exc).replace(str(path), path.name)) from None
    return tensors


def stage_upload(services: Services, path: Path) -> Path:
    """Copy the upload onto the runs' disk under a name of its own, so recording it later is a rename."""
    staged = services.runs_root / f".import-{uuid.uuid4().hex}.safetensors"
    try:
        services.runs_root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, staged)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise InputError(f"Could not store {path.name}: {exc.strerror or exc}. Nothing was imported.") from None
    return staged


def import_codebook(services: Services, file_path, name) -> tuple[int, str]:
    """Validate an uploaded codebook file and record it as a run. -> (run id, status). One unit: on
    any failure no run is recorded and no file is left."""
    if not file_path:
        raise InputError("Choose a .safetensors codebook file to import.")
    path = Path(file_path)
    tensors = read_upload(services, path)
    fingerprint = file_fingerprint(path)
    digest = content_hash(tensors)
    holder = services.store.imported_run(digest)
    if holder is not None:
        raise duplicate(holder)
    label = (name or "").strip()[:80] or f"imported: {path.name}"
    config = {"imported": path.name, "tensors": sorted(tensors), "sha256": sha256(path), "content_sha256": digest}
    metrics = {"imported": True, "accepted": True, "file": path.name}
    staged = stage_upload(services, path)
    placed: list[tuple[Path, int]] = []  # (where the file went, its inode)

    def place(run_id: int) -> str:
        target = services.artifacts(run_id).import_codebooks(staged)
        placed.append((target, target.stat().st_ino))
        return target.relative_to(services.runs_root).as_posix()

    try:
        run_id = services.store.record_import(label, services.backend.source, config, digest, metrics, place)
    except BaseException as exc:
        remove_import_files(staged, placed)
        if isinstance(exc, (DuplicateImport, OSError, SQLAlchemyError)):
            raise import_failure(exc, path.name) from None
        raise
    changed = [n for n in tensors if not bool((tensors[n].to(services.reference[n].dtype)
                                               == services.reference[n]).all())]
    unverified = "" if fingerprint else (" It carries no model fingerprint, so only its names, "
                                                    "shapes and values were checked.")
    return run_id, (f"Imported {path.name} as run #{run_id} ({', '.join(sorted(tensors))}; "
                    f"differs from the original in: {', '.join(changed) or 'nothing'}). "
                    f"Compare it in Generate & compare.{unverified}")


def discard_upload(file_path) -> None:
    """Delete an uploaded file once its import is over (kept or refused): the import keeps its own
    copy, and an upload left behind only fills the disk. Files outside Gradio's upload folder are
    never touched."""
    if not file_path:
        return
    path = Path(file_path).resolve()
    if path.is_relative_to(Path(get_upload_folder()).resolve()):
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # Gradio puts each upload in a folder of its own
            path.parent.rmdir()


def duplicate(holder) -> InputError:
    return InputError(f"These codebooks were imported already, as run #{holder.id} ({holder.name}): "
                      "compare or export that run instead.")


def remove_import_files(staged: Path, placed: list[tuple[Path, int]]) -> None:
    """Undo a failed import on disk: the staged copy, the placed file and its folder when empty.
    The placed file goes only if it is still ours (same inode): once the transaction is rolled back,
    SQLite may give the same run id, hence the same path, to an import running beside this one."""
    staged.unlink(missing_ok=True)
    for target, inode in placed:
        try:
            if target.stat().st_ino == inode:
                target.unlink()
            target.parent.rmdir()
        except OSError:  # gone already, or the folder holds another writer's files
            pass


def import_failure(exc: DuplicateImport | OSError | SQLAlchemyError, file_name: str) -> InputError:
    """The one line a failed import shows (never SQL or a server path)."""
    if isinstance(exc, DuplicateImport):
        return duplicate(exc.run)
    if isinstance(exc, OSError):
        return InputError(f"Could not store {file_name}: {exc.strerror or exc}. Nothing was imported.")
    log.error("import of %s failed in the store", file_name, exc_info=exc)
    return InputError(f"The store could not record {file_name}. Nothing was imported; try again.")


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
    gr.Markdown("### Export a round\nOne zip: the round's codebooks, the report (Markdown and HTML with its "
                "pictures, JSON, CSV), every reviewer label with its image (labels.csv) and a manifest to "
                "reproduce it.")
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
            return None, f"⚠ Export failed. {public_message(exc)}"

    def on_import(file_path, name):
        try:
            run_id, message = import_codebook(services, file_path, name)
            return message, gr.update(choices=run_choices(services.store)), None
        except ValueError as exc:  # InputError and CodebookError
            gr.Warning(str(exc))
            return f"⚠ Not imported: {exc}", gr.update(), None
        except Exception as exc:
            log.exception("import failed")
            return f"⚠ Not imported. {public_message(exc)}", gr.update(), None
        finally:
            discard_upload(file_path)

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
    do_import.click(on_import, [upload, import_name], [import_status, run, upload], api_name="import_codebook")
