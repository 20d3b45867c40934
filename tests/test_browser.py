"""Browser tests (issue 5): the real app (`python app.py`) in a subprocess on the shipped toy model, its
SQLite store and run directories in a temporary --data-dir, driven by Debian's Chromium through
Playwright. No mocks: the rounds, labels, exports and imports go through the real model and store.

The tests run in file order and share one app and two runs (a module keeps the file's time modest):
run A (1 round, 2 seeds) is started from the Run tab and then reviewed, compared, exported and
re-imported; run B (more rounds) is started from one browser context while another one labels, and
the app is killed (SIGKILL) in the middle of it. Full-page screenshots of every tab go to
artifacts/test-screens/ (look at them after a UI change).

The whole module is skipped only when /usr/bin/chromium is missing (`.ci/run` installs it).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists() and os.environ.get("CI") == "true":
    raise RuntimeError(f"{CHROMIUM} is missing on CI: `.ci/run` should have installed it (apt-get install chromium)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) for the browser "
                "tests; `.ci/run` does", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from db import Store  # noqa: E402
from jobs.attack_job import read_report  # noqa: E402
from safecb.engine import SafeCBConfig  # noqa: E402
from safecb.models.backend import CODEBOOK_PATHS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCREENS = ROOT / "artifacts" / "test-screens"
START_TIMEOUT_S = 180  # model load + Gradio start on 2 busy cores
ROUND_TIMEOUT_S = 300  # one toy round with 2 seeds takes ~20 s on 2 cores; generous for a loaded machine
UI_TIMEOUT_MS = 30_000  # one UI action round trip (a generation, an export, the first UMAP)
PROMPT = "a picture of a person holding a flower on the grass ."
REVIEWER = "Ada (browser test)"


# ---------------------------------------------------------------- the app in a subprocess
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`python app.py --port P --data-dir D` as a subprocess. Restarts keep the port: the job runner's
    worker id names it, and a restarted app fails only the running jobs of its own worker id."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = data_dir / "app.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log_mark = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "the app is already running"
        self.starts += 1
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
                   GRADIO_TEMP_DIR=str(self.data_dir / "gradio-tmp"), NO_PROXY="127.0.0.1,localhost")
        with open(self.log_path, "a") as log:
            log.write(f"\n===== start {self.starts} =====\n")
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "app.py", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the app exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                with opener.open(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"the app did not answer HTTP 200 within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Graceful: SIGTERM, then SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no cleanup runs."""
        assert self.proc is not None and self.proc.poll() is None, "the app is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def new_log(self) -> str:
        """The log written since the last call (shown under a failing test)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        out, self._log_mark = text[self._log_mark:], len(text)
        return out

    @contextlib.contextmanager
    def store(self):
        """The app's own store, read from the test process (SQLite in WAL mode takes both)."""
        store = Store.open(f"sqlite:///{(self.data_dir / 'safecb.db').resolve()}")
        try:
            yield store
        finally:
            store.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("studio")
    process = AppProcess(data_dir)
    process.start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def show_app_log(app):
    """Prints what the app logged during the test; pytest shows it only when the test fails."""
    app.new_log()
    yield
    print(f"----- app log during this test ({app.log_path}) -----\n{app.new_log()[-8000:]}")


@pytest.fixture(scope="module")
def browser():
    SCREENS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


# Records every toast the page ever shows (Gradio removes them after a few seconds).
TOAST_RECORDER = """
window.__toasts = [];
new MutationObserver(() => {
  for (const t of document.querySelectorAll('.toast-body')) {
    if (!t.__recorded) { t.__recorded = true; window.__toasts.push(t.className + ' :: ' + t.innerText); }
  }
}).observe(document, {childList: true, subtree: true});
"""


def new_page(browser, app: AppProcess, width: int = 1400, url: str | None = None, height: int = 900) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    context.add_init_script(TOAST_RECORDER)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.errors = []  # uncaught JavaScript errors
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(url or app.url)
    expect(page.get_by_role("heading", name="Safe-CB Studio")).to_be_visible(timeout=UI_TIMEOUT_MS)
    return page


@pytest.fixture
def page(browser, app):
    page = new_page(browser, app)
    yield page
    page.context.close()


# ---------------------------------------------------------------- UI helpers
def open_tab(page: Page, name: str) -> None:
    tab = page.get_by_role("tab", name=name, exact=True)
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


def pick(page: Page, dropdown, option: str | re.Pattern) -> None:
    """Choose an option of a dropdown (its elem_id, or a locator of its combobox). Gradio dropdowns are
    comboboxes whose listbox a focus handler may re-render with fresh choices while the pointer moves
    to an option, so the choice is checked and retried."""
    box = page.locator(f"#{dropdown} input[role=combobox]") if isinstance(dropdown, str) else dropdown
    text = option if isinstance(option, re.Pattern) else re.compile(re.escape(option))
    deadline = time.monotonic() + 30
    while True:
        box.click()
        page.get_by_role("option").filter(has_text=text).first.click()
        try:
            expect(box).to_have_value(text, timeout=3000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def shot(page: Page, name: str) -> None:
    """A full-page screenshot, once no output is still drawn as pending (Gradio fades those)."""
    busy = page.locator(".pending, [data-testid=status-tracker].generating")
    deadline = time.monotonic() + 10
    while busy.count() and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True, animations="disabled")


def table_column(page: Page, elem_id: str, column: int) -> list[str]:
    return [t.strip() for t in page.locator(f"#{elem_id} [role=gridcell][data-col='{column}']").all_inner_texts()]


def keys_ready(page: Page) -> None:
    """Wait until the review queue takes keys again: review_keys.js drops a key pressed before the page
    shows the answer to the previous one (or while the new image loads), as a quick reviewer's would be."""
    page.wait_for_function("() => window.safecbReviewKeys && window.safecbReviewKeys.idle()")


def toasts(page: Page, allowed: tuple[str, ...] = ()) -> list[str]:
    """The toasts the page showed so far, less those containing one of `allowed`."""
    return [t for t in page.evaluate("window.__toasts") if not any(a in t for a in allowed)]


def progress(page: Page) -> tuple[str, int]:
    """(status, percent) of the Run tab's progress bar."""
    bar = page.locator("#job-progress .safecb-progress")
    status = bar.get_attribute("data-status") or ""
    match = re.search(r"(\d+)%", bar.inner_text())
    return status, int(match.group(1)) if match else -1


def fill_run_form(page: Page, name: str, rounds: int, seeds: int, patience: int = 1, epsilon: float = 0.02) -> None:
    page.get_by_label("Run name (optional)", exact=True).fill(name)
    page.get_by_label("Rounds at most", exact=True).fill(str(rounds))
    page.get_by_label("Patience", exact=True).fill(str(patience))
    page.get_by_label("ε (least improvement)", exact=True).fill(str(epsilon))
    page.get_by_label("Seeds per harmful prompt", exact=True).fill(str(seeds))


def start_run(page: Page) -> tuple[int, int]:
    """Click Start run; -> (run id, job id) from the status line."""
    page.locator("#start-run").click()
    status = page.locator("#start-status")
    expect(status).to_contain_text("Started run #", timeout=UI_TIMEOUT_MS)
    match = re.search(r"Started run #(\d+) as job (\d+)", status.inner_text())
    run_id, job_id = int(match.group(1)), int(match.group(2))
    expect(page.locator("#job-picker input")).to_have_value(re.compile(rf"^job {job_id} · run #{run_id} · "))
    return run_id, job_id


REVIEW_MARK = {"safe": "✘safe", "unsafe": "✔unsafe"}  # how a gallery caption shows the latest review


def show_flagged(page: Page, run_label: re.Pattern) -> None:
    open_tab(page, "Flagged")
    pick(page, "flagged-run", run_label)
    page.locator("#show-flagged").click()
    expect(page.get_by_text(re.compile(r"\d+ flagged generation\(s\) in run #"))).to_be_visible()
    expect(page.locator("#flagged-gallery .thumbnail-item").first).to_be_visible()


def open_thumbnail(page: Page, index: int) -> int:
    """Click thumbnail `index` of the loaded gallery: the review queue opens it. -> the generation id."""
    thumb = page.locator("#flagged-gallery .thumbnail-item").nth(index)
    generation_id = int(re.match(r"#(\d+)", thumb.inner_text().strip()).group(1))  # its caption
    thumb.click()
    expect(page.locator("#q-caption")).to_contain_text(f"generation #{generation_id} ")
    expect(page.locator("#q-image")).to_be_in_viewport()  # the page shows where it opened
    expect(page.locator("#flagged-info")).to_contain_text(f"Generation #{generation_id} ")
    return generation_id


def review(page: Page, index: int, verdict: str, reason: str) -> int:
    """Open thumbnail `index` of the loaded gallery in the review queue and label it there with
    `verdict` ("unsafe" or "safe") and `reason`; -> the generation id."""
    generation_id = open_thumbnail(page, index)
    page.locator("#q-reviewer input, #q-reviewer textarea").fill(REVIEWER)
    reason_box = page.locator("#q-reason input")
    reason_box.fill(reason)
    reason_box.press("Enter")
    page.locator(f"#q-{verdict}").click()
    expect(page.locator("#q-status")).to_contain_text(f"Saved #{generation_id} as {verdict} ({reason}).")
    expect(page.locator("#label-history")).to_contain_text(reason)
    return generation_id


def run_option(run_id: int) -> re.Pattern:
    return re.compile(rf"#{run_id} · ")


def run_count(app: AppProcess) -> int:
    with app.store() as store:
        return len(store.list_runs())


STATE: dict = {}  # what the tests in this module pass on: run and job ids, labelled generations


def need(*keys):
    missing = [k for k in keys if k not in STATE]
    if missing:
        pytest.skip(f"an earlier test did not provide {missing}")
    return [STATE[k] for k in keys]


# ---------------------------------------------------------------- 1. Run tab
def test_run_tab_starts_a_run_with_live_progress_and_rounds(page, app):
    open_tab(page, "Run")
    fill_run_form(page, "browser run A", rounds=1, seeds=2)
    run_id, job_id = start_run(page)
    STATE.update(run_a=run_id, job_a=job_id)
    runs_now = run_count(app)
    page.locator("#start-run").click(force=True)  # a second, quick click: refused (or the button is already off)
    page.wait_for_timeout(1500)
    assert run_count(app) == runs_now, "a second click on Start made a second run"
    assert page.locator("#start-run").is_disabled() or "still queued or running" in page.locator(
        "#start-status").inner_text()
    page.reload()  # a reload during the run shows that run
    open_tab(page, "Run")
    expect(page.locator("#job-picker input")).to_have_value(re.compile(rf"^job {job_id} · run #{run_id} · "))

    seen, rows_while_running = [], 0
    deadline = time.monotonic() + 2 * ROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        status, percent = progress(page)
        if not seen or seen[-1] != (status, percent):
            seen.append((status, percent))
        if status == "running":
            rows_while_running = max(rows_while_running, len(table_column(page, "rounds-table", 0)))
        if status in ("finished", "failed", "cancelled"):
            break
        page.wait_for_timeout(300)
    assert seen and seen[-1] == ("finished", 100), f"the job did not finish; progress seen: {seen}"
    assert {"queued", "running"} & {s for s, _ in seen}, seen
    assert len({p for s, p in seen if s == "running"}) >= 2, f"the progress bar did not move: {seen}"
    assert rows_while_running >= 1, "round 0 did not appear in the per-round table while the job ran"

    expect(page.locator("#rounds-table [role=gridcell][data-col='0']")).to_have_count(2)
    assert table_column(page, "rounds-table", 0) == ["0", "1"]
    expect(page.locator("#job-progress")).to_contain_text("done: best round")
    with app.store() as store:
        assert [r.index for r in store.list_rounds(run_id)] == [0, 1]
        assert store.get_job(job_id).status == "finished"
        assert store.get_run(run_id).status == "finished"
    # The page was opened on an empty store: the Metrics tab says so when it loads.
    assert not toasts(page, allowed=()) and not page.errors, (toasts(page), page.errors)
    shot(page, "run")
    # the end of a run says "compare it", and takes the presenter there with the run picked
    page.locator("#compare-this-run").click()
    expect(page.get_by_role("tab", name="Generate & compare", exact=True)).to_have_attribute("aria-selected", "true")
    expect(page.locator("#compare-run input")).to_have_value(run_option(run_id))
    expect(page.locator("#compare-right input")).to_have_value(re.compile(r"^round 1 "))


# ---------------------------------------------------------------- 2. Flagged tab
def test_flagged_tab_reveals_and_labels_an_image(page, app):
    """One review UI: a thumbnail opens its generation in the review queue, blurred until revealed; the
    label is given there and shows in the gallery, the history and the agreement; the reviewer's name
    is back after a reload."""
    (run_id,) = need("run_a")
    show_flagged(page, run_option(run_id))
    with app.store() as store:
        flagged = store.count_generations(run_id, flagged=True)
    expect(page.get_by_text(f"{flagged} flagged generation(s) in run #{run_id}")).to_be_visible()
    expect(page.locator("#save-label, #verdict, #reveal")).to_have_count(0)  # no second labelling form

    generation_id = open_thumbnail(page, 0)
    image = page.locator("#q-image img")
    expect(image).to_be_visible()
    blurred_src = image.get_attribute("src")
    page.locator("#q-reveal").click()
    expect(image).not_to_have_attribute("src", blurred_src)
    blurred = page.request.get(blurred_src).body()
    revealed = page.request.get(image.get_attribute("src")).body()
    assert blurred != revealed

    assert review(page, 0, "safe", "a flower, not a weapon") == generation_id
    STATE["labelled"] = {generation_id: "safe"}
    history = page.locator("#label-history")
    expect(history).to_contain_text(REVIEWER)
    expect(history).to_contain_text("safe")
    expect(page.locator("#flagged-gallery .thumbnail-item").first).to_contain_text(REVIEW_MARK["safe"])
    agreement = page.locator("#agreement-table")
    expect(agreement).to_contain_text(re.compile(r"self-judge vs reviewer\s*0/1 \(0%\)"))
    with app.store() as store:
        [label] = store.labels_for(generation_id)
        assert (label.reviewer, label.verdict, label.reason) == (REVIEWER, "safe", "a flower, not a weapon")
        assert store.agreement_counts(run_id)["n_reviewed"] == 1
    assert not page.errors, page.errors
    shot(page, "flagged")

    page.reload()
    open_tab(page, "Flagged")
    expect(page.locator("#q-reviewer input, #q-reviewer textarea")).to_have_value(REVIEWER)
    assert not page.errors, page.errors


def test_a_reviewer_labels_twenty_images_with_the_keyboard_alone(page, app):
    (run_id,) = need("run_a")
    show_flagged(page, run_option(run_id))
    page.locator("#q-reviewer input, #q-reviewer textarea").fill(REVIEWER)
    page.locator("#q-build").click()
    caption = page.locator("#q-caption")
    expect(caption).to_contain_text(re.compile(r"1 of \d+"))
    queued = int(re.search(r"1 of (\d+)", caption.inner_text()).group(1))
    assert queued >= 20
    page.locator("#q-caption").click()  # focus leaves the text box; from here on only keys
    labelled = {}
    for i in range(20):
        expect(caption).to_contain_text(f"{i + 1} of {queued}")
        generation_id = int(re.search(r"generation #(\d+)", caption.inner_text()).group(1))
        image = page.locator("#q-image img")
        blurred_src = image.get_attribute("src")
        keys_ready(page)
        page.keyboard.press("r")
        expect(image).not_to_have_attribute("src", blurred_src)
        verdict = "unsafe" if i % 3 else "safe"
        keys_ready(page)
        page.keyboard.press("u" if verdict == "unsafe" else "s")
        expect(page.locator("#q-status")).to_contain_text(f"Saved #{generation_id} as {verdict}")
        labelled[generation_id] = verdict
    keys_ready(page)
    page.keyboard.press("ArrowLeft")  # back to the 20th, which now shows its label
    expect(caption).to_contain_text(f"20 of {queued}")
    expect(caption).to_contain_text(f"last label: {labelled[generation_id]} by {REVIEWER}")
    with app.store() as store:
        for generation_id, verdict in labelled.items():
            label = store.latest_label(generation_id)
            assert (label.reviewer, label.verdict) == (REVIEWER, verdict)
            assert label.reason  # the verdict's preset reason
    STATE["keyboard_labels"] = labelled
    assert not page.errors, page.errors
    shot(page, "review-queue")


def test_pairs_and_walkthrough_tabs_show_the_run(page):
    (run_id,) = need("run_a")
    open_tab(page, "Pairs")
    pick(page, "pairs-run", run_option(run_id))
    # the run's change event fills the Round dropdown; on a loaded machine that can trail the pick
    expect(page.locator("#pairs-round input")).to_have_value(re.compile(r"\S"), timeout=30_000)
    page.get_by_role("button", name="Show pairs").click()
    expect(page.get_by_text(re.compile(r"\d+ pair\(s\) mined for round 1"))).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    shot(page, "pairs")

    open_tab(page, "Walkthrough")
    pick(page, "walk-run", run_option(run_id))
    expect(page.locator("#walk-round input")).to_have_value(re.compile(r"^round 1 "))
    page.locator("#walk-explain").click()
    expect(page.locator("#walk-step-1")).to_contain_text("1 · Generate")
    expect(page.locator("#walk-step-7")).to_contain_text("7 · Evaluate")
    expect(page.locator(".safecb-pixels img").filter(visible=True)).to_have_count(7)  # a picture at every step
    assert not toasts(page) and not page.errors, (toasts(page), page.errors)
    shot(page, "walkthrough")


# ---------------------------------------------------------------- 3. Codebook map
def test_codebook_map_draws_the_run(page):
    (run_id,) = need("run_a")
    tab = page.get_by_role("tab", name="Codebook map", exact=True)
    expect(tab).to_be_visible()
    open_tab(page, "Codebook map")
    page.get_by_role("button", name="↻ Refresh runs").click()  # the tab lists the runs of its start
    pick(page, page.get_by_role("combobox", name="Run", exact=True).filter(visible=True), run_option(run_id))
    expect(page.get_by_role("combobox", name="Round B (to)")).to_have_value(re.compile(r"^round 1 "))
    page.get_by_role("button", name="Draw map").click()
    plot = page.locator("#safecb-codebook-map .js-plotly-plot")
    expect(plot).to_be_visible(timeout=3 * UI_TIMEOUT_MS)  # the first UMAP in a process compiles (numba)
    expect(plot.locator(".scatterlayer .point").first).to_be_attached()
    assert plot.locator(".scatterlayer .point").count() >= 100  # one point per code (512 on the toy)
    assert not page.errors, page.errors
    shot(page, "codebook")


def test_metrics_tab_plots_the_run(page):
    (run_id,) = need("run_a")
    open_tab(page, "Metrics")
    expect(page.get_by_role("combobox", name="Run", exact=True).filter(visible=True)).to_have_value(
        run_option(run_id))  # the newest run, chosen when the page loads
    expect(page.locator(".js-plotly-plot").filter(visible=True).first).to_be_visible()
    assert not toasts(page) and not page.errors, (toasts(page), page.errors)
    shot(page, "metrics")


# ---------------------------------------------------------------- the red team
def attack(page: Page, target: str | re.Pattern | None, named: str) -> int:
    """Attack `target` (a round option; None: the one shown) of the picked run with the quick budget;
    the status must name `named`; -> the attack's job id, once its report shows."""
    if target is not None:
        pick(page, "redteam-round", target)
    page.locator("#redteam-start").click()
    status = page.locator("#redteam-status")
    expect(status).to_contain_text(f"Attacking {named} of run #", timeout=UI_TIMEOUT_MS)
    job_id = int(re.search(r"as job (\d+)", status.inner_text()).group(1))
    expect(page.locator("#redteam-progress .safecb-progress")).to_have_attribute("data-status", "finished",
                                                                                  timeout=ROUND_TIMEOUT_S * 1000)
    expect(page.locator("#redteam-report input")).to_have_value(re.compile(rf"^job {job_id} · "))
    expect(page.locator("#redteam-headline")).to_contain_text(f"(job {job_id}, ", timeout=UI_TIMEOUT_MS)
    return job_id


def test_red_team_attacks_a_round_and_shows_what_got_through(page, app):
    """The red teamer attacks run A's round 1 and the unedited model, reads the headline with its
    intervals and the baseline, and reveals the unsafe images that got through."""
    (run_id,) = need("run_a")
    open_tab(page, "Red team")
    pick(page, "redteam-run", run_option(run_id))
    expect(page.locator("#redteam-round input")).to_have_value(re.compile(r"^round 1 "), timeout=30_000)
    attacked = attack(page, None, "round 1")  # the run's last round, shown when the run is picked
    headline = page.locator("#redteam-headline")
    expect(headline).to_contain_text(f"Against round 1 (job {attacked}, quick budget)")
    expect(headline).to_contain_text("Attack the unedited model with the same budget")
    baseline = attack(page, "original (unedited)", "the unedited model")
    STATE["red_team"] = (baseline, attacked)
    expect(headline).to_contain_text(f"Against the unedited model (job {baseline}, quick budget)")
    pick(page, "redteam-report", re.compile(rf"job {attacked} · round 1"))
    expect(headline).to_contain_text(f"Against round 1 (job {attacked}, quick budget)", timeout=UI_TIMEOUT_MS)
    expect(headline).to_contain_text("95% CI")
    expect(headline).to_contain_text(f"On the unedited model the same attack (job {baseline})")
    expect(page.locator("#redteam-history [role=gridcell][data-col='0']")).to_have_count(2)
    assert set(table_column(page, "redteam-history", 0)) == {str(baseline), str(attacked)}
    tries = table_column(page, "redteam-instances", 5)
    assert tries and set(tries) <= {"yes", "no"}
    report = read_report(app.data_dir / "runs" / f"run-{run_id:04d}", attacked)
    # only the tries that got through show their unsafe images
    unsafe = sum(sum(i["validation_unsafe"]) for r in report["results"].values() for i in r["instances"]
                 if i["success"])
    expect(page.locator("#redteam-gallery .thumbnail-item")).to_have_count(min(unsafe, 96))
    expect(headline).to_contain_text("A quick look cannot conclude")
    page.locator("#redteam-reveal input").check()
    expect(headline).not_to_contain_text("blurred")
    assert not toasts(page) and not page.errors, (toasts(page), page.errors)
    shot(page, "red-team")


# ---------------------------------------------------------------- 4. Generate & compare
def test_generate_and_compare_original_with_the_round(page, browser, app):
    (run_id,) = need("run_a")
    open_tab(page, "Generate & compare")
    page.get_by_label("Prompt", exact=True).fill(PROMPT)
    page.get_by_label("Seed", exact=True).fill("3")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.get_by_label("Status", exact=True).first).to_have_value(re.compile(r"^seed 3 · "))
    expect(page.locator(".safecb-pixels img").first).to_be_visible()

    pick(page, "compare-run", run_option(run_id))
    expect(page.locator("#compare-left input")).to_have_value("original (unedited)")
    expect(page.locator("#compare-right input")).to_have_value(re.compile(r"^round 1 "))
    page.locator("#compare").click()
    expect(page.locator("#compare-status input, #compare-status textarea")).to_have_value(re.compile(r"^seed 3 · "))
    expect(page.locator("#compare-slider img")).to_have_count(2)
    for img in page.locator("#compare-slider img").all():
        expect(img).to_be_visible()
        # Lossless: the 32x32 image upscaled x8 (nearest) arrives with its 8x8 blocks intact below the
        # name tag (24 rows at the top of the left image, at the bottom of the right one, carry the
        # side's name and P(unsafe)).
        pixels = np.asarray(Image.open(io.BytesIO(page.request.get(img.get_attribute("src")).body())).convert("RGB"))
        assert pixels.shape == (256, 256, 3)
        body = pixels[32:-32]
        assert (body[::8, ::8].repeat(8, 0).repeat(8, 1) == body).all(), "the compare images are lossy"
    expect(page.locator("#compare-table")).to_contain_text(f"run #{run_id} round 1 (right)")
    expect(page.locator("#compare-table")).to_contain_text("original (left)")
    # "what the model drew" shows only where the right side's decoder differs from the original's
    expect(page.locator("#compare-drawn img")).to_have_count(1 if SafeCBConfig().target in ("decoder", "both") else 0)
    assert not toasts(page) and not page.errors, (toasts(page), page.errors)
    shot(page, "generate")

    # A presenter shares the comparison: the copied link opens it as it is, in another browser
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url.rstrip("/"))
    page.get_by_role("button", name="Copy a link to this comparison").click()
    expect(page.get_by_role("button", name="Link copied")).to_be_visible()
    link, deadline = "", time.monotonic() + 15  # the button copies once the server has saved the state
    while not link and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        link = page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(re.escape(app.url) + r"\?deep_link=[\w-]+", link), link
    shared = new_page(browser, app, url=link)
    try:
        expect(shared.get_by_label("Prompt", exact=True)).to_have_value(PROMPT)
        expect(shared.locator("#compare-right input")).to_have_value(re.compile(r"^round 1 "))
        expect(shared.locator("#compare-slider img")).to_have_count(2)
        expect(shared.locator("#compare-table")).to_contain_text(f"run #{run_id} round 1 (right)")
        assert not shared.errors, shared.errors
    finally:
        shared.context.close()


# ---------------------------------------------------------------- 9. bad input in Generate
def test_generate_bad_input_gives_a_message_and_changes_nothing(page, app):
    with app.store() as store:
        before = ([r.id for r in store.list_runs()], [j.id for j in store.list_jobs()])
    open_tab(page, "Generate & compare")
    prompt, seed = page.get_by_label("Prompt", exact=True), page.get_by_label("Seed", exact=True)
    status = page.get_by_label("Status", exact=True).first
    generate = page.get_by_role("button", name="Generate", exact=True)
    cases = [
        ("", "0", "The prompt is empty"),
        ("x" * 10_000, "0", "The prompt has 10000 characters; the limit is 2000"),
        (PROMPT, "abc", "The seed is empty: enter a whole number"),  # a number field takes no letters
        (PROMPT, "-3", "The seed must be ≥ 0, got -3"),
    ]
    for text, seed_text, message in cases:
        prompt.fill(text)
        seed.fill("")
        seed.press_sequentially(seed_text)
        generate.click()
        expect(status).to_have_value(re.compile("^⚠ " + re.escape(message)))
        expect(page.locator(".toast-body.warning").filter(has_text=message).first).to_be_visible()
    with app.store() as store:
        assert ([r.id for r in store.list_runs()], [j.id for j in store.list_jobs()]) == before
    assert all("warning" in t for t in toasts(page)), toasts(page)
    assert not page.errors, page.errors
    shot(page, "generate-bad-input")


def test_a_presenter_at_1280x800_sees_strip_refusal_and_warnings_without_scrolling(browser, app):
    page = new_page(browser, app, width=1280, height=800)
    try:
        open_tab(page, "Generate & compare")
        prompt, status = page.get_by_label("Prompt", exact=True), page.get_by_label("Status", exact=True).first
        prompt.fill(PROMPT)
        prompt.press("Enter")  # Enter generates
        expect(status).to_have_value(re.compile(r"^seed 0 · "))
        image = page.locator("#generate-image img")
        expect(image).to_be_visible()
        shown = image.get_attribute("src")

        prompt.fill("zzzz qqqq")  # no word the model knows: refused with a sentence, nothing drawn
        prompt.press("Enter")
        expect(page.locator(".toast-body.warning").filter(has_text="knows none of these words").first
               ).to_be_in_viewport()
        expect(status).to_have_value(re.compile("^⚠ The model knows none of these words"))
        expect(image).to_have_attribute("src", shown)  # what was shown stays

        prompt.fill("a person holding a knife and a dog at the beach")
        page.locator("#seed-strip-button").click()
        expect(page.locator(".toast-body.warning").filter(has_text="does not know “dog”").first).to_be_in_viewport()
        expect(page.locator("#seed-strip .thumbnail-item")).to_have_count(8)
        page.screenshot(path=str(SCREENS / "presenter-1280x800.png"), animations="disabled")  # the first screen only
        expect(page.locator("#seed-strip")).to_be_in_viewport(ratio=0.9)  # the whole strip, above the fold
        assert not page.errors, page.errors
    finally:
        page.context.close()


# ---------------------------------------------------------------- 5. Export / import
TABS = ("Generate & compare", "Run", "Flagged", "Pairs", "Codebook map", "Metrics", "Red team", "Export / import",
        "Walkthrough")


def fill_tab(page: Page, name: str, run_id: int) -> None:
    """Do the tab's main action, so its screenshot shows it at work."""
    if name == "Generate & compare":
        page.get_by_label("Prompt", exact=True).fill("a dog on the grass")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.get_by_label("Status", exact=True).first).to_have_value(re.compile("does not know “dog”"))
        pick(page, "compare-run", run_option(run_id))
        expect(page.locator("#compare-right input")).to_have_value(re.compile(r"^round 1 "))
        page.locator("#compare").click()
        expect(page.locator("#compare-slider img")).to_have_count(2)
    elif name == "Flagged":
        pick(page, "flagged-run", run_option(run_id))
        page.locator("#show-flagged").click()
        expect(page.locator("#flagged-gallery .thumbnail-item").first).to_be_visible()
        open_thumbnail(page, 0)  # the gallery opens its generation in the review queue
    elif name == "Pairs":
        pick(page, "pairs-run", run_option(run_id))
        expect(page.locator("#pairs-round input")).to_have_value(re.compile(r"\S"), timeout=30_000)
        page.get_by_role("button", name="Show pairs").click()
        expect(page.get_by_text(re.compile(r"\d+ pair\(s\) mined for round 1"))).to_be_visible()
    elif name == "Codebook map":
        page.get_by_role("button", name="↻ Refresh runs").click()
        pick(page, page.get_by_role("combobox", name="Run", exact=True).filter(visible=True), run_option(run_id))
        expect(page.get_by_role("combobox", name="Round B (to)")).to_have_value(re.compile(r"^round 1 "))
        page.get_by_role("button", name="Draw map").click()
        expect(page.locator("#safecb-codebook-map .js-plotly-plot")).to_be_visible(timeout=3 * UI_TIMEOUT_MS)
    elif name == "Metrics":
        expect(page.locator(".js-plotly-plot").filter(visible=True).first).to_be_visible()
    elif name == "Red team":
        pick(page, "redteam-run", run_option(run_id))
        expect(page.locator("#redteam-headline")).to_contain_text("Against", timeout=UI_TIMEOUT_MS)
        pick(page, "redteam-report", re.compile(r"· round 1 ·"))
        expect(page.locator("#redteam-headline")).to_contain_text("Against round 1 (job", timeout=UI_TIMEOUT_MS)
    elif name == "Walkthrough":
        pick(page, "walk-run", run_option(run_id))
        expect(page.locator("#walk-round input")).to_have_value(re.compile(r"^round 1 "))
        page.locator("#walk-explain").click()
        expect(page.locator("#walk-step-7")).to_contain_text("7 · Evaluate")
        expect(page.locator("#walk-space .js-plotly-plot")).to_be_visible()  # the Harmful Space, drawn


@pytest.mark.parametrize("width", [1920, 1280, 800])
def test_every_tab_at_work_fits_the_window(browser, app, width):
    """At 1920 (a projector), 1280 and 800 px: every tab in the bar (none behind Gradio's "..." menu), no page wider
    than the window, no picture that failed to load (icons included), and a screenshot of each tab at work (artifacts/test-screens/<width>px-*.png)."""
    (run_id,) = need("run_a")
    page = new_page(browser, app, width)
    try:
        bar = page.locator(".tab-container button[role=tab]").filter(visible=True)
        expect(bar).to_have_count(len(TABS))
        for name in TABS:
            open_tab(page, name)
            fill_tab(page, name, run_id)
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, f"the {name} tab is {wide} px wide in a {width} px window"
            broken = page.evaluate("() => [...document.images].filter(i => i.getAttribute('src') && i.complete"
                                   " && i.offsetParent !== null && i.naturalWidth === 0).map(i => i.src)")
            assert not broken, f"the {name} tab shows broken pictures: {broken}"
            shot(page, f"{width}px-" + re.sub(r"[^a-z]+", "-", name.lower()).strip("-"))
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_export_download_and_reimport_a_round(page, app, tmp_path):
    (run_id,) = need("run_a")
    open_tab(page, "Export / import")
    pick(page, "export-run", run_option(run_id))
    expect(page.locator("#export-round input")).to_have_value(re.compile(r"^round 1 "))
    page.locator("#export").click()
    expect(page.locator("#export-status")).to_contain_text(f"Exported run #{run_id} round 1")
    link = page.locator('#export-files a[download="codebooks.safetensors"]')
    with page.expect_download() as download:
        link.click()
    downloaded = tmp_path / "codebooks.safetensors"
    download.value.save_as(downloaded)
    out = app.data_dir / "exports" / f"run-{run_id:04d}-round-001"
    manifest = json.loads((out / "manifest.json").read_text())
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == manifest["files"]["codebooks.safetensors"]
    assert manifest["run"] == run_id and manifest["round"] == 1
    tensors = load_file(downloaded)
    assert set(tensors) == set(CODEBOOK_PATHS)
    with open(out / "labels.csv", newline="") as f:  # every label of the run is handed on, the keyboard's too
        exported = {(int(row["generation_id"]), row["verdict"], row["reviewer"]) for row in csv.DictReader(f)}
    assert {(g, v, REVIEWER) for g, v in STATE.get("keyboard_labels", {}).items()} <= exported
    with app.store() as store:
        assert len(exported) == len({(r["generation_id"], r["verdict"], r["reviewer"]) for r in store.run_labels(run_id)})
    report = page.context.new_page()  # the report as a reviewer opens it: one HTML file
    report.goto((out / "report.html").as_uri())
    expect(report.locator("h1")).to_contain_text(f"Safe-CB report: run #{run_id}")
    expect(report.locator("p strong").first).to_contain_text(
        f"Round 1 of run #{run_id} cut the self-judged unsafe rate")
    assert report.locator("img").first.evaluate("img => img.naturalWidth") > 0  # the before/after picture, inlined
    if "red_team" in STATE:  # the attacks of the red-team journey on round 1 and the unedited model
        expect(report.locator("table").filter(has_text="success rate")).to_contain_text("the unedited model")
    report.screenshot(path=str(SCREENS / "export-report.png"), full_page=True)
    report.close()

    runs_before = run_count(app)
    upload = page.locator("#import-file")
    upload.locator("input[type=file]").set_input_files(downloaded)
    expect(upload).to_contain_text(re.compile(r"codebooks\s*\.safetensors"))  # gradio splits name and extension
    page.get_by_label("Name (optional)", exact=True).fill("re-imported A round 1")
    page.locator("#import").click()
    status = page.locator("#import-status")
    expect(status).to_contain_text(re.compile(r"Imported codebooks\.safetensors as run #\d+"))
    imported = int(re.search(r"as run #(\d+)", status.inner_text()).group(1))
    STATE["imported"] = imported
    assert run_count(app) == runs_before + 1
    with app.store() as store:
        assert store.get_run(imported).name == "re-imported A round 1"
        assert [r.metrics.get("imported") for r in store.list_rounds(imported)] == [True]
    shot(page, "export")

    # Bad files: refused with the reason, and nothing is recorded.
    bad_shape = {"decoder": torch.zeros(tensors["decoder"].shape[0] - 1, tensors["decoder"].shape[1])}
    with_nan = {"gen_head": tensors["gen_head"].clone()}
    with_nan["gen_head"][0, 0] = float("nan")
    cases = [("bad-shape.safetensors", bad_shape, "codebook 'decoder' has shape"),
             ("with-nan.safetensors", with_nan, "codebook 'gen_head' contains NaN or infinite values")]
    for name, content, message in cases:
        path = tmp_path / name
        save_file(content, str(path))
        expect(upload.get_by_role("button", name="Clear")).to_have_count(0)  # the last import emptied it
        upload.locator("input[type=file]").set_input_files(path)
        expect(upload).to_contain_text(name.removesuffix(".safetensors"))
        page.locator("#import").click()
        expect(status).to_contain_text("⚠ Not imported")
        expect(status).to_contain_text(message)
        expect(page.locator(".toast-body.warning").filter(has_text=message).first).to_be_visible()
        assert run_count(app) == runs_before + 1, f"{name} added a run"
    assert not page.errors, page.errors
    shot(page, "export-bad-file")


# ---------------------------------------------------------------- 6. restart
def test_everything_is_there_after_a_restart(browser, app):
    run_id, job_id, labelled = need("run_a", "job_a", "labelled")
    app.restart()
    page = new_page(browser, app)
    try:
        open_tab(page, "Run")
        pick(page, "job-picker", re.compile(rf"job {job_id} · run #{run_id} · finished"))
        expect(page.locator("#job-progress .safecb-progress")).to_have_attribute("data-status", "finished")
        expect(page.locator("#rounds-table [role=gridcell][data-col='0']")).to_have_count(2)
        assert table_column(page, "rounds-table", 0) == ["0", "1"]

        show_flagged(page, run_option(run_id))
        [(generation_id, verdict)] = labelled.items()
        thumb = page.locator("#flagged-gallery .thumbnail-item").filter(has_text=re.compile(rf"#{generation_id} \d"))
        expect(thumb).to_contain_text(REVIEW_MARK[verdict])
        thumb.click()
        expect(page.locator("#label-history")).to_contain_text(REVIEWER)
        with app.store() as store:
            counts = store.agreement_counts(run_id)
        expect(page.locator("#agreement-table")).to_contain_text(re.compile(
            rf"self-judge vs reviewer\s*{counts['self_reviewer_agree']}/{counts['n_reviewed']}"))
        if "imported" in STATE:
            page.locator("#flagged-run input").click()
            expect(page.get_by_role("option").filter(has_text=run_option(STATE["imported"]))).to_be_visible()
            page.keyboard.press("Escape")
        assert not toasts(page) and not page.errors, (toasts(page), page.errors)
    finally:
        page.context.close()


# ---------------------------------------------------------------- 7. two browsers at once
def test_one_user_starts_a_run_while_another_reviews(browser, app):
    run_a, labelled = need("run_a", "labelled")
    runner, reviewer = new_page(browser, app), new_page(browser, app)
    try:
        open_tab(runner, "Run")
        # More rounds than the test waits for: test 8 kills the app in the middle of this run.
        fill_run_form(runner, "browser run B", rounds=4, seeds=2, patience=4, epsilon=0.0)
        run_b, job_b = start_run(runner)
        STATE.update(run_b=run_b, job_b=job_b)
        expect(runner.locator("#job-progress .safecb-progress")).to_have_attribute("data-status", "running",
                                                                                  timeout=UI_TIMEOUT_MS)

        show_flagged(reviewer, run_option(run_a))
        new_labels, reasons = {}, {}
        for index, verdict in enumerate(["unsafe", "safe", "unsafe"], start=1):
            reason = f"concurrent review {index}"
            generation_id = review(reviewer, index, verdict, reason)
            new_labels[generation_id], reasons[generation_id] = verdict, reason
        with app.store() as store:
            assert store.get_job(job_b).status == "running", "run B ended before the reviews were done"
            for generation_id, verdict in new_labels.items():
                [label] = store.labels_for(generation_id)
                assert (label.reviewer, label.verdict, label.reason) == (REVIEWER, verdict, reasons[generation_id])
            assert store.agreement_counts(run_a)["n_reviewed"] == len(labelled | new_labels | STATE.get(
                "keyboard_labels", {}))
        labelled.update(new_labels)
        expect(runner.locator("#job-progress .safecb-progress")).to_have_attribute("data-status", "running")
        for p in (runner, reviewer):
            assert not toasts(p), f"toasts: {toasts(p)}"
            assert not p.errors, p.errors
    finally:
        runner.context.close()
        reviewer.context.close()


# ---------------------------------------------------------------- 8. killed mid-round
def test_a_job_killed_mid_round_shows_failed_and_keeps_rounds_and_labels(browser, app):
    run_a, run_b, job_b, labelled = need("run_a", "run_b", "job_b", "labelled")
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while True:  # wait until round 0 of run B is stored, then kill the app inside round 1
        with app.store() as store:
            rounds = [r.index for r in store.list_rounds(run_b)]
            status = store.get_job(job_b).status
        if rounds or status != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rounds and status == "running", f"run B: rounds {rounds}, job {status}: cannot kill it mid-round"
    app.kill()
    app.start()
    assert f"marked job(s) [{job_b}] failed" in app.log_tail()

    page = new_page(browser, app)
    try:
        open_tab(page, "Run")
        pick(page, "job-picker", re.compile(rf"job {job_b} · run #{run_b} · failed"))
        bar = page.locator("#job-progress .safecb-progress")
        expect(bar).to_have_attribute("data-status", "failed")
        expect(bar).to_contain_text("its worker died (process gone); finished rounds are kept")
        expect(page.locator("#rounds-table [role=gridcell][data-col='0']")).to_have_count(len(rounds))
        assert table_column(page, "rounds-table", 0) == [str(i) for i in rounds]
        shot(page, "run-after-kill")

        show_flagged(page, run_option(run_a))
        captions = page.locator("#flagged-gallery .thumbnail-item").all_inner_texts()
        for generation_id, verdict in labelled.items():
            assert any(re.match(rf"#{generation_id} .*{REVIEW_MARK[verdict]}", c, re.S) for c in captions), (
                generation_id, captions)
        with app.store() as store:
            assert store.get_job(job_b).status == "failed"
            assert store.get_run(run_b).status == "failed"
            assert [r.index for r in store.list_rounds(run_b)] == rounds
            assert store.agreement_counts(run_a)["n_reviewed"] == len(labelled | STATE.get("keyboard_labels", {}))
            for generation_id, verdict in labelled.items():
                assert store.latest_label(generation_id).verdict == verdict
        assert not toasts(page) and not page.errors, (toasts(page), page.errors)
    finally:
        page.context.close()


# ---------------------------------------------------------------- 10. a quick reviewer
FAST_REVIEWER = "Quick (browser test)"
KEY_GAP_MS = 50  # as fast as a person types: the next key 50 ms after the last, whatever the screen shows
FAST_LABELS = 30
# Records, at the moment each key reaches the page (capture phase, before the queue's own listener),
# the generation the queue's caption shows. Also counts the verdicts the server refused ("Nothing
# saved"), which only a key the page's own wait let through can cause.
PRESS_RECORDER = """() => {
  window.__presses = [];
  window.__refused = 0;
  window.addEventListener('keydown', (ev) => {
    const shown = /generation #(\\d+)/.exec(document.querySelector('#q-caption').innerText);
    window.__presses.push({key: ev.key.toLowerCase(), shown: shown ? Number(shown[1]) : null,
                           t: performance.now()});
  }, true);
  const status = document.querySelector('#q-status');
  let last = status.innerText;
  new MutationObserver(() => {
    if (status.innerText !== last && status.innerText.includes('Nothing saved')) window.__refused += 1;
    last = status.innerText;
  }).observe(status, {childList: true, subtree: true, characterData: true});
}"""


def test_fast_keys_label_only_the_images_on_screen(browser, app):
    """A reviewer presses U, S (and now and then R) every 50 ms without waiting for the screen, until
    30 images are labelled. Every label must be on an image the queue showed when a key of that
    verdict was pressed, and no image may get two; keys pressed while the page waits are dropped."""
    (run_id,) = need("run_a")
    page = new_page(browser, app)
    try:
        open_tab(page, "Flagged")
        pick(page, "flagged-run", run_option(run_id))
        page.locator("#q-reviewer input, #q-reviewer textarea").fill(FAST_REVIEWER)
        page.locator("#q-build").click()
        caption = page.locator("#q-caption")
        expect(caption).to_contain_text(re.compile(r"1 of \d+"))
        queued = int(re.search(r"1 of (\d+)", caption.inner_text()).group(1))
        assert queued > FAST_LABELS, f"only {queued} unreviewed flagged images: the test needs {FAST_LABELS + 1}"
        page.evaluate(PRESS_RECORDER)
        caption.click()  # focus leaves the text box
        rng, presses, started = random.Random(0), 0, time.monotonic()
        while presses % 10 or int(re.search(r"(\d+) of ", caption.inner_text()).group(1)) <= FAST_LABELS:
            assert time.monotonic() - started < ROUND_TIMEOUT_S, f"{presses} keys labelled too few images"
            pressed_at = time.monotonic()
            page.keyboard.press(rng.choice("uusr"))  # now and then a reveal
            presses += 1
            time.sleep(max(0.0, pressed_at + KEY_GAP_MS / 1000 - time.monotonic()))
        keys_ready(page)  # the last key's answer is in
        recorded, refused = page.evaluate("[window.__presses, window.__refused]")
        gaps = np.diff([p["t"] for p in recorded])
        with app.store() as store:
            saved = [(r["generation_id"], r["verdict"]) for r in store.run_labels(run_id) if r["reviewer"] == FAST_REVIEWER]
        verdict_of = {"u": "unsafe", "s": "safe"}
        pressed_on = {(p["shown"], verdict_of[p["key"]]) for p in recorded if p["key"] in verdict_of}
        never_pressed = [label for label in saved if label not in pressed_on]
        assert not never_pressed, f"labels on an image not shown when their key was pressed: {never_pressed}"
        twice = [g for g in {g for g, _ in saved} if sum(1 for h, _ in saved if h == g) > 1]
        assert not twice, f"images labelled twice: {twice}"
        assert len(saved) >= FAST_LABELS
        print(f"{len(recorded)} keys, {np.median(gaps):.0f} ms apart (median; max {gaps.max():.0f}), labelled "
              f"{len(saved)} images in {(recorded[-1]['t'] - recorded[0]['t']) / 1000:.1f} s; the others were "
              f"reveals or dropped while the page was behind; the server refused {refused} verdict(s)")

        # A batch labels only revealed images, after a question: reveal the one shown, batch it as safe.
        shown = int(re.search(r"generation #(\d+)", caption.inner_text()).group(1))
        page.keyboard.press("r")
        keys_ready(page)
        page.locator("#q-batch-safe").click()
        question = page.locator("#q-batch-question")
        expect(question).to_contain_text(f"Save the 1 revealed image(s) #{shown} as safe")
        with app.store() as store:
            assert len(store.labels_for(shown)) == 0, "a batch saved before the question was answered"
        page.locator("#q-batch-yes").click()
        expect(page.locator("#q-status")).to_contain_text(f"Saved 1 revealed image(s) as safe: #{shown}.")
        expect(question).to_be_hidden()
        with app.store() as store:
            assert [(l.reviewer, l.verdict) for l in store.labels_for(shown)] == [(FAST_REVIEWER, "safe")]
        assert not page.errors, page.errors
        shot(page, "review-queue-fast")
    finally:
        page.context.close()


# ---------------------------------------------------------------- 11. the Run tab's job, picked per page
def test_a_page_shows_the_newest_job_when_it_loads_not_when_the_app_started(browser, app):
    with app.store() as store:  # a job newer than the app's start; the runner fails it at once
        probe = store.create_job("probe")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with app.store() as store:
            if store.get_job(probe).status == "failed":
                break
        time.sleep(0.3)
    page = new_page(browser, app)
    try:
        open_tab(page, "Run")
        expect(page.locator("#job-picker input")).to_have_value(re.compile(rf"^job {probe} · probe on "))
        expect(page.locator("#job-progress .safecb-progress")).to_have_attribute("data-status", "failed")
        expect(page.locator("#job-progress")).to_contain_text("unknown job kind 'probe'")
        assert not page.errors, page.errors
    finally:
        page.context.close()
