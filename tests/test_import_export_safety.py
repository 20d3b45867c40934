"""Export and import under misuse and races (ui/export_tab.py): simultaneous exports of one round
each give a whole zip; labels.csv never hands a spreadsheet a formula; an import that fails in the
store leaves no run and no file and can be retried; values that overflow the model's dtype are
refused; the same tensors are imported once, whatever the metadata and however many imports race."""

from __future__ import annotations

import csv
import io
import shutil
import sqlite3
import threading
import uuid
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy import text

from db import Store
from db.store import DuplicateImport
from ui import Services
from ui.common import InputError
from ui.export_tab import export_round, import_codebook


@pytest.fixture
def services(tmp_path, toy_backend):
    """A fresh store and data folder per test, so counts of runs and files are this test's own."""
    store = Store.open(f"sqlite:///{tmp_path / 'data' / 'safecb.db'}")
    yield Services(backend=toy_backend, store=store, runs_root=tmp_path / "data" / "runs")
    store.close()


def codebook_file(services: Services, path: Path, nudge: float, metadata: dict | None = None,
                  dtype: torch.dtype = torch.float32) -> str:
    """gen_head moved by `nudge` at one entry, saved to `path` (with this model's fingerprint unless
    `metadata` says otherwise)."""
    edited = services.reference["gen_head"].clone().to(dtype)
    edited[0, 0] += nudge
    meta = {"fingerprint": services.backend.fingerprint} if metadata is None else metadata
    save_file({"gen_head": edited}, str(path), metadata=meta or None)
    return str(path)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def run_ids(services: Services) -> list[int]:
    return [r.id for r in services.store.list_runs(limit=10_000)]


# ---------------------------------------------------------------- exports
def test_six_simultaneous_exports_of_a_round_each_give_a_whole_zip(services, tmp_path):
    run_id, _ = import_codebook(services, codebook_file(services, tmp_path / "a.safetensors", 0.1), "")
    threads, problems, start = 6, [], threading.Barrier(6)

    def export_and_read():
        start.wait()
        try:
            files, _ = export_round(services, run_id, 0)
            with zipfile.ZipFile(files[0]) as bundle:  # read at once, as Gradio copies it after the handler
                assert bundle.testzip() is None
                assert {"codebooks.safetensors", "report.html", "labels.csv", "manifest.json"} <= set(bundle.namelist())
            for name in files:  # every file handed back is there, whole
                shutil.copyfile(name, tmp_path / f"copy-{threading.get_ident()}")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            problems.append(repr(exc))

    for _ in range(3):
        workers = [threading.Thread(target=export_and_read) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert problems == []
    out = services.export_dir(run_id, 0)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_labels_csv_never_hands_a_spreadsheet_a_formula(services, tmp_path):
    run_id, _ = import_codebook(services, codebook_file(services, tmp_path / "b.safetensors", 0.2), "")
    (generation,) = services.store.add_generations(run_id, [{
        "round_index": 0, "prompt": "=cmd|' /C calc'!A0", "seed": 1, "image_png": b"png", "tokens": [1, 2],
        "self_score": 0.9, "flagged": True, "settings": {"kind": "harmful"}}])
    hostile = [("=1+1", '=HYPERLINK("http://evil.example/x","click")'), ("@ana", "@SUM(1+1)*cmd|' /C calc'!A0"),
               ("-ana", "-2+3+cmd|' /C calc'!A0"), ("+ana", "+1"), ("ana", "plain reason - fine")]
    for reviewer, reason in hostile:
        services.store.add_label(generation, reviewer, "unsafe", reason)
    files, _ = export_round(services, run_id, 0)
    with zipfile.ZipFile(files[0]) as bundle:
        rows = list(csv.DictReader(io.StringIO(bundle.read("labels.csv").decode())))
    assert [(r["reviewer"], r["reason"]) for r in rows] == [
        ("'" + who if who[0] in "=+-@" else who, "'" + why if why[0] in "=+-@" else why) for who, why in hostile]
    assert {r["prompt"] for r in rows} == {"'=cmd|' /C calc'!A0"}
    assert {r["seed"] for r in rows} == {"1"} and {r["self_score"] for r in rows} == {"0.9"}  # numbers stay numbers


# ---------------------------------------------------------------- a failed import
def test_an_import_that_fails_in_the_store_leaves_nothing_and_can_be_retried(services, tmp_path):
    path = codebook_file(services, tmp_path / "orphan.safetensors", 0.3)
    before_runs, before_files = run_ids(services), files_under(services.runs_root)
    with services.store.engine.begin() as conn:  # the rounds insert fails, after the file is stored
        conn.execute(text("CREATE TRIGGER refuse_rounds BEFORE INSERT ON rounds "
                          "BEGIN SELECT RAISE(ABORT, 'rounds are refused'); END"))
    try:
        with pytest.raises(InputError) as refused:
            import_codebook(services, path, "orphan")
    finally:
        with services.store.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_rounds"))
    message = str(refused.value)
    assert "\n" not in message and "orphan.safetensors" in message and "Nothing was imported" in message
    assert not any(word in message for word in ("SQL", "INSERT", "rounds are refused", str(tmp_path)))
    assert run_ids(services) == before_runs and files_under(services.runs_root) == before_files
    run_id, status = import_codebook(services, path, "orphan")  # nothing blocks the file now
    assert f"as run #{run_id}" in status and services.store.get_run(run_id).status == "finished"
    assert [r.index for r in services.store.list_rounds(run_id)] == [0]
    assert services.codebooks_for(run_id, 0)["gen_head"][0, 0] == pytest.approx(
        float(services.reference["gen_head"][0, 0]) + 0.3)


# ---------------------------------------------------------------- values and fingerprints
def test_values_that_overflow_the_models_dtype_are_refused(services, tmp_path):
    before_runs, before_files = run_ids(services), files_under(services.runs_root)
    huge = codebook_file(services, tmp_path / "huge.safetensors", 1e300, dtype=torch.float64)
    with pytest.raises(InputError, match=r"^codebook 'gen_head' holds values too large for float32 .*1e\+300"):
        import_codebook(services, huge, "")
    assert run_ids(services) == before_runs and files_under(services.runs_root) == before_files
    ordinary = codebook_file(services, tmp_path / "f64.safetensors", 0.4, dtype=torch.float64)
    run_id, _ = import_codebook(services, ordinary, "")  # a float64 file within float32's range is fine
    assert torch.isfinite(services.codebooks_for(run_id, 0)["gen_head"].float()).all()


def test_a_file_without_a_fingerprint_is_imported_with_a_caveat_and_a_wrong_one_is_refused(services, tmp_path):
    bare = codebook_file(services, tmp_path / "bare.safetensors", 0.5, metadata={})
    _, status = import_codebook(services, bare, "")
    assert "carries no model fingerprint" in status
    signed = codebook_file(services, tmp_path / "signed.safetensors", 0.6)
    assert "fingerprint" not in import_codebook(services, signed, "")[1]
    other = codebook_file(services, tmp_path / "other.safetensors", 0.7, metadata={"fingerprint": "0123abcd"})
    with pytest.raises(InputError) as refused:
        import_codebook(services, other, "")
    assert "other.safetensors was saved from another model" in str(refused.value)
    assert str(tmp_path) not in str(refused.value)  # the file's name, not the server path


# ---------------------------------------------------------------- duplicates
def test_the_same_tensors_with_other_metadata_are_the_same_import(services, tmp_path):
    first = codebook_file(services, tmp_path / "one.safetensors", 0.8, metadata={
        "fingerprint": services.backend.fingerprint, "a": "1", "b": "2"})
    again = codebook_file(services, tmp_path / "two.safetensors", 0.8, metadata={
        "b": "2", "note": "saved again", "fingerprint": services.backend.fingerprint})
    assert Path(first).read_bytes() != Path(again).read_bytes()
    run_id, _ = import_codebook(services, first, "")
    runs = run_ids(services)
    with pytest.raises(InputError, match=f"imported already, as run #{run_id}"):
        import_codebook(services, again, "")
    assert run_ids(services) == runs


def test_a_duplicate_is_found_however_many_runs_came_after(services, tmp_path):
    path = codebook_file(services, tmp_path / "old.safetensors", 0.9)
    run_id, _ = import_codebook(services, path, "")
    for i in range(1001):
        services.store.create_run(f"later {i}", "toy")
    with pytest.raises(InputError, match=f"imported already, as run #{run_id}"):
        import_codebook(services, path, "")


def test_two_simultaneous_imports_of_one_file_make_one_run(services, tmp_path, monkeypatch):
    path = codebook_file(services, tmp_path / "race.safetensors", 1.0)
    before = run_ids(services)
    # Both imports pass the early duplicate check (the first two look-ups), as two requests a moment
    # apart can: the store's unique index decides. The loser's own look-up afterwards is real.
    lookup, early = getattr(services.store, "imported_run", None), iter(["miss", "miss"])

    def early_checks_miss(digest):
        return None if next(early, None) == "miss" else lookup(digest)

    monkeypatch.setattr(services.store, "imported_run", early_checks_miss, raising=False)
    read, start = services.backend.read_codebook_file, threading.Barrier(2)

    def read_then_wait(p):
        tensors = read(p)
        start.wait()  # both have read and checked the file: now they record it at once
        return tensors

    monkeypatch.setattr(services.backend, "read_codebook_file", read_then_wait)
    results = []

    def attempt(name):
        try:
            results.append(import_codebook(services, path, name)[0])
        except InputError as exc:
            results.append(str(exc))

    workers = [threading.Thread(target=attempt, args=(f"race {i}",)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    monkeypatch.undo()
    new_runs = [r for r in run_ids(services) if r not in before]
    assert len(new_runs) == 1, results
    (winner,) = new_runs
    refusals = [r for r in results if isinstance(r, str)]
    assert winner in results and len(refusals) == 1 and f"imported already, as run #{winner}" in refusals[0]
    stored = [p.relative_to(services.runs_root).as_posix() for p in files_under(services.runs_root)]
    assert stored == [f"run-{winner:04d}/imported.safetensors"]  # the loser's copy is gone


# ---------------------------------------------------------------- the store's part
@pytest.fixture
def bare_store(open_store):
    """A store of its own on SQLite, and on the local PostgreSQL (in a schema of its own)."""
    return open_store()


def test_simultaneous_records_of_one_content_make_one_run(bare_store):
    racers, start, outcomes = 4, threading.Barrier(4), []

    def record(i):
        start.wait()
        try:
            outcomes.append(bare_store.record_import(f"copy {i}", "toy", {}, "same-hash", {"imported": True},
                                                     lambda run_id: f"run-{run_id:04d}/imported.safetensors"))
        except DuplicateImport as exc:
            outcomes.append(exc.run.id)

    workers = [threading.Thread(target=record, args=(i,)) for i in range(racers)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    (run,) = bare_store.list_runs()
    assert outcomes == [run.id] * racers and run.status == "finished"
    assert [(r.index, r.snapshot_path) for r in bare_store.list_rounds(run.id)] == [
        (0, f"run-{run.id:04d}/imported.safetensors")]


def test_a_record_that_fails_midway_leaves_no_row(bare_store):
    def disk_full(run_id):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        bare_store.record_import("x", "toy", {}, "h1", {}, disk_full)
    assert bare_store.list_runs() == [] and bare_store.imported_run("h1") is None
    run_id = bare_store.record_import("x", "toy", {}, "h1", {}, lambda run_id: "p")
    assert bare_store.imported_run("h1").id == run_id


def test_an_older_database_gains_the_import_hash_and_its_unique_index(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store.open(url).close()
    with sqlite3.connect(tmp_path / "old.db") as conn:  # as older code made it
        conn.execute("DROP INDEX uq_runs_import_hash")
        conn.execute("ALTER TABLE runs DROP COLUMN import_hash")
        conn.execute("INSERT INTO runs (name, model_source, config, status, created_at) "
                     "VALUES ('old', 'toy', '{}', 'finished', '2025-01-01 00:00:00')")
    store = Store.open(url)
    try:
        assert store.get_run(1).name == "old" and store.imported_run("h") is None
        store.record_import("new", "toy", {}, "h", {}, lambda run_id: "p")
        with pytest.raises(DuplicateImport):
            store.record_import("again", "toy", {}, "h", {}, lambda run_id: "p")
    finally:
        store.close()


def test_an_upload_is_deleted_once_its_import_is_over_and_nothing_else_is(tmp_path):
    from gradio.utils import get_upload_folder

    from ui.export_tab import discard_upload

    folder = Path(get_upload_folder()) / f"safecb-test-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    upload = folder / "codebooks.safetensors"
    upload.write_bytes(b"x" * 1024)
    elsewhere = tmp_path / "codebooks.safetensors"
    elsewhere.write_bytes(b"x")
    discard_upload(str(upload))
    discard_upload(str(elsewhere))
    discard_upload(None)
    assert not upload.exists() and not folder.exists() and elsewhere.exists()
