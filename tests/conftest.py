"""Shared fixtures."""

import getpass
import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the app and CLI run (safecb/__main__.py)
import torch  # noqa: E402
from sqlalchemy import create_engine, text

from db import Store  # noqa: E402

PG_URL = "postgresql+psycopg://{user}@127.0.0.1:5432/test"
PHOTO = Path(__file__).parent / "data" / "astronaut_256.png"  # public domain, see tests/data/README.md


@pytest.fixture(scope="module")
def photo():
    """A real photo for the real-image oracles: uint8 [256, 256, 3] RGB."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(PHOTO).convert("RGB"))


@pytest.fixture(scope="module")
def one_thread():
    """The test machine's 2 cores are shared: one thread avoids oversubscription stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- models and configs
# Module scope, not session: tests edit the backends' codebooks, and one object shared by the whole
# session would carry a file's edits (and any it forgets to undo) into the next file. The model
# modules are imported inside the fixtures, so that files which need no model never import them.
@pytest.fixture(scope="module")
def toy_backend(one_thread):
    """The shipped toy model (safecb.paths.TOY_MODEL_DIR) on CPU, loaded once per test module, with
    one torch thread for the module (`one_thread`). A test that edits its codebooks must put them
    back, or the module's later tests see the edit."""
    from safecb.models.backend import JanusBackend
    from safecb.paths import TOY_MODEL_DIR

    return JanusBackend.load(TOY_MODEL_DIR, device="cpu")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random checkpoint (seed 0) in Janus-Pro's exact Hugging Face layout, written once per
    test module into a temporary directory by `safecb.models.tiny.write_tiny_janus_pro`."""
    from safecb.models.tiny import write_tiny_janus_pro

    return write_tiny_janus_pro(tmp_path_factory.mktemp("tiny-janus-pro"))


@pytest.fixture(scope="module")
def tiny_backend(tiny_dir, one_thread):
    """The `tiny_dir` checkpoint loaded on CPU (chat path, bf16 weights as stored), once per test
    module, with one torch thread for the module (`one_thread`)."""
    from safecb.models.backend import JanusBackend

    return JanusBackend.load(tiny_dir, device="cpu")


@pytest.fixture(scope="session")
def small_config():
    """A function that builds a fresh small SafeCBConfig for the toy and a few prompts: 3 harmful and
    2 benign mining seeds, 20 step-2 steps (either target) checked every 5, 20 head-fit steps, the
    default target (generator) and edit (the whole head). Its keyword arguments set fields of `stop`, e.g. `small_config(max_rounds=1,
    epsilon=0.0)`; other sections: `small_config().override({"batch_size": 2})`. Not validated, so
    a test can build a bad config on purpose."""
    from safecb.engine.config import SafeCBConfig

    def build(**stop) -> SafeCBConfig:
        cfg = SafeCBConfig()
        cfg.mining.seeds, cfg.mining.benign_seeds = [0, 1, 2], [0, 1]
        cfg.fine_tune.steps, cfg.fine_tune.decoder_steps, cfg.fine_tune.check_every = 20, 20, 5
        cfg.generator_edit.head.steps = 20
        for key, value in stop.items():
            if not hasattr(cfg.stop, key):
                raise TypeError(f"small_config: the stop section has no field {key!r}")
            setattr(cfg.stop, key, value)
        return cfg

    return build


@pytest.fixture(scope="session")
def pg_admin():
    """An engine on the local PostgreSQL, as user postgres or else the OS user."""
    errors = []
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        url = PG_URL.format(user=user)
        engine = create_engine(url, connect_args={"connect_timeout": 3}, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable as this user"
            errors.append(f"{url}: {str(exc).splitlines()[0]}")
            engine.dispose()
            continue
        yield url, engine
        engine.dispose()
        return
    reason = "PostgreSQL not reachable: " + "; ".join(errors)
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request, tmp_path):
    """A function that opens a Store on this test's own database; call it again to 'restart'."""
    if request.param == "sqlite":
        url, kwargs = f"sqlite:///{tmp_path}/store/safecb.db", {}
    else:
        url, admin = request.getfixturevalue("pg_admin")
        kwargs = {"schema": f"safecb_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"}
    opened = []

    def open_():
        store = Store.open(url, **kwargs)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    if request.param == "postgresql":
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{kwargs["schema"]}" CASCADE'))
