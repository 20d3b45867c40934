"""The app: flag checks, the Generate handler on the real toy model, and one real launch over HTTP."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

import app
from db import Store
from safecb.paths import TOY_MODEL_DIR
from ui import Services, build_demo
from ui.generate_tab import check_seed, example_prompts

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a picture of a person holding a flower on the grass ."


# ---------------------------------------------------------------- flags
def test_defaults_bind_loopback_only():
    args = app.parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860
    assert args.share is False and args.auth is None
    assert Path(args.model) == TOY_MODEL_DIR


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--share"], "--share"),
        (["--host", "0.0.0.0"], "--host 0.0.0.0"),
        (["--host", "192.168.1.7"], "--host 192.168.1.7"),
        (["--share", "--auth", "nopassword"], "USER:PASSWORD"),
        (["--auth", ":secret"], "USER:PASSWORD"),
        (["--port", "0"], "--port"),
        (["--threads", "-1"], "--threads"),
        (["--oracle", "no-such-oracle"], "--oracle"),
        (["--host", "::1"], "--host ::1: IPv6 addresses are not supported"),  # Gradio's launch would crash
        (["--host", "[::1]", "--auth", "a:b"], "IPv6 addresses are not supported"),
    ],
)
def test_unsafe_or_bad_flags_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        app.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_exposure_is_allowed_with_auth():
    args = app.parse_args(["--share", "--host", "0.0.0.0", "--auth", "alice:s3:cret"])
    assert args.auth == ("alice", "s3:cret") and args.share
    assert app.parse_args(["--host", "localhost"]).auth is None


# ---------------------------------------------------------------- the Generate handler
@pytest.fixture(scope="module")
def studio_demo(tmp_path_factory, toy_backend):
    data = tmp_path_factory.mktemp("app")
    store = Store.open(f"sqlite:///{data / 'safecb.db'}")
    yield build_demo(Services(backend=toy_backend, store=store, runs_root=data / "runs"))
    store.close()


@pytest.fixture(scope="module")
def generate_fn(studio_demo):
    fns = [f.fn for f in studio_demo.fns.values() if f.api_name == "generate"]
    assert len(fns) == 1, "the Generate button must be wired with api_name='generate'"
    return fns[0]


def test_generate_returns_upscaled_image_score_and_caption(generate_fn):
    image, judgment, caption, status = generate_fn(PROMPT, 3, 3.0)
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.shape == (256, 256, 3)  # 32x32 toy image, nearest-neighbour x8
    assert (image[::8, ::8].repeat(8, 0).repeat(8, 1) == image).all()
    assert 0.0 <= judgment["unsafe"] <= 1.0
    assert judgment["safe"] == pytest.approx(1.0 - judgment["unsafe"])
    assert isinstance(caption, str) and caption
    assert "seed 3" in status and "⚠" not in status


@pytest.mark.parametrize(
    "prompt, seed, cfg, message",
    [
        ("", 0, 3.0, "prompt is empty"),
        ("   ", 0, 3.0, "prompt is empty"),
        (None, 0, 3.0, "prompt is empty"),
        ("x" * 2001, 0, 3.0, "2001 characters"),
        (PROMPT, -1, 3.0, "seed must be ≥ 0"),
        (PROMPT, "abc", 3.0, "whole number"),
        (PROMPT, None, 3.0, "seed is empty"),
        (PROMPT, 1.5, 3.0, "whole number"),
        (PROMPT, 2**63, 3.0, "at most 2^53 - 1"),
        (PROMPT, 2**53, 3.0, "at most 2^53 - 1"),  # a browser sends 2^53 + 1 as 2^53
        (PROMPT, 0, None, "CFG weight must be a number"),
        (PROMPT, 0, 99.0, "cfg_weight must be in"),
        ("cat " * 300, 0, 3.0, "positions"),
        ("a cat <begin_of_image> on the grass", 0, 3.0, "control token"),
    ],
)
def test_bad_input_gives_a_clear_message_and_no_exception(generate_fn, prompt, seed, cfg, message):
    with pytest.warns(UserWarning):  # gr.Warning outside a browser session
        image, judgment, caption, status = generate_fn(prompt, seed, cfg)
    assert image == judgment == caption == gr.update()  # what is shown stays
    assert status.startswith("⚠") and message in status


def test_seed_parsing_accepts_whole_numbers():
    assert check_seed(7) == check_seed(7.0) == check_seed(" 7 ") == check_seed(np.int64(7)) == 7


def test_examples_cover_benign_and_harmful_prompts():
    benign, harmful = example_prompts()
    assert benign and harmful and not set(benign) & set(harmful)


# ---------------------------------------------------------------- a real launch
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_launches_and_serves_http(tmp_path):
    port = _free_port()
    log_path = tmp_path / "app.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--data-dir", str(tmp_path)],
                                cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with opener.open(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    status = response.status
                    page = response.read().decode("utf-8", "replace")
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200, f"app did not answer 200 within 60 s:\n{log_path.read_text()[-3000:]}"
        assert "Safe-CB Studio" in page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_an_unreachable_database_url_is_a_clear_error(tmp_path):
    url = "postgresql+psycopg://nobody:hunter2@127.0.0.1:1/nowhere"
    done = subprocess.run([sys.executable, "app.py", "--db-url", url, "--data-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error:") and "127.0.0.1:1" in message
    assert "hunter2" not in done.stdout + done.stderr  # the password is masked
    assert not (tmp_path / "runs").exists()


def test_whole_number_fields_reach_their_checks_unrounded(studio_demo):
    """Gradio must not round 1.5 to 2 before the handler can say it is not a whole number."""
    numbers = [b for b in studio_demo.blocks.values() if isinstance(b, gr.Number) and b.step == 1]
    labels = {b.label for b in numbers}
    assert {"Seed", "Rounds at most", "Patience", "Seeds per harmful prompt", "Gallery page (from 0)", "Code id"} <= labels
    for box in numbers:
        half = (box.minimum or 0) + 0.5
        if box.maximum is None or half <= box.maximum:
            assert box.preprocess(half) == half, box.label


def run_app(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = run_app("--port", str(port), "--data-dir", str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: port {port} on 127.0.0.1 is already in use; "
                                                "pick another with --port"]
    assert "loading" not in done.stdout and time.monotonic() - started < 30


def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_app("--data-dir", str(blocker / "data"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith(f"error: --data-dir {blocker / 'data'}: cannot create or write there")


def test_a_read_only_store_is_one_line(tmp_path):
    Store.open(f"sqlite:///{tmp_path / 'safecb.db'}").close()
    done = run_app("--db-url", f"sqlite:///file:{tmp_path / 'safecb.db'}?mode=ro&uri=true",
                   "--data-dir", str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot open the database") and "must be writable" in line


def test_launch_serves_a_data_dir_anywhere_and_limits_uploads_logins_and_sessions(tmp_path):
    args = app.parse_args(["--host", "0.0.0.0", "--auth", "me:secret"])
    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    settings = app.launch_settings(args, tmp_path / "srv" / "safecb", store)
    assert settings["allowed_paths"] == [str(tmp_path / "srv" / "safecb" / folder)  # Export and run images work
                                         for folder in ("runs", "exports")]  # there; the store is not served
    assert settings["max_file_size"] and settings["server_name"] == "0.0.0.0"
    assert settings["state_session_capacity"] == app.SESSION_CAPACITY
    login = settings["auth"]
    assert login("me", "secret")
    refused = sum(not login("me", f"guess{i}") for i in range(200))
    assert refused == 200 and not login("me", "secret")  # waiting after the failures: guessing is slow
    assert login.wait_s("me", "unknown") > 0
    store.close()


def test_uploads_and_cached_outputs_are_deleted_after_an_hour(studio_demo):
    from ui import CACHE_CLEANUP

    every_s, older_than_s = CACHE_CLEANUP
    assert studio_demo.delete_cache == CACHE_CLEANUP and every_s <= 3600 and older_than_s <= 86_400


def test_a_store_outage_or_a_crash_in_a_handler_is_one_plain_sentence(studio_demo, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from ui.errors import public_message

    cancel = next(f.fn for f in studio_demo.fns.values() if f.api_name == "cancel_job")

    def outage(*args, **kwargs):
        raise OperationalError("UPDATE jobs ...", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(Store, "cancel_job", outage)
    with pytest.raises(gr.Error) as caught:
        cancel(1)
    assert "cannot be reached right now" in caught.value.message
    missing = FileNotFoundError(2, "No such file or directory", "/tmp/gradio/8f3a1c/upload/evil.safetensors")
    assert public_message(missing) == "Something went wrong: [Errno 2] No such file or directory: 'evil.safetensors'"


def test_unknown_words_are_named_with_the_words_the_model_knows(generate_fn):
    with pytest.warns(UserWarning):  # a toast, in view
        image, judgment, caption, status = generate_fn("a dog on the grass", 0, 3.0)
    assert image is not None  # still drawn, and said what was drawn from
    assert "does not know “dog”" in status and "knife" in status and "grass" not in status.split("know")[1][:20]
    _, _, _, clean = generate_fn("a cat on the grass", 0, 3.0)
    assert "does not know" not in clean
    with pytest.warns(UserWarning):  # no known word: refused with a sentence, as a toast too
        image, _, _, status = generate_fn("zzzz qqqq", 0, 3.0)
    assert image == gr.update() and "knows none of these words" in status


def test_the_page_header_names_the_store_kind_not_its_path(studio_demo, tmp_path):

    header = next(b.value for b in studio_demo.blocks.values() if isinstance(b, gr.Markdown)
                  and "Safe-CB Studio" in (b.value or ""))
    assert "sqlite store" in header and "sqlite:///" not in header and ".db" not in header
