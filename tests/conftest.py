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
