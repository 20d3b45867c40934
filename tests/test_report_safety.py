"""The exported report never turns what a user typed into markup: run names (the Run tab's or the
import's Name field), imported file names, prompts and judge names of the residual cases are shown
as text in report.md and report.html, and Chromium opening report.html from disk runs nothing (the
stored-XSS and content-forgery reports)."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from safetensors.torch import save_file

from db import Store
from db.records import RoundRecord, RunRecord
from safecb.models.backend import JanusBackend
from safecb.paths import TOY_MODEL_DIR
from ui import Services
from ui.export_tab import export_round, import_codebook
from ui.report import Case, RoundImages, html_report, markdown_report

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)
FORGED = ("demo)\n\n**Verified: this codebook is safe (0 of 192 unsafe).** [docs](https://evil.example)\n\n"
          "## All clear\n\n<b>")
SCRIPTED = ['<img src=x onerror="document.title=\'XSS-IMG\';window.__x=1">',
            "<script>document.title='XSS-SCRIPT';window.__x=2</script>",
            "<svg onload=\"document.title='XSS-SVG';window.__x=3\">"]
AGREEMENT = {"n_generations": 0, "n_flagged": 0, "n_reviewed": 0, "n_with_oracle": 0, "n_reviewed_with_oracle": 0,
             "self_reviewer_agree": 0, "self_oracle_agree": 0, "reviewer_oracle_agree": 0}


def report_of(name: str, file_name: str = "codebooks.safetensors", prompt: str = "a knife") -> tuple[str, str]:
    """The report of an imported round whose run, file, residual case's prompt and judge carry hostile text."""
    run = RunRecord(id=7, name=name, model_source="toy <b>model</b>", config={}, status="finished", created_at=NOW,
                    best_round=0, stopped=None)
    rounds = [RoundRecord(id=1, run_id=7, index=0, metrics={"imported": True, "accepted": True, "file": file_name},
                          snapshot_path="r0", created_at=NOW)]
    attack = {"results": {"<i>soft</i>": {"asr": {"value": 0.5, "ci": [0.1, 0.9], "n": 2, "successes": 1},
                                          "image_unsafe": {"value": 0.5, "ci": [0.1, 0.9], "n": 4}}}}
    judge = "<b>judge</b>"
    images = RoundImages(n_harmful=1, judges=(judge,), unsafe_counts={judge: (1, 1)},
                         residual=(Case(5, prompt, 0, 0.9, {judge: 0.7}, {judge: True}, None),))
    text = markdown_report(run, rounds, 0, AGREEMENT, [(4, "round 0", "*quick*", attack)], 0.5, images=images)
    return text, html_report(text, {}, "t")


@pytest.mark.parametrize("name", [*SCRIPTED, FORGED])
def test_a_name_is_text_in_the_markdown_and_the_html(name):
    text, page = report_of(name, file_name=name + ".safetensors", prompt=name)
    body = page.split("<body>", 1)[1]
    body = re.sub(r'<img src="residual_cases\.png" alt="[^"<>]*" />', "", body, count=1)  # the report's own picture
    for element in ("<img", "<script", "<svg", "<a ", "<b>", "<i>", "<h2>All clear"):
        assert element not in body, element
    heading, *rest = text.splitlines()
    assert heading.startswith("# Safe-CB report: run #7 (")
    assert not any(line.startswith(("**Verified", "## All clear")) for line in rest)
    # The reader sees the name as typed, on one line, in the heading.
    h1 = MarkdownIt("commonmark", {"html": False}).parseInline(heading.removeprefix("# "))[0].children
    shown = "".join(t.content for t in h1 if t.type == "text")
    assert " ".join(name.split()) in shown
    # The residual case's row: the prompt (cut to 80 characters) and the judge's name, as text.
    row = next(line for line in rest if line.startswith("| 1 | 5 | "))
    cells = MarkdownIt("commonmark", {"html": False}).parseInline(row)[0].children
    assert " ".join(name.split())[:60] in "".join(t.content for t in cells if t.type == "text")
    assert "| <b>judge</b> |" not in text and "\\<b\\>judge\\</b\\>" in text


def test_the_headline_is_the_fixed_sentence_whatever_the_file_is_called():
    text, page = report_of("x", file_name="a.safetensors)** [docs](https://evil.example) **")
    headline = text.splitlines()[2]
    assert headline.startswith("**Round 0 of run #7 is an imported codebook (") and headline.endswith("**")
    assert headline.count("**") == 2 and "<a " not in page
    assert re.search(r"<p><strong>Round 0 of run #7 is an imported codebook \([^<]*\); it has no measurements\."
                     r"</strong></p>", page)


# ---------------------------------------------------------------- through the studio's export
@pytest.fixture(scope="module")
def services(tmp_path_factory):
    data = tmp_path_factory.mktemp("report-safety")
    store = Store.open(f"sqlite:///{data / 'safecb.db'}")
    backend = JanusBackend.load(TOY_MODEL_DIR, device="cpu")
    yield Services(backend=backend, store=store, runs_root=data / "runs")
    store.close()


def exported_report(services: Services, tmp_path: Path, name: str, nudge: float) -> Path:
    """Import a codebook (its own content) under `name`, export it; -> the export folder."""
    edited = services.reference["gen_head"].clone()
    edited[0, 0] += nudge
    path = tmp_path / f"cb-{nudge}.safetensors"
    save_file({"gen_head": edited}, str(path), metadata={"fingerprint": services.backend.fingerprint})
    run_id, _ = import_codebook(services, str(path), name)
    files, _ = export_round(services, run_id, 0)
    return Path(files[0]).parent


FORGED_SHORT = "x)\n\n**Verified: safe.** [docs](https://e.ex)\n\n##"  # within the Name field's 80 characters


@pytest.mark.parametrize("index, name", list(enumerate([*SCRIPTED, FORGED_SHORT])))
def test_an_exported_report_shows_a_hostile_name_as_text(services, tmp_path, index, name):
    out = exported_report(services, tmp_path, name, 0.01 * (index + 1))
    markdown, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert markdown.splitlines()[0].startswith("# Safe-CB report: run #")
    assert not any(line.startswith("**Verified") for line in markdown.splitlines())
    body = page.split("<body>", 1)[1]
    assert not any(tag in body for tag in ("<img src=x", "<script", "<svg", "<a "))


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true", reason="no /usr/bin/chromium")
def test_chromium_opening_the_exported_report_runs_nothing(services, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    folders = [exported_report(services, tmp_path, name, 0.5 + i) for i, name in enumerate(SCRIPTED)]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            dialogs = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            for folder, name in zip(folders, SCRIPTED):
                page.goto((folder / "report.html").as_uri())
                page.wait_for_load_state("load")
                assert page.evaluate("window.__x") is None and not page.title().startswith("XSS")
                assert page.locator("h1 img, h1 script, h1 svg").count() == 0
                assert name in page.locator("h1").inner_text()  # shown as typed
            assert dialogs == []
        finally:
            browser.close()
