"""What the launched app serves from its data directory (app.launch_settings, ui/file_headers.py):
run images and exports, never the store; pictures inline, everything else as a download that
cannot run as a page in the app's origin."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest
from PIL import Image
from safetensors.torch import save_file

import app
from db import Store
from ui import Services, build_demo
from ui.export_tab import export_round, import_codebook

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, toy_backend):
    """The app's Blocks launched on a data directory holding one imported run, its export and a run
    image; -> (base URL of the file route, data directory, export folder)."""
    data = tmp_path_factory.mktemp("served")
    store = Store.open(f"sqlite:///{data / 'safecb.db'}")
    services = Services(backend=toy_backend, store=store, runs_root=data / "runs")
    codebook = data / "upload.safetensors"
    edited = services.reference["gen_head"].clone()
    edited[0, 0] += 1.0
    save_file({"gen_head": edited}, str(codebook), metadata={"fingerprint": services.backend.fingerprint})
    run_id, _ = import_codebook(services, str(codebook), "<img src=x onerror=alert(1)>")
    files, _ = export_round(services, run_id, 0)
    picture = services.artifacts(run_id).examples_path(0)
    picture.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(picture)
    args = app.parse_args(["--port", str(free_port()), "--data-dir", str(data)])
    demo = build_demo(services)
    demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_settings(args, data, store))
    try:
        yield f"http://127.0.0.1:{args.port}/gradio_api/file=", data, services.artifacts(run_id), files
    finally:
        demo.close()
        store.close()


def get(url: str) -> httpx.Response:
    with httpx.Client(timeout=30, trust_env=False) as client:
        return client.get(url)


@pytest.mark.parametrize("name", ["safecb.db", "safecb.db-wal", "upload.safetensors"])
def test_the_store_and_other_files_of_the_data_dir_are_refused(served, name):
    base, data, _, _ = served
    assert (data / name).exists()
    response = get(base + str(data / name))
    assert 400 <= response.status_code < 500 and b"SQLite" not in response.content


def test_run_images_are_served_inline_and_exports_as_downloads(served):
    base, _, run_dir, files = served
    image = get(base + str(run_dir.examples_path(0)))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert not image.headers.get("content-disposition", "").startswith("attachment")
    bundle = get(base + files[0])
    assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
    assert bundle.headers["content-disposition"].startswith("attachment")


def test_an_exported_html_report_never_opens_as_a_page_of_the_app(served):
    base, _, _, files = served
    report = next(f for f in files if f.endswith("report.html"))
    response = get(base + report)
    assert response.status_code == 200 and b"Safe-CB report" in response.content
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true", reason="no /usr/bin/chromium")
def test_gradio_icons_show_and_an_svg_opened_as_a_page_runs_nothing(served):
    import gradio
    from playwright.sync_api import sync_playwright

    base, _, run_dir, _ = served
    icon = get(base + str(gradio.utils.get_icon_path("link.svg")))  # the link button's icon
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert not icon.headers.get("content-disposition", "").startswith("attachment")
    hostile = run_dir.path / "hostile.svg"
    hostile.write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="window.__ran = 1">'
                       '<script>window.__ran = 1</script><rect width="8" height="8"/></svg>')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.goto(base + str(hostile))
        assert page.evaluate("() => window.__ran === undefined")
        browser.close()
