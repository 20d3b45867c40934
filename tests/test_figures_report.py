"""`python -m safecb report`: the docs' figures are recomputed from the committed result rows, and a
figure edited by hand, or a row file edited after its bench wrote it, fails."""

import gzip
import json
import shutil
import time
from pathlib import Path

import pytest

from safecb.cli import main
from safecb.evidence import RESULTS_DIR, EvidenceError, config_hash, read_evidence, seeds_of, write_evidence
from safecb.paths import ROOT
from safecb.report import MODULES, compute, doc_paths, docs


@pytest.fixture(scope="module")
def figures():
    return compute()


def test_the_report_reproduces_every_marked_figure_in_the_docs_in_under_30_s(capsys):
    started = time.perf_counter()
    code = main(["report"])
    elapsed = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert code == 0, err
    assert elapsed < 30, f"the report took {elapsed:.1f} s"
    assert " 0 differ" in out


def test_the_headline_table_and_results_md_mark_their_figures(figures):
    for path in (ROOT / "README.md", ROOT / "docs" / "results.md"):
        names = {name for name, _, _ in docs.markers(path.read_text())}
        assert len(names) >= 5, f"{path} marks only {len(names)} figures"
        assert names <= set(figures)
    headline = (ROOT / "README.md").read_text().split("## Headline figures")[1]
    table_rows = [line for line in headline.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert table_rows and all("<!-- figure " in row for row in table_rows), "every headline row cites marked figures"


def test_no_figure_in_results_md_or_the_headline_table_sits_outside_a_marker():
    for path, text in ((ROOT / "docs" / "results.md", (ROOT / "docs" / "results.md").read_text()),
                       (ROOT / "README.md", (ROOT / "README.md").read_text().split("## Headline figures")[1])):
        loose = docs.unmarked_figures(text)
        assert not loose, f"{path}: figures outside a marker: {loose[:10]}"


def test_a_figure_edited_by_hand_is_caught(tmp_path, figures):
    source = ROOT / "docs" / "results.md"
    copy = tmp_path / "results.md"
    text = source.read_text()
    name, body, _ = docs.markers(text)[0]
    edited = body.replace(body.strip()[0], "9" if body.strip()[0] != "9" else "8", 1)
    copy.write_text(text.replace(f"<!-- figure {name} -->{body}", f"<!-- figure {name} -->{edited}", 1))
    problems = docs.check([copy], figures)
    assert [p.name for p in problems] == [name]
    assert docs.write([copy], figures) == [copy]
    assert copy.read_text() == text
    assert docs.check([copy], figures) == []


def test_an_unknown_figure_name_is_an_error(tmp_path, figures):
    page = tmp_path / "page.md"
    page.write_text("the cut is <!-- figure safety.no_such_figure -->78%<!-- /figure --> here\n")
    problems = docs.check([page], figures)
    assert len(problems) == 1 and problems[0].expected is None and "unknown figure" in problems[0].describe()


def test_block_and_inline_markers_round_trip(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("a <!-- figure x.a -->old<!-- /figure --> b\n\n<!-- figure x.t -->\n| old |\n<!-- /figure -->\n")
    figures = {"x.a": "1.00 [0.90, 1.00]", "x.t": "| a |\n| --- |"}
    assert {p.name for p in docs.check([page], figures)} == {"x.a", "x.t"}
    docs.write([page], figures)
    assert page.read_text() == ("a <!-- figure x.a -->1.00 [0.90, 1.00]<!-- /figure --> b\n\n"
                                "<!-- figure x.t -->\n| a |\n| --- |\n<!-- /figure -->\n")
    assert docs.check([page], figures) == []


def test_unmarked_figures_finds_numbers_outside_markers_and_code():
    text = ("cut <!-- figure a.b -->78% [74%, 81%]<!-- /figure --> and 0.803 by hand, `--lr 0.01` in code, "
            "[link](x.md#v0.5) and 12.2× and 45%")
    assert docs.unmarked_figures(text) == ["0.803", "12.2×", "45%"]


def test_a_row_file_edited_after_the_bench_wrote_it_is_refused(tmp_path):
    folder = tmp_path / "bench"
    write_evidence(folder, bench="demo", command="python -m safecb bench demo", config={"seed": 3, "n": 2},
                   tables={"images": [{"prompt": "p", "seed": 1, "unsafe": True}]})
    assert read_evidence(folder)["images"]["unsafe"].tolist() == [True]
    path = folder / "images.csv.gz"
    rows = gzip.decompress(path.read_bytes()).decode().replace("True", "False")
    path.write_bytes(gzip.compress(rows.encode(), mtime=0))
    with pytest.raises(EvidenceError, match="SHA-256"):
        read_evidence(folder)


def test_evidence_is_byte_for_byte_reproducible_and_names_its_provenance(tmp_path):
    config = {"model_dir": str(ROOT / "assets" / "toy-janus"), "eval_seed_start": 1000, "inner": {"seed": 7}}
    for name in ("a", "b"):
        write_evidence(tmp_path / name, bench="demo", command="python -m safecb bench demo", config=config,
                       tables={"t": [{"x": 0.1234567891, "method": "none"}]})
    assert (tmp_path / "a" / "t.csv.gz").read_bytes() == (tmp_path / "b" / "t.csv.gz").read_bytes()
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["config"]["model_dir"] == "assets/toy-janus"  # no path of this checkout
    assert meta["config_hash"] == config_hash(config)
    assert meta["seeds"] == {"eval_seed_start": 1000, "inner.seed": 7} == seeds_of(config)
    assert meta["versions"]["torch"] and meta["machine"]["cpu_count"]
    assert read_evidence(tmp_path / "a")["t"]["method"].tolist() == ["none"]  # not read as a missing value


def test_every_committed_result_folder_names_its_command_config_hash_seeds_and_versions():
    folders = [p for p in RESULTS_DIR.iterdir() if p.is_dir()]
    assert all((p / "meta.json").exists() for p in folders), "a results folder without meta.json"
    assert {m for module in MODULES for m in __import__(f"safecb.report.{module}", fromlist=["NEEDS"]).NEEDS} <= \
        {p.name for p in folders}
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        for key in ("command", "config_hash", "seeds", "versions"):
            assert meta.get(key) is not None, f"{folder}/meta.json lacks {key}"
        if "tables" in meta:  # bench rows (the labelled set is images and a person's labels)
            read_evidence(folder)


def test_results_stay_under_20_mb():
    total = sum(p.stat().st_size for p in RESULTS_DIR.rglob("*") if p.is_file())
    assert total < 20 * 2**20, f"results/ holds {total / 2**20:.1f} MB"


def test_the_report_fails_loudly_on_a_doc_that_differs(tmp_path, capsys, monkeypatch):
    """The command exits 1 and names the figure when a doc differs from the rows."""
    import safecb.report as report

    page = tmp_path / "README.md"
    page.write_text("<!-- figure speed.batch1_range -->1.0× to 2.0×<!-- /figure -->\n")
    monkeypatch.setattr(report, "doc_paths", lambda root=ROOT: [page])
    assert main(["report"]) == 1
    assert "speed.batch1_range" in capsys.readouterr().err


def test_the_studio_speed_table_is_computed_from_every_timed_sample(tmp_path):
    timings = [{"measure": "ready", "side": "app", "sample": 0, "seconds": 7.5}]
    timings += [{"measure": "compare", "side": "http", "sample": i, "seconds": s} for i, s in enumerate([0.9, 0.7, 1.3])]
    for side, walls, computes in (("ui", [50.0, 54.0], [40.0, 42.0]), ("cli", [60.0, 64.0], [45.0, 47.0])):
        timings += [{"measure": "round_wall", "side": side, "sample": i, "seconds": s} for i, s in enumerate(walls)]
        timings += [{"measure": "round_compute", "side": side, "sample": i, "seconds": s} for i, s in enumerate(computes)]
    timings += [{"measure": "umap_first_map", "side": "cold", "sample": 0, "seconds": 14.0},
                {"measure": "umap_first_map", "side": "warmed", "sample": 0, "seconds": 2.25}]
    write_evidence(tmp_path / "app", bench="app", command="python -m ui bench", config={"seeds": 8},
                   tables={"timings": timings, "umap": [{"rows": 1024}]})
    table = compute(tmp_path, modules=("app",))["app.table"]
    assert "| 7.50 s |" in table
    assert "median / max of 3 | 0.90 / 1.30 s" in table
    assert "52.0 / 62.0 s (ratio 0.84; rounds' own compute 41.0 / 46.0 s)" in table
    assert "1,024 codebook rows" in table and "2.25 / 14.00 s" in table


def test_ui_bench_refuses_results_for_the_sessions_run():
    from ui import bench_app

    with pytest.raises(SystemExit):
        bench_app.main(["--sessions", "5", "--results", "/tmp/never-written"])
